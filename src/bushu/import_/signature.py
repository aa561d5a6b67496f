"""Read what an ONNX graph's inputs are for, so bushu can feed them safe values without being told.

- integer inputs indexing an embedding table (``Gather`` on an initializer, through casts/reshapes) are
  ids in ``[0, rows)``; ``*mask*`` inputs are attention masks (ones), ``*token_type*``/``*segment*`` are
  token types (zeros), ``*position*`` are position ids;
- float inputs of rank 4 with 1 or 3 channels are images, in the range the pre-processing produces;
- symbolic dims get a typical size from what was stated (``--input``), the model's metadata
  (Ultralytics ``imgsz``), the pre-processing (crop size) or, for a token sequence, a short default.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from ..spec import TensorSpec

__all__ = ["annotate", "embedding_rows", "metadata"]

_PASS_THROUGH = {"Cast", "Reshape", "Flatten", "Unsqueeze", "Squeeze", "Identity", "Expand"}
SEQ_TYPICAL = 32  # a sequence length every text model takes when nothing says more


def metadata(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def embedding_rows(model, name: str, depth: int = 4) -> int | None:
    """Rows of the table that input ``name`` indexes (``Gather(table, ids)`` with the table an initializer)."""
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for i, x in enumerate(node.input):
            consumers.setdefault(x, []).append((node, i))
    frontier, rows = [name], []
    for _ in range(depth):
        nxt = []
        for t in frontier:
            for node, i in consumers.get(t, []):
                if node.op_type == "Gather" and i == 1:
                    table = node.input[0]
                    if table in inits and inits[table].dims:
                        rows.append(int(inits[table].dims[0]))
                    elif table in consts:
                        rows += [int(a.t.dims[0]) for a in consts[table].attribute if a.name == "value" and a.t.dims]
                elif node.op_type in _PASS_THROUGH and i == 0:
                    nxt += list(node.output)
        frontier = nxt
    return min(rows) if rows else None


def _role(spec: TensorSpec) -> str | None:
    n = spec.name.lower()
    if spec.dtype in ("int64", "int32", "int16", "int8", "uint8", "bool") or "mask" in n:
        if "mask" in n:
            return "attention_mask"
        if "token_type" in n or "segment" in n:
            return "token_type_ids"
        if "position" in n:
            return "position_ids"
    if (
        spec.dtype in ("float32", "float16", "bfloat16", "float64")
        and len(spec.shape) == 4
        and (spec.shape[1] in (1, 3) or spec.shape[3] in (1, 3))
    ):
        return "image"
    return None


def _image_values(preprocess) -> tuple[float, float]:
    if preprocess is None or getattr(preprocess, "kind", "image") not in ("image", "audio"):
        return (0.0, 1.0)
    top = 255 * float(preprocess.scale)
    lows = [(0 - m) / s for m, s in zip(preprocess.mean, preprocess.std, strict=False)] or [0.0]
    highs = [(top - m) / s for m, s in zip(preprocess.mean, preprocess.std, strict=False)] or [top]
    return (round(min(lows), 4), round(max(highs), 4))


def _imgsz(meta: Mapping[str, str]) -> tuple[int, int] | None:
    raw = meta.get("imgsz")
    if not raw:
        return None
    try:
        v = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    v = [v, v] if isinstance(v, int) else list(v)
    return (int(v[0]), int(v[-1])) if v else None


def annotate(
    model,
    specs: Sequence[TensorSpec],
    preprocess=None,
    stated: Mapping[str, Sequence[Sequence[int]]] | None = None,
    seq: Mapping[str, int] | None = None,
) -> list[TensorSpec]:
    """``specs`` (an ONNX graph's inputs) with role, safe values and per-symbol ranges filled in.

    ``stated``: input name -> the shapes the user gave (typical = the first; min/max over all);
    ``seq``: {"typical", "max"} of token sequences when known (a Transformers config).
    """
    meta, stated = metadata(model), stated or {}
    imgsz = _imgsz(meta)
    stated_sizes: dict[str, list[int]] = {}  # symbol -> the sizes stated for any input that has it
    for s in specs:
        for shape in stated.get(s.name, []):
            if len(shape) == len(s.shape):
                for i, d in enumerate(shape):
                    sym = s.symbol(i)
                    if sym is not None and d not in stated_sizes.setdefault(sym, []):
                        stated_sizes[sym].append(d)
    out = []
    for s in specs:
        role = s.role or _role(s)
        values = s.values
        rows = embedding_rows(model, s.name) if s.dtype.startswith(("int", "uint")) else None
        if rows and role in (None, "token_ids", "tensor"):
            role = "token_ids"
        if values is None and rows and role in ("token_ids", "token_type_ids", "position_ids"):
            values = (0, rows)
        if values is None and role == "image":
            values = _image_values(preprocess)
        ranges = {k: dict(v) for k, v in s.ranges.items()}
        for i in range(len(s.shape)):
            sym = s.symbol(i)
            if sym is None:
                continue
            r = ranges.setdefault(sym, {})
            sizes = stated_sizes.get(sym, [])
            if i == 0:
                r.setdefault("min", 1)
                continue
            token = role in ("token_ids", "attention_mask", "token_type_ids", "position_ids") and i == len(s.shape) - 1
            seq_max = (seq or {}).get("max")
            if token and seq_max:
                r.setdefault("max", int(seq_max))
            if sizes:
                r.update(typical=sizes[0], **({"min": min(sizes), "max": max(sizes)} if len(sizes) > 1 else {}))
            elif role == "image" and len(s.shape) == 4 and i in ((2, 3) if s.shape[1] in (1, 3) else (1, 2)):
                first = 2 if s.shape[1] in (1, 3) else 1
                if imgsz:
                    r.setdefault("typical", imgsz[i - first])
                elif preprocess is not None and getattr(preprocess, "crop", None):
                    r.setdefault("typical", int(preprocess.crop))
            elif token:
                r.setdefault("typical", int((seq or {}).get("typical") or SEQ_TYPICAL))
                r.setdefault("min", 1)
            if not r:
                del ranges[sym]
        out.append(s.with_(role=role, values=values, ranges=ranges))
    return _share_ranges(out)


def _share_ranges(specs: list[TensorSpec]) -> list[TensorSpec]:
    """A symbol used by several inputs gets one range (the union of what each knew)."""
    merged: dict[str, dict[str, int]] = {}
    for s in specs:
        for k, v in s.ranges.items():
            merged.setdefault(k, {}).update({a: b for a, b in v.items() if b is not None})
    return [s.with_(ranges={k: merged[k] for k in s.ranges}) if s.ranges else s for s in specs]
