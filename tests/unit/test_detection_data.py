"""The composited detection set (bushu.testing.detection) read back through all three annotation formats,
and the readers' problem entries for bad annotations."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bushu.data.detection import detect_format, read_detection_dataset
from bushu.errors import UserInputError
from bushu.testing.stamps import STAMPS_DIR

pytestmark = pytest.mark.skipif(not STAMPS_DIR.is_dir(), reason="apt-get install tuxpaint-stamps-default")

N = 12


@pytest.fixture(scope="module")
def scenes():
    from bushu.testing.detection import generate_scenes

    return generate_scenes(N, seed=3)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from bushu.testing.detection import FORMATS, write_detection_dataset

    root = tmp_path_factory.mktemp("det")
    return {f: write_detection_dataset(root / f, f, n_images=N, seed=3) for f in FORMATS}


def test_generator_is_deterministic_with_exact_alpha_boxes(scenes):
    from bushu.testing.detection import generate_scenes

    classes, again = generate_scenes(N, seed=3)
    assert classes == scenes[0]
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes) for a, b in zip(again, scenes[1]))
    other = generate_scenes(N, seed=4)[1]
    assert not all(np.array_equal(a.boxes, b.boxes) for a, b in zip(other, scenes[1]))
    n = sum(len(s.boxes) for s in scenes[1])
    assert N <= n <= 4 * N and len({c for s in scenes[1] for c in s.classes.tolist()}) >= 4
    for s in scenes[1]:
        assert s.image.shape == (240, 320, 3)
        b = s.boxes
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1]) and b.min() >= 0
        assert np.all(b[:, 2] <= 320) and np.all(b[:, 3] <= 240)


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_each_format_reads_back_the_generated_boxes(fmt, datasets, scenes):
    classes, truth = scenes
    assert detect_format(datasets[fmt]) == fmt
    ds = read_detection_dataset(datasets[fmt])
    assert ds.format == fmt and ds.classes == classes and ds.problems == []
    assert [s.image.stem for s in ds.samples] == [t.name for t in truth]
    for s, t in zip(ds.samples, truth):
        assert (s.width, s.height) == (320, 240)
        np.testing.assert_allclose(s.boxes, t.boxes, atol=1e-3)  # YOLO writes 6 decimals of the normalised box
        np.testing.assert_array_equal(s.classes, t.classes)


def test_bad_yolo_input_is_listed_and_the_rest_is_read(datasets, tmp_path):
    d = tmp_path / "yolo"
    shutil.copytree(datasets["yolo"], d)
    labels = sorted((d / "labels").glob("*.txt"))
    # outside, unknown class, garbage; then a box 0.0003 px past the left edge (rounding): clipped, not a problem
    labels[0].write_text("0 0.95 0.5 0.2 0.2\n42 0.5 0.5 0.1 0.1\nnot a box\n1 0.099999 0.5 0.2 0.1\n")
    (d / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (d / "images" / labels[1].with_suffix(".jpg").name).write_bytes(b"\xff\xd8 not a jpeg")
    ds = read_detection_dataset(d)
    reasons = [p.reason for p in ds.problems]
    assert len(ds.samples) == N - 1 and len(ds.problems) == 5, reasons
    first = ds.samples[0]
    np.testing.assert_allclose(first.boxes, [[272, 96, 320, 144], [0, 108, 64, 132]], atol=1e-3)  # both clipped
    assert any("outside the 320x240 image; clipped to [272, 96, 320, 144]" in r for r in reasons)
    assert any("class id 42 is not one of the 10 classes" in r for r in reasons)
    assert any("expected 'class cx cy w h'" in r and "not a box" in r for r in reasons)
    assert any(p.path.endswith("orphan.txt") and "label file without its image" in p.reason for p in ds.problems)
    assert any("does not decode" in r for r in reasons)


def test_bad_coco_and_voc_input(datasets, tmp_path):
    c = tmp_path / "coco"
    shutil.copytree(datasets["coco"], c)
    ann = c / "annotations" / "instances.json"
    doc = json.loads(ann.read_text())
    doc["annotations"][0]["category_id"] = 99
    doc["annotations"][1]["bbox"] = [-10, -10, 30, 30]
    doc["images"][2]["file_name"] = "gone.jpg"
    ann.write_text(json.dumps(doc))
    ds = read_detection_dataset(c)
    reasons = [p.reason for p in ds.problems]
    assert len(ds.samples) == N - 1 and len(ds.problems) == 3, reasons
    assert any("category id 99 is not among the categories" in r for r in reasons)
    assert any("clipped to [0, 0, 20, 20]" in r for r in reasons)
    assert any("gone.jpg is missing" in r for r in reasons)

    v = tmp_path / "voc"
    shutil.copytree(datasets["voc"], v)
    xmls = sorted((v / "Annotations").glob("*.xml"))
    xmls[0].write_text(xmls[0].read_text().replace("<name>", "<name>x", 1))
    (v / "JPEGImages" / xmls[1].with_suffix(".jpg").name).unlink()
    xmls[2].write_text("<annotation><object>")
    ds = read_detection_dataset(v)
    reasons = [p.reason for p in ds.problems]
    assert len(ds.samples) == N - 2 and len(ds.problems) == 3, reasons
    assert any("is not in labels.txt" in r for r in reasons)
    assert any("label file without its image" in r for r in reasons)
    assert any("not a VOC annotation" in r for r in reasons)


def test_a_folder_in_no_known_layout_names_the_layouts(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(UserInputError) as e:
        read_detection_dataset(tmp_path)
    assert "data.yaml" in e.value.hint and "Annotations" in e.value.hint and "instances.json" in e.value.hint


def test_categories_as_stamp_files():
    from bushu.errors import NotFoundError
    from bushu.testing.detection import OIDV4_STAMPS, generate_scenes

    classes, scenes = generate_scenes(3, seed=0, categories=OIDV4_STAMPS, size=(320, 320), scale=(90, 180))
    assert classes == ["Car", "Dog", "Mug", "Camera"] and all(len(s.boxes) for s in scenes)
    with pytest.raises(NotFoundError, match="nothing/here.png"):
        generate_scenes(1, categories={"x": ["nothing/here.png"]})
