"""`bushu train` on boxed images (composited real photo cut-outs, bushu.testing.detection): a small run (2
categories, 128 px, MobileNetV2) checked by code that did not produce it: the artifact imports as a YOLO-layout
detector, `bushu eval` scores it on a fresh set well above an untrained head, and the served :detect answers with
the boxes `bushu eval`'s Detector finds. The full-size run (5 categories, --budget 10m) is bench/train_detection.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from bushu.cli import main
from bushu.model.artifact import Artifact

pytest.importorskip("skimage.data")
CATEGORIES = ["birds", "fruit"]
ARGS = ["--backbone", "mobilenet_v2", "--image-size", "128", "--trials", "2", "--budget", "3m", "--json"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    from bushu.testing.detection import write_detection_dataset

    root = tmp_path_factory.mktemp("dettrain")
    data = write_detection_dataset(root / "data", "voc", n_images=40, seed=3, categories=CATEGORIES)
    fresh = write_detection_dataset(root / "fresh", "coco", n_images=30, seed=77, categories=CATEGORIES)
    out = root / "art"
    assert main(["train", str(data), "-o", str(out), *ARGS]) == 0
    return {"root": root, "data": data, "fresh": fresh, "out": out, "art": Artifact.load(out)}


def test_artifact_is_a_yolo_layout_detector(trained):
    art = trained["art"]
    assert art.task == "detection" and art.labels == CATEGORIES
    assert (
        art.postprocess.params["decoder"] == "yolo" and art.postprocess.params["matched_by"] == "Ultralytics metadata"
    )
    assert art.preprocess.params["size"] == [128, 128] and art.preprocess.params["fit"] == "letterbox"
    s = art.metrics["train"]
    assert s["kind"] == "detection" and s["best"]["backbone"] == "mobilenet_v2" and s["trials"] >= 1
    assert s["n_test"] == 8 and 0.0 <= s["test_map"] <= s["test_map50"] <= 1.0
    assert art.metrics["parity"]["max_abs"] < 1e-2
    html = (trained["out"] / "report.html").read_text()
    assert "bushu train (detection)" in html and "Held-back split" in html and "precision-recall" in html
    assert (trained["out"] / "report.bad_cases.html").is_file()


def test_eval_on_a_fresh_set_beats_an_untrained_head(trained, capsys):
    """mAP@0.5 on images the training never saw, against the same network with its head untrained."""
    import torch

    from bushu.data.detection import read_detection_dataset
    from bushu.detection.evaluation import evaluate_detector
    from bushu.train.detect_model import ExportedDetector, detection_head

    capsys.readouterr()
    assert main(["eval", str(trained["out"]), "--data", str(trained["fresh"]), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["n_images"] == 30

    class TorchDetector:  # the untrained network through bushu's own decode + NMS, as eval runs the ONNX
        def __init__(self, module):
            from bushu.detection.detector import head_for

            self.module, self.head = module, head_for(trained["art"])

        def predict(self, images, score, iou, max_det):
            from bushu.detection.detector import prepare

            x, transforms = prepare(images, trained["art"].preprocess)
            with torch.no_grad():
                y = self.module(torch.from_numpy(x)).numpy()
            return self.head({"output0": y}, transforms, score, iou, max_det)

    torch.manual_seed(0)
    untrained = ExportedDetector("mobilenet_v2", detection_head("mobilenet_v2", 2, 64), 128)
    base = evaluate_detector(TorchDetector(untrained), read_detection_dataset(trained["fresh"]), CATEGORIES)
    assert base["map50"] < 0.05
    assert got["map50"] >= 0.2 and got["map50"] > base["map50"] + 0.15, (got["map50"], base["map50"])


def test_served_detect_answers_equal_the_detector(trained, tmp_path):
    from PIL import Image

    from bushu.detection import Detector
    from bushu.serve import add_to_repository, start_server

    repo = tmp_path / "repo"
    add_to_repository(repo, trained["art"], name="det")
    body = (trained["fresh"] / "images" / "scene_0001.jpg").read_bytes()
    with Detector(trained["art"]) as det:
        want = [
            d.to_dict() for d in det.predict([Image.open(trained["fresh"] / "images" / "scene_0001.jpg")], score=0.2)[0]
        ]
    assert want, "the trained detector finds something at score 0.2"
    with start_server(repo) as srv:
        req = urllib.request.Request(f"{srv.http_url}/v1/models/det:detect?score=0.2", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            out = json.loads(r.read())
        bad = urllib.request.Request(f"{srv.http_url}/v1/models/det:detect", data=b"not an image", method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=60)
        assert e.value.code == 400
    assert len(out["detections"]) == len(want)
    for g, w in zip(out["detections"], want, strict=True):
        assert g["label"] == w["label"] and g["score"] == pytest.approx(w["score"], abs=1e-4)
        assert np.allclose(g["box"], w["box"], atol=1e-2)


def test_bad_data_refused_before_training(trained, tmp_path, capsys):
    """A VOC set whose files spell a class two ways: refused with the file, and no artifact is written."""
    import shutil

    data = tmp_path / "voc"
    shutil.copytree(trained["data"], data)
    xml = next(p for p in sorted((data / "Annotations").glob("*.xml")) if "<name>birds</name>" in p.read_text())
    xml.write_text(xml.read_text().replace("<name>birds</name>", "<name>Birds</name>", 1))
    (data / "labels.txt").unlink()  # no class list: the names found are the classes
    code = main(["train", str(data), "-o", str(tmp_path / "art"), *ARGS])
    assert code != 0
    err = capsys.readouterr().err
    assert "'Birds', 'birds'" in err and "differ only in case" in err
    assert not (tmp_path / "art").exists()
