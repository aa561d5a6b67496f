"""Triton's ``config.pbtxt``: parse it with Triton's own protobuf schema, complete it from the model.

bushu honours name, platform/backend, max_batch_size, input, output, dynamic_batching
(preferred_batch_size, max_queue_delay_microseconds, default_queue_policy), instance_group (count),
version_policy, default_model_filename and parameters (backend options such as ``threads``).
Every other field that is set is reported in a warning and in the model's status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from ..errors import ModelLoadError
from ..runtime.registry import BUILTIN
from ..spec import DTYPES, TensorSpec

__all__ = ["CONFIG_FILE", "Settings", "complete_config", "config_to_dict", "read_config", "write_config"]

CONFIG_FILE = "config.pbtxt"
DEFAULT_MAX_BATCH = 8  # for models without a config whose inputs all have a symbolic batch dim
DEFAULT_QUEUE_SIZE = 1024  # Triton's 0 means unbounded; bushu always bounds the queue

_SUPPORTED = {
    "name",
    "platform",
    "backend",
    "max_batch_size",
    "input",
    "output",
    "dynamic_batching",
    "instance_group",
    "version_policy",
    "parameters",
    "default_model_filename",
    "model_warmup",
}
_SUPPORTED_BATCHING = {"preferred_batch_size", "max_queue_delay_microseconds", "default_queue_policy"}
_SUPPORTED_QUEUE = {"max_queue_size", "default_timeout_microseconds", "allow_timeout_override", "timeout_action"}
_SUPPORTED_INSTANCE = {"name", "kind", "count"}
# backend <-> Triton platform name, from the backend registry
_PLATFORMS = {n: b.platform for n, b in BUILTIN.items() if b.platform}
_BACKEND_OF_PLATFORM = {p: n for n, p in _PLATFORMS.items()}


def platform_of(backend: str) -> str:
    """The platform config.pbtxt names for a backend (a backend without one is named as such)."""
    return _PLATFORMS.get(backend, backend)


def tensor_type(dtype: str) -> int:
    """bushu dtype -> config DataType (Triton spells BYTES as TYPE_STRING)."""
    v2 = DTYPES[dtype][1] if dtype in DTYPES else "INVALID"
    return mc.DataType.Value("TYPE_STRING" if v2 == "BYTES" else f"TYPE_{v2}")


def dtype_of(tensor_type_value: int) -> str:
    name = mc.DataType.Name(tensor_type_value).removeprefix("TYPE_")
    v2 = "BYTES" if name == "STRING" else name
    for k, (_, v, _) in DTYPES.items():
        if v == v2:
            return k
    raise ModelLoadError(f"data type {mc.DataType.Name(tensor_type_value)} is not supported by bushu")


def read_config(model_dir: Path) -> mc.ModelConfig | None:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise ModelLoadError(
            f"{path} is not a valid model configuration: {e}",
            hint="see Triton's model_config.proto for the field names",
        ) from e


def backend_of(cfg: mc.ModelConfig | None) -> str | None:
    if cfg is None:
        return None
    return cfg.backend or _BACKEND_OF_PLATFORM.get(cfg.platform) or None


@dataclass(frozen=True)
class Settings:
    """What the scheduler needs, read from a completed config."""

    max_batch_size: int  # per request and per execution; 0 = the model has no batch dim
    dynamic: bool  # combine requests into batches (dynamic_batching is set)
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_s: float
    max_queue_size: int
    default_timeout_s: float | None
    allow_timeout_override: bool
    instances: int
    options: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def unsupported_fields(cfg: mc.ModelConfig) -> list[str]:
    out = [f.name for f, _ in cfg.ListFields() if f.name not in _SUPPORTED]
    if cfg.HasField("dynamic_batching"):
        db = cfg.dynamic_batching
        out += [f"dynamic_batching.{f.name}" for f, _ in db.ListFields() if f.name not in _SUPPORTED_BATCHING]
        out += [
            f"dynamic_batching.default_queue_policy.{f.name}"
            for f, _ in db.default_queue_policy.ListFields()
            if f.name not in _SUPPORTED_QUEUE
        ]
    for g in cfg.instance_group:
        out += [f"instance_group.{f.name}" for f, _ in g.ListFields() if f.name not in _SUPPORTED_INSTANCE]
    for io in list(cfg.input) + list(cfg.output):
        out += [f"{io.name}.{f.name}" for f, _ in io.ListFields() if f.name in ("reshape", "is_shape_tensor")]
    return out


def _param(value: str) -> Any:
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


#: backends that run KIND_GPU instances, and the device they are loaded with
GPU_BACKENDS = {"onnxruntime": "cuda", "onnxruntime-cuda": "cuda", "onnxruntime-trt": "tensorrt", "tensorrt": "cuda"}


def instance_device(cfg: mc.ModelConfig | None, backend: str) -> dict[str, Any]:
    """load() arguments for the instance_group's kind: {} on the CPU; device and device_id for KIND_GPU.

    As Triton, a KIND_GPU group is a request, not a preference: where it cannot be met the model fails
    to load with the reason (the backend says when there is no GPU), and other models are unaffected.
    """
    groups = [g for g in (cfg.instance_group if cfg is not None else []) if g.kind == mc.ModelInstanceGroup.KIND_GPU]
    if not groups:
        return {}
    if backend not in GPU_BACKENDS:
        raise ModelLoadError(
            f"instance_group asks for KIND_GPU, but bushu runs {backend!r} models on the CPU only",
            hint=f"use kind: KIND_CPU, or a model for one of {sorted(GPU_BACKENDS)}",
        )
    gpus = list(groups[0].gpus)
    return {"device": GPU_BACKENDS[backend], "device_id": gpus[0] if gpus else 0}


def parameters_of(cfg: mc.ModelConfig | None) -> dict[str, Any]:
    """config.pbtxt ``parameters`` (backend options such as threads), numbers parsed."""
    return {k: _param(v.string_value) for k, v in cfg.parameters.items()} if cfg is not None else {}


def complete_config(
    cfg: mc.ModelConfig | None, name: str, backend: str, inputs: list[TensorSpec], outputs: list[TensorSpec]
) -> tuple[mc.ModelConfig, Settings]:
    """Fill what the config leaves out from the model's IO; check what it states against the model."""
    cfg = mc.ModelConfig() if cfg is None else _copy(cfg)
    given = cfg.ByteSize() > 0
    if cfg.name and cfg.name != name:
        raise ModelLoadError(
            f"config.pbtxt names the model {cfg.name!r} but its directory is {name!r}",
            hint="make them equal, or leave `name` out",
        )
    cfg.name = name
    if not cfg.backend and not cfg.platform:
        cfg.platform = platform_of(backend)
    batchable = bool(inputs) and all(s.has_batch for s in inputs) and all(s.has_batch for s in outputs)
    if not given and batchable:
        cfg.max_batch_size = DEFAULT_MAX_BATCH
        cfg.dynamic_batching.SetInParent()
    if cfg.max_batch_size < 0:
        raise ModelLoadError(f"{name}: max_batch_size must be >= 0, got {cfg.max_batch_size}")
    if cfg.max_batch_size > 0 and not batchable:
        bad = [str(s) for s in inputs + outputs if not s.has_batch]
        raise ModelLoadError(
            f"{name}: max_batch_size {cfg.max_batch_size} needs a batch (first) dimension on every "
            f"input and output, but these have none: {bad}",
            hint="set max_batch_size: 0",
        )
    skip = 1 if cfg.max_batch_size > 0 else 0
    _complete_io(name, "input", cfg.input, inputs, skip)
    _complete_io(name, "output", cfg.output, outputs, skip)
    warnings = unsupported_fields(cfg)
    db = cfg.dynamic_batching
    qp = db.default_queue_policy
    count = sum(max(g.count, 1) for g in cfg.instance_group) if cfg.instance_group else 1
    if not cfg.instance_group:
        cfg.instance_group.add(name=name, count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    settings = Settings(
        max_batch_size=cfg.max_batch_size,
        dynamic=cfg.max_batch_size > 0 and cfg.HasField("dynamic_batching"),
        preferred_batch_sizes=tuple(sorted(db.preferred_batch_size)),
        max_queue_delay_s=db.max_queue_delay_microseconds / 1e6,
        max_queue_size=qp.max_queue_size or DEFAULT_QUEUE_SIZE,
        default_timeout_s=qp.default_timeout_microseconds / 1e6 if qp.default_timeout_microseconds else None,
        allow_timeout_override=qp.allow_timeout_override or not qp.default_timeout_microseconds,
        instances=count,
        options=parameters_of(cfg),
        warnings=tuple(warnings),
    )
    return cfg, settings


def _complete_io(name: str, kind: str, declared, specs: list[TensorSpec], skip: int) -> None:
    by_name = {s.name: s for s in specs}
    if not declared:
        for s in specs:
            io = declared.add(name=s.name, data_type=tensor_type(s.dtype))
            io.dims.extend(d if isinstance(d, int) and d >= 0 else -1 for d in s.shape[skip:])
        return
    for io in declared:
        if io.name not in by_name:
            from ..errors import did_you_mean

            close = did_you_mean(io.name, by_name)
            raise ModelLoadError(
                f"{name}: config.pbtxt declares {kind} {io.name!r}, which the model does not have"
                + (f"; did you mean {close[0]!r}?" if close else ".")
                + f" Model {kind}s: {list(by_name)}"
            )
        want = by_name[io.name].dtype
        if dtype_of(io.data_type) != want:
            raise ModelLoadError(
                f"{name}: config.pbtxt gives {kind} {io.name!r} type "
                f"{mc.DataType.Name(io.data_type)}, but the model's is {want}"
            )
        model_dims = by_name[io.name].shape[skip:]
        clash = [(c, m) for c, m in zip(io.dims, model_dims) if c >= 0 and isinstance(m, int) and m >= 0 and c != m]
        if len(io.dims) != len(model_dims) or clash:
            raise ModelLoadError(
                f"{name}: config.pbtxt gives {kind} {io.name!r} dims {list(io.dims)}, but the model's "
                f"are {list(model_dims)}" + (" (dims exclude the batch dim when max_batch_size > 0)" if skip else "")
            )


def io_specs(cfg: mc.ModelConfig, kind: str) -> list[TensorSpec]:
    """The config's inputs or outputs as TensorSpecs with the batch dim in front when batching."""
    lead: tuple = ("batch",) if cfg.max_batch_size > 0 else ()
    return [
        TensorSpec(
            io.name, dtype_of(io.data_type), lead + tuple(d if d >= 0 else f"d{i}" for i, d in enumerate(io.dims))
        )
        for io in (cfg.input if kind == "input" else cfg.output)
    ]


def config_to_dict(cfg: mc.ModelConfig) -> dict[str, Any]:
    """Triton's JSON form: protobuf's JSON mapping writes 64-bit ints as strings, Triton as numbers."""
    return _int64_as_numbers(json_format.MessageToDict(cfg, preserving_proto_field_name=True))


_TEXT_KEYS = {"name", "platform", "backend", "runtime", "string_value", "default_model_filename", "parameters"}


def _int64_as_numbers(x: Any, key: str = "") -> Any:
    if isinstance(x, dict):
        return {
            k: (
                v
                if k in _TEXT_KEYS
                and not isinstance(v, (dict, list))
                or key == "parameters"
                and not isinstance(v, dict)
                else _int64_as_numbers(v, k)
            )
            for k, v in x.items()
        }
    if isinstance(x, list):
        return [_int64_as_numbers(v, key) for v in x]
    if isinstance(x, str) and key not in _TEXT_KEYS and x.lstrip("-").isdigit():
        return int(x)
    return x


def _copy(cfg: mc.ModelConfig) -> mc.ModelConfig:
    out = mc.ModelConfig()
    out.CopyFrom(cfg)
    return out


def write_config(
    path: Path,
    name: str,
    backend: str,
    max_batch_size: int,
    max_queue_delay_us: int,
    instances: int,
    threads: int | None = None,
    preferred: list[int] | None = None,
) -> None:
    cfg = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    if backend in _PLATFORMS and backend != "null":
        cfg.platform = _PLATFORMS[backend]
    else:
        cfg.backend = backend
    if max_batch_size > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
        cfg.dynamic_batching.preferred_batch_size.extend(preferred or [])
    cfg.instance_group.add(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU)
    if threads:
        cfg.parameters["threads"].string_value = str(threads)
    path.write_text(text_format.MessageToString(cfg))


def warmup_samples(cfg: mc.ModelConfig | None, model_dir: Path, batching: bool) -> list[tuple[str, dict, int]]:
    """Triton's ``model_warmup``: (sample name, feeds, runs) per sample, with zero_data, random_data or
    input_data_file (raw row-major bytes in MODEL/warmup/). A bad sample fails the load with its name."""
    if cfg is None:
        return []
    from ..spec import np_dtype

    out = []
    for i, w in enumerate(cfg.model_warmup):
        name = w.name or f"#{i}"
        n = w.batch_size or 1
        if not batching and n != 1:
            raise ModelLoadError(
                f"model_warmup {name!r}: batch_size {n} on a model without batching (max_batch_size 0)",
                hint="use batch_size 1",
            )
        if not w.inputs:
            raise ModelLoadError(f"model_warmup {name!r} has no inputs")
        rng = np.random.default_rng(i)
        feeds = {}
        for inp_name, spec in w.inputs.items():
            dtype = dtype_of(spec.data_type)
            dt = np_dtype(dtype)
            is_bytes = dt.kind == "O"
            dims = [int(d) for d in spec.dims]
            if any(d < 0 for d in dims):
                raise ModelLoadError(f"model_warmup {name!r} input {inp_name!r}: dims {dims} must be concrete")
            kind = spec.WhichOneof("input_data_type")
            if kind == "input_data_file":
                f = (model_dir / "warmup" / spec.input_data_file).resolve()
                if (model_dir / "warmup").resolve() not in f.parents or not f.is_file():
                    raise ModelLoadError(
                        f"model_warmup {name!r} input {inp_name!r}: no file {spec.input_data_file!r} "
                        f"in {model_dir / 'warmup'}"
                    )
                raw = f.read_bytes()
                want = int(np.prod(dims)) * dt.itemsize
                if is_bytes or len(raw) != want:
                    raise ModelLoadError(
                        f"model_warmup {name!r} input {inp_name!r}: {f.name} has {len(raw)} bytes, "
                        f"dims {dims} of {dtype} need {want}"
                    )
                a = np.frombuffer(raw, dt).reshape(dims)
            elif kind == "random_data" and not is_bytes:
                a = (rng.random(dims) * 2 - 1).astype(dt) if dt.kind == "f" else rng.integers(0, 2, dims).astype(dt)
            else:  # zero_data (random_data on BYTES: empty strings, as zeros)
                a = np.full(dims, b"", dtype=object) if is_bytes else np.zeros(dims, dt)
            feeds[inp_name] = np.repeat(a[None], n, axis=0) if batching else a
        out.append((name, feeds, max(1, int(w.count))))
    return out
