"""Detector outputs -> boxes: the decoders (which one fits a model: bushu.detection.layouts).

``postprocess.params["decoder"]`` in bushu.yaml names one of:

- ``yolo``: Ultralytics YOLOv8/v11 ``[batch, 4 + classes, anchors]`` (``layout: channels_first``) or
  YOLOv5 ``[batch, anchors, 5 + classes]`` (``layout: anchors_first``, an objectness column);
  boxes are cx, cy, w, h in the input's pixels;
- ``ssd``: raw box encodings ``[batch, anchors, 4]`` (y, x, h, w against anchors generated from
  ``anchors``, see bushu.detection.anchors) + class scores ``[batch, anchors, classes]``;
- ``boxes``: the graph already decoded (and usually suppressed) boxes: ``boxes`` ``[batch, n, 4]``
  (``box_format`` xyxy or yxyx, ``normalized`` or pixels), ``scores`` and ``classes`` ``[batch, n]``.

Each decoder keeps the boxes above the score threshold and runs class-wise NMS (bushu.detection.boxes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import UserInputError
from .anchors import ssd_anchors
from .boxes import Detection, nms

# numpy and bushu.errors only: `bushu package` copies this module (with boxes.py and anchors.py) into the SDK.
__all__ = ["DECODERS", "DEFAULTS", "DetectionHead", "check_settings", "parse_query"]

DECODERS = ("yolo", "ssd", "boxes")
DEFAULTS = {"score": 0.25, "iou": 0.45, "max_det": 100}


def _truthy(v: Any) -> bool:
    return v is True or str(v).lower() in ("1", "true", "yes")


# -- decoding -----------------------------------------------------------------------------------------
# sx, sy, px, py (bushu.model.processing.fit_image), then the original width and height to clip to
Transform = tuple[float, float, float, float, int, int]


class DetectionHead:
    """Outputs of one batch -> per image a list of Detection, in each original image's pixels."""

    def __init__(self, params: Mapping[str, Any], labels: Sequence[str] | None, input_hw: tuple[int, int]):
        self.params, self.labels, self.hw = dict(params), list(labels or []), input_hw
        self.decoder = self.params.get("decoder")
        if self.decoder not in DECODERS:
            raise UserInputError(
                f"postprocess decoder {self.decoder!r} is not one of {list(DECODERS)}",
                hint="re-import the model with --task detection --decoder ...",
            )
        self._anchors = ssd_anchors(*input_hw, self.params.get("anchors")) if self.decoder == "ssd" else None

    @property
    def output_names(self) -> list[str]:
        p = self.params
        names = (
            [p["output"]]
            if self.decoder == "yolo"
            else [p.get("packed"), p.get("boxes"), p.get("scores"), p.get("classes")]
        )
        return [n for n in names if n]

    def settings(self, score: float | None, iou: float | None, max_det: int | None) -> tuple[float, float, int]:
        score = self.params.get("score", DEFAULTS["score"]) if score is None else score
        iou = self.params.get("iou", DEFAULTS["iou"]) if iou is None else iou
        max_det = self.params.get("max_det", DEFAULTS["max_det"]) if max_det is None else max_det
        check_settings(score, iou, max_det)
        return float(score), float(iou), int(max_det)

    def __call__(
        self,
        outputs: Mapping[str, np.ndarray],
        transforms: Sequence[Transform],
        score: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
    ) -> list[list[Detection]]:
        score, iou, max_det = self.settings(score, iou, max_det)
        out = []
        for i, t in enumerate(transforms):
            boxes, scores, classes, suppressed = getattr(self, f"_{self.decoder}")(outputs, i)
            keep = scores >= score
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
            if suppressed:
                idx = np.argsort(-scores, kind="stable")[:max_det]
            else:
                idx = nms(boxes, scores, classes, iou, max_det)
            out.append([self._detection(boxes[j], scores[j], classes[j], t) for j in idx])
        return out

    def _detection(self, box: np.ndarray, score: float, cls: int, t: Transform) -> Detection:
        sx, sy, px, py, w, h = t
        x1, x2 = (min(max((float(v) - px) / sx, 0.0), w) for v in (box[0], box[2]))
        y1, y2 = (min(max((float(v) - py) / sy, 0.0), h) for v in (box[1], box[3]))
        c = int(cls)
        label = self.labels[c] if 0 <= c < len(self.labels) else str(c)
        return Detection((x1, y1, x2, y2), float(score), c, label)

    # each returns (x1y1x2y2 boxes in input pixels, scores, classes, already suppressed?) for image i
    def _yolo(self, outputs, i):
        p = self.params
        o = np.asarray(outputs[p["output"]][i], np.float32)
        if p.get("layout", "channels_first") == "channels_first":
            o = o.T
        cls_scores = o[:, 5:] * o[:, 4:5] if p.get("objectness") else o[:, 4:]
        classes = cls_scores.argmax(1)
        scores = cls_scores[np.arange(len(o)), classes]
        cx, cy, w, h = o[:, 0], o[:, 1], o[:, 2], o[:, 3]
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), scores, classes, False

    def _ssd(self, outputs, i):
        p = self.params
        enc = np.asarray(outputs[p["boxes"]][i], np.float32)
        logits = np.asarray(outputs[p["scores"]][i], np.float32)
        a = self._anchors
        ys, xs, hs, ws = (float(v) for v in p.get("box_scale", [10.0, 10.0, 5.0, 5.0]))
        cy = enc[:, 0] / ys * a[:, 2] + a[:, 0]
        cx = enc[:, 1] / xs * a[:, 3] + a[:, 1]
        h = np.exp(enc[:, 2] / hs) * a[:, 2]
        w = np.exp(enc[:, 3] / ws) * a[:, 3]
        H, W = self.hw
        boxes = np.stack([(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H], 1)
        if p.get("score_fn", "sigmoid") == "softmax":
            z = np.exp(logits - logits.max(1, keepdims=True))
            probs = z / z.sum(1, keepdims=True)
        else:
            probs = 1.0 / (1.0 + np.exp(-logits))
        bg = p.get("background")
        if bg is not None and 0 <= int(bg) < probs.shape[1]:
            probs[:, int(bg)] = -np.inf
        classes = probs.argmax(1)
        return boxes, probs[np.arange(len(probs)), classes], classes, False

    def _boxes(self, outputs, i):
        p = self.params
        batched = p.get("batched", True)

        def pick(name):
            a = np.asarray(outputs[name])
            return a[i] if batched else a

        if p.get("packed"):
            rows = pick(p["packed"]).reshape(-1, 6).astype(np.float32)
            boxes, scores, classes = rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64)
        else:
            boxes = pick(p["boxes"]).reshape(-1, 4).astype(np.float32)
            scores = pick(p["scores"]).reshape(-1).astype(np.float32)
            classes = (
                pick(p["classes"]).reshape(-1).astype(np.int64) if p.get("classes") else np.zeros(len(scores), np.int64)
            )
        n = min(len(boxes), len(scores), len(classes))
        boxes, scores, classes = boxes[:n], scores[:n], classes[:n]
        real = (boxes[:, 2] != boxes[:, 0]) & (boxes[:, 3] != boxes[:, 1])  # fixed-size outputs pad with zero boxes
        boxes, scores, classes = boxes[real], scores[real], classes[real]
        if p.get("box_format", "xyxy") == "yxyx":
            boxes = boxes[:, [1, 0, 3, 2]]
        if _truthy(p.get("normalized", False)):
            H, W = self.hw
            boxes = boxes * np.asarray([W, H, W, H], np.float32)
        return boxes, scores, classes, True


