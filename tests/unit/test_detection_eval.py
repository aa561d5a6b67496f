"""The detection evaluation around a detector: images in, class mapping by label name, mAP equal to pycocotools
on what the detector returned, the report with its PR curves and the bad-case page.

The detector here is a test double with the Detector interface (predict(images, score=, iou=, max_det=) ->
[[Detection]]) that returns the ground truth of each image jittered; the end-to-end run of ``bushu eval`` with
the real bushu.detection.Detector is in tests/e2e/test_eval_detection.py."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bushu.testing.stamps import STAMPS_DIR

pytest.importorskip("pycocotools")
pytestmark = pytest.mark.skipif(not STAMPS_DIR.is_dir(), reason="apt-get install tuxpaint-stamps-default")


@dataclass(frozen=True)
class Det:
    box: tuple[float, float, float, float]
    score: float
    index: int
    label: str


class JitteredTruth:
    """Knows each image's boxes by its pixels (the test's own ground truth), reports them moved, some dropped,
    plus one false box per image, with the model's label indices (``labels`` order, not the dataset's)."""

    def __init__(self, ds, labels, seed=0):
        from PIL import Image

        self.labels, self.rng = labels, np.random.default_rng(seed)
        self.truth = {}
        for s in ds.samples:
            with Image.open(s.image) as im:
                self.truth[np.asarray(im.convert("RGB")).tobytes()] = s
        self.to_model = {k: [x.lower() for x in labels].index(n) for k, n in enumerate(ds.classes)}
        self.calls = []

    def predict(self, images, score=None, iou=None, max_det=None):
        self.calls.append((len(images), score, iou, max_det))
        out = []
        for im in images:
            s = self.truth[np.asarray(im).tobytes()]
            dets = []
            for b, c in zip(s.boxes, s.classes):
                if self.rng.random() < 0.25:
                    continue
                box = b + self.rng.uniform(-0.1, 0.1, 4) * np.tile(b[2:] - b[:2], 2)
                k = self.to_model[int(c)]
                dets.append(Det(tuple(box.tolist()), float(self.rng.uniform(0.3, 1)), k, self.labels[k]))
            dets.append(Det((5.0, 5.0, 45.0, 45.0), 0.6, self.to_model[0], self.labels[self.to_model[0]]))
            dets.append(Det((0.0, 0.0, 30.0, 30.0), 0.9, len(self.labels) - 1, self.labels[-1]))  # not in the data
            out.append(dets)
        return out


@pytest.fixture(scope="module")
def yolo_set(tmp_path_factory):
    from bushu.testing.detection import write_detection_dataset

    d = write_detection_dataset(tmp_path_factory.mktemp("dete") / "yolo", "yolo", n_images=16, seed=2)
    (d / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return d


def test_evaluate_detector_maps_labels_and_matches_pycocotools(yolo_set, tmp_path):
    from bushu.data.detection import read_detection_dataset
    from bushu.detection.evaluation import evaluate_detector
    from bushu.detection.report import write_detection_report

    ds = read_detection_dataset(yolo_set)
    # the model's labels: other order, other spelling, plus a label the data set does not have
    labels = ["Toaster"] + [c.upper().replace("S", "s") for c in reversed(ds.classes)] + ["Kite"]
    det = JitteredTruth(ds, labels)
    res = evaluate_detector(det, ds, labels, batch_size=5, score=0.001, iou=0.6, max_det=100)
    assert [c[0] for c in det.calls] == [5, 5, 5, 1] and det.calls[0][1:] == (0.001, 0.6, 100)
    assert res["n_images"] == 16 and res["n_ignored"] == 16  # the "Kite" box of each image
    assert res["problems"] == [
        {"path": str(yolo_set / "labels" / "orphan.txt"), "reason": res["problems"][0]["reason"]}
    ]
    assert [p["class"] for p in res["per_class"]] == ds.classes
    assert [p["label"] for p in res["per_class"]] == [labels[det.to_model[k]] for k in range(len(ds.classes))]

    # pycocotools on the same detections, written out by hand as COCO results
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    det.rng = np.random.default_rng(0)
    gt = {
        "images": [{"id": i} for i in range(len(ds.samples))],
        "categories": [{"id": k} for k in range(len(ds.classes))],
        "annotations": [
            {
                "id": len(ds.samples) * 100 + i * 10 + j,
                "image_id": i,
                "category_id": int(c),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                "area": float((b[2] - b[0]) * (b[3] - b[1])),
                "iscrowd": 0,
            }
            for i, s in enumerate(ds.samples)
            for j, (b, c) in enumerate(zip(s.boxes, s.classes))
        ],
    }
    from PIL import Image

    images = [Image.open(s.image).convert("RGB") for s in ds.samples]
    from_model = {v: k for k, v in det.to_model.items()}
    results = [
        {
            "image_id": i,
            "category_id": from_model[d.index],
            "score": d.score,
            "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]],
        }
        for start in range(0, 16, 5)
        for i, dets in enumerate(det.predict(images[start : start + 5]), start)
        for d in dets
        if d.index in from_model
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0.2 < res["map"] < res["map50"] < 1.0
    assert round(res["map"], 3) == round(ev.stats[0], 3) and round(res["map50"], 3) == round(ev.stats[1], 3)

    # every image has its false box at 0.6; dropped boxes are missed
    assert len(res["bad_cases"]) == 16
    n_missed = sum(len(c["missed"]) for c in res["bad_cases"])
    n_found = sum(c["found"] for c in res["bad_cases"])
    assert n_missed + n_found == res["n_boxes"] and n_missed > 0
    assert all(
        {"box": [5.0, 5.0, 45.0, 45.0], "class": ds.classes[0], "score": 0.6} in c["false"] for c in res["bad_cases"]
    )

    res.update(model="m", data=str(yolo_set), backend="test", time="now", env={"cpu": "cpu"})
    page, bad = write_detection_report(res, tmp_path / "r.html")
    text = Path(page).read_text()
    assert "mAP@0.5 " + f"{res['map50']:.4f}" in text and 'alt="precision-recall curves"' in text
    assert "orphan.txt" in text and "r.bad_cases.html" in text
    bad_text = Path(bad).read_text()
    assert bad_text.count("data:image/jpeg;base64,") == 16 and "missed" in bad_text


def test_classes_without_labels_use_the_dataset_ids_and_bad_names_say_so(yolo_set):
    from bushu.data.detection import read_detection_dataset
    from bushu.detection.evaluation import class_mapping
    from bushu.errors import UserInputError

    ds = read_detection_dataset(yolo_set)
    assert class_mapping(ds.classes, None, None) == {k: k for k in range(len(ds.classes))}
    with pytest.raises(UserInputError) as e:
        class_mapping(ds.classes, ["bird", "fruit"], None)
    assert "'birds' (did you mean 'bird'?)" in e.value.message and "label_map" in e.value.hint
    assert class_mapping(ds.classes[:2], ["x", "bird", "fruit"], {"birds": "bird"}) == {1: 0, 2: 1}


def test_json_is_plain(yolo_set):
    from bushu.data.detection import read_detection_dataset
    from bushu.detection.evaluation import evaluate_detector

    ds = read_detection_dataset(yolo_set)
    res = evaluate_detector(JitteredTruth(ds, list(ds.classes)), ds, list(ds.classes))
    assert {"map50", "map", "per_class"} <= set(json.loads(json.dumps(res)))
