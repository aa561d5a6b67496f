"""MNN (Alibaba): ``.mnn`` files written by ``mnnconvert`` (``bushu export --format mnn``), on the CPU.

Runs through MNN's Module API at ``precision="high"`` (fp32; ~1e-4 off ONNX Runtime on logits,
docs/notes.md); ``precision="low"`` allows fp16/bf16 arithmetic where the CPU has it. Batches are run
whole (the converted graph keeps a dynamic batch). The IO spec comes from the ``.io.json`` sidecar
written at export.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BackendError, InferenceInputError, ModelLoadError, UserInputError
from ..backend import Backend
from ._io import quiet_stdout, read_io

with quiet_stdout():  # MNN prints the CPU's features to stdout on import
    import MNN
    import MNN.expr as F  # noqa: N812 - MNN's own alias
    import MNN.nn as nn

_PRECISIONS = {"fp32": "high", "f32": "high", "high": "high", "fp16": "low", "low": "low", "normal": "normal"}
_DTYPES = {"float32": F.float, "int32": F.int}


class MNNBackend(Backend):
    name = "mnn"
    suffixes = (".mnn",)
    options = ("threads", "precision")

    def load(self, path: Path, device: str = "cpu", *, threads: int | None = None, precision: str = "fp32") -> None:  # type: ignore[override]
        path = Path(path)
        if precision not in _PRECISIONS:
            raise UserInputError(f"mnn precision {precision!r} is not one of ['fp16', 'fp32']")
        if device not in ("cpu", "CPU"):
            raise UserInputError(f"the mnn backend runs on the cpu only here, not {device!r}")
        if threads is not None and not str(threads).isdigit():
            raise UserInputError(f"mnn threads {threads!r} is not a positive integer")
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        self._inputs, self._outputs, self._in_names, self._out_names, _ = read_io(path)
        unsupported = [s for s in [*self._inputs, *self._outputs] if s.dtype not in _DTYPES]
        if unsupported:
            raise ModelLoadError(f"the mnn backend takes float32/int32 tensors; {unsupported[0]} is not")
        self.precision = _PRECISIONS[precision]
        self.threads = int(threads) if threads else 1
        try:
            with quiet_stdout():
                rt = nn.create_runtime_manager(
                    ({"backend": "CPU", "precision": self.precision, "numThread": self.threads},)
                )
                self.module = nn.load_module_from_file(str(path), self._in_names, self._out_names, runtime_manager=rt)
        except Exception as e:  # MNN raises SystemError for unreadable buffers
            raise ModelLoadError(
                f"{path.name} is not a model MNN can read",
                hint="re-export the model, or check the file is complete (not truncated)",
            ) from e
        if self.module is None:
            raise ModelLoadError(f"{path.name} is not a model MNN can read")
        self._lock = threading.Lock()

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if getattr(self, "module", None) is None:
            raise BackendError("this mnn model was closed", hint="load it again")
        self.check(feeds)
        args = []
        for s in self._inputs:
            a = np.ascontiguousarray(feeds[s.name])
            args.append(F.const(a, list(a.shape), F.NCHW, _DTYPES[s.dtype]))
        with self._lock:
            try:
                outs = self.module.forward(args)
            except Exception as e:  # noqa: BLE001
                raise InferenceInputError(f"mnn rejected the inputs: {str(e)[:300]}") from e
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        result = {}
        for spec, v in zip(self._outputs, outs, strict=True):
            if v.data_format == F.NC4HW4:
                v = F.convert(v, F.NCHW)
            result[spec.name] = np.array(v.read(), copy=True)
        return result

    def describe(self) -> dict[str, Any]:
        return {
            "precision": "fp32" if getattr(self, "precision", "high") == "high" else self.precision,
            "threads": getattr(self, "threads", None),
            "version": MNN.version(),
        }

    def close(self) -> None:
        self.module = None
