"""`bushu optimize --quantize int8 --backend openvino` (NNCF) and composition with pruning, through the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("nncf")
pytest.importorskip("openvino")


def _helpers():
    spec = importlib.util.spec_from_file_location("_prune_helpers", Path(__file__).with_name("test_prune.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


H = _helpers()


@pytest.fixture(scope="module")
def facenet(tmp_path_factory):
    return H.shared_facenet(tmp_path_factory)


@pytest.fixture
def in_root(facenet, monkeypatch):
    monkeypatch.chdir(facenet["root"])
    monkeypatch.syspath_prepend(str(facenet["root"]))
    return facenet


def _ov_accuracy(xml: Path, heldout: Path) -> float:
    """Independent check: OpenVINO's own API (f32 hint, so int8 layers run int8 and the rest f32)."""
    import openvino as ov

    from bushu.model.artifact import Preprocess
    from bushu.model.processing import preprocess_images

    files = sorted(heldout.rglob("*.png"))
    x = preprocess_images(files, Preprocess(resize=round(H.SIZE / 0.875), crop=H.SIZE))
    y = np.array([H.CLASSES.index(p.parent.name) for p in files])
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    logits = compiled(x)[compiled.outputs[0]]
    return 100.0 * float(np.mean(logits.argmax(1) == y))


def test_openvino_int8_ir(facenet, tmp_path, capsys):
    import openvino as ov

    from bushu.cli import main

    out = tmp_path / "ov"
    art = facenet["artifact"]
    before = {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()}
    assert (
        main(
            [
                "optimize",
                str(art),
                "-o",
                str(out),
                "--quantize",
                "int8",
                "--backend",
                "openvino",
                "--calib",
                str(facenet["train"]),
                "--data",
                str(facenet["heldout"]),
                "--no-bench",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()} == before
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    meta = (out / "bushu.yaml").read_text()
    assert "format: openvino" in meta and "openvino-int8" in meta
    # the IR really is quantized: FakeQuantize nodes, and weights stored as int8
    ops = {op.get_type_name() for op in ov.Core().read_model(str(out / "model.xml")).get_ops()}
    assert "FakeQuantize" in ops
    rows = {r["model"]: r for r in result["rows"]}
    acc_fp32 = H.heldout_accuracy(art / "model.onnx", facenet["heldout"])
    acc_int8 = _ov_accuracy(out / "model.xml", facenet["heldout"])
    assert rows["fp32 (openvino)"]["accuracy"] == pytest.approx(acc_fp32, abs=1e-6)
    assert rows["int8 (openvino)"]["accuracy"] == pytest.approx(acc_int8, abs=1e-6)
    assert acc_int8 >= acc_fp32 - 3.0
    assert rows["int8 (openvino)"]["size_mb"] < rows["fp32 (openvino)"]["size_mb"]
    # the new artifact runs through bushu's own loader on the openvino backend
    assert main(["eval", str(out), "--data", str(facenet["heldout"]), "--backend", "openvino", "--json"]) == 0


def test_prune_then_onnxruntime_int8(in_root, tmp_path, capsys):
    from bushu.cli import main

    out = tmp_path / "p-int8"
    assert (
        main(
            [
                "optimize",
                str(in_root["artifact"]),
                "-o",
                str(out),
                "--prune",
                "0.3",
                "--quantize",
                "int8",
                "--calib",
                str(in_root["train"]),
                "--train",
                str(in_root["train"]),
                "--data",
                str(in_root["heldout"]),
                "--epochs",
                "2",
                "--no-bench",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in result["rows"]] == ["original", "prune 0.3 (structured)", "+ fine-tune", "+ int8"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert result["rows"][-1]["accuracy"] == pytest.approx(
        H.heldout_accuracy(out / "model.onnx", in_root["heldout"]), abs=1e-6
    )
    steps = [
        s["command"] for s in __import__("yaml").safe_load((out / "bushu.yaml").read_text())["provenance"]["steps"]
    ]
    assert steps == ["import", "optimize", "optimize"]
    assert (out / "report.html").read_text().count("<tr>") == 5


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--quantize", "fp16", "--backend", "openvino"], "quantizes to int8"),
        (["--quantize", "int8", "--backend", "openvino"], "needs calibration data"),
        (["--backend", "openvino"], "needs --quantize int8"),
    ],
)
def test_bad_input(facenet, tmp_path, args, needle, capsys):
    from bushu.cli import main

    assert main(["optimize", str(facenet["artifact"]), "-o", str(tmp_path / "o"), *args, "--no-bench"]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
