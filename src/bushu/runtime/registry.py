"""Backend registry: name -> "module:Class", imported on first use.

Third parties add backends with an entry point in the group ``bushu.backends``.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MissingDependencyError, UnknownNameError, UserInputError

if TYPE_CHECKING:
    from .backend import Backend

__all__ = ["available_backends", "backend_for_path", "get_backend", "installed_backends", "list_backends"]

# name -> (target, extra that installs its framework, suffixes it reads). Suffixes live here as
# data so that picking a backend by file never imports a framework that cannot read the file.
BUILTIN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "onnxruntime": ("bushu.runtime.backends.onnxruntime:OnnxRuntimeBackend", "core", (".onnx",)),
    "openvino": ("bushu.runtime.backends.openvino:OpenVINOBackend", "openvino", (".xml", ".onnx")),
    "torch": ("bushu.runtime.backends.torch:TorchBackend", "torch", (".pt2", ".pt", ".torchscript")),
    "null": ("bushu.runtime.backends.null:NullBackend", "core", (".null",)),
    # edge runtimes for `bushu export` formats (ncnn/MNN/LiteRT read an .io.json sidecar written at export)
    "ncnn": ("bushu.runtime.backends.ncnn:NcnnBackend", "ncnn", (".param",)),
    "mnn": ("bushu.runtime.backends.mnn:MNNBackend", "mnn", (".mnn",)),
    "litert": ("bushu.runtime.backends.litert:LiteRTBackend", "litert", (".tflite",)),
    "opencv": ("bushu.runtime.backends.opencv:OpenCVBackend", "opencv", (".onnx",)),
    # NVIDIA GPU runtimes: usable only where unavailable() finds the GPU provider / CUDA device
    "onnxruntime-cuda": ("bushu.runtime.backends.onnxruntime:OnnxRuntimeCudaBackend", "core", (".onnx",)),
    "onnxruntime-trt": ("bushu.runtime.backends.onnxruntime:OnnxRuntimeTensorRTBackend", "core", (".onnx",)),
    "tensorrt": ("bushu.runtime.backends.tensorrt:TensorRTBackend", "tensorrt", (".engine", ".plan")),
}


@cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group="bushu.backends")}


def list_backends() -> list[str]:
    """Every backend name bushu knows, installed or not."""
    return sorted(set(BUILTIN) | set(_entry_points()))


def get_backend(name: str) -> type[Backend]:
    if name in BUILTIN:
        target, extra, _ = BUILTIN[name]
    elif name in _entry_points():
        target, extra = _entry_points()[name], name
    else:
        raise UnknownNameError("backend", name, list_backends())
    module, _, cls = target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        if e.name == "bushu" or (e.name or "").startswith("bushu."):  # our own module is broken: a bug, not a missing extra
            raise
        raise MissingDependencyError(f"backend {name!r} ({e.name or e})", extra) from e


def is_installed(name: str) -> bool:
    """Its framework imports and the backend can run here (a GPU backend needs its GPU)."""
    try:
        cls = get_backend(name)
    except MissingDependencyError:
        return False
    return cls.unavailable() is None


def installed_backends(include_null: bool = False) -> list[str]:
    return [n for n in list_backends() if (include_null or n != "null") and is_installed(n)]


available_backends = installed_backends


def backend_for_path(path: Path) -> type[Backend]:
    suffix = "".join(path.suffixes[-1:]).lower()
    candidates = [n for n, (_, _, sfx) in BUILTIN.items() if suffix in sfx]
    for name in candidates:
        if is_installed(name):
            return get_backend(name)
    if candidates:
        get_backend(candidates[0])  # raises MissingDependencyError with the install hint
    raise UserInputError(
        f"no backend reads {path.name!r} (suffix {suffix or 'none'})",
        hint=f"known suffixes: {sorted({s for _, _, sfx in BUILTIN.values() for s in sfx})}",
    )
