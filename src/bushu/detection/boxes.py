"""Boxes: the ``Detection`` record and class-wise non-maximum suppression in numpy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Detection", "box_iou", "nms"]


@dataclass(frozen=True)
class Detection:
    """One detected object: ``box`` is x1, y1, x2, y2 in the original image's pixels."""

    box: tuple[float, float, float, float]
    score: float
    index: int
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [float(v) for v in self.box],
            "score": float(self.score),
            "label": self.label,
            "index": int(self.index),
        }


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1y1x2y2 box with each row of ``boxes``."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Greedy class-wise NMS: indices of the kept boxes, best score first, at most ``max_det``.

    Boxes of different classes never suppress each other (they are shifted apart by class, as
    torchvision's batched_nms does).
    """
    if len(boxes) == 0 or max_det <= 0:
        return np.zeros((0,), np.int64)
    boxes = boxes.astype(np.float64)
    offset = classes.astype(np.float64)[:, None] * (float(np.abs(boxes).max()) + 1.0)
    shifted = boxes + offset
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou(shifted[i], shifted[rest]) <= iou]
    return np.asarray(keep, np.int64)
