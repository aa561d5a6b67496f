"""Kubernetes and KServe manifests for a packaged model, and their validation against schemas.

Built as plain dicts and dumped as YAML, one object per file:

    deploy/kubernetes/deployment.yaml   apps/v1 Deployment running `bushu serve /models`
    deploy/kubernetes/service.yaml      v1 Service (http 8000, grpc 8001, metrics 8002)
    deploy/kubernetes/hpa.yaml          autoscaling/v2 HorizontalPodAutoscaler on CPU utilisation
    deploy/kserve/servingruntime.yaml   serving.kserve.io/v1alpha1 ServingRuntime (v2 + grpc-v2 protocol)
    deploy/kserve/inferenceservice.yaml serving.kserve.io/v1beta1 InferenceService using that runtime

``validate_manifests`` checks core kinds with ``kubernetes-validate`` (the Kubernetes OpenAPI schemas
shipped in that pip package, strict: unknown fields are errors) and KServe kinds with ``jsonschema``
and the CRD schemas vendored in ``schemas/`` (see schemas/SOURCE.md), made strict the same way.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BushuError, MissingDependencyError

__all__ = ["DeploySettings", "ManifestError", "k8s_name", "manifests", "validate_manifest", "validate_manifests"]

KSERVE_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-inferenceservice-v1beta1.json.gz",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "kserve-servingruntime-v1alpha1.json.gz",
}
KSERVE_SCHEMA_VERSION = "v0.20.0"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ManifestError(BushuError):
    """A manifest does not match its schema."""


@dataclass(frozen=True)
class DeploySettings:
    model: str  # the model's name in the repository (a directory name)
    image: str  # the container image built from deploy/Dockerfile
    min_replicas: int = 1
    max_replicas: int = 4
    cpu_target: int = 70  # HPA: average CPU utilisation, percent of the request
    cpu: str = "1"
    memory: str = "1Gi"
    storage_uri: str | None = None  # KServe: load the repository from here instead of the image's /models


def k8s_name(name: str) -> str:
    """A DNS-1123 label from a model name: lower case, '-' for anything else, at most 63 characters."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return out or "model"


def _labels(s: DeploySettings) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": k8s_name(s.model),
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/part-of": "bushu",
    }


def _server_args(repo: str, http: int, grpc: int) -> list[str]:
    return [
        repo,
        "--host",
        "0.0.0.0",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(METRICS_PORT),
    ]


def _security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _resources(s: DeploySettings) -> dict[str, Any]:
    return {"requests": {"cpu": s.cpu, "memory": s.memory}, "limits": {"memory": s.memory}}


def manifests(s: DeploySettings) -> dict[str, dict[str, Any]]:
    """Relative path -> manifest object."""
    name = k8s_name(s.model)
    labels = _labels(s)
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3}
    container = {
        "name": "bushu-server",
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["bushu", "serve"],
        "args": _server_args("/models", HTTP_PORT, GRPC_PORT),
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": probe,
        "startupProbe": {**probe, "failureThreshold": 30},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 20},
        "resources": _resources(s),
        "securityContext": _security(),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": s.min_replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {"containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": s.min_replicas,
            "maxReplicas": s.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": s.cpu_target}},
                }
            ],
        },
    }
    # KServe: the runtime serves /mnt/models when a storageUri is given (KServe's storage initializer
    # puts the repository there), otherwise the repository baked into the image at /models.
    runtime_name = f"bushu-{name}"[:63].rstrip("-")
    repo = "/mnt/models" if s.storage_uri else "/models"
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": runtime_name, "labels": labels, "annotations": {"serving.kserve.io/server-type": "bushu"}},
        "spec": {
            "annotations": {"prometheus.kserve.io/port": str(METRICS_PORT), "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [
                {"name": "bushu", "version": "1", "autoSelect": True, "priority": 1},
                {"name": "onnx", "version": "1", "autoSelect": False},
            ],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": s.image,
                    "command": ["bushu", "serve"],
                    # KServe routes v2 REST to 8080 and gRPC to 9000 by default, as for its Triton runtime
                    "args": _server_args(repo, 8080, 9000),
                    "ports": [{"containerPort": 8080, "name": "h1", "protocol": "TCP"}],
                    "resources": _resources(s),
                    "securityContext": _security(),
                }
            ],
        },
    }
    model: dict[str, Any] = {
        "modelFormat": {"name": "bushu", "version": "1"},
        "runtime": runtime_name,
        "protocolVersion": "v2",
    }
    if s.storage_uri:
        model["storageUri"] = s.storage_uri
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "predictor": {
                "minReplicas": s.min_replicas,
                "maxReplicas": s.max_replicas,
                "scaleMetric": "cpu",
                "scaleTarget": s.cpu_target,
                "model": model,
            }
        },
    }
    return {
        "kubernetes/deployment.yaml": deployment,
        "kubernetes/service.yaml": service,
        "kubernetes/hpa.yaml": hpa,
        "kserve/servingruntime.yaml": runtime,
        "kserve/inferenceservice.yaml": isvc,
    }


