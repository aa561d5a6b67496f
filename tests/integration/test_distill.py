"""`bushu optimize --distill` through the CLI: a narrower student of the lfw_subset face CNN (test_prune.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")


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


def test_narrow_student_learns_from_teacher(in_root, tmp_path, capsys):
    from bushu.cli import main

    out = tmp_path / "student"
    assert (
        main(
            [
                "optimize",
                str(in_root["artifact"]),
                "-o",
                str(out),
                "--distill",
                "narrow",
                "--width",
                "0.5",
                "--train",
                str(in_root["train"]),
                "--data",
                str(in_root["heldout"]),
                "--epochs",
                "6",
                "--no-bench",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    step = result["steps"][0]
    assert step["student"] == "narrow" and step["hard_labels"] and 0 < step["soft_weight"] < 1
    assert len(step["loss_per_epoch"]) == 6
    teacher_p, student_p = H.onnx_params(in_root["artifact"] / "model.onnx"), H.onnx_params(out / "model.onnx")
    assert student_p < 0.5 * teacher_p
    acc_t = H.heldout_accuracy(in_root["artifact"] / "model.onnx", in_root["heldout"])
    acc_s = H.heldout_accuracy(out / "model.onnx", in_root["heldout"])
    assert result["rows"][-1]["accuracy"] == pytest.approx(acc_s, abs=1e-6)
    assert acc_s >= acc_t - 10.0  # a half-width student recovers most of the teacher's accuracy


def test_unlabelled_images_use_soft_targets_only(in_root, tmp_path, capsys):
    from bushu.cli import main

    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted(in_root["train"].rglob("*.png")):
        shutil.copy(p, flat / f"{p.parent.name}-{p.name}")
    out = tmp_path / "student"
    assert (
        main(
            [
                "optimize",
                str(in_root["artifact"]),
                "-o",
                str(out),
                "--distill",
                "narrow",
                "--train",
                str(flat),
                "--epochs",
                "5",
                "--no-bench",
                "--json",
            ]
        )
        == 0
    )
    step = json.loads(capsys.readouterr().out)["steps"][0]
    assert step["hard_labels"] is False and step["soft_weight"] == 1.0
    assert step["loss_per_epoch"][-1] < step["loss_per_epoch"][0]


def test_distill_without_data_is_refused(in_root, tmp_path, capsys):
    from bushu.cli import main

    assert (
        main(["optimize", str(in_root["artifact"]), "-o", str(tmp_path / "o"), "--distill", "narrow", "--no-bench"])
        == 2
    )
    assert "distillation needs images" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_zoo_student_gets_a_new_head(in_root, tmp_path, capsys):
    """A named zoo model as the student: its ImageNet head is replaced by one with the teacher's 2 outputs."""
    from bushu.cli import main

    out = tmp_path / "mnv2"
    assert (
        main(
            [
                "optimize",
                str(in_root["artifact"]),
                "-o",
                str(out),
                "--distill",
                "mobilenet_v2",
                "--train",
                str(in_root["train"]),
                "--data",
                str(in_root["heldout"]),
                "--epochs",
                "5",
                "--no-bench",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    step = result["steps"][0]
    assert step["student"] == "mobilenet_v2" and "1280→2" in step["init"]
    assert result["rows"][-1]["params"] > 2_000_000  # MobileNetV2 without its 1000-class head
    assert result["rows"][-1]["accuracy"] == pytest.approx(
        H.heldout_accuracy(out / "model.onnx", in_root["heldout"]), abs=1e-6
    )
