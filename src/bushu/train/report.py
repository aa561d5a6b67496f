"""The training report: one self-contained report.html (the terminal summary is cli/train.py's) with
the data check, the leaderboard, the search history plot, per-class P/R/F1, the confusion matrix
and the worst mistakes (thumbnails for images)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["finetune_line", "html_report", "test_line", "trial_params"]


def test_line(s: Mapping[str, Any]) -> str:
    """The held-out test figure with its interval, or why there is none."""
    t = s.get("test")
    if not t:
        return (
            "no test part (a given validation folder and no test folder): the validation figure also chose the "
            "model; give DATA/test/, --test DIR or --test-size 0.2 for an unbiased figure"
        )
    lo, hi = t["ci95"]
    return (
        f"test accuracy {t['accuracy']:.4f} (95% Wilson interval {lo:.3f}-{hi:.3f}) on {t['n']} held-out "
        f"examples ({t['split']}) that the search, fine-tuning and early stopping never saw; macro F1 "
        f"{t['macro_f1']:.4f}"
    )


def finetune_line(f: Mapping[str, Any]) -> str:
    """One line: what fine-tuning did and which model was kept (both validation figures)."""
    if not f.get("ran"):
        return f"fine-tuning: skipped, {f.get('reason')}"
    return (
        f"fine-tuning (last {f['blocks']} blocks + head, {f['augment']} augmentation, {f['epochs']} epochs, "
        f"{f['seconds']:.0f} s): val accuracy {f['finetuned_val_accuracy']:.4f} "
        f"(loss {f['finetuned_val_loss']:.3g}) vs frozen {f['frozen_val_accuracy']:.4f} "
        f"(loss {f['frozen_val_loss']:.3g}); kept the {f['kept']} model"
    )


def trial_params(b: Mapping[str, Any]) -> str:
    if b["head"] == "logreg":
        return f"C {b['C']:.3g}, standardize {b.get('standardize')}"
    return (
        f"lr {b['lr']:.3g}, weight decay {b['weight_decay']:.3g}, batch {b['batch_size']}, "
        f"{b['best_epoch']} epochs, standardize {b.get('standardize')}"
    )


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


#: fonts with Chinese/Japanese/Korean glyphs, tried in order (Debian: fonts-wqy-microhei, fonts-noto-cjk)
CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "Droid Sans Fallback")


def cjk_font() -> str | None:
    """The first installed CJK-capable font known to matplotlib, or None."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return next((f for f in CJK_FONTS if f in have), None)


def _needs_cjk(names: list[str]) -> bool:
    return any(ord(ch) >= 0x2E80 for n in names for ch in str(n))


