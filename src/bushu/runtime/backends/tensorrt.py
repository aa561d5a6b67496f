"""TensorRT: runs a serialized engine (``bushu export --format tensorrt``) on an NVIDIA GPU, without PyTorch.

Device memory and copies go through NVIDIA's ``cuda-bindings`` (the CUDA runtime API for Python), so
the serving path stays free of PyTorch. Input buffers grow to the largest batch seen and are reused;
one CUDA stream per instance. An engine holds optimization profiles (shape ranges) chosen at build
time: a batch outside profile 0's range is a typed input error naming the range.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorrt as trt

from ...errors import BackendError, InferenceInputError, MissingDependencyError, ModelLoadError
from ...spec import TensorSpec, dtype_name
from ..backend import Backend

try:  # cuda-python >= 12.6 names it cuda.bindings; older releases cuda.cudart
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - depends on the installed cuda-python
    try:
        from cuda import cudart  # type: ignore[no-redef,unused-ignore]  # redefined only where cuda-python is installed
    except ImportError as e:
        raise MissingDependencyError("the TensorRT backend (cuda-python for device memory)", "tensorrt") from e


def _check(result: tuple[Any, ...]) -> Any:
    err, *rest = result
    if int(err) != 0:
        name = cudart.cudaGetErrorName(err)[1]
        raise BackendError(f"CUDA call failed: {name.decode() if isinstance(name, bytes) else name}")
    return rest[0] if len(rest) == 1 else rest


def _cuda_devices() -> int:
    err, n = cudart.cudaGetDeviceCount()
    return int(n) if int(err) == 0 else 0


class TensorRTBackend(Backend):
    name = "tensorrt"
    suffixes = (".engine", ".plan")
    options = ("device_id", "threads")  # threads: accepted for a uniform CLI, unused on the GPU

    @classmethod
    def unavailable(cls) -> str | None:
        return None if _cuda_devices() else "no CUDA device visible (TensorRT engines run on an NVIDIA GPU)"

    def load(self, path: Path, device: str = "cpu", *, device_id: int = 0, threads: int | None = None) -> None:  # type: ignore[override]
        if device not in ("cpu", "cuda", "gpu", "tensorrt"):  # "cpu" is the CLI's default: an engine is GPU-only
            raise BackendError(f"the tensorrt backend runs on the GPU; device {device!r} is not one")
        if not _cuda_devices():
            raise BackendError(
                "the tensorrt backend needs an NVIDIA GPU; CUDA sees none here",
                hint="run the engine's source ONNX with --backend onnxruntime on this machine",
            )
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"engine file not found: {path}")
        _check(cudart.cudaSetDevice(int(device_id)))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelLoadError(
                f"{path.name} is not a TensorRT engine this TensorRT {trt.__version__} and GPU can load",
                hint="engines are tied to the GPU model and TensorRT version: rebuild it here with "
                "bushu export ART --format tensorrt",
            )
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        for n in names:
            spec = TensorSpec(
                n,
                dtype_name(trt.nptype(self.engine.get_tensor_dtype(n))),
                tuple(
                    d if d >= 0 else ("batch" if i == 0 else f"d{i}")
                    for i, d in enumerate(self.engine.get_tensor_shape(n))
                ),
            )
            is_input = self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(spec)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(cudart.cudaFree(ptr))
            ptr = _check(cudart.cudaMalloc(max(nbytes, 1)))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        if any(s < a or s > b for s, a, b in zip(shape, lo, hi, strict=False)):
            raise InferenceInputError(
                f"input {name!r} shape {list(shape)} is outside the engine's optimization profile "
                f"{list(lo)}..{list(hi)}",
                hint="rebuild the engine with a larger range",
            )

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check(feeds)
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for spec in self._inputs:
            a = np.ascontiguousarray(feeds[spec.name])
            self._check_profile(spec.name, a.shape)
            self.context.set_input_shape(spec.name, a.shape)
            ptr = self._device_buffer(spec.name, a.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, a.ctypes.data, a.nbytes, h2d, self.stream))
            self.context.set_tensor_address(spec.name, ptr)
        outs: dict[str, np.ndarray] = {}
        for spec in self._outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            outs[spec.name] = np.empty(shape, trt.nptype(self.engine.get_tensor_dtype(spec.name)))
            self.context.set_tensor_address(spec.name, self._device_buffer(spec.name, outs[spec.name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise BackendError("TensorRT failed to run the engine (see the TensorRT log above)")
        for name, a in outs.items():
            _check(cudart.cudaMemcpyAsync(a.ctypes.data, self._buffers[name][0], a.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return outs

    def describe(self) -> dict[str, Any]:
        props = _check(cudart.cudaGetDeviceProperties(0))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return {"version": trt.__version__, "device": name.rstrip("\x00")}

    def close(self) -> None:
        for ptr, _ in getattr(self, "_buffers", {}).values():
            cudart.cudaFree(ptr)
        self._buffers = {}
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None
