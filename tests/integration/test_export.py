"""bushu.export: every format that runs here is written, reloaded by its own backend and matches the source.

The source is a tiny real CNN imported with `bushu import`; the exported files are re-run here on
fresh inputs and compared with PyTorch eager (an independent reference), not only with the figures
the export recorded about itself. The int8 formats are tested on pretrained EfficientNet-Lite0,
calibrated on real photos and re-checked on other views of them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bushu.cli import main
from bushu.errors import UnknownNameError, UserInputError
from bushu.export import FORMATS, Format, export, resolve_formats
from bushu.model.artifact import Artifact
from bushu.runtime import load_backend
from bushu.runtime.registry import is_installed

TINY = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
        with torch.no_grad():  # non-trivial BN statistics, so folding BN is exercised
            m[1].running_mean.uniform_(-0.5, 0.5)
            m[1].running_var.uniform_(0.5, 2.0)
        return m.eval()
""")


def _import_tiny(root: Path) -> Path:
    (root / "tiny_export_net.py").write_text(TINY)
    (root / "labels.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert (
            main(
                [
                    "import",
                    "tiny_export_net:build",
                    "--input-shape",
                    "1,3,32,32",
                    "--labels",
                    "labels.txt",
                    "-o",
                    str(root / "art"),
                ]
            )
            == 0
        )
    finally:
        os.chdir(cwd)
        sys.modules.pop("tiny_export_net", None)
    return root / "art"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _import_tiny(tmp_path_factory.mktemp("tiny"))


def _eager(x: np.ndarray) -> np.ndarray:
    """The source model in PyTorch eager, rebuilt from its code: the independent reference."""
    import torch

    ns: dict = {}
    exec(TINY, ns)  # noqa: S102 - our own test model
    with torch.no_grad():
        return ns["build"]()(torch.from_numpy(x)).numpy()


def _recheck(out: Path, fmt: str, atol: float) -> None:
    """Load OUT/<fmt> as an artifact, run its model with the backend the format names, compare with eager."""
    art = Artifact.load(out / fmt)
    assert art.format == fmt and [s.name for s in art.inputs] == ["input"] and art.labels[:2] == ["class0", "class1"]
    x = np.random.default_rng(42).standard_normal((3, 3, 32, 32)).astype(np.float32)
    want = _eager(x)
    with load_backend(art.model_path, FORMATS[fmt].backend) as b:
        got = b.infer({"input": x})["logits"]
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, want, atol=atol, rtol=0, err_msg=fmt)
    assert art.metrics["parity"]["passed"] is True
    assert [s["command"] for s in art.provenance["steps"]][-2:] == ["import", "export"]


# -- the format table ---------------------------------------------------------------------------------
def test_resolve_formats_all_and_lists():
    every = resolve_formats("all")
    assert "aoti" not in every and {"onnx", "openvino", "ncnn", "mnn", "tflite", "coreml", "tensorrt"} <= set(every)
    assert resolve_formats("ncnn, onnx,ncnn") == ["ncnn", "onnx"]
    assert resolve_formats(["onnx", "trt"]) == ["onnx", "tensorrt"]
    assert resolve_formats("all,aoti")[-1] == "aoti"


def test_unknown_format_suggests_close_names():
    with pytest.raises(UnknownNameError) as err:
        resolve_formats("onnx,tflit")
    assert err.value.suggestions[0] == "tflite"
    with pytest.raises(UserInputError, match="no export format"):
        resolve_formats(" , ")


# -- real exports -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32_export(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    rows = export(tiny, "onnx,openvino,ncnn,mnn,onnx-fp16,snpe", out, samples=6)
    return out, {r["format"]: r for r in rows}


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "ncnn", "mnn"])
def test_fp32_formats_match_pytorch(fp32_export, fmt):
    out, rows = fp32_export
    if not is_installed(FORMATS[fmt].backend):
        pytest.skip(f"backend {FORMATS[fmt].backend} not installed")
    row = rows[fmt]
    assert row["status"] == "ok", row
    assert row["max_abs"] <= FORMATS[fmt].atol and row["top1_agreement"] == 1.0
    assert row["p50_ms"] > 0 and row["size_mb"] > 0
    _recheck(out, fmt, atol=1e-3 if fmt == "mnn" else 1e-4)


