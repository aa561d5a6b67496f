"""``bushu eval`` for a detection artifact: run a detector over a COCO / YOLO / VOC folder and report COCO mAP,
per-class AP, precision-recall curves and the images with the most missed and false boxes.

Dataset classes are matched to the model's labels by name as for classification (exactly, then ignoring
case, ``_`` and ``-``; or through a label map); a model without labels is taken to use the dataset's class
ids. Detections of a label the dataset does not have are left out (COCO does the same with categories
without ground truth). Detection runs with a low score threshold (0.001, as COCO evaluation expects: mAP
needs the whole precision-recall curve); the bad-case page shows only the boxes at ``bad_case_score`` or above.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.detection import DetectionDataset, Problem, read_detection_dataset
from ..errors import UserInputError
from .metrics import coco_map, match_boxes

__all__ = ["evaluate_detection", "evaluate_detector"]

#: boxes at or above this score are drawn on the bad-case page
BAD_CASE_SCORE = 0.25
#: the bad-case page shows at most this many images, the worst first
MAX_BAD_CASES = 40


def evaluate_detection(
    art,
    data: str | Path,
    backend: str | None = None,
    batch_size: int = 8,
    label_map: Mapping[str, str | int] | None = None,
    score: float | None = None,
    iou: float | None = None,
    max_det: int = 100,
    report: str | Path | None = None,
    record: bool = True,
    progress: bool | Any = True,
) -> dict[str, Any]:
    """Run the artifact's ``Detector`` on ``data`` and return the metrics (``map50``, ``map``, ``per_class``, ...)."""
    from ..envinfo import summary
    from ..runtime.registry import backend_for_path
    from . import Detector

    ds = read_detection_dataset(data)
    backend = backend or backend_for_path(art.model_path).name  # the model file's own runtime, as for classification
    with Detector(art, backend=backend) as detector:
        result = evaluate_detector(
            detector,
            ds,
            art.labels,
            batch_size=batch_size,
            label_map=label_map,
            score=0.001 if score is None else score,
            iou=iou,
            max_det=max_det,
            progress=progress,
        )
    result = {
        "model": str(art.path),
        "data": str(Path(data)),
        "backend": backend,
        **result,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "env": summary(),
    }
    if report:
        from .report import write_detection_report

        result["report"], result["bad_case_report"] = write_detection_report(result, report)
    if record:
        art.record("eval", {k: v for k, v in result.items() if k not in ("bad_cases", "problems", "pr_curves")})
    return result


def class_mapping(
    ds_classes: Sequence[str], labels: Sequence[str] | None, label_map: Mapping[str, str | int] | None
) -> dict[int, int]:
    """Model output index -> dataset class index."""
    from ..eval_ import match_classes

    if not labels and not label_map:
        return {i: i for i in range(len(ds_classes))}
    by_name = match_classes(list(ds_classes), labels, len(labels) if labels else 1 << 30, label_map)
    out: dict[int, int] = {}
    for k, name in enumerate(ds_classes):
        out.setdefault(by_name[name], k)
    return out


def evaluate_detector(
    detector,
    ds: DetectionDataset,
    labels: Sequence[str] | None,
    batch_size: int = 8,
    label_map: Mapping[str, str | int] | None = None,
    score: float = 0.001,
    iou: float | None = None,
    max_det: int = 100,
    bad_case_score: float = BAD_CASE_SCORE,
    progress: bool | Any = False,
) -> dict[str, Any]:
    """The metrics of anything with ``predict(images, score=, iou=, max_det=) -> [[Detection]]`` on ``ds``."""
    from PIL import Image

    from .. import progress as _progress

    to_ds = class_mapping(ds.classes, labels, label_map)
    problems = list(ds.problems)
    gts, preds, used = [], [], []
    ignored = 0
    t0 = time.perf_counter()
    with _progress.task(progress, "eval", len(ds.samples)) as advance:
        for start in range(0, len(ds.samples), batch_size):
            batch, images = [], []
            for s in ds.samples[start : start + batch_size]:
                try:
                    with Image.open(s.image) as im:
                        images.append(im.convert("RGB"))
                    batch.append(s)
                except Exception as e:  # the reader decoded it once; a file can still change or vanish
                    problems.append(Problem(str(s.image), f"image does not decode: {type(e).__name__}: {e}"))
            if images:
                for s, dets in zip(batch, detector.predict(images, score=score, iou=iou, max_det=max_det)):
                    keep = [d for d in dets if d.index in to_ds]
                    ignored += len(dets) - len(keep)
                    preds.append(
                        (
                            np.asarray([d.box for d in keep], np.float64).reshape(-1, 4),
                            np.asarray([d.score for d in keep], np.float64),
                            np.asarray([to_ds[d.index] for d in keep], np.int64),
                        )
                    )
                    gts.append((s.boxes, s.classes))
                    used.append(s)
            advance(len(batch))
    if not used:
        raise UserInputError(f"no image of {ds.root} could be evaluated ({len(problems)} problems)")
    m = coco_map(gts, preds, ds.classes, max_dets=max_det)
    model_label = {v: (labels[k] if labels and k < len(labels) else str(k)) for k, v in to_ds.items()}
    for i, row in enumerate(m["per_class"]):
        row["label"] = model_label.get(i, row["class"])
    return {
        "format": ds.format,
        "n_images": len(used),
        "n_boxes": int(sum(len(s.classes) for s in used)),
        "n_detections": int(sum(len(p[0]) for p in preds)),
        "n_ignored": ignored,
        "n_problems": len(problems),
        "problems": [{"path": p.path, "reason": p.reason} for p in problems],
        "classes": list(ds.classes),
        "map50": m["map50"],
        "map": m["map"],
        "map75": m["map75"],
        "per_class": m["per_class"],
        "pr_curves": m["pr_curves"],
        "score": score,
        "iou": iou,
        "bad_case_score": bad_case_score,
        "bad_cases": bad_cases(used, preds, ds.classes, bad_case_score),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def bad_cases(samples, preds, classes: Sequence[str], min_score: float, limit: int = MAX_BAD_CASES) -> list[dict]:
    """Per image with a missed or a false box (at ``min_score`` and IoU 0.5), the worst first: its boxes."""
    out: list[dict[str, Any]] = []
    for s, (boxes, scores, cls) in zip(samples, preds):
        keep = scores >= min_score
        boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
        match, _ = match_boxes(s.boxes, s.classes, boxes, scores, cls, 0.5)
        found = set(match[match >= 0].tolist())
        missed = [
            {"box": _r(b), "class": classes[c]} for j, (b, c) in enumerate(zip(s.boxes, s.classes)) if j not in found
        ]
        false = [
            {"box": _r(b), "class": classes[c], "score": round(float(p), 3)}
            for b, p, c, m in zip(boxes, scores, cls, match)
            if m < 0
        ]
        if missed or false:
            out.append(
                {
                    "path": str(s.image),
                    "missed": missed,
                    "false": false,
                    "found": len(found),
                    "found_boxes": [_r(s.boxes[j]) for j in sorted(found)],
                }
            )
    out.sort(key=lambda r: -(len(r["missed"]) + len(r["false"])))
    return out[:limit]


def _r(box) -> list[float]:
    return [round(float(v), 1) for v in box]
