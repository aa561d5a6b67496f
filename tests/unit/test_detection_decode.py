"""bushu.detection's decoders and NMS on hand-made model outputs whose boxes are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from bushu.detection import DetectionHead, LayoutError, choose_decoder, nms
from bushu.detection.anchors import ssd_anchors
from bushu.errors import UserInputError
from bushu.spec import TensorSpec

IDENTITY = (1.0, 1.0, 0.0, 0.0, 640, 640)  # no resize, no padding


def test_nms_is_class_wise_and_keeps_the_best_first():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, iou=0.5, max_det=10).tolist() == [0, 2, 3]  # 1 overlaps 0 (IoU 0.68)
    assert nms(boxes, scores, classes, iou=0.7, max_det=10).tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, classes, iou=0.5, max_det=2).tolist() == [0, 2]


def _yolo_v8(boxes_cxcywh, class_scores, n_anchors=50, classes=3):
    out = np.zeros((1, 4 + classes, n_anchors), np.float32)
    for i, (b, s) in enumerate(zip(boxes_cxcywh, class_scores, strict=True)):
        out[0, :4, i] = b
        out[0, 4:, i] = s
    return out


def test_yolo_channels_first_maps_back_through_the_letterbox():
    # a 640 x 320 image letterboxed into 320 x 320: scale 0.5, 80 px of padding above and below
    out = _yolo_v8(
        [(160, 160, 100, 50), (162, 161, 100, 50), (40, 100, 20, 20)], [(0.9, 0, 0), (0.8, 0, 0), (0, 0.3, 0)]
    )
    head = DetectionHead({"decoder": "yolo", "output": "o", "layout": "channels_first"}, ["a", "b", "c"], (320, 320))
    (dets,) = head({"o": out}, [(0.5, 0.5, 0.0, 80.0, 640, 320)], score=0.25, iou=0.45, max_det=10)
    assert [(d.label, round(d.score, 2)) for d in dets] == [("a", 0.9), ("b", 0.3)]
    assert dets[0].box == pytest.approx((220.0, 110.0, 420.0, 210.0))
    assert dets[1].box == pytest.approx((60.0, 20.0, 100.0, 60.0))


def test_yolov5_anchors_first_multiplies_objectness():
    out = np.zeros((1, 10, 7), np.float32)  # 5 + 2 classes
    out[0, 0] = [100, 100, 20, 40, 0.5, 0.2, 0.9]  # objectness 0.5 x class 1's 0.9 = 0.45
    out[0, 1] = [300, 300, 10, 10, 0.1, 0.9, 0.0]  # 0.09: under the threshold
    head = DetectionHead(
        {"decoder": "yolo", "output": "o", "layout": "anchors_first", "objectness": True}, ["x", "y"], (640, 640)
    )
    (dets,) = head({"o": out}, [IDENTITY], score=0.25)
    assert len(dets) == 1 and dets[0].index == 1 and dets[0].score == pytest.approx(0.45)
    assert dets[0].box == pytest.approx((90, 80, 110, 120))


def test_ssd_decodes_against_generated_anchors():
    anchors = ssd_anchors(300, 300)
    assert anchors.shape == (1917, 4)  # 19²·3 + (10² + 5² + 3² + 2² + 1)·6, MediaPipe's / TF's SSD MobileNet
    enc = np.zeros((1, 1917, 4), np.float32)  # zero encodings: each box is its anchor
    logits = np.full((1, 1917, 3), -10.0, np.float32)
    logits[0, 1000, 2] = 3.0
    logits[0, 1000, 0] = 5.0  # background, ignored
    head = DetectionHead({"decoder": "ssd", "boxes": "b", "scores": "s", "background": 0}, ["bg", "p", "q"], (300, 300))
    (dets,) = head({"b": enc, "s": logits}, [(1.0, 1.0, 0.0, 0.0, 300, 300)], score=0.5)
    assert len(dets) == 1 and dets[0].label == "q" and dets[0].score == pytest.approx(1 / (1 + np.exp(-3.0)))
    cy, cx, h, w = anchors[1000] * 300
    assert dets[0].box == pytest.approx((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), abs=1e-3)


def test_boxes_decoder_reads_normalised_yxyx_and_skips_nms():
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.1, 0.2, 0.5, 0.6]]], np.float32)
    scores = np.array([[0.9, 0.8]], np.float32)
    classes = np.array([[3, 3]], np.float32)
    head = DetectionHead(
        {
            "decoder": "boxes",
            "boxes": "detection_boxes",
            "scores": "detection_scores",
            "classes": "detection_classes",
            "box_format": "yxyx",
            "normalized": True,
        },
        None,
        (100, 200),
    )
    (dets,) = head(
        {"detection_boxes": boxes, "detection_scores": scores, "detection_classes": classes},
        [(1.0, 1.0, 0.0, 0.0, 200, 100)],
        score=0.5,
    )
    assert len(dets) == 2  # NMS was the graph's job
    assert dets[0].box == pytest.approx((40, 10, 120, 50)) and dets[0].label == "3"


def test_choose_decoder():
    img = TensorSpec("images", "float32", ("batch", 3, 640, 640))
    v8 = choose_decoder(
        [img],
        [TensorSpec("output0", "float32", ("batch", 84, 8400))],
        {"names": str({i: f"c{i}" for i in range(80)}), "imgsz": "[640, 640]", "task": "detect"},
    )
    assert (v8["decoder"], v8["layout"], v8["classes"]) == ("yolo", "channels_first", 80)
    v5 = choose_decoder(
        [img], [TensorSpec("output0", "float32", ("batch", 25200, 85))], {"names": str({i: f"c{i}" for i in range(80)})}
    )
    assert (v5["layout"], v5["objectness"]) == ("anchors_first", True)
    e2e = choose_decoder(
        [img], [TensorSpec("output0", "float32", ("batch", 300, 6))], {"names": "{0: 'a'}", "end2end": "True"}
    )
    assert e2e["decoder"] == "boxes" and e2e["packed"] == "output0"
    nhwc = TensorSpec("x", "float32", (1, 300, 300, 3))
    ssd = choose_decoder(
        [nhwc], [TensorSpec("b", "float32", (1, 1917, 4)), TensorSpec("s", "float32", (1, 1917, 91))], {}
    )
    assert ssd["decoder"] == "ssd" and (ssd["boxes"], ssd["scores"]) == ("b", "s")
    tf = choose_decoder(
        [nhwc],
        [
            TensorSpec(n, "float32", s)
            for n, s in (
                ("detection_boxes", (1, 100, 4)),
                ("detection_classes", (1, 100)),
                ("detection_scores", (1, 100)),
                ("num_detections", (1,)),
            )
        ],
        {},
    )
    assert (tf["decoder"], tf["box_format"], tf["normalized"]) == ("boxes", "yxyx", True)
    with pytest.raises(LayoutError, match=r"y \[1, 2000, 4\].*match no detection layout"):
        choose_decoder([nhwc], [TensorSpec("y", "float32", (1, 2000, 4)), TensorSpec("z", "float32", (1, 2000, 9))], {})
    forced = choose_decoder([img], [TensorSpec("out", "float32", ("batch", 84, 8400))], {}, decoder="yolo")
    assert forced["layout"] == "channels_first" and forced["classes"] == 80


def test_bad_thresholds_are_user_errors():
    head = DetectionHead({"decoder": "yolo", "output": "o"}, None, (32, 32))
    for kw in ({"score": 1.5}, {"iou": -0.1}, {"max_det": 0}, {"score": "abc"}):
        with pytest.raises(UserInputError):
            head.settings(kw.get("score"), kw.get("iou"), kw.get("max_det"))