def test_fp16_and_profile_rows(fp32_export):
    out, rows = fp32_export
    fp16 = rows["onnx-fp16"]
    assert fp16["status"] == "ok" and fp16["precision"] == "fp16"
    assert 0 < fp16["max_abs"] < 5e-2  # really fp16: not bit-exact, but close
    assert (out / "onnx-fp16" / "model.onnx").stat().st_size < (out / "onnx" / "model.onnx").stat().st_size
    import onnx

    prof = onnx.load(str(out / "snpe" / "model.onnx"))
    assert prof.opset_import[0].version == 13
    assert "snpe-onnx-to-dlc" in rows["snpe"]["reason"]
    steps = Artifact.load(out / "snpe").provenance["steps"]
    assert steps[-1]["op_types"]["Conv"] == 2


def test_ncnn_runs_in_fp32_not_its_fp16_default(fp32_export):
    out, _ = fp32_export
    art = Artifact.load(out / "ncnn")
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with load_backend(art.model_path, "ncnn") as b32, load_backend(art.model_path, "ncnn", precision="fp16") as b16:
        assert b32.describe()["precision"] == "fp32"
        d32 = np.abs(b32.infer({"input": x})["logits"] - _eager(x)).max()
        d16 = np.abs(b16.infer({"input": x})["logits"] - _eager(x)).max()
    assert d32 < 1e-5 and d16 > 10 * d32  # the trap the export avoids


def test_reports_saved(fp32_export):
    out, rows = fp32_export
    report = json.loads((out / "export.json").read_text())
    assert [r["format"] for r in report["rows"]] == list(rows)
    md = (out / "export.md").read_text()
    assert md.count("\n| ") == len(rows) + 1 and "| ncnn |" in md and "top1_agreement" in md
    assert (out / "logs" / "ncnn.log").read_text().count("pnnx") > 0


# -- bad input ----------------------------------------------------------------------------------------
def _crash(ctx):  # a converter that dies in native code, as a segfaulting one would
    ctx.step("convert with the crashing tool")
    os.abort()


def _raise(ctx):
    ctx.step("parse the model")
    raise ValueError("converter bug: unexpected node")


@pytest.fixture
def broken_formats(monkeypatch):
    for name, fn in (("crashing", "_crash"), ("raising", "_raise")):
        monkeypatch.setitem(FORMATS, name, Format(name, f"{__name__}:{fn}", ".x", "test converter", backend=None))


def test_crashing_converter_is_captured_and_others_continue(tiny, tmp_path, broken_formats):
    rows = {r["format"]: r for r in export(tiny, "crashing,raising,onnx", tmp_path, bench=False)}
    crash = rows["crashing"]
    assert crash["status"] == "error" and "SIGABRT" in crash["reason"]
    assert crash["step"] == "convert with the crashing tool" and "convert with the crashing tool" in crash["reason"]
    assert Path(crash["log"]).is_file()
    raised = rows["raising"]
    assert raised["status"] == "error" and "ValueError: converter bug" in raised["reason"]
    assert raised["step"] == "parse the model"
    assert "Traceback" in Path(raised["log"]).read_text()
    assert rows["onnx"]["status"] == "ok"
    assert not (tmp_path / "crashing").exists()


def test_unsupported_op_names_op_and_target(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 3])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch"])
    graph = helper.make_graph([helper.make_node("Det", ["input"], ["output0"])], "det", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "det.onnx"))
    assert main(["import", str(tmp_path / "det.onnx"), "-o", str(tmp_path / "art")]) == 0
    rows = {r["format"]: r for r in export(tmp_path / "art", "ncnn,openvino,onnx", tmp_path / "out", bench=False)}
    for target in ("ncnn", "openvino"):
        assert rows[target]["status"] == "error"
        assert f"op='Det' is not supported by backend '{target}'" in rows[target]["reason"]
    assert rows["onnx"]["status"] == "ok"


def test_missing_reference_skips_torch_formats(tmp_path):
    from bushu.testing.golden import write_golden

    cases = write_golden(tmp_path / "g", names=["conv_relu"], torch=False)
    assert main(["import", str(cases[0].files[".onnx"]), "-o", str(tmp_path / "art")]) == 0
    rows = {r["format"]: r for r in export(tmp_path / "art", "torchscript,tensorrt", tmp_path / "out", bench=False)}
    assert rows["torchscript"]["status"] == "skipped" and "reference" in rows["torchscript"]["reason"]
    assert rows["tensorrt"]["status"] == "skipped"
    assert "tensorrt" in rows["tensorrt"]["reason"] or "GPU" in rows["tensorrt"]["reason"]


