"""ONNX Runtime: CPU everywhere; TensorRT and CUDA providers first when onnxruntime-gpu has them."""

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
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool", "tensor(string)": "bytes",
}
# Preference order, as ONNX Runtime's own provider list: the first available wins.
_PREFERENCE = {"cpu": ["CPUExecutionProvider"],
               "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
               "gpu": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


def _spec(arg: Any, batch_name: str = "batch") -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or batch_name) for d in arg.shape)
    return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), shape)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    suffixes = (".onnx",)
    options = ("threads", "inter_threads", "optimization", "providers", "mem_pattern", "spinning")

    def load(self, path: Path, device: str = "cpu", *, threads: int | None = None, inter_threads: int | None = None,
             optimization: str = "all", providers: list[str] | None = None,
             mem_pattern: bool | None = None, spinning: bool | None = None) -> None:
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
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        so.log_severity_level = 3
        have = ort.get_available_providers()
        wanted = providers or _PREFERENCE.get(device, _PREFERENCE["cpu"])
        chosen = [p for p in wanted if p in have] or ["CPUExecutionProvider"]
        if not Path(path).is_file():
            raise ModelLoadError(f"model file not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=chosen)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            msg = str(e)
            if "NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg:
                op = msg.split("for ")[-1].split("(")[0].strip() if "for " in msg else "?"
                raise UnsupportedOpError(op, self.name, msg.splitlines()[0]) from e
            if "No Op registered for " in msg:  # an op (or opset) this onnxruntime does not know
                detail = msg[msg.index("No Op registered for "):].splitlines()[0]
                raise UnsupportedOpError(detail.split()[4], self.name, detail) from e
            raise ModelLoadError(f"{Path(path).name} is not a loadable ONNX model: {msg.splitlines()[0][:300]}",
                                 hint="re-export the model, or check the file is complete (not truncated)") from e
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
        self.session = None  # type: ignore[assignment]