# -- validation ------------------------------------------------------------------------------------
def _strict(schema: Any) -> Any:
    """A CRD structural schema made strict the way `kubectl --validate=strict` is: objects with declared
    properties reject unknown fields unless marked x-kubernetes-preserve-unknown-fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string"):  # OpenAPI's int-or-string has no JSON-schema "type"
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable"):
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
    return out


_kserve_cache: dict[str, Any] = {}


def _kserve_schema(filename: str) -> dict[str, Any]:
    if filename not in _kserve_cache:
        data = resources.files(__package__).joinpath("schemas").joinpath(filename).read_bytes()
        _kserve_cache[filename] = _strict(json.loads(gzip.decompress(data)))
    return _kserve_cache[filename]


def _check_metadata(obj: dict[str, Any]) -> list[str]:
    errors = []
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not _DNS1123.match(name) or len(name) > 63:
        errors.append(f"metadata.name {name!r} is not a DNS-1123 label (lower case letters, digits, '-')")
    return errors


def validate_manifest(obj: dict[str, Any], k8s_version: str | None = None) -> str:
    """Validate one object; returns the schema it was checked against; raises ManifestError."""
    try:
        import jsonschema
    except ImportError:
        raise MissingDependencyError("validating manifests", "package") from None
    where = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')!r}"
    errors = _check_metadata(obj)
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in KSERVE_SCHEMAS:
        schema = _kserve_schema(KSERVE_SCHEMAS[key])
        validator = jsonschema.Draft7Validator(schema)
        errors += [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        ]
        checked = f"KServe {KSERVE_SCHEMA_VERSION} CRD schema ({key[0]} {key[1]})"
    else:
        try:
            import kubernetes_validate
        except ImportError:
            raise MissingDependencyError("validating Kubernetes manifests", "package") from None
        version = k8s_version or kubernetes_validate.latest_version()
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            errors.append(str(e))
        checked = f"Kubernetes {version} schema ({key[0]} {key[1]}, strict)"
    if errors:
        raise ManifestError(
            f"{where} does not match the {checked}: "
            + "; ".join(errors[:10])
            + (f" (and {len(errors) - 10} more)" if len(errors) > 10 else "")
        )
    return checked


def validate_manifests(paths: list[str | Path], k8s_version: str | None = None) -> list[dict[str, str]]:
    """Validate every object in the YAML files; returns one row per object (file, kind, name, schema)."""
    import yaml

    rows = []
    for path in paths:
        path = Path(path)
        for obj in yaml.safe_load_all(path.read_text()):
            if obj is None:
                continue
            if not isinstance(obj, dict):
                raise ManifestError(f"{path}: a manifest must be a mapping, got {type(obj).__name__}")
            try:
                schema = validate_manifest(obj, k8s_version)
            except ManifestError as e:
                raise ManifestError(f"{path}: {e.message}", hint="fix the field named above") from None
            rows.append({"file": str(path), "kind": obj.get("kind"), "name": obj["metadata"]["name"], "schema": schema})
    return rows
