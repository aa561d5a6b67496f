"""OpenVINO: ONNX or IR (.xml + .bin) models on the CPU (or an Intel GPU when OpenVINO lists one).

Compiled with ``INFERENCE_PRECISION_HINT=f32`` by default: on CPUs with avx512_bf16 OpenVINO
otherwise runs in bf16 and misses fp32 parity by ~1e-2 (docs/notes.md). Pass ``precision="bf16"`` to
trade that accuracy for speed.

Thread safety: each instance owns one infer request; ``infer`` holds a lock, so concurrent callers
of one instance run one after another. Load several instances for parallel requests.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from openvino.frontend import FrontEndManager

from ...errors import BackendError, InferenceInputError, ModelLoadError, UnsupportedOpError, UserInputError
from ...spec import TensorSpec, dtype_name
from ..backend import Backend

_PRECISIONS = {
    "f32": "f32",
    "fp32": "f32",
    "float32": "f32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "f16": "f16",
    "fp16": "f16",
    "float16": "f16",
}
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
_UNCONVERTED = re.compile(r"No conversion rule found for operations: (.+)")
_UNSUPPORTED = re.compile(r"[Uu]nsupported operation of type:? *'?([\w.:-]+)")


def _first_line(e: BaseException, limit: int = 300) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip() and not ln.startswith(("Exception from", "Check "))]
    return (lines[-1] if lines else str(e))[:limit]


def _onnx_names(path: Path) -> tuple[dict[str, list[str | None]], list[str]]:
    """ONNX dim names (``dim_param``) per graph input/output, and the graph output names.

    OpenVINO drops dim names; ONNX Runtime shows them, and both backends should agree.
    """
    try:
        import onnx

        g = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - names are a nicety; OpenVINO has already parsed the model
        return {}, []
    dims = {v.name: [d.dim_param or None for d in v.type.tensor_type.shape.dim] for v in [*g.input, *g.output]}
    return dims, [o.name for o in g.output]


def _spec(port: Any, dim_names: dict[str, list[str | None]], preferred: list[str]) -> TensorSpec:
    names = port.get_names()
    name = next((n for n in preferred if n in names), None) or port.get_any_name()
    known = dim_names.get(name, [])
    shape: list[int | str] = []
    for i, d in enumerate(port.get_partial_shape()):
        if d.is_static:
            shape.append(d.get_length())
        else:
            label = known[i] if i < len(known) and known[i] else None
            shape.append(label or ("batch" if i == 0 else f"dim{i}"))
    et = port.get_element_type()
    try:
        dtype = dtype_name(et.to_dtype())
    except Exception:  # noqa: BLE001 - e.g. bf16 has no numpy dtype
        dtype = et.get_type_name()
    return TensorSpec(name, dtype, tuple(shape))


class OpenVINOBackend(Backend):
    name = "openvino"
    suffixes = (".xml", ".onnx")
    options = ("threads", "precision", "hint", "streams")

    def load(  # type: ignore[override]
        self,
        path: Path,
        device: str = "cpu",
        *,
        threads: int | None = None,
        precision: str = "f32",
        hint: str = "latency",
        streams: int | str | None = None,
    ) -> None:
        path = Path(path)
        if precision not in _PRECISIONS:
            raise UserInputError(f"openvino precision {precision!r} is not one of {sorted(set(_PRECISIONS.values()))}")
        if hint not in _HINTS:
            raise UserInputError(f"openvino hint {hint!r} is not one of {sorted(_HINTS)}")
        self.core = ov.Core()
        self.device = self._device(device)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        model = self._read(path)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _PRECISIONS[precision], "PERFORMANCE_HINT": _HINTS[hint]}
        if threads:
            if not str(threads).isdigit():
                raise UserInputError(f"openvino threads {threads!r} is not a positive integer")
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if streams is not None:
            if str(streams).upper() != "AUTO" and not str(streams).isdigit():
                raise UserInputError(f"openvino streams {streams!r} is not a positive integer or 'auto'")
            config["NUM_STREAMS"] = str(streams).upper()
        try:
            self.compiled = self.core.compile_model(model, self.device, config)
        except Exception as e:  # OpenVINO raises plain RuntimeError
            found = _UNSUPPORTED.search(str(e))
            if found:
                raise UnsupportedOpError(found.group(1), self.name, _first_line(e)) from e
            raise BackendError(f"openvino could not compile {path.name} for {self.device}: {_first_line(e)}") from e
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()
        self._facts = self._read_facts(hint)
        dims, out_names = _onnx_names(path) if path.suffix.lower() == ".onnx" else ({}, [])
        self._inputs = [_spec(p, dims, []) for p in self.compiled.inputs]
        self._outputs = [_spec(p, dims, out_names) for p in self.compiled.outputs]

    def _device(self, device: str) -> str:
        want = device.upper()
        have = self.core.available_devices  # e.g. ["CPU", "GPU.0", "GPU.1"] or ["CPU", "GPU"]
        if want in have or any(d.split(".")[0] == want for d in have):
            return want
        raise UserInputError(
            f"openvino has no device {device!r}; it lists {have}",
            hint="use --device cpu, or install the Intel GPU driver for OpenVINO to list a GPU",
        )

    def _read(self, path: Path) -> ov.Model:
        # The frontend by name: read_model would also try the TensorFlow reader on a corrupt file, noisily.
        fe = FrontEndManager().load_by_framework("ir" if path.suffix.lower() == ".xml" else "onnx")
        try:
            model = fe.convert(fe.load(str(path)))
        except Exception as e:
            found = _UNCONVERTED.search(str(e))
            if found:
                ops = [re.sub(r"-\d+$", "", op.strip()) for op in found.group(1).split(",")]  # "Foo-17" -> "Foo"
                raise UnsupportedOpError(ops[0], self.name, f"no conversion rule for {', '.join(ops)}") from e
            raise ModelLoadError(
                f"{path.name} is not a model OpenVINO can read: {_first_line(e)}",
                hint="re-export the model, or check the file is complete (not truncated)",
            ) from e
        if not model.outputs:  # an empty file parses as an empty ONNX graph
            raise ModelLoadError(
                f"{path.name} holds no graph (empty or not a model)",
                hint="re-export the model, or check the file is complete (not truncated)",
            )
        return model

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check(feeds)
        if self.request is None:
            raise BackendError("this openvino model was closed", hint="load it again")
        with self._lock:
            try:
                results = self.request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
            except Exception as e:
                msg = _first_line(e, 400)
                if "shape" in msg.lower() or "dimension" in msg.lower():
                    raise InferenceInputError(f"openvino rejected the inputs: {msg}") from e
                raise BackendError(f"openvino failed: {msg}") from e
            # infer() copies outputs out of the request's buffers (share_outputs=False), so they outlive the lock
            return {spec.name: results[port] for spec, port in zip(self._outputs, self.compiled.outputs, strict=True)}

    def _read_facts(self, hint: str) -> dict[str, Any]:
        prop = self.compiled.get_property
        precision = prop("INFERENCE_PRECISION_HINT")
        precision = getattr(precision, "get_type_name", lambda: str(precision))()  # ov.Type -> "f32"
        on_cpu = self.device.startswith("CPU")
        return {
            "device": self.device,
            "precision": precision,
            "hint": hint,
            "threads": prop("INFERENCE_NUM_THREADS") if on_cpu else "auto",
            "streams": int(prop("NUM_STREAMS")),
            "version": ov.get_version().split("-")[0],
        }

    def describe(self) -> dict[str, Any]:
        return dict(self._facts)

    def close(self) -> None:
        self.request = None
        self.compiled = None
