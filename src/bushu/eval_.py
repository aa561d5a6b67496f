"""Accuracy of an artifact on a folder-per-class dataset (images; texts .txt or clips .wav/.flac for
text and audio artifacts): top-1/top-k, per-class precision, recall and F1, a confusion matrix (PNG
via matplotlib, and an HTML report).

Class folders are matched to the artifact's labels by name (exactly, then ignoring case, ``_`` and
``-``), or through a label map. Metrics are over the dataset's classes; a prediction of any other
label counts as wrong and lands in the confusion matrix's ``(other)`` column.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import progress as _progress
from .data.folders import LabelledFolder, read_text
from .data.labels import match_classes
from .errors import UserInputError
from .model.artifact import Artifact
from .spec import np_dtype

__all__ = [
    "classification_metrics",
    "evaluate",
    "match_classes",
    "wilson_interval",
    "write_confusion_png",
    "write_html_report",
]

OTHER = "(other)"


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support over ``classes`` (label indices), with sklearn if present."""
    classes = list(classes)
    try:
        from sklearn.metrics import precision_recall_fscore_support

        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    except ImportError:
        p, r, f, s = _prfs(y_true, y_pred, classes)
    return {
        "precision": np.asarray(p, float),
        "recall": np.asarray(r, float),
        "f1": np.asarray(f, float),
        "support": np.asarray(s, int),
    }


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default): unlike the normal approximation it stays
    inside [0, 1] and keeps a sensible width at 0 or n successes, which matters for small test sets."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def _prfs(y_true, y_pred, classes):
    """numpy version of sklearn's precision_recall_fscore_support(labels=..., zero_division=0)."""
    p, r, f, s = [], [], [], []
    for c in classes:
        tp = int(np.sum((y_pred == c) & (y_true == c)))
        npred, ntrue = int(np.sum(y_pred == c)), int(np.sum(y_true == c))
        pc = tp / npred if npred else 0.0
        rc = tp / ntrue if ntrue else 0.0
        p.append(pc)
        r.append(rc)
        f.append(2 * pc * rc / (pc + rc) if pc + rc else 0.0)
        s.append(ntrue)
    return p, r, f, s


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, bool]:
    """Rows: true class; columns: predicted class, plus one ``(other)`` column when needed."""
    pos = {c: i for i, c in enumerate(classes)}
    other = any(p not in pos for p in y_pred.tolist())
    m = np.zeros((len(classes), len(classes) + other), dtype=int)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        m[pos[t], pos.get(p, len(classes))] += 1
    return m, other


