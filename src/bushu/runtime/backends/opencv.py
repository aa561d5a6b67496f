"""OpenCV DNN: ONNX models through ``cv2.dnn.readNetFromONNX`` on the CPU (for apps that already ship OpenCV).

The IO spec is read from the ONNX graph (names, dtypes, ``dim_param`` batch names). OpenCV computes
float16 models in float32; outputs are cast back to the dtype the graph declares.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...errors import BackendError, ModelLoadError, UnsupportedOpError, UserInputError
from ...spec import TensorSpec, from_onnx_elem_type, np_dtype
from ..backend import Backend

_UNSUPPORTED = re.compile(r'of type "([\w.:-]+)"')

try:  # OpenCV logs every parser fallback to stderr; errors are raised to us anyway
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
except AttributeError:  # pragma: no cover - very old builds
    pass


def _graph_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    import onnx

    try:
        g = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelLoadError(
            f"{path.name} is not a loadable ONNX model: {str(e)[:200]}",
            hint="re-export the model, or check the file is complete (not truncated)",
        ) from e
    inits = {i.name for i in g.initializer}

    def spec(v: Any) -> TensorSpec:
        dims = v.type.tensor_type.shape.dim
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or ("batch" if i == 0 else f"dim{i}"))
            for i, d in enumerate(dims)
        )
        return TensorSpec(v.name, from_onnx_elem_type(v.type.tensor_type.elem_type), shape)

    return [spec(v) for v in g.input if v.name not in inits], [spec(v) for v in g.output]


class OpenCVBackend(Backend):
    name = "opencv"
    suffixes = (".onnx",)
    options = ("threads",)

    def load(self, path: Path, device: str = "cpu", *, threads: int | None = None) -> None:  # type: ignore[override]
        path = Path(path)
        if device not in ("cpu", "CPU"):
            raise UserInputError(f"the opencv backend runs on the cpu only here, not {device!r}")
        if threads is not None and not str(threads).isdigit():
            raise UserInputError(f"opencv threads {threads!r} is not a positive integer")
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        self._inputs, self._outputs = _graph_specs(path)
        if not self._outputs:
            raise ModelLoadError(
                f"{path.name} holds no graph (empty or not a model)",
                hint="re-export the model, or check the file is complete (not truncated)",
            )
        if threads:
            cv2.setNumThreads(int(threads))
        self.threads = cv2.getNumThreads()
        try:
            self.net: Any = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as e:
            found = _UNSUPPORTED.search(str(e))
            if found:
                raise UnsupportedOpError(found.group(1), self.name, "OpenCV DNN has no layer for it") from e
            raise ModelLoadError(
                f"OpenCV DNN could not read {path.name}: {str(e).strip().splitlines()[-1][:200]}",
                hint="re-export the model, or check the file is complete (not truncated)",
            ) from e
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self._lock = threading.Lock()

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if getattr(self, "net", None) is None:
            raise BackendError("this opencv model was closed", hint="load it again")
        self.check(feeds)
        names = [s.name for s in self._outputs]
        with self._lock:
            try:
                for s in self._inputs:
                    a = np.ascontiguousarray(feeds[s.name])
                    self.net.setInput(a.astype(np.float32) if a.dtype == np.float16 else a, s.name)
                outs = self.net.forward(names)
            except cv2.error as e:
                msg = str(e).strip().splitlines()[-1][:300]
                raise BackendError(f"opencv failed: {msg}") from e
        return {
            s.name: np.asarray(o).astype(np_dtype(s.dtype), copy=False)
            for s, o in zip(self._outputs, outs, strict=True)
        }

    def describe(self) -> dict[str, Any]:
        return {"threads": getattr(self, "threads", None), "version": cv2.__version__, "target": "cpu"}

    def close(self) -> None:
        self.net = None
