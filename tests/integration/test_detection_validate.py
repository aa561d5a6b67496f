"""A detector's int8 and exports judged by its boxes (bushu.detection.validate), not by a classifier's top-1:
MediaPipe's SSD MobileNetV2 (real weights, converted to ONNX) on a handful of composited scenes.

mAP@0.5 on labelled data, box agreement with fp32 on images without boxes; an int8 calibrated on grey
images finds nothing, and the gate refuses it naming mAP@0.5."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bushu.errors import NotFoundError

pytest.importorskip("pycocotools")
pytest.importorskip("tflite2onnx", reason="tflite2onnx is not installed (pip install 'bushu[tflite2onnx]')")


def bushu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def ssd(tmp_path_factory):
    """(the SSD as an ONNX artifact, 8 labelled scenes, a flat folder of 8 other scenes without boxes)."""
    from PIL import Image

    from bushu.import_.importer import import_model
    from bushu.testing.detection import OIDV4_STAMPS, generate_scenes, write_detection_dataset
    from bushu.testing.objectron import objectron_ssd

    root = tmp_path_factory.mktemp("detval")
    try:
        model, labelmap = objectron_ssd(root)
    except NotFoundError as e:
        pytest.skip(str(e))
    art = import_model(str(model), root / "art", labels=labelmap.read_text().splitlines(), to_onnx=True)
    scenes = {"categories": OIDV4_STAMPS, "size": (320, 320), "scale": (90, 180), "objects": (1, 3)}
    labelled = write_detection_dataset(root / "yolo", "yolo", n_images=8, seed=3, **scenes)
    (root / "images").mkdir()
    for s in generate_scenes(8, seed=4, **scenes)[1]:
        Image.fromarray(s.image).save(root / "images" / f"{s.name}.jpg")
    return art, labelled, root / "images"


def test_int8_judged_by_map_on_labelled_data(ssd, tmp_path):
    from bushu.optimize import StaticInt8Config, quantize_int8

    art, labelled, _ = ssd
    result = quantize_int8(
        art, tmp_path / "int8", StaticInt8Config(calibration=labelled), data=labelled, measure=False, max_attempts=1
    )
    gate = result.metrics["optimize"]["validation"]["gate"]
    assert gate["metric"] == "mAP@0.5" and gate["outcome"] == "pass", gate["detail"]
    assert gate["map50_fp32"] > 0.8 and gate["map50_drop"] <= 1.0  # 0.960 -> 0.971 when written
    assert gate["box_agreement"]["n_reference"] >= 10


def test_int8_calibrated_on_grey_images_is_refused_naming_map(ssd, tmp_path):
    from PIL import Image

    art, labelled, _ = ssd
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(4):
        Image.new("RGB", (64, 64), (128, 128, 128)).save(grey / f"{i}.png")
    proc = bushu(
        "optimize",
        str(art.path),
        "-o",
        str(tmp_path / "bad"),
        "--quantize",
        "int8",
        "--calib",
        str(grey),
        "--data",
        str(labelled),
        "--no-fallback",
        "--no-bench",
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "fails its mAP@0.5 check" in proc.stderr and "fp32 0.9" in proc.stderr, proc.stderr[-2000:]


def test_export_judged_by_box_agreement_without_labels(ssd, tmp_path):
    art, _, images = ssd
    proc = bushu(
        "export",
        str(art.path),
        "--format",
        "mnn,onnx-fp16",
        "-o",
        str(tmp_path / "exp"),
        "--data",
        str(images),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["format"]: r for r in json.loads(proc.stdout)["rows"]}
    for fmt in ("mnn", "onnx-fp16"):
        if rows[fmt]["status"] == "skipped":
            continue
        det = rows[fmt]["detection"]
        assert det["metric"] == "box agreement" and rows[fmt]["status"] == "ok", det["detail"]
        assert rows[fmt]["box_agreement"] >= 0.95 and det["box_agreement"]["n_reference"] >= 10


def test_a_detector_that_moves_its_boxes_fails_box_agreement(ssd):
    """The judge itself: a candidate whose boxes are 40 px off matches few of fp32's (12% when written)."""
    from dataclasses import replace

    from bushu.detection import Detector
    from bushu.detection.validate import judge_detector

    art, _, images = ssd

    class Shifted(Detector):
        def predict(self, imgs, **kw):
            found = super().predict(imgs, **kw)
            return [[replace(d, box=tuple(v + 40 for v in d.box)) for d in image] for image in found]

    with Shifted(art) as moved:
        verdict = judge_detector(art, moved, images, "shifted")
    assert verdict["outcome"] == "fail" and verdict["detail"].startswith("box agreement with fp32 ")
    assert verdict["score"] < 0.5 and verdict["metric"] == "box agreement"
