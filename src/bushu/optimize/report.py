"""The before/after report of `bushu optimize` as one self-contained HTML page (table + two SVG plots)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["COLUMNS", "render_html"]

COLUMNS = (
    "model",
    "attempt",
    "params",
    "mflops",
    "size_mb",
    "zip_mb",
    "sparsity",
    "p50_ms",
    "throughput_b8",
    "gate",
    "agreement_confident",
    "confident_n",
    "top5_overlap",
    "cosine_mean",
    "top1_agreement",
    "accuracy",
)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _scatter(rows: Sequence[dict[str, Any]], xkey: str, ykey: str, title: str) -> str:
    raw = [(r.get(xkey), r.get(ykey), r["model"]) for r in rows]
    pts = [(float(x), float(y), m) for x, y, m in raw if x is not None and y is not None]
    if len(pts) < 2:
        return ""
    w, h, pad = 420, 260, 50
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    dots = "".join(
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="#3b6fb6"/>'
        f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 7:.1f}" font-size="11">{html.escape(m)}</text>'
        for x, y, m in pts
    )
    return (
        f'<figure><figcaption>{html.escape(title)}</figcaption><svg width="{w}" height="{h}" '
        f'xmlns="http://www.w3.org/2000/svg" style="overflow:visible">'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>'
        f'<text x="{w / 2}" y="{h - 12}" font-size="12" text-anchor="middle">{xkey} ({_fmt(x0)}–{_fmt(x1)})</text>'
        f'<text x="12" y="{h / 2}" font-size="12" transform="rotate(-90 12 {h / 2})" text-anchor="middle">'
        f"{ykey} ({_fmt(y0)}–{_fmt(y1)})</text>{dots}</svg></figure>"
    )


def render_html(art: Any, rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> str:
    cols = [c for c in COLUMNS if any(r.get(c) is not None for r in rows)]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    quality = "accuracy" if any(r.get("accuracy") is not None for r in rows) else "top1_agreement"
    plots = _scatter(rows, "size_mb", quality, f"{quality} vs size") + _scatter(
        rows, "p50_ms", quality, f"{quality} vs latency (batch 1)"
    )
    steps = html.escape(json.dumps(list(records), indent=1, default=str)[:20000])
    env = html.escape(json.dumps(art.provenance.get("steps", [{}])[-1].get("versions", {})))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>bushu optimize: {html.escape(art.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
figure{{display:inline-block;margin:1em 2em 1em 0}}pre{{background:#f6f6f6;padding:1em;max-height:30em;overflow:auto}}</style>
</head><body><h1>bushu optimize: {html.escape(art.name)}</h1>
<p>Artifact: <code>{html.escape(str(art.path))}</code>. p50_ms: batch-1 latency; throughput_b8: items/s at batch 8;
mflops: FLOPs at batch 1 (millions); accuracy: top-1 % on the labelled data; top1_agreement: share of inputs where
the model's top-1 equals the original's; agreement_confident: the same on the confident_n inputs where the
original's top-1 probability is ≥ 0.5 (the int8 gate); top5_overlap, cosine_mean: on all inputs.
Times on a shared CPU are noisy: compare rows of the same run.</p>
<table><tr>{head}</tr>{body}</table>
{plots}
<h2>Steps</h2><pre>{steps}</pre>
<p>Library versions: <code>{env}</code></p></body></html>
"""
