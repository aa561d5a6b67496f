"""`bushu predict` and `bushu serve ART` driven as a user would (subprocess), checked against the Classifier.

The image model is a small ONNX Gemm classifier over 16x16 RGB with fixed random weights (its labels
vary from photo to photo); the inputs are real photos (bushu.testing.photos: crops and mirror images).
The text model is a TF-IDF + Gemm classifier written by hand in the artifact's own text format.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("skimage")

LABELS = ["ant", "bee", "cat", "dog", "eel"]
ENV = {**os.environ, "COLUMNS": "200"}


def bushu(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def _gemm_model(n_in: int, input_spec, w: np.ndarray, flatten: bool):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1)] if flatten else []
    nodes.append(helper.make_node("Gemm", ["flat" if flatten else "x", "W", "B"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_spec)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.zeros(len(LABELS), np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_image_artifact(out: Path) -> Path:
    from bushu.model.artifact import Artifact, Postprocess, Preprocess, write_artifact
    from bushu.spec import TensorSpec

    w = np.random.default_rng(0).standard_normal((3 * 16 * 16, len(LABELS))).astype(np.float32)
    art = Artifact(
        path=out,
        model_file="model.onnx",
        format="onnx",
        name="tiny",
        inputs=[TensorSpec("x", "float32", ("batch", 3, 16, 16))],
        outputs=[TensorSpec("logits", "float32", ("batch", len(LABELS)))],
        preprocess=Preprocess(resize=16, crop=16),
        postprocess=Postprocess(),
    )
    write_artifact(out, {"model.onnx": _gemm_model(768, ["batch", 3, 16, 16], w, True)}, art, labels=LABELS)
    return out


def write_text_artifact(out: Path) -> Path:
    from bushu.model.artifact import Artifact, Postprocess, Preprocess, write_artifact
    from bushu.spec import TensorSpec

    words = ["honey", "hive", "purr", "bark", "water", "colony", "sting", "fetch"]
    desc = {
        "kind": "tfidf",
        "vocabulary": {w: i for i, w in enumerate(words)},
        "idf": [1.0] * len(words),
        "token_pattern": r"(?u)\b\w\w+\b",
        "lowercase": True,
        "sublinear_tf": True,
    }
    w = np.zeros((len(words), len(LABELS)), np.float32)
    for word, label in [
        ("colony", 0),
        ("honey", 1),
        ("hive", 1),
        ("sting", 1),
        ("purr", 2),
        ("bark", 3),
        ("fetch", 3),
        ("water", 4),
    ]:
        w[words.index(word), label] = 3.0
    art = Artifact(
        path=out,
        model_file="model.onnx",
        format="onnx",
        name="tinytext",
        inputs=[TensorSpec("x", "float32", ("batch", len(words)))],
        outputs=[TensorSpec("logits", "float32", ("batch", len(LABELS)))],
        preprocess=Preprocess(
            kind="text",
            resize=None,
            crop=None,
            params={"features": "text_features.json", "files": ["text_features.json"]},
        ),
        postprocess=Postprocess(),
    )
    write_artifact(
        out,
        {
            "model.onnx": _gemm_model(len(words), ["batch", len(words)], w, False),
            "text_features.json": json.dumps(desc).encode(),
        },
        art,
        labels=LABELS,
    )
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    from bushu.testing.photos import write_imagenet_photos

    root = tmp_path_factory.mktemp("predict")
    photos = write_imagenet_photos(root / "photos", per_class=4)
    good = sorted(str(p) for p in photos.rglob("*.jpg"))
    (photos / "notes.txt").write_text("not an image")  # a non-image in an image folder
    whole = Path(good[0]).read_bytes()
    (photos / "daisy" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    return {
        "root": root,
        "photos": photos,
        "good": good,
        "art": write_image_artifact(root / "art"),
        "bad": {str(photos / "notes.txt"), str(photos / "daisy" / "truncated.jpg")},
    }


def rows_of(path: Path) -> list[dict]:
    from bushu.predict import read_rows

    return read_rows(path)


def expected(art: Path, paths: list[str], k: int = 5) -> dict[str, list[tuple[int, str, float]]]:
    from bushu.model.predict import Classifier

    with Classifier(art) as clf:
        return dict(zip(paths, clf.predict(paths, k=k), strict=True))


def check_rows(rows: list[dict], want: dict, bad: set[str]) -> None:
    by_input = {r["input"]: r for r in rows}
    assert len(by_input) == len(rows) == len(want) + len(bad), "one row per input, no repeats"
    for path, best in want.items():
        r = by_input[path]
        assert "error" not in r, r
        assert r["label"] == best[0][1]
        assert [t["label"] for t in r["top_k"]] == [b[1] for b in best]
        assert np.allclose([t["score"] for t in r["top_k"]], [b[2] for b in best], atol=1e-5)
    for path in bad:
        assert by_input[path]["error"] and "label" not in by_input[path]


def test_folder_to_jsonl_matches_classifier_with_error_rows(data, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = bushu("predict", str(data["art"]), str(data["photos"]), "-o", str(out), "--top-k", "3", "--batch-size", "4")
    assert proc.returncode == 1, proc.stderr  # two inputs failed
    assert "20 answered, 2 failed of 22 inputs" in proc.stdout
    rows = rows_of(out)
    check_rows(rows, expected(data["art"], data["good"], k=3), data["bad"])
    errors = {r["input"]: r["error"] for r in rows if "error" in r}
    assert "truncated" in errors[str(data["photos"] / "daisy" / "truncated.jpg")]
    assert "not an image we can read" in errors[str(data["photos"] / "notes.txt")]

    again = bushu("predict", str(data["art"]), str(data["photos"]), "-o", str(out), "--top-k", "3")
    assert again.returncode == 1 and "20 answered before" in again.stdout and "0 answered, 2 failed" in again.stdout
    assert len(rows_of(out)) == 22  # the error rows were retried, not repeated


def test_fail_fast_stops_at_the_first_error_row(data, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = bushu("predict", str(data["art"]), str(data["photos"]), "-o", str(out), "--fail-fast", "--batch-size", "1")
    assert proc.returncode == 1 and "stopped at the first failure" in proc.stdout, proc.stdout + proc.stderr
    rows = rows_of(out)
    assert "error" in rows[-1] and sum("error" in r for r in rows) == 1 and len(rows) < 22


def test_table_inputs_csv_and_parquet_outputs_and_workers(data, tmp_path):
    table = tmp_path / "inputs.csv"
    rel = [os.path.relpath(p, tmp_path) for p in data["good"]]
    table.write_text("id,path\n" + "".join(f"{i},{p}\n" for i, p in enumerate(rel)))
    want = expected(data["art"], data["good"])
    for out, extra in [(tmp_path / "out.csv", ("--threads", "1")), (tmp_path / "out.parquet", ("--workers", "2"))]:
        proc = bushu("predict", str(data["art"]), str(table), "-o", str(out), *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = rows_of(out)
        for r in rows:  # paths in the table are relative to it
            r["input"] = str(Path(r["input"]).resolve())
        check_rows(rows, {str(Path(p).resolve()): v for p, v in want.items()}, set())
        assert not out.with_name(out.name + ".partial.jsonl").exists()

    glob = str(data["photos"] / "**" / "daisy_*.jpg")
    globbed = bushu("predict", str(data["art"]), glob, "-o", str(tmp_path / "g.jsonl"))
    assert globbed.returncode == 0 and len(rows_of(tmp_path / "g.jsonl")) == 4


def test_bad_arguments_are_one_clear_line(data, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("id,paths\n1,a.jpg\n")  # "paths", not "path"
    art, photos, out = str(data["art"]), str(data["photos"]), str(tmp_path / "o.jsonl")
    cases = [
        ([photos, "-o", str(tmp_path / "o.xlsx")], "cannot tell the output format"),
        ([str(table), "--column", "pth", "-o", out], "has no column 'pth'; did you mean 'paths'?"),
        ([str(tmp_path / "missing"), "-o", out], "input not found"),
        ([photos, "-o", out, f"--ray=127.0.0.1:{_free_port()}"], "no Ray cluster answers at 127.0.0.1:"),
    ]
    for args, msg in cases:
        proc = bushu("predict", art, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.splitlines()[0].startswith("error: ")


def test_text_model_rows_and_empty_texts(tmp_path):
    art = write_text_artifact(tmp_path / "text_art")
    texts = tmp_path / "texts.jsonl"
    docs = ["the hive makes honey", "", "a dog will bark and fetch", "   ", "fish swim in water"]
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    out = tmp_path / "out.jsonl"
    proc = bushu("predict", str(art), str(texts), "-o", str(out))
    assert proc.returncode == 1, proc.stderr
    rows = {r["input"]: r for r in rows_of(out)}
    assert [rows[f"{texts}:{i}"].get("label") for i in (1, 3, 5)] == ["bee", "dog", "eel"]
    assert rows[f"{texts}:2"]["error"] == rows[f"{texts}:4"]["error"] == "empty text"


def test_resume_after_a_kill_gives_every_row_once(data, tmp_path):
    from bushu.testing.photos import write_imagenet_photos

    photos = write_imagenet_photos(tmp_path / "many", per_class=60, seed=1)  # 300 images
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "bushu",
        "predict",
        str(data["art"]),
        str(photos),
        "-o",
        str(out),
        "--batch-size",
        "2",
        "-q",
    ]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 60):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_bytes().count(b"\n")
    assert 0 < partial < 300, "the kill should land mid-run"
    with out.open("ab") as f:  # and a torn last line, as a kill mid-write leaves
        f.write(b'{"input": "' + str(photos).encode() + b"/daisy/daisy_0.j")
    again = bushu("predict", str(data["art"]), str(photos), "-o", str(out))
    assert again.returncode == 0, again.stderr
    rows = rows_of(out)
    inputs = [r["input"] for r in rows]
    assert len(inputs) == len(set(inputs)) == 300
    assert f"{partial:,} answered before" in again.stdout


def test_python_api_yields_typed_rows(data):
    from bushu.predict import Prediction, predict

    seen = []
    preds = list(
        predict(
            data["art"],
            [str(data["photos"] / "espresso")],
            top_k=2,
            batch_size=3,
            progress=lambda done, total, failed: seen.append((done, total, failed)),
        )
    )
    assert all(isinstance(p, Prediction) and p.ok and len(p.top_k) == 2 for p in preds) and len(preds) == 4
    want = expected(data["art"], [p.input for p in preds], k=2)
    assert [p.label for p in preds] == [want[p.input][0][1] for p in preds]
    assert seen[-1] == (4, 4, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_an_artifact_directory_in_place(data, tmp_path):
    pytest.importorskip("uvicorn")
    import urllib.request

    before = sorted(p.name for p in data["art"].iterdir())
    text_art = write_text_artifact(tmp_path / "text_art")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bushu",
            "serve",
            str(data["art"]),
            str(text_art),
            "--http-port",
            "0",
            "--grpc-port",
            "-1",
            "--metrics-port",
            "-1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "ready" in line or len(lines) > 200:
                break
        text = "".join(lines)
        assert "model tiny version 1: READY" in text and "model tinytext version 1: READY" in text, text
        assert "curl -s -H 'Content-Type: text/plain' --data-binary @note.txt" in text and "tinytext:classify" in text
        curl = next(line for line in lines if line.strip().startswith("curl ") and "tiny:classify" in line)
        url = curl.split("'")[1].split("?")[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1/models/tiny:classify")
        image = data["good"][5]
        req = urllib.request.Request(url + "?k=2", data=Path(image).read_bytes(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            got = json.loads(r.read())
        want = expected(data["art"], [image], k=2)[image]
        assert [p["label"] for p in got["predictions"]] == [w[1] for w in want]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert sorted(p.name for p in data["art"].iterdir()) == before  # nothing written into the artifact


@pytest.mark.slow
def test_ray_local_gives_the_same_rows(data, tmp_path):
    pytest.importorskip("ray.data")
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    copies = set(Path(tempfile.gettempdir()).glob("bushu-ray-artifact-*"))
    assert bushu("predict", str(data["art"]), str(data["photos"]), "-o", str(local)).returncode == 1
    proc = bushu(
        "predict", str(data["art"]), str(data["photos"]), "-o", str(on_ray), "--workers", "2", "--ray", timeout=600
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    a, b = ({r["input"]: r for r in rows_of(p)} for p in (local, on_ray))
    assert a.keys() == b.keys() and len(a) == 22
    for k in a:
        assert a[k].get("label") == b[k].get("label") and ("error" in a[k]) == ("error" in b[k])
        if "score" in a[k]:
            assert abs(a[k]["score"] - b[k]["score"]) < 1e-6
    # each actor's unpacked copy of the artifact is gone once its model is loaded
    assert set(Path(tempfile.gettempdir()).glob("bushu-ray-artifact-*")) <= copies


def test_detector_rows_carry_the_boxes_of_detector_predict(data, tmp_path):
    """A YOLOv8n exported by Ultralytics (random weights), its recorded score threshold set to 0 so that
    every image has boxes: `bushu predict` rows hold exactly what bushu.detection.Detector finds."""
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (scripts/setup.sh dev installs it)")
    from bushu.detection import Detector
    from bushu.import_.importer import import_model
    from bushu.model.artifact import META_FILE, _dump

    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "YOLO_OFFLINE": "1"}
    code = "from ultralytics import YOLO; YOLO('yolov8n.yaml').export(format='onnx', imgsz=320, simplify=False)"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    art = import_model(str(tmp_path / "yolov8n.onnx"), tmp_path / "yolo")
    art.postprocess.params.update(score=0.0, max_det=5)
    (art.path / META_FILE).write_text(_dump(art.to_meta()))
    photos = [p for p in data["good"] if "espresso" in p or "missile" in p]
    with Detector(art.path) as det:
        want = {p: [d.to_dict() for d in found] for p, found in zip(photos, det.predict(photos), strict=True)}
    for out, extra in [(tmp_path / "det.jsonl", ()), (tmp_path / "det.parquet", ("--workers", "2"))]:
        bad = str(data["photos"] / "daisy" / "truncated.jpg")
        proc = bushu("predict", str(art.path), *photos, bad, "-o", str(out), *extra)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        rows = {r["input"]: r for r in rows_of(out)}
        assert "truncated" in rows.pop(bad)["error"]
        assert rows.keys() == want.keys()
        for p, dets in want.items():
            got = rows[p]["detections"]
            assert len(got) == len(dets) == 5
            assert [d["label"] for d in got] == [d["label"] for d in dets]
            assert np.allclose([d["box"] for d in got], [d["box"] for d in dets], atol=1e-3)
            assert np.allclose([d["score"] for d in got], [d["score"] for d in dets], atol=1e-5)


def test_fused_preprocessing_keeps_a_real_models_top1(tmp_path):
    """bushu predict resizes and crops in one pass (processing.preprocess_image_fused); on 200 photos a real
    ImageNet model (EfficientNet-Lite0, bicubic) gives the same top-1 as through the two-step path."""
    pytest.importorskip("timm")
    from bushu.model.predict import Classifier
    from bushu.model.processing import load_image, preprocess_image, preprocess_image_fused
    from bushu.testing.photos import write_imagenet_photos

    proc = bushu("import", "efficientnet_lite0", "-o", str(tmp_path / "lite0"))
    assert proc.returncode == 0, proc.stderr
    photos = sorted(write_imagenet_photos(tmp_path / "photos", per_class=40).rglob("*.jpg"))
    assert len(photos) == 200
    with Classifier(tmp_path / "lite0") as clf:
        pp, be = clf.art.preprocess, clf.backend
        assert pp.interpolation == "bicubic"
        top1 = {}
        for fn in (preprocess_image, preprocess_image_fused):
            logits = []
            for i in range(0, len(photos), 20):
                x = np.stack([fn(load_image(p), pp) for p in photos[i : i + 20]])
                logits.append(be.infer({be.inputs[0].name: x})[be.outputs[0].name])
            top1[fn.__name__] = np.concatenate(logits).argmax(-1)
    assert (top1["preprocess_image"] == top1["preprocess_image_fused"]).all()


def test_fast_decode_rows_come_from_the_reduced_scale_decode(data, tmp_path):
    """--fast-decode reaches the decoder in one process and in worker processes: the rows are what the
    drafted pre-processing gives (the tiny model's 16 px resize lets every photo decode at 1/8), not the exact
    decode's; error rows stay error rows."""
    from bushu.model.artifact import Artifact
    from bushu.model.predict import Classifier, prepare_one
    from bushu.model.processing import top_k

    pp = Artifact.load(data["art"]).preprocess
    with Classifier(data["art"]) as clf:
        be = clf.backend
        x = np.stack([prepare_one(pp, p, fused=True, fast_decode=True) for p in data["good"]])
        logits = be.infer({be.inputs[0].name: x})[be.outputs[0].name]
    want = dict(zip(data["good"], top_k(logits, LABELS, k=5), strict=True))
    exact = expected(data["art"], data["good"])
    assert any(not np.allclose([s for *_, s in want[p]], [s for *_, s in exact[p]], atol=1e-5) for p in data["good"]), (
        "the drafted inputs give other scores than the exact decode (else this test checks nothing)"
    )
    for i, extra in enumerate([(), ("--workers", "2")]):
        out = tmp_path / f"out{i}.jsonl"
        proc = bushu("predict", str(data["art"]), str(data["photos"]), "-o", str(out), "--fast-decode", *extra)
        assert proc.returncode == 1, proc.stdout + proc.stderr  # the two bad inputs
        check_rows(rows_of(out), want, data["bad"])
