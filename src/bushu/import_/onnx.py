"""PyTorch → ONNX with a dynamic batch axis, then graph simplification.

The TorchScript-based exporter (``dynamo=False``, opset 17) is used: with torch 2.14 it writes one
self-contained file in seconds, where the dynamo exporter splits weights into ``.onnx.data``
(docs/notes.md) and is slower. ``torch.export`` programs are exported through their module.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BushuError
from ..spec import TensorSpec

__all__ = ["OPSET", "dedupe_value_info", "export_onnx", "save_reference", "simplify"]

OPSET = 17


class ExportError(BushuError):
    pass


def export_onnx(
    module: Any,
    example: Sequence[np.ndarray],
    out: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int = OPSET,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> Path:
    """Export ``module`` called on ``example`` to ``out`` with dim 0 of every input/output named ``batch``
    (plus ``dynamic_axes``: input name -> {axis: symbol}, e.g. {"input_ids": {1: "seq"}}).

    A ``torch.export.ExportedProgram`` goes through the dynamo exporter, which reads it directly
    (the TorchScript exporter cannot re-trace its graph module).
    """
    import torch

    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in example)
    axes = {n: {0: "batch"} for n in [*input_names, *output_names]}
    for n, d in (dynamic_axes or {}).items():
        axes.setdefault(n, {}).update(d)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own deprecation notice and tracer warnings
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            if isinstance(module, torch.export.ExportedProgram):  # already traced, dynamic dims included
                torch.onnx.export(
                    module,
                    dynamo=True,
                    f=str(out),
                    opset_version=max(opset, 18),
                    input_names=list(input_names),
                    output_names=list(output_names),
                    external_data=False,
                    verbose=False,
                )
            else:
                torch.onnx.export(
                    module,
                    args,
                    str(out),
                    dynamo=False,
                    opset_version=opset,
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=axes,
                    do_constant_folding=True,
                )
    except Exception as e:  # the exporter raises many types (UnsupportedOperatorError, RuntimeError...)
        raise ExportError(
            f"torch.onnx.export failed: {str(e).splitlines()[0][:400]}",
            hint="check the model runs on the example input; unsupported ops need a newer opset "
            "(--opset) or a custom symbolic",
        ) from e
    return out


def simplify(path: Path) -> dict[str, Any]:
    """Simplify the graph in place with onnxslim (constant folding, dead code, fusion-friendly patterns)."""
    import onnx

    try:
        import onnxslim
    except ImportError:
        return {"simplified": False, "reason": "onnxslim not installed (pip install 'bushu[torch]')"}
    model = onnx.load(str(path))
    before = len(model.graph.node)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(model)
    except Exception as e:  # noqa: BLE001 - simplification is an optimization; keep the plain export
        return {"simplified": False, "reason": f"onnxslim failed: {str(e).splitlines()[0][:200]}"}
    diff = _slim_changes_outputs(path, slim)
    if diff is not None:
        return {
            "simplified": False,
            "reason": f"onnxslim changed the outputs (max abs diff {diff:.3g} on random inputs); kept the plain export",
        }
    dedupe_value_info(slim.graph)
    onnx.save(slim, str(path))
    return {"simplified": True, "tool": "onnxslim", "nodes_before": before, "nodes_after": len(slim.graph.node)}


def dedupe_value_info(graph: Any) -> int:
    """Keep the first ``value_info`` entry of each name; returns how many were dropped. onnxslim 0.1.x lists
    most intermediate values several times (YOLOv8n: 1,880 entries for 329 names), which tools that retype
    one entry by name (fp16 converters) leave inconsistent."""
    seen: set[str] = set()
    first = []
    for v in graph.value_info:
        if v.name not in seen:
            seen.add(v.name)
            first.append(v)
    dropped = len(graph.value_info) - len(first)
    if dropped:
        del graph.value_info[:]
        graph.value_info.extend(first)
    return dropped


def _takes_varargs(module: Any) -> bool:
    import inspect

    forward = getattr(module, "forward", None)
    try:
        params = inspect.signature(forward).parameters.values() if forward is not None else []
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _slim_changes_outputs(path: Path, slim: Any, atol: float = 1e-4, rtol: float = 1e-3) -> float | None:
    """The max abs difference when the slimmed model's outputs differ from the plain export's on random
    inputs, else None (also None when the check cannot run: then the slimmed model is kept, as before).

    onnxslim 0.1.98 folds timm efficientnet_lite0's shape-dependent "same" padding wrongly at 112 px
    (max abs diff 1.55 on the pooled features; exact at 224 px): docs/notes.md.
    """
    import onnxruntime as ort

    try:
        plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {}
        rng = np.random.default_rng(0)
        for i in plain.get_inputs():
            shape = [d if isinstance(d, int) and d > 0 else 2 for d in i.shape]
            if "float" in i.type:
                dtype = np.float16 if "float16" in i.type else np.float32
                feeds[i.name] = rng.standard_normal(shape).astype(dtype)
            elif "bool" in i.type:
                feeds[i.name] = np.ones(shape, dtype=bool)
            elif "int" in i.type:
                feeds[i.name] = np.ones(shape, dtype=np.int32 if "int32" in i.type else np.int64)
            else:
                return None
        ref = plain.run(None, feeds)
        got = ort.InferenceSession(slim.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    except Exception:  # noqa: BLE001 - no verdict (a model that needs real inputs, > 2 GB, ...): keep the slim one
        return None
    worst = 0.0
    for a, b in zip(ref, got):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return float("inf")
        if a.dtype.kind not in "fc":
            if not np.array_equal(a, b):
                return float("inf")
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        if not np.allclose(b64, a64, atol=atol, rtol=rtol, equal_nan=True):
            worst = max(worst, float(np.nanmax(np.abs(b64 - a64))))
    return worst or None


def save_reference(
    module: Any,
    example: Sequence[np.ndarray],
    out: Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    eager: dict[str, str] | None = None,
) -> Path | None:
    """Save ``module`` as a ``torch.export`` program (the torch backend's reference), batch dim dynamic and
    the ``dynamic_axes`` within the ranges ``inputs`` record (MiniLM's sequence_length up to 512).

    ``eager``: how to rebuild the source module ({"zoo": name} or {"callable": "mod:fn"}); stored beside
    the IO spec so the torch backend can run it eagerly with the program's weights (much faster on CPU).

    Returns None when the model cannot be exported this way (data-dependent control flow...): the
    ONNX model is still valid, only the torch backend row is missing.
    """
    import torch
    from torch.export import Dim

    from ..runtime.backends.torch import EAGER_EXTRA_FILE, IO_EXTRA_FILE

    # an example batch of 1 is specialised to the constant 1 (docs/notes.md): export with 2
    ex2 = tuple(
        torch.from_numpy(np.ascontiguousarray(np.concatenate([a, a])[:2] if len(a) < 2 else a)) for a in example
    )
    dims = {"batch": Dim("batch", min=1, max=4096)}
    ranges = {k: v for s in inputs for k, v in s.ranges.items()}

    def dim(sym: str) -> Any:  # bounded by the IO spec's range: a sequence past the position table cannot export
        r = ranges.get(sym) or {}
        return Dim(
            sym.replace(".", "_"), min=int(r.get("min") or 1), **({"max": int(r["max"])} if r.get("max") else {})
        )

    shapes: Any = tuple(
        {i: dims.setdefault(sym, dim(sym)) for i, sym in {0: "batch", **(dynamic_axes or {}).get(s.name, {})}.items()}
        for s in inputs
    )
    if _takes_varargs(module):  # forward(self, *args) (a Transformers folder's wrapper): one entry, the tuple
        shapes = (shapes,)
    io = {
        IO_EXTRA_FILE: json.dumps({"inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs]})
    }
    if eager:
        io[EAGER_EXTRA_FILE] = json.dumps(eager)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("torch.export").setLevel(logging.ERROR)
            program = (
                module
                if isinstance(module, torch.export.ExportedProgram)
                else torch.export.export(module, ex2, dynamic_shapes=shapes)
            )
            torch.export.save(program, str(out), extra_files=io)
    except Exception:  # noqa: BLE001 - see docstring
        return None
    return out