def test_bad_arguments(tiny, tmp_path):
    with pytest.raises(UserInputError, match="samples"):
        export(tiny, "onnx", tmp_path, samples=0)
    with pytest.raises(UserInputError, match="opset"):
        export(tiny, "onnx", tmp_path, opset=99)
    with pytest.raises(UserInputError, match="must differ"):
        export(tiny, "onnx", tiny)


def test_relative_paths_from_another_directory(tiny, tmp_path, monkeypatch):
    """Converters run in their scratch directory: relative artifact/out paths must still reach them."""
    shutil.copytree(tiny, tmp_path / "art")
    monkeypatch.chdir(tmp_path)
    rows = export("art", "ncnn,mnn", "out", samples=2)
    assert [(r["format"], r["status"]) for r in rows] == [("ncnn", "ok"), ("mnn", "ok")], rows
    assert (tmp_path / "out" / "ncnn" / "bushu.yaml").is_file() and (tmp_path / "out" / "mnn" / "bushu.yaml").is_file()


# -- formats from the PyTorch reference (slower: each imports torch and its converter) ------------------
@pytest.mark.slow
def test_torch_tflite_coreml_formats(tiny, tmp_path):
    rows = {r["format"]: r for r in export(tiny, "torchscript,pt2,tflite,coreml", tmp_path, samples=4)}
    for fmt in ("torchscript", "pt2", "tflite"):
        if rows[fmt]["status"] == "skipped":
            continue
        assert rows[fmt]["status"] == "ok", rows[fmt]
        _recheck(tmp_path, fmt, atol=1e-4)
    if rows["tflite"]["status"] == "ok":
        assert Artifact.load(tmp_path / "tflite").preprocess.layout == "NCHW"
    if rows["coreml"]["status"] != "skipped":
        assert rows["coreml"]["status"] == "exported" and "macOS" in rows["coreml"]["reason"]
        assert (tmp_path / "coreml" / "model.mlpackage" / "Manifest.json").is_file()


@pytest.mark.slow
def test_aoti_opt_in(tiny, tmp_path):
    rows = export(tiny, "aoti", tmp_path, samples=2, bench=False)
    assert rows[0]["status"] == "ok", rows[0]
    assert rows[0]["max_abs"] < 1e-4


# -- int8 for edge formats: a real pretrained model calibrated on real photos ---------------------------
def test_int8_needs_data_before_anything_runs(tiny, tmp_path):
    with pytest.raises(UserInputError, match="mnn-int8, tflite-int8 need calibration images") as err:
        export(tiny, "onnx,mnn-int8,tflite-int8", tmp_path)
    assert "--data" in err.value.hint
    assert not (tmp_path / "onnx").exists()


def test_int8_gate_names_the_output():
    from bushu.export._worker import _accuracy_problem, _agreement_problems
    from bushu.validate import agreement

    rng = np.random.default_rng(0)
    ref = {"logits": rng.standard_normal((20, 5)).astype(np.float32) * 5}
    got = {"logits": ref["logits"].copy()}
    assert _agreement_problems(FORMATS["mnn-int8"], ref, got, agreement(ref, got)) == []
    got["logits"][:4] = -got["logits"][:4]  # 4 of 20 samples now pick another class
    problems = _agreement_problems(FORMATS["mnn-int8"], ref, got, agreement(ref, got))
    assert len(problems) == 1 and problems[0].startswith("logits: top-1 agreement") and "90%" in problems[0]
    assert _accuracy_problem(ref, 80.0, 78.0, 50) == []  # one sample of 50 is 2 points
    assert "logits: accuracy" in _accuracy_problem(ref, 80.0, 70.0, 50)[0]


@pytest.fixture(scope="module")
def lite0(tmp_path_factory) -> Path:
    pytest.importorskip("bushu.import_.importer", reason="bushu import is not available")
    root = tmp_path_factory.mktemp("lite0")
    assert main(["import", "efficientnet_lite0", "-o", str(root / "art")]) == 0
    return root / "art"