def evaluate(
    model: str | Path | Artifact,
    data: str | Path,
    backend: str | None = None,
    batch_size: int = 16,
    top_k: int = 5,
    label_map: Mapping[str, str | int] | None = None,
    report: str | Path | None = None,
    plot: str | Path | None = None,
    record: bool = True,
    progress: bool | _progress.Progress = True,
    score: float | None = None,
    iou: float | None = None,
) -> dict[str, Any]:
    """Run the artifact over ``data`` (a folder per class) and return the metrics as a plain dict.

    ``backend``: the runtime to run it on; by default the one that reads the artifact's model file
    (onnxruntime for .onnx, litert for an exported .tflite, ncnn for .param, mnn, openvino for .xml).
    A detection artifact (task ``detection``) is evaluated on a COCO / YOLO / VOC folder instead, with
    detection score threshold ``score`` and NMS ``iou``: see ``bushu.detection.evaluation``."""
    from .bench.bench import resolve_model

    if batch_size < 1:
        raise UserInputError(f"`batch_size` must be a positive integer, got {batch_size}")
    art, main = resolve_model(model)
    if art is not None and art.task == "detection":
        from .detection.evaluation import evaluate_detection

        return evaluate_detection(
            art,
            data,
            backend=backend,
            batch_size=batch_size,
            label_map=label_map,
            score=score,
            iou=iou,
            report=report,
            record=record,
            progress=progress,
        )
    if art is None or art.preprocess is None:
        raise UserInputError(
            f"{main} has no pre-processing metadata, so its images cannot be prepared",
            hint="evaluate an artifact: bushu import MODEL -o ART, then bushu eval ART --data DIR",
        )
    kind = art.preprocess.kind if art.preprocess.kind in ("text", "audio") else "image"
    ds = LabelledFolder.scan(data, kind)
    backend, target = _runnable(art, main, backend)
    labels = art.labels
    n_out = art.outputs[0].shape[-1] if isinstance(art.outputs[0].shape[-1], int) else None
    mapping = match_classes(ds.classes, labels, n_out or (len(labels) if labels else 0) or 1 << 30, label_map)
    t0 = time.perf_counter()
    preds = _predict(art, kind, ds, target, backend, mapping, batch_size, top_k, progress)
    if not preds.y_true:
        raise _nothing_read(art.preprocess.kind, data, len(ds.skipped))
    result = _result(art, data, backend, ds, mapping, preds, top_k)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["time"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    from .envinfo import summary

    result["env"] = summary()
    if plot:
        result["plot"] = write_confusion_png(result, plot)
    if report:
        result["report"] = write_html_report(result, report)
    if record:
        art.record("eval", {k: v for k, v in result.items() if k not in ("mistakes", "skipped")})
    return result


def _runnable(art: Artifact, main: Path, backend: str | None) -> tuple[str, Any]:
    """(the backend, the file it runs): by default the model file's own runtime (raises with the install hint
    if it is missing); a UserInputError when ``backend`` cannot run this artifact."""
    from .bench.bench import files_for_backends
    from .runtime.registry import backend_for_path

    if backend is None:
        backend = backend_for_path(main).name
    target = files_for_backends(art, main, [backend])[backend]
    if isinstance(target, str):
        raise UserInputError(
            f"backend {backend!r} cannot run this artifact: {target}",
            hint=f"leave --backend out to use the one that reads {main.name}",
        )
    return backend, target


@dataclass
class _Predictions:
    """Per example, in dataset order: the true label index, the top-1 and top-k label indices, the top-1
    softmax probability, and the file."""

    y_true: list[int] = field(default_factory=list)
    y_pred: list[int] = field(default_factory=list)
    topk: list[list[int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def _predict(
    art: Artifact,
    kind: str,
    ds: LabelledFolder,
    target: Any,
    backend: str,
    mapping: Mapping[str, int],
    batch_size: int,
    top_k: int,
    progress: bool | _progress.Progress,
) -> _Predictions:
    """Every readable example of ``ds`` through the model, in batches (a fixed-batch model's last one padded)."""
    from .runtime import load_backend

    out = _Predictions()
    with load_backend(target, backend) as be:
        spec, out_name = be.inputs[0], be.outputs[0].name
        fixed = isinstance(spec.shape[0], int) and spec.shape[0] > 0
        if fixed:
            batch_size = int(spec.shape[0])  # a fixed-batch model takes exactly that many
        decode, collate = _decoder(art, kind, spec)
        batches = ((collate(xs), t, p) for xs, t, p in ds.batches(decode, batch_size))
        with _progress.task(progress, "eval", len(ds.items)) as advance:
            for feeds, t, p in batches:
                n = len(t)
                if n < batch_size and fixed:  # pad a fixed batch
                    feeds = {
                        k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, axis=0)]) for k, v in feeds.items()
                    }
                logits = np.asarray(be.infer(feeds)[out_name])[:n]
                logits = logits.reshape(n, -1)
                k = min(max(top_k, 5), logits.shape[1])
                order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
                out.y_true += [mapping[ds.classes[i]] for i in t]
                out.y_pred += order[:, 0].tolist()
                out.topk += order.tolist()
                out.scores += _softmax_max(logits).tolist()
                out.paths += p
                advance(len(p))
            advance(len(ds.skipped))
    return out


def _nothing_read(pp_kind: str, data: str | Path, skipped: int) -> UserInputError:
    noun = {"text": "text", "audio": "clip"}.get(pp_kind, "image")
    return UserInputError(
        f"no {noun} in {data} could be read ({skipped} skipped)",
        hint="check the files are real "
        + {"text": "UTF-8 .txt files", "audio": ".wav/.flac clips"}.get(pp_kind, "jpg/png/bmp/webp images"),
    )


def _result(
    art: Artifact,
    data: str | Path,
    backend: str,
    ds: LabelledFolder,
    mapping: Mapping[str, int],
    preds: _Predictions,
    top_k: int,
) -> dict[str, Any]:
    """The metrics of ``preds`` over the dataset's classes, as evaluate() returns them (less the timing)."""
    assert art.preprocess is not None  # evaluate() refused an artifact without pre-processing
    labels = art.labels
    y_true, y_pred, topk = preds.y_true, preds.y_pred, preds.topk
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    classes = list(dict.fromkeys(mapping[c] for c in ds.classes))  # folder order; merged if two map to one label
    folder_of = {v: k for k, v in reversed(list(mapping.items()))}
    names = [folder_of[c] for c in classes]
    m = classification_metrics(yt, yp, classes)
    cm, other = confusion(yt, yp, classes)

    def label(i: int) -> str:
        return labels[i] if labels and i < len(labels) else str(i)

    return {
        "model": str(art.path),
        "data": str(Path(data)),
        "backend": backend,
        "n_images": len(yt),
        "n_skipped": len(ds.skipped),  # n_images counts texts / clips too (see noun)
        "noun": {"text": "text", "audio": "clip"}.get(art.preprocess.kind, "image"),
        "skipped": [{"path": s.path, "reason": s.reason} for s in ds.skipped],
        "accuracy": float(np.mean(yt == yp)),
        "top1": float(np.mean(yt == yp)),
        "top5": _topk_acc(y_true, topk, 5),
        "top_k": top_k,
        "top_k_accuracy": _topk_acc(y_true, topk, top_k),
        "classes": names,
        "per_class": [
            {
                "class": n,
                "label": label(c),
                "precision": float(m["precision"][i]),
                "recall": float(m["recall"][i]),
                "f1": float(m["f1"][i]),
                "support": int(m["support"][i]),
            }
            for i, (n, c) in enumerate(zip(names, classes))
        ],
        "macro": {k: float(np.mean(m[k])) for k in ("precision", "recall", "f1")},
        "confusion": {"rows": names, "columns": names + ([OTHER] if other else []), "matrix": cm.tolist()},
        "mistakes": [
            {"path": str(p), "true": label(t), "pred": label(q), "score": round(s, 4)}
            for p, t, q, s in zip(preds.paths, y_true, y_pred, preds.scores)
            if t != q
        ][:100],
    }