def _plots(s: Mapping[str, Any]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return []
    if _needs_cjk(s["classes"]) and cjk_font():  # DejaVu (the default) has no CJK glyphs: fall back to one that has
        plt.rcParams["font.family"] = ["DejaVu Sans", cjk_font()]
    out = []
    rows = sorted((r for r in s["leaderboard"] if r["val_accuracy"] is not None), key=lambda r: r["trial"])
    if rows:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for src in sorted({r["source"] for r in rows}):
            pts = [(r["trial"], r["val_accuracy"]) for r in rows if r["source"] == src]
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, label=src, s=18)
        best = np.maximum.accumulate([r["val_accuracy"] for r in rows])
        ax.plot([r["trial"] for r in rows], best, color="black", lw=1, label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel("val accuracy")
        ax.legend(fontsize=7)
        ax.set_title("search history")
        out.append(_png(fig))
    cm = np.asarray(s["confusion"]["matrix"])
    names = s["confusion"]["rows"]
    size = max(3.5, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 30:
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_title("confusion matrix (validation)")
    out.append(_png(fig))
    return out


def _thumb(path: Path) -> str:
    try:
        from ..data.images import open_image

        img = open_image(path).convert("RGB")
        img.thumbnail((96, 96))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
    except Exception:  # noqa: BLE001 - a thumbnail is decoration
        return ""


def _table(rows: Sequence[Mapping[str, Any]], cols: list[str]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{e(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _font_note(s: Mapping[str, Any]) -> str:
    if not _needs_cjk(s["classes"]) or cjk_font():
        return ""
    return (
        "<p>The class names use CJK characters but no CJK font is installed for the plots (their labels show as "
        "boxes; the tables are right): apt-get install fonts-wqy-microhei or fonts-noto-cjk.</p>"
    )


def _test_section(s: Mapping[str, Any]) -> str:
    t = s.get("test")
    if not t:
        return ""
    cm = t["confusion"]
    corner = "true \\ pred"
    rows = [{corner: r, **dict(zip(cm["columns"], row))} for r, row in zip(cm["rows"], cm["matrix"])]
    return (
        f"<h2>Per class (test, {t['n']} held-out examples)</h2>"
        f"{_table(t['per_class'], ['class', 'precision', 'recall', 'f1', 'support'])}"
        f"<h3>Confusion matrix (test)</h3>{_table(rows, [corner, *cm['columns']])}"
    )


def html_report(s: Mapping[str, Any], title: str, data_root: Path | None = None) -> str:
    e = html.escape
    b = s["best"]
    dc = s["data_check"]
    imgs = "".join(f'<img alt="plot" src="data:image/png;base64,{p}"> ' for p in _plots(s))
    cm = s["confusion"]
    cm_html = _table(
        [{"true \\ pred": r, **dict(zip(cm["columns"], row))} for r, row in zip(cm["rows"], cm["matrix"])],
        ["true \\ pred", *cm["columns"]],
    )
    mistakes = []
    for m in s["mistakes"]:
        thumb = _thumb(data_root / m["path"]) if data_root is not None and s["kind"] == "image" else ""
        mistakes.append(
            f"<tr><td>{thumb}</td><td>{e(m['path'])}</td><td>{e(m['true'])}</td>"
            f"<td>{e(m['pred'])}</td><td>{m['score']:.3f}</td></tr>"
        )
    skipped = "".join(f"<li>{e(x['path'])}: {e(x['reason'])}</li>" for x in dc["skipped"]) or "<li>none</li>"
    dups = "".join(f"<li>{e(d['dropped'])} = {e(d['kept'])}</li>" for d in dc["duplicates"]) or "<li>none</li>"
    warns = "".join(f"<li>{e(w)}</li>" for w in dc["warnings"]) or "<li>none</li>"
    counts = _table([{"class": k, "examples": v} for k, v in dc["counts"].items()], ["class", "examples"])
    feats = (
        _table(
            [{"source": k, **v} for k, v in s["features"].items()],
            ["source", *next(iter(s["features"].values())).keys()],
        )
        if s["features"]
        else ""
    )
    lb = _table(
        s["leaderboard"],
        [
            "trial",
            "source",
            "head",
            "standardize",
            "C",
            "lr",
            "batch_size",
            "weight_decay",
            "augment",
            "epochs",
            "max_epochs",
            "val_accuracy",
            "val_loss",
            "state",
            "seconds",
        ],
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif,"Noto Sans CJK SC","WenQuanYi Micro Hei";margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}img{{vertical-align:middle}}</style></head><body>
<h1>{e(title)}</h1>
<p><b>validation accuracy {s["val_accuracy"]:.4f}</b> (the exported ONNX model on {s["n_val"]} validation examples,
ONNX Runtime), macro F1 {s["macro_f1"]:.4f}. Chosen: trial {b["trial"]}, <b>{e(str(b["source"]))}</b> features +
{e(str(b["head"]))} head, {e(trial_params(b))}. {s["trials"]} trials ({s["trials_this_run"]} in this run), {s["seconds"]:.0f} s
(budget {e(_fmt(s["budget_s"]))} s). Train/val: {s["n_train"]}/{s["n_val"]} ({e(s["split"])} split).
Export parity vs PyTorch: max abs diff {s["parity_max_abs"]:.2g}.</p>
{f"<p>{e(finetune_line(s['finetune']))}.</p>" if s.get("finetune") else ""}
{_font_note(s)}
<p><b>{e(test_line(s))}</b>. The validation split also chose the model, so its accuracy is optimistic.</p>
<h2>Data check</h2>{counts}<p>imbalance (largest/smallest) {dc["imbalance"]}; {dc["ignored"]} file(s) ignored
(other suffixes or hidden).</p><h3>Warnings</h3><ul>{warns}</ul><h3>Skipped (unreadable)</h3><ul>{skipped}</ul>
<h3>Duplicates dropped</h3><ul>{dups}</ul>
<h2>Features</h2>{feats}
<h2>Search</h2>{imgs}<h3>Leaderboard</h3>{lb}
<h2>Per class (validation)</h2>{_table(s["per_class"], ["class", "precision", "recall", "f1", "support"])}
{_test_section(s)}
<h2>Confusion matrix (validation)</h2>{cm_html}
<h2>Worst mistakes</h2><p>Most confident wrong predictions first.</p>
<table><tr><th></th><th>file</th><th>true</th><th>predicted as</th><th>score</th></tr>{"".join(mistakes)}</table>
</body></html>
"""
