"""LiteRT (TensorFlow Lite): ``.tflite`` flatbuffers through ``ai_edge_litert``'s interpreter (XNNPACK on CPU).

IO goes through the model's first signature runner (for a model without one, as MediaPipe's older
models, the interpreter's own tensors). Names, dtypes and the batch dim come from the ``.io.json`` sidecar when the model was exported by bushu (litert-torch names inputs ``args_0``),
else from the signature itself (a ``-1`` leading dim is the batch). A model exported with a fixed
batch of 1 runs a batch sample by sample. A full-integer model (``bushu export --format tflite-int8``)
takes int8 where its sidecar says float32: inputs are quantized and outputs dequantized here with
the scale and zero point in the model's signature (real = scale·(q - zero_point)).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import interpreter as tfl

from ...errors import BackendError, InferenceInputError, ModelLoadError, UserInputError
from ...spec import TensorSpec, dtype_name
from ..backend import Backend
from ._io import read_io


def _spec(name: str, d: dict[str, Any], batch: bool) -> TensorSpec:
    sig = [int(x) for x in d.get("shape_signature", d["shape"])]
    shape: list[int | str] = [("batch" if i == 0 else f"dim{i}") if x < 0 else x for i, x in enumerate(sig)]
    if batch and shape and shape[0] == 1:
        shape[0] = "batch"
    return TensorSpec(name, dtype_name(np.dtype(d["dtype"])), tuple(shape))


def _quantized(spec: TensorSpec, d: dict[str, Any]) -> tuple[np.dtype, float, int] | None:
    """(native dtype, scale, zero point) when the model holds integers where the spec says float."""
    native = np.dtype(d["dtype"])
    scale, zero = d.get("quantization", (0.0, 0))
    if native.kind in "iu" and spec.dtype.startswith("float") and scale:
        return native, float(scale), int(zero)
    return None


def _quantize(x: np.ndarray, q: tuple[np.dtype, float, int]) -> np.ndarray:
    dtype, scale, zero = q
    info = np.iinfo(dtype)
    return np.ascontiguousarray(np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(dtype))


def _dequantize(x: np.ndarray, q: tuple[np.dtype, float, int]) -> np.ndarray:
    _, scale, zero = q
    return ((x.astype(np.float32) - zero) * scale).astype(np.float32)


class _PlainRunner:
    """The interpreter's own input/output tensors behind a signature runner's interface."""

    def __init__(self, interp: Any):
        interp.allocate_tensors()
        self.interp = interp
        self._in = {d["name"]: d for d in interp.get_input_details()}
        self._out = {d["name"]: d for d in interp.get_output_details()}

    def get_input_details(self) -> dict[str, dict[str, Any]]:
        return self._in

    def get_output_details(self) -> dict[str, dict[str, Any]]:
        return self._out

    def __call__(self, **args: np.ndarray) -> dict[str, np.ndarray]:
        for name, x in args.items():
            d = self._in[name]
            if tuple(x.shape) != tuple(d["shape"]):
                raise ValueError(f"input {name!r} has shape {list(x.shape)}, the model takes {list(d['shape'])}")
            self.interp.set_tensor(d["index"], x)
        self.interp.invoke()
        return {n: self.interp.get_tensor(d["index"]) for n, d in self._out.items()}


def _narrow(name: str, a: np.ndarray) -> np.ndarray:
    info = np.iinfo(np.int32)
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise InferenceInputError(f"input {name!r} holds values outside int32, which this LiteRT model takes")
    return np.ascontiguousarray(a.astype(np.int32))


class LiteRTBackend(Backend):
    name = "litert"
    suffixes = (".tflite",)
    options = ("threads",)

    def load(self, path: Path, device: str = "cpu", *, threads: int | None = None) -> None:  # type: ignore[override]
        path = Path(path)
        if device not in ("cpu", "CPU"):
            raise UserInputError(f"the litert backend runs on the cpu only here, not {device!r}")
        if threads is not None and not str(threads).isdigit():
            raise UserInputError(f"litert threads {threads!r} is not a positive integer")
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        self.threads = int(threads) if threads else None
        try:
            self.interp = tfl.Interpreter(model_path=str(path), num_threads=self.threads)
            sigs = self.interp.get_signature_list()
            self._sig = next(iter(sigs)) if sigs else None
            self.runner: Any = self.interp.get_signature_runner(self._sig) if self._sig else None
        except Exception as e:  # ValueError / RuntimeError for unreadable flatbuffers
            raise ModelLoadError(
                f"{path.name} is not a model LiteRT can read: {str(e).splitlines()[0][:200]}",
                hint="re-export the model, or check the file is complete (not truncated)",
            ) from e
        if self.runner is None:  # older converters (MediaPipe's models among them) write no signature
            self.runner = _PlainRunner(self.interp)
        in_d, out_d = self.runner.get_input_details(), self.runner.get_output_details()
        io = read_io(path, required=False)
        if io is not None:
            self._inputs, self._outputs, self._in_names, self._out_names, _ = io
        else:
            self._in_names, self._out_names = list(in_d), list(out_d)
            self._inputs = [_spec(k, in_d[k], batch=True) for k in self._in_names]
            self._outputs = [_spec(k, out_d[k], batch=True) for k in self._out_names]
        missing = [n for n in self._in_names if n not in in_d] + [n for n in self._out_names if n not in out_d]
        if missing:
            raise ModelLoadError(f"{path.name} has no signature tensor(s) {missing} named in its IO description")
        # a model whose leading dim is a fixed 1 runs one sample at a time
        self._loop = any(int(in_d[n]["shape_signature"][0]) == 1 for n in self._in_names if len(in_d[n]["shape"]))
        self._qin = {
            s.name: q for s, n in zip(self._inputs, self._in_names, strict=True) if (q := _quantized(s, in_d[n]))
        }
        self._qout = {
            s.name: q for s, n in zip(self._outputs, self._out_names, strict=True) if (q := _quantized(s, out_d[n]))
        }
        # litert-torch narrows int64 inputs to int32: cast ids down (range-checked) rather than refuse them
        self._narrow = {
            s.name: np.dtype(in_d[n]["dtype"])
            for s, n in zip(self._inputs, self._in_names, strict=True)
            if s.dtype == "int64" and np.dtype(in_d[n]["dtype"]) == np.int32
        }
        self._lock = threading.Lock()

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if getattr(self, "runner", None) is None:
            raise BackendError("this litert model was closed", hint="load it again")
        self.check(feeds)
        n = len(next(iter(feeds.values())))
        chunks = [slice(i, i + 1) for i in range(n)] if self._loop else [slice(0, n)]
        parts: dict[str, list[np.ndarray]] = {s.name: [] for s in self._outputs}
        with self._lock:
            for sl in chunks:
                args = {
                    nat: _quantize(feeds[s.name][sl], self._qin[s.name])
                    if s.name in self._qin
                    else _narrow(s.name, feeds[s.name][sl])
                    if s.name in self._narrow
                    else np.ascontiguousarray(feeds[s.name][sl])
                    for s, nat in zip(self._inputs, self._in_names, strict=True)
                }
                try:
                    outs = self.runner(**args)
                except ValueError as e:
                    raise InferenceInputError(f"litert rejected the inputs: {str(e)[:300]}") from e
                except Exception as e:  # noqa: BLE001
                    raise BackendError(f"litert failed: {str(e)[:300]}") from e
                for s, nat in zip(self._outputs, self._out_names, strict=True):
                    q = self._qout.get(s.name)
                    parts[s.name].append(np.array(outs[nat], copy=True) if q is None else _dequantize(outs[nat], q))
        return {k: np.concatenate(v) if v else np.zeros((0,), np.float32) for k, v in parts.items()}

    def describe(self) -> dict[str, Any]:
        out = {
            "threads": getattr(self, "threads", None) or "auto",
            "signature": getattr(self, "_sig", None),
            "batch": "one sample at a time" if getattr(self, "_loop", False) else "whole batch",
        }
        if getattr(self, "_qin", None) or getattr(self, "_qout", None):
            out["quantized_io"] = {
                k: {"dtype": np.dtype(d).name, "scale": sc, "zero_point": z}
                for k, (d, sc, z) in {**self._qin, **self._qout}.items()
            }
        return out

    def close(self) -> None:
        self.runner = None
        self.interp = None
