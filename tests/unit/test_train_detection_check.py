"""The detection data check of `bushu train`: what it fixes (listed, training goes on) and what it refuses, with
the file, before any training; and the anchor-free head's assignment and box-aware augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bushu.data.detection import DetectionDataset, DetectionSample, Problem
from bushu.errors import UserInputError
from bushu.train.detection import check_detection_data, split_detection


def _sample(name: str, boxes, classes, size=(320, 240)) -> DetectionSample:
    return DetectionSample(
        Path(f"/data/{name}.jpg"),
        size[0],
        size[1],
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(classes, np.int64),
    )


def _ds(samples, classes=("cat", "dog"), problems=()) -> DetectionDataset:
    return DetectionDataset(Path("/data"), "voc", list(classes), list(samples), list(problems))


GOOD = [_sample(f"g{i}", [[10, 10, 60, 60], [100, 100, 160, 150]], [0, 1]) for i in range(3)]


def test_negatives_counted_and_safe_fixes_listed():
    ds = _ds(
        [*GOOD, _sample("empty", [], [])],
        problems=[
            Problem(
                "/data/a.xml", "box [-5, 0, 50, 50] of 'cat' lies outside the 320x240 image; clipped to [0, 0, 50, 50]"
            ),
            Problem("/data/b.xml", "box [5, 5, 5, 40] of 'dog' has no area inside the 320x240 image; box left out"),
        ],
    )
    check = check_detection_data(ds, 256)
    assert check.negatives == 1 and check.images == 4 and check.boxes == {"cat": 3, "dog": 3}
    assert [(p["path"], p["action"]) for p in check.problems] == [
        ("/data/a.xml", "clipped"),
        ("/data/b.xml", "left out"),
    ]


@pytest.mark.parametrize(
    ("ds", "needles"),
    [
        (_ds([*GOOD[:1], _sample("x", [[0, 0, 9, 9]], [0])]), ["class 'dog' has 1 box", "at least 2"]),
        (_ds(GOOD, classes=("cat", "dog", "Cat")), ["'cat', 'Cat'", "differ only in case"]),
        (
            _ds(
                GOOD,
                problems=[
                    Problem("/data/c.xml", "class 'dgo' is not in labels.txt (did you mean 'dog'?); box left out")
                ],
            ),
            ["/data/c.xml", "did you mean 'dog'"],
        ),
        (_ds([*GOOD, _sample("tiny", [[1, 1, 8, 8]], [0], size=(40, 30))]), ["/data/tiny.jpg", "40x30", "too small"]),
    ],
)
def test_unsafe_problems_refused_with_the_file(ds, needles):
    with pytest.raises(UserInputError) as e:
        check_detection_data(ds, 320)
    for n in needles:
        assert n in str(e.value)
    assert "fix the annotations" in e.value.hint


def test_split_keeps_every_class_in_train_and_holds_back_a_test_split():
    samples = [_sample(f"s{i}", [[0, 0, 20, 20]], [0]) for i in range(18)] + [
        _sample("rare", [[0, 0, 20, 20]], [1]),
        _sample("rare2", [[0, 0, 9, 9]], [1]),
    ]
    for seed in range(5):
        train, val, test = split_detection(samples, 2, 0.2, 0.2, seed)
        assert len(train) + len(val) + len(test) == 20 and test and val
        assert {s.image for s in train}.isdisjoint({s.image for s in test + val})
        assert any(1 in s.classes for s in train)


def test_assignment_center_sampling_and_levels():
    from bushu.train.detect_model import assign, cell_centers

    centers, strides = cell_centers(256)
    assert len(centers) == 16 * 16 + 8 * 8
    small = [100.0, 100.0, 140.0, 140.0]  # 40 px: stride 16 only, cells within 1.5 strides of its centre
    large = [0.0, 0.0, 250.0, 200.0]  # 250 px: stride 32 only
    cls, target = assign(np.asarray([small, large], np.float32), np.asarray([0, 1]), centers, strides)
    pos_small, pos_large = np.flatnonzero(cls == 0), np.flatnonzero(cls == 1)
    assert set(strides[pos_small]) == {16} and set(strides[pos_large]) == {32}
    assert np.all(np.abs(centers[pos_small] - 120) < 24) and np.all(target[pos_small] == small)
    tiny, _ = assign(np.asarray([[3, 3, 5, 5]], np.float32), np.asarray([1]), centers, strides)
    assert (tiny == 1).sum() == 1  # no cell centre inside it: the nearest one takes it


def test_augmented_boxes_follow_the_pixels():
    from PIL import Image

    from bushu.train.detect_model import augment_view

    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (40, 20, 80, 60))  # a white square, exactly its box
    rng = np.random.default_rng(0)
    for _ in range(10):
        out, boxes, classes = augment_view(img, np.asarray([[40, 20, 80, 60]], np.float32), np.asarray([3]), 128, rng)
        a = np.asarray(out.convert("L")).astype(float)
        if len(boxes) == 0:
            continue
        x1, y1, x2, y2 = boxes[0]
        assert classes.tolist() == [3]
        inside = a[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
        assert inside.size and inside.mean() > a.mean() + 40  # the box lies on the bright square


def test_fine_tuning_trains_the_stride32_blocks_and_nothing_else_of_the_backbone():
    """Two epochs of fit_detection_head on maps of the frozen stride-16 part: every convolution of the stride-32
    blocks (``head.top``) moves, their batch norm (affine weights and running statistics) does not, and the
    exported graph's stride-16 part is the pretrained one."""
    torch = pytest.importorskip("torch")
    from bushu.train.detect_model import TOP_LR, ExportedDetector, assign, backbone_levels, cell_centers
    from bushu.train.detection import fit_detection_head

    size, n = 64, 8
    c4, c5, _, _ = backbone_levels("mobilenet_v2")
    pretrained4 = {k: v.clone() for k, v in c4.state_dict().items()}
    pretrained5 = {k: v.clone() for k, v in c5.state_dict().items()}
    torch.manual_seed(0)
    with torch.no_grad():
        f4 = c4(torch.rand(n, 3, size, size)).half().numpy()  # as feature_maps caches them
    samples = [_sample(f"t{i}", [[8 + i, 8, 40 + i, 44]], [i % 2], size=(size, size)) for i in range(n)]
    centers, strides = cell_centers(size)
    targets = [assign(s.boxes, s.classes, centers, strides) for s in samples]
    maps = {"f4": f4, "cls": np.stack([t[0] for t in targets]), "box": np.stack([t[1] for t in targets])}

    head, *_ = fit_detection_head("mobilenet_v2", size, 2, maps, maps, samples, lr=1e-2, seed=0, epochs=2)

    bn_types = torch.nn.modules.batchnorm._BatchNorm
    after = head.top.state_dict()
    convs = [f"{k}.weight" for k, m in head.top.named_modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [f"{k}.{p}" for k, m in head.top.named_modules() if isinstance(m, bn_types) for p in m.state_dict()]
    assert len(convs) >= 10 and len(norms) >= 40
    assert [k for k in convs if torch.equal(after[k], pretrained5[k])] == [], "every fine-tuned conv is trained"
    assert [k for k in norms if not torch.equal(after[k], pretrained5[k])] == [], "batch norm stays as pretrained"
    head.train()
    assert not any(m.training for m in head.top.modules() if isinstance(m, bn_types))
    groups = head.param_groups(1.0)
    assert groups[1]["lr"] == pytest.approx(TOP_LR) and len(groups[1]["params"]) == len(convs)
    exported = ExportedDetector("mobilenet_v2", head, size)
    assert all(torch.equal(v, pretrained4[k]) for k, v in exported.c4.state_dict().items())
    assert exported(torch.rand(1, 3, size, size)).shape == (1, 4 + 2, 4 * 4 + 2 * 2)


def test_pasted_objects_carry_their_boxes_and_cover_no_box():
    """Copy-paste: each pasted crop (a white square cut from another image) lands where its new box says, of its
    class, and overlaps the boxes already there (and the other pasted ones) by at most ``max_overlap``."""
    from PIL import Image

    from bushu.train.detect_model import object_pool, paste_objects

    src = Image.new("RGB", (200, 100), (0, 0, 0))
    src.paste((255, 255, 255), (40, 20, 80, 60))
    pool = object_pool([src], [np.asarray([[40, 20, 80, 60]], np.float32)], [np.asarray([2])], 100)
    assert len(pool) == 1 and pool[0][0].size == (20, 20) and pool[0][1] == 2  # scaled as the 100 px letterbox
    rng = np.random.default_rng(0)
    for _ in range(10):
        canvas = Image.new("RGB", (128, 128), (0, 0, 0))
        have = np.asarray([[0, 0, 30, 30]], np.float32)
        out, boxes, classes = paste_objects(canvas, have, np.asarray([0]), pool, rng, 3, max_overlap=0.1)
        assert classes[0] == 0 and np.array_equal(boxes[0], have[0]) and set(classes[1:].tolist()) <= {2}
        a = np.asarray(out.convert("L")).astype(float)
        for x1, y1, x2, y2 in boxes[1:].astype(int):
            assert a[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].mean() > 250  # the white crop is inside its box
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
                ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
                inter = max(iw, 0) * max(ih, 0)
                small = min(np.prod(boxes[i, 2:] - boxes[i, :2]), np.prod(boxes[j, 2:] - boxes[j, :2]))
                assert inter <= 0.1 * small + 1e-6


def test_object_pool_reads_images_one_at_a_time_and_keeps_a_bounded_sample():
    """A large data set does not sit in memory: the pool takes a generator and keeps at most ``limit`` crops, a
    seeded sample of all of them (the same on every run), each of its own box's class."""
    from PIL import Image

    opened = []

    def images():
        for k in range(10):
            opened.append(k)
            yield Image.new("RGB", (64, 64), (k * 20, 0, 0))

    boxes = [np.asarray([[4, 4, 20, 20], [30, 30, 60, 60]], np.float32)] * 10
    classes = [np.asarray([k, k]) for k in range(10)]
    from bushu.train.detect_model import object_pool

    pool = object_pool(images(), boxes, classes, 64, limit=5)
    assert opened == list(range(10)) and len(pool) == 5
    for crop, c in pool:  # each crop is the red level of the image it was cut from
        assert crop.getpixel((1, 1))[0] == c * 20
    again = object_pool(images(), boxes, classes, 64, limit=5)
    assert [c for _, c in again] == [c for _, c in pool] and len({c for _, c in pool}) > 1
