"""The HTML pages of a detection evaluation: the report (mAP, per-class AP, precision-recall curves, problems)
and, next to it, the bad-case page (the images with missed and false boxes drawn on them). Both self-contained."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_detection_report"]

_STYLE = (
    "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
    "padding:2px 6px;text-align:right}figure{display:inline-block;margin:6px}figcaption{font-size:12px}"
    ".k span{padding:0 6px;margin-right:8px}</style>"
)
_FOUND, _MISSED, _FALSE = (40, 170, 60), (220, 30, 30), (255, 140, 0)


def write_detection_report(result: Mapping[str, Any], path: str | Path) -> tuple[str, str]:
    """Write ``path`` and ``path``'s ``.bad_cases.html`` sibling; return both paths."""
    e = html.escape
    path = Path(path)
    bad_path = path.with_name(path.stem + ".bad_cases.html")
    png = _pr_png(result)
    img = (
        f'<img alt="precision-recall curves" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        if png
        else "<p>(install matplotlib for the plot)</p>"
    )

    def ap(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    per_class = "".join(
        f"<tr><td>{e(p['class'])}</td><td>{e(str(p.get('label', '')))}</td><td>{ap(p['ap50'])}</td>"
        f"<td>{ap(p['ap'])}</td><td>{p['n_gt']}</td><td>{p['n_pred']}</td></tr>"
        for p in result["per_class"]
    )
    problems = "".join(f"<li>{e(p['path'])}: {e(p['reason'])}</li>" for p in result["problems"])
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>bushu eval: {e(result["model"])}</title>
{_STYLE}</head><body>
<h1>bushu eval (detection)</h1>
<p>model <code>{e(result["model"])}</code> on <code>{e(result["data"])}</code> ({e(result["format"])}) with
{e(str(result["backend"]))}: <b>mAP@0.5 {result["map50"]:.4f}</b>, mAP@0.5:0.95 {result["map"]:.4f},
{result["n_images"]} images, {result["n_boxes"]} boxes, {result["n_detections"]} detections
(score &ge; {result["score"]}), {result["n_problems"]} problems. {e(result["time"])}, {e(str(result["env"]["cpu"]))}.</p>
<p><a href="{e(bad_path.name)}">Bad cases</a>: the images with missed or false boxes at score &ge;
{result["bad_case_score"]}.</p>
<h2>Per class</h2><table>
<tr><th>class</th><th>model label</th><th>AP@0.5</th><th>AP@0.5:0.95</th><th>boxes</th><th>detections</th></tr>
{per_class}</table>
<h2>Precision-recall at IoU 0.5</h2>{img}
<h2>Problems</h2><ul>{problems or "<li>none</li>"}</ul>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    bad_path.write_text(_bad_case_page(result), encoding="utf-8")
    return str(path), str(bad_path)


def _bad_case_page(result: Mapping[str, Any]) -> str:
    e = html.escape
    figs = []
    for case in result["bad_cases"]:
        jpeg = _drawn(case)
        if jpeg is None:
            continue
        missed = ", ".join(m["class"] for m in case["missed"]) or "-"
        false = ", ".join(f"{f['class']} {f['score']:.2f}" for f in case["false"]) or "-"
        cap = (
            f"{e(Path(case['path']).name)}: {len(case['missed'])} missed ({e(missed)}), "
            f"{len(case['false'])} false ({e(false)}), {case['found']} found"
        )
        figs.append(
            f'<figure><img alt="{e(case["path"])}" src="data:image/jpeg;base64,{jpeg}">'
            f"<figcaption>{cap}</figcaption></figure>"
        )
    key = "".join(
        f'<span style="border:3px solid rgb{c}">{n}</span>'
        for n, c in (("found", _FOUND), ("missed", _MISSED), ("false", _FALSE))
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>bushu eval bad cases: {e(result["model"])}</title>
{_STYLE}</head><body>
<h1>Bad cases</h1>
<p>{len(result["bad_cases"])} images with a missed or a false box (IoU 0.5, score &ge; {result["bad_case_score"]}),
the worst first. <span class="k">{key}</span></p>
{"".join(figs) or "<p>none: every box was found and nothing else</p>"}
</body></html>
"""


def _drawn(case: Mapping[str, Any]) -> str | None:
    from PIL import Image, ImageDraw

    try:
        with Image.open(case["path"]) as im:
            img = im.convert("RGB")
    except Exception:  # listed among the problems already
        return None
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 250))
    for box in case["found_boxes"]:
        draw.rectangle(box, outline=_FOUND, width=width)
    for m in case["missed"]:
        draw.rectangle(m["box"], outline=_MISSED, width=width)
        draw.text((m["box"][0] + width, m["box"][1] + width), m["class"], fill=_MISSED)
    for f in case["false"]:
        draw.rectangle(f["box"], outline=_FALSE, width=width)
        draw.text((f["box"][0] + width, f["box"][3] - 12 - width), f"{f['class']} {f['score']:.2f}", fill=_FALSE)
    img.thumbnail((480, 480))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode()


def _pr_png(result: Mapping[str, Any]) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curves = result["pr_curves"]
    ap50 = {p["class"]: p["ap50"] for p in result["per_class"]}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, precision in curves["precision"].items():
        ax.plot(curves["recall"], precision, label=f"{name} {ap50[name]:.3f}", linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"IoU {curves['iou']}: mAP@0.5 {result['map50']:.3f}")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
