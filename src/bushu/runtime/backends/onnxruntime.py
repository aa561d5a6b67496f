"""ONNX Runtime: CPU everywhere; CUDA and TensorRT execution providers with onnxruntime-gpu on an NVIDIA GPU.

``device`` picks the providers as ONNX Runtime's own ordered preference list: ``cpu``; ``cuda``
(CUDA, then CPU for the ops CUDA lacks); ``tensorrt`` (TensorRT, then CUDA, then CPU); ``gpu`` (the
best of those that this onnxruntime has). Asking for ``cuda`` or ``tensorrt`` where this onnxruntime
has no such provider is an error naming what it has, never a silent run on the CPU. The backends
``onnxruntime-cuda`` and ``onnxruntime-trt`` are the same class with that device as their default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ...errors import BackendError, InferenceInputError, ModelLoadError, UnsupportedOpError
from ...spec import TensorSpec
from ..backend import Backend

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "bytes",
}
# Preference order, as ONNX Runtime's own provider list: the first available wins.
_PREFERENCE = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "gpu": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
#: devices that must get their first provider (``gpu`` takes whatever GPU provider exists, else CPU)
_STRICT = {"cuda", "tensorrt"}
_GPU_HINT = (
    "on a machine with an NVIDIA GPU: pip uninstall -y onnxruntime && pip install onnxruntime-gpu "
    "(the same version), then check onnxruntime.get_available_providers()"
)


def choose_providers(device: str, have: list[str], providers: list[str] | None = None) -> list[str]:
    """The providers to give InferenceSession for ``device``, given the ones this onnxruntime ``have``."""
    if providers:
        missing = [p for p in providers if p not in have]
        if missing:
            raise BackendError(f"onnxruntime has no {missing[0]} (it has {have})", hint=_GPU_HINT)
        return list(providers)
    if device not in _PREFERENCE:
        from ...errors import UnknownNameError

        raise UnknownNameError("onnxruntime device", device, list(_PREFERENCE))
    wanted = _PREFERENCE[device]
    if device in _STRICT and wanted[0] not in have:
        raise BackendError(
            f"device {device!r} needs onnxruntime's {wanted[0]}, which this onnxruntime does not have (it has {have})",
            hint=_GPU_HINT,
        )
    return [p for p in wanted if p in have] or ["CPUExecutionProvider"]


def _provider_options(chosen: list[str], device_id: int, cache_dir: str | None, fp16: bool) -> list[dict[str, Any]]:
    """Per-provider options: the GPU to use; TensorRT's engine cache (an engine build takes minutes) and fp16."""
    out: list[dict[str, Any]] = []
    for p in chosen:
        if p == "TensorrtExecutionProvider":
            opts: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": fp16}
            if cache_dir:
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=cache_dir)
            out.append(opts)
        elif p == "CUDAExecutionProvider":
            out.append({"device_id": device_id})
        else:
            out.append({})
    return out


def _spec(arg: Any, batch_name: str = "batch") -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or batch_name) for d in arg.shape)
    return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), shape)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    suffixes = (".onnx",)
    options = (
        "threads",
        "inter_threads",
        "optimization",
        "providers",
        "mem_pattern",
        "spinning",
        "device_id",
        "trt_cache",
        "fp16",
    )
    #: the device used when load() is given the default "cpu" (the -cuda/-trt subclasses change it)
    default_device = "cpu"
    concurrent_infer = True  # InferenceSession.run is thread-safe

    def load(  # type: ignore[override]
        self,
        path: Path,
        device: str = "cpu",
        *,
        threads: int | None = None,
        inter_threads: int | None = None,
        optimization: str = "all",
        providers: list[str] | None = None,
        mem_pattern: bool | None = None,
        spinning: bool | None = None,
        device_id: int = 0,
        trt_cache: str | None = None,
        fp16: bool = False,
    ) -> None:
        if device == "cpu":
            device = self.default_device
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
        if inter_threads:
            so.inter_op_num_threads = int(inter_threads)
        if mem_pattern is not None:  # off for servers: a pattern cached per input shape grows memory
            so.enable_mem_pattern = str(mem_pattern).lower() not in ("0", "false", "no", "off")
        if spinning is not None:  # off for servers: spinning workers take the cores the event loop needs
            on = str(spinning).lower() not in ("0", "false", "no", "off")
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if on else "0")
        so.graph_optimization_level = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        so.log_severity_level = 3
        chosen = choose_providers(device, ort.get_available_providers(), providers)
        if not Path(path).is_file():
            raise ModelLoadError(f"model file not found: {path}")
        options = _provider_options(chosen, int(device_id), trt_cache, bool(fp16))
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=chosen, provider_options=options)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            msg = str(e)
            if "NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg:
                op = msg.split("for ")[-1].split("(")[0].strip() if "for " in msg else "?"
                raise UnsupportedOpError(op, self.name, msg.splitlines()[0]) from e
            if "No Op registered for " in msg:  # an op (or opset) this onnxruntime does not know
                detail = msg[msg.index("No Op registered for ") :].splitlines()[0]
                raise UnsupportedOpError(detail.split()[4], self.name, detail) from e
            raise ModelLoadError(
                f"{Path(path).name} is not a loadable ONNX model: {msg.splitlines()[0][:300]}",
                hint="re-export the model, or check the file is complete (not truncated)",
            ) from e
        self._inputs = [_spec(a) for a in self.session.get_inputs()]
        self._outputs = [_spec(a) for a in self.session.get_outputs()]
        self._output_names = [o.name for o in self._outputs]
        self.providers = self.session.get_providers()

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check(feeds)
        try:
            outs = self.session.run(self._output_names, dict(feeds))
        except Exception as e:
            msg = str(e).splitlines()[0][:400]
            if "INVALID_ARGUMENT" in str(e):
                raise InferenceInputError(f"onnxruntime rejected the inputs: {msg}") from e
            raise BackendError(f"onnxruntime failed: {msg}") from e
        return dict(zip(self._output_names, outs, strict=True))

    def describe(self) -> dict[str, Any]:
        so = self.session.get_session_options()
        return {"providers": self.providers, "threads": so.intra_op_num_threads or "auto", "version": ort.__version__}

    def close(self) -> None:
        self.session = None


class OnnxRuntimeCudaBackend(OnnxRuntimeBackend):
    """onnxruntime-gpu's CUDA execution provider (CPU for the ops it lacks)."""

    name = "onnxruntime-cuda"
    default_device = "cuda"

    @classmethod
    def unavailable(cls) -> str | None:
        have = ort.get_available_providers()
        return None if "CUDAExecutionProvider" in have else f"this onnxruntime has no CUDAExecutionProvider ({have})"


class OnnxRuntimeTensorRTBackend(OnnxRuntimeBackend):
    """onnxruntime-gpu's TensorRT execution provider (then CUDA, then CPU, op by op)."""

    name = "onnxruntime-trt"
    default_device = "tensorrt"

    @classmethod
    def unavailable(cls) -> str | None:
        have = ort.get_available_providers()
        return (
            None
            if "TensorrtExecutionProvider" in have
            else f"this onnxruntime has no TensorrtExecutionProvider ({have})"
        )
