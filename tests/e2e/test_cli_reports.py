"""`bushu info/env/bench/eval --json` through the real CLI: JSON with the documented keys; bad input → exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper


def bushu(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=timeout)


def run_json(*args: str) -> dict:
    proc = bushu(*args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


LABELS = ["cat", "coffee", "rocket"]


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    """A tiny colour classifier (mean RGB → Gemm) as a bushu artifact, and real photos in class folders."""
    from PIL import Image

    from bushu.model.artifact import Artifact, Postprocess, Preprocess, write_artifact
    from bushu.spec import TensorSpec

    root = tmp_path_factory.mktemp("reports")
    n = helper.make_node
    w = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]], np.float32)
    graph = helper.make_graph(
        [n("GlobalAveragePool", ["image"], ["g"]), n("Flatten", ["g"], ["f"]), n("Gemm", ["f", "W", "B"], ["logits"])],
        "colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.zeros(3, np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    a = Artifact(
        path=root / "art",
        model_file="model.onnx",
        format="onnx",
        name="colour",
        inputs=[TensorSpec("image", "float32", ("batch", 3, 32, 32))],
        outputs=[TensorSpec("logits", "float32", ("batch", 3))],
        preprocess=Preprocess(resize=36, crop=32),
        postprocess=Postprocess(top_k=3),
        provenance={"source": "hand-built for the test"},
    )
    a.add_step("test-build")
    a = write_artifact(root / "art", {"model.onnx": model.SerializeToString()}, a, labels=LABELS)

    skdata = pytest.importorskip("skimage.data")
    data = root / "data"
    for label, photo in (("cat", "chelsea"), ("coffee", "coffee"), ("rocket", "rocket")):
        (data / label).mkdir(parents=True)
        Image.fromarray(getattr(skdata, photo)()).save(data / label / f"{photo}.jpg")
    Image.fromarray(skdata.camera()).save(data / "cat" / "camera_grey.png")  # greyscale photo
    return {"art": a.path, "onnx": a.model_path, "data": data, "root": root}


def test_info_json(art):
    info = run_json("info", str(art["art"]))
    assert {
        "path",
        "name",
        "format",
        "inputs",
        "outputs",
        "size_bytes",
        "params",
        "flops",
        "macs",
        "flops_by_op",
        "flops_not_counted",
        "preprocess",
        "postprocess",
        "labels",
        "provenance",
        "metrics",
    } <= set(info)
    assert info["params"] == 9 + 3
    assert info["flops_by_op"]["Gemm"]["macs"] == 9
    assert info["inputs"][0]["shape"] == ["batch", 3, 32, 32]
    assert info["provenance"]["steps"][0]["command"] == "test-build"
    plain = run_json("info", str(art["onnx"]))
    assert plain["kind"] == "file" and plain["flops"] == info["flops"]
    io = lambda specs: [(s["name"], s["dtype"], s["shape"]) for s in specs]  # noqa: E731 - a plain file's are annotated
    assert io(plain["inputs"]) == io(info["inputs"])


def test_env_json():
    env = run_json("env")
    assert {"cpu", "memory", "os", "python", "gpu", "backends", "versions"} <= set(env)
    assert {"model", "physical_cores", "logical_cores", "isa"} <= set(env["cpu"])
    assert env["backends"]["onnxruntime"]["installed"] is True


def test_bench_json(art):
    out = run_json(
        "bench",
        str(art["art"]),
        "--backend",
        "onnxruntime",
        "--batch",
        "1,2",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--duration",
        "0",
    )
    assert {"model", "env", "results"} <= set(out)
    rows = out["results"]
    assert [(r["backend"], r["batch"], r["status"]) for r in rows] == [
        ("onnxruntime", 1, "ok"),
        ("onnxruntime", 2, "ok"),
    ]
    for r in rows:
        assert {"p50_ms", "p99_ms", "throughput", "peak_rss_mb", "precision", "threads", "runs"} <= set(r)
        assert r["p50_ms"] > 0 and r["throughput"] > 0
    info = run_json("info", str(art["art"]))
    assert len(info["metrics"]["bench"]["rows"]) == 2


def test_eval_json_on_real_photos(art):
    res = run_json("eval", str(art["art"]), "--data", str(art["data"]))
    assert {
        "accuracy",
        "top1",
        "top5",
        "n_images",
        "n_skipped",
        "classes",
        "per_class",
        "macro",
        "confusion",
        "env",
    } <= set(res)
    assert res["n_images"] == 4 and res["classes"] == LABELS
    assert sum(map(sum, res["confusion"]["matrix"])) == 4
    assert res["top5"] == 1.0  # three classes: every label is in the top 3
    assert {"class", "label", "precision", "recall", "f1", "support"} <= set(res["per_class"][0])


@pytest.mark.parametrize(
    "args, expect",
    [
        (("info", "{root}/missing"), "not found"),
        (("info", "{root}/trunc.onnx"), "trunc.onnx"),
        (("bench", "{art}", "--backend", "onnxrt"), "did you mean 'onnxruntime'"),
        (("bench", "{art}", "--batch", "x"), "--batch"),
        (("eval", "{art}", "--data", "{root}/nodata"), "not found"),
        (("eval", "{onnx}", "--data", "{data}"), "pre-processing"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(art, args, expect):
    (art["root"] / "trunc.onnx").write_bytes(art["onnx"].read_bytes()[:60])
    proc = bushu(*(a.format(**{k: str(v) for k, v in art.items()}) for a in args))
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_eval_imported_imagenet_model_on_real_photos(tmp_path):
    """A real pretrained model on the photos that ship with scikit-image/-learn, folders named after
    ImageNet labels (an underscore stands for a space)."""
    pytest.importorskip("bushu.import_.importer", reason="bushu import is not available")
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image
    from sklearn.datasets import load_sample_images

    proc = bushu("import", "efficientnet_lite0", "-o", str(tmp_path / "art"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "photos"
    china = next(im for f, im in zip(load_sample_images().filenames, load_sample_images().images) if "china" in f)
    for folder, img in (
        ("Egyptian_cat", skdata.chelsea()),
        ("espresso", skdata.coffee()),
        ("missile", skdata.rocket()),
        ("palace", china),
    ):
        (data / folder).mkdir(parents=True)
        Image.fromarray(img).save(data / folder / "photo.jpg")
    res = run_json("eval", str(tmp_path / "art"), "--data", str(data), "--report", str(tmp_path / "r.html"))
    recall = {p["class"]: p["recall"] for p in res["per_class"]}
    assert [p["label"] for p in res["per_class"]] == ["Egyptian cat", "espresso", "missile", "palace"]
    assert recall["espresso"] == 1.0 and recall["palace"] == 1.0, res["mistakes"]
    assert res["top5"] >= 0.75, res["mistakes"]
    assert (tmp_path / "r.html").is_file()
