"""`bushu eval` on real data: sklearn's digits as PNG folders, a numpy-trained softmax regression
exported as an ONNX Gemm model. Metrics are checked against sklearn computed independently."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # noqa: E402

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PER_CLASS = 12


def bushu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=300)


def train_softmax(x: np.ndarray, y: np.ndarray, epochs: int = 40, lr: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A deliberately short full-batch gradient descent: good but not perfect, so the matrix has errors."""
    w, b = np.zeros((x.shape[1], 10)), np.zeros(10)
    onehot = np.eye(10)[y]
    for _ in range(epochs):
        z = x @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= lr * x.T @ (p - onehot) / len(x)
        b -= lr * (p - onehot).mean(0)
    return w.astype(np.float32), b.astype(np.float32)


def write_digits_artifact(out: Path, w: np.ndarray, b: np.ndarray) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bushu.model.artifact import Artifact, Postprocess, Preprocess, write_artifact
    from bushu.spec import TensorSpec

    w3 = np.vstack([w / 3] * 3).astype(np.float32)  # the RGB-converted PNG repeats the grey channel 3 times
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        ],
        "digits",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(w3, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    art = Artifact(
        path=out,
        model_file="model.onnx",
        format="onnx",
        name="digits",
        inputs=[TensorSpec("image", "float32", ("batch", 3, 8, 8))],
        outputs=[TensorSpec("logits", "float32", ("batch", 10))],
        preprocess=Preprocess(resize=8, crop=8, interpolation="nearest", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        postprocess=Postprocess(),
    )
    write_artifact(out, {"model.onnx": model.SerializeToString()}, art, labels=NAMES)
    return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    from PIL import Image

    root = tmp_path_factory.mktemp("digits")
    d = load_digits()
    x, y = d.images.reshape(len(d.images), -1) / 16.0, d.target
    w, b = train_softmax(x[:600], y[:600])
    data = root / "data"
    picked = []
    for c in range(10):
        idx = [i for i in range(900, len(y)) if y[i] == c][:PER_CLASS]
        (data / NAMES[c]).mkdir(parents=True)
        for i in idx:  # 8x8 glyphs, 0..16 -> 0..240, upscaled 4x as greyscale PNGs
            img = Image.fromarray((d.images[i] * 15).astype(np.uint8), "L").resize((32, 32), Image.NEAREST)
            img.save(data / NAMES[c] / f"{i}.png")
        picked += idx
    # one RGBA image (fully opaque) and one corrupt file; plus a stray non-image file
    i0 = picked[0]
    Image.fromarray((d.images[i0] * 15).astype(np.uint8), "L").convert("RGBA").resize((32, 32), Image.NEAREST).save(
        data / NAMES[y[i0]] / "rgba.png"
    )
    (data / "three" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (data / "README.txt").write_text("not an image")
    art = write_digits_artifact(root / "art", w, b)
    # the independent reference: the same maths in numpy on the original arrays, in the folder order
    order = sorted(range(10), key=lambda c: NAMES[c])
    files = []
    for c in order:
        ids = sorted([i for i in picked if y[i] == c], key=lambda i: f"{i}.png")
        files += [(i, c) for i in ids] + ([(i0, c)] if c == y[i0] else [])
    xi = np.asarray([d.images[i].reshape(-1) * 15 / 255.0 for i, _ in files])
    ref_pred = np.argmax(xi @ w.astype(np.float64) + b, axis=1)
    ref_true = np.asarray([c for _, c in files])
    return {"root": root, "data": data, "art": art, "y_true": ref_true, "y_pred": ref_pred}


@pytest.fixture(scope="module")
def evaluated(digits) -> dict:
    report = digits["root"] / "out" / "report.html"
    proc = bushu(
        "eval",
        str(digits["art"]),
        "--data",
        str(digits["data"]),
        "--batch-size",
        "7",
        "--report",
        str(report),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    res["_report"] = report
    return res


def test_metrics_equal_sklearn(digits, evaluated):
    yt, yp = digits["y_true"], digits["y_pred"]
    assert evaluated["n_images"] == len(yt) == 10 * PER_CLASS + 1
    assert 0.5 < np.mean(yt == yp) < 1.0, "the reference classifier should make some mistakes"
    assert evaluated["accuracy"] == pytest.approx(np.mean(yt == yp), abs=1e-12)
    labels = sorted(range(10), key=lambda c: NAMES[c])  # folders are read in name order
    assert evaluated["classes"] == [NAMES[c] for c in labels]
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
    got = evaluated["per_class"]
    np.testing.assert_allclose([g["precision"] for g in got], p, atol=1e-12)
    np.testing.assert_allclose([g["recall"] for g in got], r, atol=1e-12)
    np.testing.assert_allclose([g["f1"] for g in got], f, atol=1e-12)
    assert [g["support"] for g in got] == s.tolist()
    assert evaluated["confusion"]["matrix"] == confusion_matrix(yt, yp, labels=labels).tolist()
    assert evaluated["confusion"]["columns"] == evaluated["classes"]
    assert evaluated["top5"] >= evaluated["accuracy"]


def test_corrupt_file_skipped_and_listed(evaluated):
    assert evaluated["n_skipped"] == 1
    assert evaluated["skipped"][0]["path"].endswith("broken.png")


def test_report_png_and_recorded_metrics(digits, evaluated):
    html = evaluated["_report"].read_text()
    assert "Confusion matrix" in html and "data:image/png;base64" in html
    png = Path(evaluated["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import yaml

    meta = yaml.safe_load((digits["art"] / "bushu.yaml").read_text())
    assert meta["metrics"]["eval"]["accuracy"] == pytest.approx(evaluated["accuracy"])


def test_unknown_class_folder_is_a_clear_error(digits, tmp_path):
    from PIL import Image

    (tmp_path / "sevn").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "sevn" / "a.png")
    proc = bushu("eval", str(digits["art"]), "--data", str(tmp_path))
    assert proc.returncode == 2
    assert "'sevn'" in proc.stderr and "seven" in proc.stderr and "Traceback" not in proc.stderr


def test_label_map_renames_folders(digits, tmp_path):
    from PIL import Image

    (tmp_path / "sevn").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "sevn" / "a.png")
    (tmp_path / "map.yaml").write_text("sevn: seven\n")
    data = tmp_path
    proc = bushu(
        "eval",
        str(digits["art"]),
        "--data",
        str(data),
        "--label-map",
        str(tmp_path / "map.yaml"),
        "--no-record",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["per_class"][0]["label"] == "seven"


def test_exported_artifact_is_evaluated_with_its_own_runtime(digits, evaluated, tmp_path):
    """`bushu export` writes DIR/<format>/ artifacts holding .param/.mnn/.xml files: `bushu eval` without
    --backend runs each with the runtime that reads it, and gets the ONNX model's metrics."""
    want = {"ncnn": "ncnn", "mnn": "mnn", "openvino": "openvino"}
    for module in ("pnnx", "MNN", "openvino"):
        pytest.importorskip(module)
    proc = bushu("export", str(digits["art"]), "-f", ",".join(want), "-o", str(tmp_path), "--no-bench", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {r["format"]: r["status"] for r in json.loads(proc.stdout)["rows"]} == dict.fromkeys(want, "ok")
    for fmt, backend in want.items():
        proc = bushu("eval", str(tmp_path / fmt), "--data", str(digits["data"]), "--json", "--no-record")
        assert proc.returncode == 0, proc.stderr[-2000:]
        res = json.loads(proc.stdout)
        assert res["backend"] == backend
        assert res["confusion"] == evaluated["confusion"] and res["n_images"] == evaluated["n_images"], fmt
    # a backend that cannot read the file still says so, and how to fix it
    proc = bushu("eval", str(tmp_path / "ncnn"), "--data", str(digits["data"]), "--backend", "onnxruntime")
    assert proc.returncode == 2 and "cannot run this artifact" in proc.stderr and "leave --backend out" in proc.stderr


@pytest.mark.parametrize("layout", ["missing", "empty", "flat"])
def test_bad_dataset_dirs(digits, tmp_path, layout):
    from PIL import Image

    data = tmp_path / "d"
    if layout != "missing":
        data.mkdir()
    if layout == "flat":
        Image.new("RGB", (8, 8)).save(data / "x.jpg")
    proc = bushu("eval", str(digits["art"]), "--data", str(data))
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_numpy_fallback_equals_sklearn():
    from bushu.eval_ import _prfs

    rng = np.random.default_rng(0)
    yt, yp = rng.integers(0, 6, 300), rng.integers(0, 7, 300)
    labels = [0, 1, 2, 3, 4, 5]
    ours = np.asarray(_prfs(yt, yp, labels), float)
    ref = np.asarray(precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0), float)
    np.testing.assert_allclose(ours, ref, atol=1e-12)