def check_settings(score: Any, iou: Any, max_det: Any) -> None:
    if not isinstance(score, (int, float)) or not 0.0 <= float(score) <= 1.0:
        raise UserInputError(f"score threshold {score!r} is not a number in [0, 1]", hint="e.g. score=0.25")
    if not isinstance(iou, (int, float)) or not 0.0 <= float(iou) <= 1.0:
        raise UserInputError(f"NMS IoU threshold {iou!r} is not a number in [0, 1]", hint="e.g. iou=0.45")
    if isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1:
        raise UserInputError(f"max detections {max_det!r} is not a positive integer", hint="e.g. max=100")


def parse_query(query: Mapping[str, str]) -> dict[str, Any]:
    """``score``/``iou``/``max`` query parameters (strings) -> predict() keywords, or a UserInputError."""
    out: dict[str, Any] = {}
    for key, kw, conv in (("score", "score", float), ("iou", "iou", float), ("max", "max_det", int)):
        if key in query:
            try:
                out[kw] = conv(query[key])
            except ValueError:
                raise UserInputError(
                    f"?{key}={query[key]!r} is not a{'n integer' if conv is int else ' number'}",
                    hint="e.g. ?score=0.3&iou=0.5&max=50",
                ) from None
    check_settings(out.get("score", 0.0), out.get("iou", 0.0), out.get("max_det", 1))
    return out


def to_json(dets: Sequence[Detection]) -> str:
    return json.dumps({"detections": [d.to_dict() for d in dets]})
