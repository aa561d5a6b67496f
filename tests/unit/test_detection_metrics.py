"""bushu's mAP equals pycocotools' own numbers, computed here the way a pycocotools user would (the COCO JSON
the generator wrote, loadRes, COCOeval), on predictions made by jittering the ground truth, dropping boxes
and adding false ones; and box_agreement on known perturbations."""

from __future__ import annotations

import contextlib
import io
import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from bushu.detection.metrics import box_agreement, coco_map, iou_matrix, match_boxes
from bushu.testing.stamps import STAMPS_DIR

pycocotools = pytest.importorskip("pycocotools")
needs_stamps = pytest.mark.skipif(not STAMPS_DIR.is_dir(), reason="apt-get install tuxpaint-stamps-default")


def jittered(samples, n_classes: int, seed: int = 0):
    """Per image (boxes, scores, classes): each true box kept with p=0.8, moved by up to 15% of its size, scored
    at random (wrong class 10% of the time), plus 0-2 false boxes anywhere."""
    rng = np.random.default_rng(seed)
    out = []
    for s in samples:
        boxes, scores, classes = [], [], []
        for b, c in zip(s.boxes, s.classes):
            if rng.random() < 0.2:
                continue
            wh = np.tile(b[2:] - b[:2], 2)
            boxes.append(b + rng.uniform(-0.15, 0.15, 4) * wh)
            scores.append(rng.uniform(0.3, 1.0))
            classes.append(int(rng.integers(n_classes)) if rng.random() < 0.1 else int(c))
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, s.width - 40), rng.uniform(0, s.height - 40)
            boxes.append(np.array([x, y, x + rng.uniform(10, 40), y + rng.uniform(10, 40)]))
            scores.append(rng.uniform(0.05, 0.9))
            classes.append(int(rng.integers(n_classes)))
        out.append((np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores), np.asarray(classes, np.int64)))
    return out


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    from bushu.testing.detection import write_detection_dataset

    root = tmp_path_factory.mktemp("detm")
    return write_detection_dataset(root / "coco", "coco", n_images=20, seed=1), write_detection_dataset(
        root / "yolo", "yolo", n_images=20, seed=1
    )


def _pycocotools(ann_file, dets, cat_ids=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        if cat_ids:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@needs_stamps
def test_map_equals_pycocotools_on_the_same_predictions(coco_set):
    from bushu.data.detection import read_detection_dataset

    coco_dir, yolo_dir = coco_set
    ds = read_detection_dataset(yolo_dir)  # bushu's side reads the YOLO copy, pycocotools the COCO JSON
    preds = jittered(ds.samples, len(ds.classes))
    ours = coco_map([(s.boxes, s.classes) for s in ds.samples], preds, ds.classes)

    import json

    ann_file = coco_dir / "annotations" / "instances.json"
    images = {im["file_name"]: im["id"] for im in json.loads(ann_file.read_text())["images"]}
    dets = [
        {
            "image_id": images[s.image.name],
            "category_id": int(c) + 1,
            "score": float(sc),
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
        }
        for s, (bb, ss, cc) in zip(ds.samples, preds)
        for b, sc, c in zip(bb.tolist(), ss, cc)
    ]
    stats = _pycocotools(ann_file, dets)
    assert 0.2 < stats[0] < 0.9 and 0.3 < stats[1] < 0.95  # the jitter makes a real, imperfect detector
    assert round(ours["map"], 3) == round(stats[0], 3)
    assert round(ours["map50"], 3) == round(stats[1], 3)
    assert round(ours["map75"], 3) == round(stats[2], 3)
    for k, row in enumerate(ours["per_class"]):
        assert row["class"] == ds.classes[k]
        if row["n_gt"]:
            one = _pycocotools(ann_file, dets, cat_ids=[k + 1])
            assert round(row["ap"], 3) == round(one[0], 3) and round(row["ap50"], 3) == round(one[1], 3)
    curves = ours["pr_curves"]
    assert len(curves["recall"]) == 101 and set(curves["precision"]) == {
        r["class"] for r in ours["per_class"] if r["n_gt"]
    }
    for p in curves["precision"].values():  # COCO's interpolated precision never rises with recall
        assert len(p) == 101 and all(a >= b for a, b in itertools.pairwise(p))

    perfect = coco_map(
        [(s.boxes, s.classes) for s in ds.samples],
        [(s.boxes, np.ones(len(s.boxes)), s.classes) for s in ds.samples],
        ds.classes,
    )
    assert perfect["map"] == pytest.approx(1.0) and perfect["map50"] == pytest.approx(1.0)
    empty = coco_map(
        [(s.boxes, s.classes) for s in ds.samples],
        [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)) for _ in ds.samples],
        ds.classes,
    )
    assert empty["map"] == 0.0 and empty["map50"] == 0.0


def test_iou_and_greedy_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[0, 0, 10, 5], [100, 100, 110, 110]])
    np.testing.assert_allclose(iou_matrix(a, b), [[0.5, 0], [0, 0]])
    # two candidates on one reference box: the higher score takes it, the other is unmatched
    match, iou = match_boxes(a, [0, 0], np.array([[1, 0, 10, 10], [0, 0, 10, 10]]), [0.4, 0.9], [0, 0])
    assert match.tolist() == [-1, 0] and iou[1] == 1.0
    match, _ = match_boxes(a, [0, 0], np.array([[0, 0, 10, 10]]), [0.9], [1])  # other class: no match
    assert match.tolist() == [-1]


@dataclass(frozen=True)
class Det:  # the fields box_agreement reads from bushu.detection.Detection
    box: tuple[float, float, float, float]
    score: float
    index: int


def test_box_agreement():
    ref = [[Det((0, 0, 10, 10), 0.9, 0), Det((20, 20, 40, 40), 0.8, 1)], [Det((5, 5, 50, 50), 0.7, 2)], []]
    same = box_agreement(ref, ref)
    assert same["agreement"] == 1.0 and same["score_drift"] == 0.0 and same["mean_iou"] == 1.0
    moved = [
        [Det((1, 0, 11, 10), 0.85, 0), Det((20, 20, 40, 40), 0.8, 0)],  # second box: wrong class
        [Det((5, 5, 50, 50), 0.75, 2), Det((60, 60, 70, 70), 0.3, 2)],
        [],
    ]  # one extra box
    r = box_agreement(ref, moved)
    assert (r["n_reference"], r["n_candidate"], r["matched"]) == (3, 4, 2)
    assert r["reference_matched"] == pytest.approx(2 / 3) and r["candidate_matched"] == pytest.approx(0.5)
    assert r["agreement"] == pytest.approx(0.5)
    assert r["score_drift"] == pytest.approx(0.05) and r["max_score_drift"] == pytest.approx(0.05)
    assert r["mean_iou"] == pytest.approx((9 * 10 / (11 * 10) + 1) / 2)
    assert box_agreement([[]], [[]])["agreement"] == 1.0
    with pytest.raises(ValueError):
        box_agreement(ref, ref[:2])