def _decoder(art: Artifact, kind: str, spec) -> tuple[Callable[[Path], Any], Callable[[list], dict[str, np.ndarray]]]:
    """How one file becomes a model input (decode) and a list of them a batch of feeds (collate)."""
    pp = art.preprocess
    assert pp is not None  # evaluate() refused an artifact without pre-processing
    if kind == "image":
        from .data.images import open_image
        from .model.processing import preprocess_image

        return (
            lambda p: preprocess_image(open_image(p), pp),
            lambda xs: {spec.name: np.stack(xs).astype(np_dtype(spec.dtype))},
        )
    from .model.predict import Pipeline

    pipe = Pipeline(art.path, pp, spec.name)
    if kind == "text":
        return read_text, pipe  # the pipeline tokenizes a list of texts
    return pipe.one, lambda xs: {pipe.input_name: np.stack(xs)}


def _topk_acc(y_true: list[int], topk: list[list[int]], k: int) -> float:
    return float(np.mean([t in row[:k] for t, row in zip(y_true, topk)]))


def _softmax_max(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).max(axis=1)


def _confusion_figure_png(result: Mapping[str, Any]) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cm = np.asarray(result["confusion"]["matrix"])
    rows, cols = result["confusion"]["rows"], result["confusion"]["columns"]
    size = max(4.0, 0.45 * len(cols) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {result['accuracy']:.3f} on {result['n_images']} {result.get('noun', 'image')}s")
    if len(cols) <= 30:
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_confusion_png(result: Mapping[str, Any], path: str | Path) -> str:
    png = _confusion_figure_png(result)
    if png is None:
        from .errors import MissingDependencyError

        raise MissingDependencyError("the confusion-matrix plot (matplotlib)", "data")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png)
    return str(path)


def write_html_report(result: Mapping[str, Any], path: str | Path) -> str:
    """One self-contained HTML file: summary, per-class table, confusion matrix, mistakes, skipped files."""
    e = html.escape
    png = _confusion_figure_png(result)
    cm = result["confusion"]
    img = f'<img alt="confusion matrix" src="data:image/png;base64,{base64.b64encode(png).decode()}">' if png else ""
    head = "".join(f"<th>{e(c)}</th>" for c in cm["columns"])
    cm_rows = "".join(
        f"<tr><th>{e(r)}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
        for r, row in zip(cm["rows"], cm["matrix"])
    )
    per_class = "".join(
        f"<tr><td>{e(p['class'])}</td><td>{e(p['label'])}</td><td>{p['precision']:.3f}</td>"
        f"<td>{p['recall']:.3f}</td><td>{p['f1']:.3f}</td><td>{p['support']}</td></tr>"
        for p in result["per_class"]
    )
    mistakes = "".join(
        f"<tr><td>{e(m['path'])}</td><td>{e(m['true'])}</td><td>{e(m['pred'])}</td><td>{m['score']:.3f}</td></tr>"
        for m in result["mistakes"]
    )
    skipped = "".join(f"<li>{e(s['path'])}: {e(s['reason'])}</li>" for s in result["skipped"])
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>bushu eval: {e(result["model"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:2px 6px;text-align:right}}</style></head><body>
<h1>bushu eval</h1>
<p>model <code>{e(result["model"])}</code> on <code>{e(result["data"])}</code> with {e(result["backend"])}:
<b>top-1 {result["accuracy"]:.4f}</b>, top-5 {result["top5"]:.4f}, {result["n_images"]} {result.get("noun", "image")}s,
{result["n_skipped"]} skipped; macro F1 {result["macro"]["f1"]:.4f}.
{e(result["time"])}, {e(str(result["env"]["cpu"]))}.</p>
<h2>Per class</h2><table>
<tr><th>class</th><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{per_class}</table>
<h2>Confusion matrix</h2>{img}<table><tr><th>true \\ predicted</th>{head}</tr>{cm_rows}</table>
<h2>Mistakes</h2><table><tr><th>file</th><th>true</th><th>predicted</th><th>score</th></tr>{mistakes}</table>
<h2>Skipped files</h2><ul>{skipped or "<li>none</li>"}</ul>
</body></html>
"""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(doc, encoding="utf-8")
    return str(path)