@pytest.mark.slow
def test_int8_edge_formats_on_real_photos(lite0, tmp_path):
    """EfficientNet-Lite0 (pretrained) calibrated on real photos: each int8 export is really int8, agrees with
    the fp32 model on new views of the photos when re-run by its own backend, and keeps its accuracy."""
    from bushu.optimize.calibration import calibration_reader
    from bushu.testing.photos import write_imagenet_photos
    from bushu.validate import agreement, run_model

    data = write_imagenet_photos(tmp_path / "photos", per_class=8, seed=0)
    rows = {
        r["format"]: r
        for r in export(lite0, "openvino-int8,tflite-int8,mnn-int8,ncnn-int8", tmp_path / "out", data=data, samples=40)
    }
    assert rows["ncnn-int8"]["status"] == "skipped" and "ncnn2table" in rows["ncnn-int8"]["reason"]
    fp32_mb = lite0.joinpath("model.onnx").stat().st_size / 1e6
    # fresh views of the photos (other crops), run by each export's own backend, against the fp32 ONNX model
    fresh = calibration_reader(write_imagenet_photos(tmp_path / "fresh", per_class=6, seed=1), Artifact.load(lite0))
    want = run_model(lite0 / "model.onnx", fresh.feeds)
    for fmt in ("openvino-int8", "tflite-int8", "mnn-int8"):
        row = rows[fmt]
        if row["status"] == "skipped":
            continue
        assert row["status"] == "ok" and row["precision"] == "int8", row
        assert row["size_mb"] < 0.4 * fp32_mb, row  # int8 weights: about a quarter of fp32
        assert row["accuracy"] >= row["accuracy_onnx"] - 100 / 40 - 1e-6, row
        art = Artifact.load(tmp_path / "out" / fmt)
        assert art.metrics["parity"]["passed"] and art.provenance["steps"][-1]["calibration_samples"] == 40
        with load_backend(art.model_path, FORMATS[fmt].backend) as b:
            got = b.infer(fresh.feeds)
        agree = agreement(want, got)["logits"]
        assert agree["gate_agreement"] >= 0.9 and agree["top1_agreement"] >= 0.7, (fmt, agree)
    if rows["tflite-int8"]["status"] == "ok":  # full-integer: int8 IO and weights; the backend (de)quantizes
        from ai_edge_litert import interpreter as tfl

        it = tfl.Interpreter(model_path=str(tmp_path / "out" / "tflite-int8" / "model.tflite"))
        sig = it.get_signature_runner()
        assert sig.get_input_details()["args_0"]["dtype"] == np.int8
        assert sig.get_output_details()["output_0"]["dtype"] == np.int8
        convs = [o for o in it._get_ops_details() if o["op_name"] == "CONV_2D"]
        assert convs and all(it.get_tensor(o["inputs"][1]).dtype == np.int8 for o in convs)
        q = Artifact.load(tmp_path / "out" / "tflite-int8").provenance["steps"][-1]["io_quantization"]
        assert q["input"]["dtype"] == "int8" and q["logits"]["scale"] > 0
    if rows["openvino-int8"]["status"] == "ok":
        assert "FakeQuantize" in (tmp_path / "out" / "openvino-int8" / "model.xml").read_text()
        # quantized through bushu optimize's gate and fallback search; the attempts are recorded
        step = Artifact.load(tmp_path / "out" / "openvino-int8").provenance["steps"][-1]
        assert step["int8_attempts"][0] == "NNCF performance preset", step


def test_exported_artifacts_serve_as_is(fp32_export, tmp_path):
    """An exported artifact dropped into a model repository is served by its format's backend; tritonclient's
    answers match the source model in PyTorch eager."""
    tritonhttp = pytest.importorskip("tritonclient.http")
    from bushu.serve.app import start_server

    out, rows = fp32_export
    fmts = [f for f in ("openvino", "ncnn", "mnn") if rows[f]["status"] == "ok"]
    if not fmts:
        pytest.skip("no edge runtime installed")
    for f in fmts:
        shutil.copytree(out / f, tmp_path / "repo" / f"tiny-{f}" / "1")
    x = np.random.default_rng(7).standard_normal((2, 3, 32, 32)).astype(np.float32)
    want = _eager(x)
    with start_server(tmp_path / "repo") as srv:
        client = tritonhttp.InferenceServerClient(srv.http_url.removeprefix("http://"))
        for f in fmts:
            inp = tritonhttp.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=True)
            got = client.infer(f"tiny-{f}", [inp]).as_numpy("logits")
            np.testing.assert_allclose(got, want, atol=1e-3, rtol=0, err_msg=f)
