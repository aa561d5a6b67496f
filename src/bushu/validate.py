"""Run a model and compare it with its source: tolerance per output, top-1 agreement, accuracy.

Every conversion (import, export, compress) checks its result with these, so a failure always
names each output that differed and by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputMismatch, ShapeError, ToleranceError
from .model.processing import softmax

__all__ = ["accuracy", "agreement", "check_tolerance", "run_model", "summarize"]

CONFIDENT = 0.5  # fp32 top-1 probability above which a sample counts as confidently classified


def run_model(
    path: str | Path, feeds: Mapping[str, np.ndarray], chunk: int = 16, backend: str = "onnxruntime"
) -> dict[str, np.ndarray]:
    """All samples through the model, ``chunk`` at a time (bounded memory); outputs concatenated."""
    from .runtime import load_backend

    n = len(next(iter(feeds.values())))
    with load_backend(path, backend) as be:
        step = chunk if all(s.has_batch for s in be.inputs) else 1
        parts: dict[str, list[np.ndarray]] = {}
        for i in range(0, n, step):
            for k, v in be.infer({k: v[i : i + step] for k, v in feeds.items()}).items():
                parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def check_tolerance(
    what: str, ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], atol: float, rtol: float
) -> list[OutputMismatch]:
    """Every output within |got - ref| <= atol + rtol·max|ref|, else ShapeError / ToleranceError naming each.

    rtol is relative to the output's largest magnitude: reduced-precision arithmetic errs in
    proportion to the values it accumulates, so near-zero elements would make an element-wise
    relative error meaningless.
    """
    rows, bad_shape, bad_value = [], [], []
    for name, r in ref.items():
        g = got.get(name)
        if g is None or g.shape != r.shape:
            m = OutputMismatch(
                name, float("inf"), float("inf"), atol, rtol, tuple(r.shape), None if g is None else tuple(g.shape)
            )
            rows.append(m)
            bad_shape.append(m)
            continue
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        diff = np.abs(g64 - r64)
        scale = max(float(np.abs(r64).max(initial=0.0)), 1e-12)
        m = OutputMismatch(
            name,
            float(diff.max(initial=0.0)),
            float(diff.max(initial=0.0)) / scale,
            atol,
            rtol,
            tuple(r.shape),
            tuple(g.shape),
        )
        rows.append(m)
        if not np.isfinite(g64).all() or np.any(diff > atol + rtol * scale):
            bad_value.append(m)
    if bad_shape:
        raise ShapeError(what, bad_shape)
    if bad_value:
        raise ToleranceError(what, bad_value, hint="keep this model in fp32, or loosen the tolerance")
    return rows


def agreement(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: top-1 agreement (all inputs, and where fp32 is confident), top-5 overlap (share of
    fp32's five highest classes among the other model's five) for [batch, classes] outputs, and the
    cosine similarity of the outputs (min and mean), with the number of inputs behind each."""
    out: dict[str, dict[str, float]] = {}
    for name, r in ref.items():
        g = got[name].astype(np.float64).reshape(len(r), -1)
        r2 = r.astype(np.float64).reshape(len(r), -1)
        norms = np.linalg.norm(r2, axis=1)
        cos = np.sum(r2 * g, axis=1) / np.maximum(norms * np.linalg.norm(g, axis=1), 1e-12)
        # a sample whose reference output is ~0 (a text detector's map of a photo without text) has no
        # direction to keep: its cosine is noise, so the minimum is taken over the others
        informative = norms >= 1e-3 * norms.max(initial=0.0)
        row: dict[str, Any] = {
            "cosine_min": round(float(cos[informative].min() if informative.any() else cos.min()), 5),
            "max_abs": float(np.abs(r2 - g).max(initial=0.0)),
        }
        if not informative.all():
            row["near_zero_samples"] = int((~informative).sum())
        row["max_rel"] = row["max_abs"] / max(float(np.abs(r2).max(initial=0.0)), 1e-12)  # of the output's range
        if r.ndim == 2 and r.shape[1] > 1:
            same = r2.argmax(1) == g.argmax(1)
            row["top1_agreement"] = round(float(np.mean(same)), 4)
            probs = r2 if np.all(r2 >= 0) and np.allclose(r2.sum(1), 1, atol=1e-3) else softmax(r2)
            sure = probs.max(1) >= CONFIDENT
            row["top1_agreement_confident"] = round(float(np.mean(same[sure])), 4) if sure.any() else None
            row["confident_samples"] = int(sure.sum())
            # The gate: confident samples when there are enough of them, else all.
            use = sure if sure.sum() >= 10 else np.ones_like(sure)
            row["gate_agreement"], row["gate_samples"] = round(float(np.mean(same[use])), 4), int(use.sum())
            k = min(5, r2.shape[1])
            top_r, top_g = np.argsort(-r2, axis=1)[:, :k], np.argsort(-g, axis=1)[:, :k]
            overlap = [len(set(a) & set(b)) / k for a, b in zip(top_r, top_g)]
            row["top5_overlap"] = round(float(np.mean(overlap)), 4)
        row["cosine_mean"], row["samples"] = round(float(cos.mean()), 5), len(r)
        out[name] = row
    return out


def mask_padding(
    specs: Sequence[Any], feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Zero the outputs at padded positions (attention mask 0): no consumer reads them, and their values
    drift freely under quantization (all-MiniLM-L6-v2 dynamic int8: cosine 0.947 with them, 0.989 without)."""
    mask = next(
        (feeds[s.name] for s in specs if getattr(s, "role", None) == "attention_mask" and s.name in feeds), None
    )
    if mask is None:
        return dict(outputs)
    out = {}
    for k, v in outputs.items():
        if v.ndim >= mask.ndim and v.shape[: mask.ndim] == mask.shape:
            v = v * mask.reshape(mask.shape + (1,) * (v.ndim - mask.ndim)).astype(v.dtype)
        out[k] = v
    return out


def accuracy(logits: np.ndarray, targets: np.ndarray | Sequence[int]) -> float:
    """Top-1 accuracy in percent."""
    return round(100.0 * float(np.mean(logits.reshape(len(targets), -1).argmax(1) == np.asarray(targets))), 3)


def summarize(rows: list[OutputMismatch]) -> list[dict[str, Any]]:
    return [{"name": m.name, "max_abs": m.max_abs, "max_rel": m.max_rel, "atol": m.atol, "rtol": m.rtol} for m in rows]
