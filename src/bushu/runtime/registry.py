"""Backend registry: name -> BackendSpec ("module:Class", imported on first use, suffixes, capabilities).

Third parties add backends with an entry point in the group ``bushu.backends`` (name = "module:Class");
when one cannot be imported, the install hint names the distribution that declares the entry point.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MissingDependencyError, UnknownNameError, UserInputError

if TYPE_CHECKING:
    from .backend import Backend

__all__ = [
    "BUILTIN",
    "BackendSpec",
    "available_backends",
    "backend_for_path",
    "backend_spec",
    "get_backend",
    "installed_backends",
    "list_backends",
    "with_flag",
]


@dataclass(frozen=True)
class BackendSpec:
    """One runtime: where its class lives, what installs it, the files it reads and what bushu uses it for.

    The suffixes live here as data so that picking a backend by file never imports a framework that
    cannot read the file; the flags are read by `serve`, `plan` and `optimize` instead of their own lists."""

    name: str
    target: str  # "module:Class", imported on first use
    extra: str  # the bushu extra that installs its framework ("core": always there)
    suffixes: tuple[str, ...]  # model files it reads; the first is the one it is served from
    servable: bool = False  # `bushu serve` runs repository models with it
    platform: str | None = None  # its Triton platform name in config.pbtxt
    plannable: bool = False  # `bushu plan` searches it
    quantizable: bool = False  # `bushu optimize --backend` quantizes for it
    needs_calibration: bool = False  # its int8 needs calibration data (--calib)
    short: str = ""  # its name in narrow tables
    #: the pip distributions that install its framework, for versions without importing it
    distributions: tuple[str, ...] = ()
    #: a plugin's distribution (from its entry point): the install hint names it instead of a bushu extra
    package: str | None = None

    def install_hint(self) -> str:
        return self.package if self.package else f"'bushu[{self.extra}]'"


_B = "bushu.runtime.backends"
BUILTIN: dict[str, BackendSpec] = {
    b.name: b
    for b in (
        BackendSpec(
            "onnxruntime",
            f"{_B}.onnxruntime:OnnxRuntimeBackend",
            "core",
            (".onnx",),
            servable=True,
            platform="onnxruntime_onnx",
            plannable=True,
            quantizable=True,
            short="ort",
            distributions=("onnxruntime", "onnxruntime-gpu"),
        ),
        BackendSpec(
            "openvino",
            f"{_B}.openvino:OpenVINOBackend",
            "openvino",
            (".xml", ".onnx"),
            servable=True,
            platform="openvino",
            plannable=True,
            quantizable=True,
            needs_calibration=True,
            short="ov",
            distributions=("openvino",),
        ),
        BackendSpec(
            "torch", f"{_B}.torch:TorchBackend", "torch", (".pt2", ".pt", ".torchscript"), distributions=("torch",)
        ),
        BackendSpec("null", f"{_B}.null:NullBackend", "core", (".null",), platform="null", distributions=("bushu",)),
        # edge runtimes for `bushu export` formats (ncnn/MNN/LiteRT read an .io.json sidecar written at export)
        BackendSpec("ncnn", f"{_B}.ncnn:NcnnBackend", "ncnn", (".param",), distributions=("ncnn",)),
        BackendSpec("mnn", f"{_B}.mnn:MNNBackend", "mnn", (".mnn",), distributions=("MNN",)),
        BackendSpec("litert", f"{_B}.litert:LiteRTBackend", "litert", (".tflite",), distributions=("ai-edge-litert",)),
        BackendSpec(
            "opencv",
            f"{_B}.opencv:OpenCVBackend",
            "opencv",
            (".onnx",),
            distributions=("opencv-python-headless", "opencv-python"),
        ),
        # NVIDIA GPU runtimes: usable only where Backend.unavailable() finds the GPU provider / CUDA device
        BackendSpec(
            "onnxruntime-cuda",
            f"{_B}.onnxruntime:OnnxRuntimeCudaBackend",
            "core",
            (".onnx",),
            short="ort-cuda",
            distributions=("onnxruntime-gpu",),
        ),
        BackendSpec(
            "onnxruntime-trt",
            f"{_B}.onnxruntime:OnnxRuntimeTensorRTBackend",
            "core",
            (".onnx",),
            short="ort-trt",
            distributions=("onnxruntime-gpu",),
        ),
        BackendSpec(
            "tensorrt",
            f"{_B}.tensorrt:TensorRTBackend",
            "tensorrt",
            (".engine", ".plan"),
            servable=True,
            platform="tensorrt_plan",
            short="trt",
            distributions=("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
        ),
    )
}


def with_flag(flag: str) -> tuple[str, ...]:
    """Names of the built-in backends with a capability (``servable``, ``plannable``, ``quantizable``...)."""
    return tuple(n for n, b in BUILTIN.items() if getattr(b, flag))


def entry_point_package(ep: metadata.EntryPoint) -> str | None:
    """The distribution that declares an entry point (what to pip install to get it), if known."""
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else None


@cache
def _entry_points() -> dict[str, BackendSpec]:
    """Third-party backends (group ``bushu.backends``): name = "module:Class"."""
    out = {}
    for ep in metadata.entry_points(group="bushu.backends"):
        package = entry_point_package(ep) or ep.name
        out[ep.name] = BackendSpec(ep.name, ep.value, ep.name, (), package=package, distributions=(package,))
    return out


def distributions(name: str) -> tuple[str, ...]:
    """The pip distributions behind a backend (for its version), without importing anything."""
    spec = BUILTIN.get(name) or _entry_points().get(name)
    return spec.distributions if spec and spec.distributions else (name,)


def list_backends() -> list[str]:
    """Every backend name bushu knows, installed or not."""
    return sorted(set(BUILTIN) | set(_entry_points()))


def backend_spec(name: str) -> BackendSpec:
    if name in BUILTIN:
        return BUILTIN[name]
    if name in _entry_points():
        return _entry_points()[name]
    raise UnknownNameError("backend", name, list_backends())


def get_backend(name: str) -> type[Backend]:
    spec = backend_spec(name)
    module, _, cls = spec.target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        if e.name == "bushu" or (e.name or "").startswith(
            "bushu."
        ):  # our own module is broken: a bug, not a missing extra
            raise
        raise MissingDependencyError(f"backend {name!r} ({e.name or e})", spec.extra, spec.package) from e


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
    candidates = [n for n, b in BUILTIN.items() if suffix in b.suffixes]
    for name in candidates:
        if is_installed(name):
            return get_backend(name)
    if candidates:
        get_backend(candidates[0])  # raises MissingDependencyError with the install hint
    raise UserInputError(
        f"no backend reads {path.name!r} (suffix {suffix or 'none'})",
        hint=f"known suffixes: {sorted({s for b in BUILTIN.values() for s in b.suffixes})}",
    )
