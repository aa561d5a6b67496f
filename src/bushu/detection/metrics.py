"""Detection accuracy: COCO mAP (through ``pycocotools``), per-class AP, precision-recall curves, and
``box_agreement`` between two detectors' outputs on the same images (no labels needed).

Boxes are ``[x1, y1, x2, y2]`` in pixels everywhere; they become COCO's ``[x, y, w, h]`` only inside
``coco_map``. mAP@0.5:0.95 is COCO's AP (mean over IoU 0.50, 0.55, ..., 0.95 and over the classes
that have ground truth), mAP@0.5 the same at IoU 0.5 alone; at most ``max_dets`` detections per image
count, the highest-scoring ones.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["box_agreement", "coco_map", "iou_matrix", "match_boxes"]

GroundTruth = tuple[np.ndarray, np.ndarray]  # boxes [N, 4], classes [N]
Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [M, 4], scores [M], classes [M]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] -> [N, M]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(
    ref_boxes: np.ndarray,
    ref_classes: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching, as COCO does: by descending score, each box takes the unmatched reference
    box of its class with the highest IoU >= ``iou``. Returns (index of the reference box each box matched, or
    -1 [M]; IoU of that match [M])."""
    ref_classes, classes = np.asarray(ref_classes).reshape(-1), np.asarray(classes).reshape(-1)
    ious = iou_matrix(boxes, ref_boxes)
    ious[classes[:, None] != ref_classes[None, :]] = 0.0
    taken = np.zeros(len(ref_classes), bool)
    match = np.full(len(classes), -1, np.int64)
    best = np.zeros(len(classes))
    for i in np.argsort(-np.asarray(scores).reshape(-1), kind="stable"):
        row = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(row)) if row.size else -1
        if j >= 0 and row[j] >= iou:
            taken[j], match[i], best[i] = True, j, row[j]
    return match, best


def coco_map(
    ground_truth: Sequence[GroundTruth], predictions: Sequence[Predictions], classes: Sequence[str], max_dets: int = 100
) -> dict[str, Any]:
    """COCO evaluation of ``predictions`` against ``ground_truth`` (one entry per image, same order).

    Returns ``map`` (mAP@0.5:0.95), ``map50``, ``map75``, ``per_class`` (class, ap, ap50, n_gt, n_pred;
    ap is None for a class without ground truth) and ``pr_curves`` at IoU 0.5 (``recall``: 101 points,
    ``precision``: class -> 101 interpolated precisions, for the classes with ground truth)."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise MissingDependencyError("mAP (pycocotools)", "data") from e
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} ground-truth images but {len(predictions)} prediction lists")
    images: list[dict[str, Any]] = []
    gt_anns: list[dict[str, Any]] = []
    dt_anns: list[dict[str, Any]] = []
    n_gt, n_pred = np.zeros(len(classes), int), np.zeros(len(classes), int)
    for i, ((gb, gc), (pb, ps, pc)) in enumerate(zip(ground_truth, predictions), 1):
        images.append({"id": i})
        for box, c in zip(np.asarray(gb, float).reshape(-1, 4).tolist(), np.asarray(gc).tolist()):
            gt_anns.append(_ann(len(gt_anns) + 1, i, c, box))
            n_gt[c] += 1
        for box, s, c in zip(
            np.asarray(pb, float).reshape(-1, 4).tolist(), np.asarray(ps).tolist(), np.asarray(pc).tolist()
        ):
            dt_anns.append({**_ann(len(dt_anns) + 1, i, c, box), "score": float(s)})
            n_pred[c] += 1
    cats = [{"id": k + 1, "name": str(n)} for k, n in enumerate(classes)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": cats}
        dt.dataset = {"images": images, "annotations": dt_anns, "categories": cats}
        gt.createIndex()
        dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    # COCOeval.summarize() would read AP at 100 detections whatever maxDets says: average its precision table here
    prec = ev.eval["precision"][:, :, :, 0, -1]  # [IoU thresholds, recall points, classes] at area "all", max_dets
    per_class, curves = [], {}
    for k, name in enumerate(classes):
        p = prec[:, :, k]
        has_gt = bool(n_gt[k])
        per_class.append(
            {
                "class": str(name),
                "ap": float(p[p > -1].mean()) if has_gt else None,
                "ap50": float(p[0][p[0] > -1].mean()) if has_gt else None,
                "n_gt": int(n_gt[k]),
                "n_pred": int(n_pred[k]),
            }
        )
        if has_gt:
            curves[str(name)] = [round(float(v), 4) for v in p[0]]
    return {
        "map": _mean_ap(prec),
        "map50": _mean_ap(prec[0]),
        "map75": _mean_ap(prec[5]),
        "per_class": per_class,
        "pr_curves": {"iou": 0.5, "recall": [round(float(r), 2) for r in ev.params.recThrs], "precision": curves},
    }


def _mean_ap(precision: np.ndarray) -> float:
    """COCO's mean over the entries that exist (-1: a class without ground truth); 0 when none does."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else 0.0


def _ann(ann_id: int, image_id: int, c: int, box: list[float]) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": int(c) + 1,
        "iscrowd": 0,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
    }


def _arrays(dets: Sequence[Any]) -> Predictions:
    """Detection-like objects (``box``, ``score``, ``index``) -> arrays."""
    boxes = np.asarray([d.box for d in dets], np.float64).reshape(-1, 4)
    return boxes, np.asarray([d.score for d in dets], np.float64), np.asarray([d.index for d in dets], np.int64)


def box_agreement(
    reference: Sequence[Sequence[Any]], candidate: Sequence[Sequence[Any]], iou: float = 0.5
) -> dict[str, Any]:
    """How far a converted or compressed detector (``candidate``) agrees with its source (``reference``) on the
    same images, without labels. Each is one list of detections (``box``, ``score``, ``index``) per image.

    A candidate box matches a reference box of the same class at IoU >= ``iou`` (one to one, by score).
    ``reference_matched`` / ``candidate_matched``: the fraction of each side's boxes matched; ``agreement``:
    the smaller of the two (1.0 when both found nothing); ``score_drift``: mean |score difference| over the
    matched pairs, ``max_score_drift`` the largest; ``mean_iou`` of the matched pairs."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference images but {len(candidate)} candidate images")
    n_ref = n_cand = 0
    ious, drifts = [], []
    for ref, cand in zip(reference, candidate):
        rb, rs, rc = _arrays(ref)
        cb, cs, cc = _arrays(cand)
        n_ref, n_cand = n_ref + len(rb), n_cand + len(cb)
        match, best = match_boxes(rb, rc, cb, cs, cc, iou)
        ok = match >= 0
        ious += best[ok].tolist()
        drifts += np.abs(cs[ok] - rs[match[ok]]).tolist()
    matched = len(ious)
    ref_frac = matched / n_ref if n_ref else 1.0
    cand_frac = matched / n_cand if n_cand else 1.0
    return {
        "n_reference": n_ref,
        "n_candidate": n_cand,
        "matched": matched,
        "reference_matched": ref_frac,
        "candidate_matched": cand_frac,
        "agreement": min(ref_frac, cand_frac),
        "mean_iou": float(np.mean(ious)) if ious else None,
        "score_drift": float(np.mean(drifts)) if drifts else 0.0,
        "max_score_drift": float(np.max(drifts)) if drifts else 0.0,
    }
