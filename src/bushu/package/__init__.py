"""Offline SDK bundles: ``build_bundle(artifact, "model.zip")`` (see bundle.py) and the Kubernetes /
KServe manifests inside them (manifests.py). The SDK itself (templates/sdk) needs only onnxruntime and
numpy, plus Pillow for image and audio models or tokenizers for MiniLM text models."""

from __future__ import annotations

from .bundle import Bundle, PackageConfig, build_bundle, names_for
from .manifests import DeploySettings, ManifestError, manifests, validate_manifests

__all__ = [
    "Bundle",
    "DeploySettings",
    "ManifestError",
    "PackageConfig",
    "build_bundle",
    "manifests",
    "names_for",
    "validate_manifests",
]
