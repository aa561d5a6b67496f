"""`bushu train` on real images (scikit-image's lfw_subset faces vs non-faces), small and fast:
one backbone at 64 px, 2 trials. The artifact is checked by code that did not produce it:
`bushu eval` (its own data loader) must reproduce the recorded validation accuracy and report,
and an interrupted-then-resumed search must keep its finished trials and features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bushu.cli import main
from bushu.model.artifact import Artifact
from bushu.train.samples import write_faces

ARGS = ["--backbone", "mobilenet_v2", "--image-size", "64", "--budget", "3m", "--trials", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train")
    data = write_faces(root / "faces", n_train=4, n_val=8)
    out = root / "art"
    assert main(["train", str(data), "-o", str(out), *ARGS, "--json"]) == 0
    return {"root": root, "data": data, "out": out}


def test_artifact_is_one_onnx_model_with_labels_preprocess_and_report(trained) -> None:
    art = Artifact.load(trained["out"])
    assert art.format == "onnx" and art.labels == ["face", "nonface"]
    assert art.inputs[0].shape == ("batch", 3, 64, 64) and art.outputs[0].shape == ("batch", 2)
    assert art.preprocess.crop == 64 and tuple(art.preprocess.mean) == (0.485, 0.456, 0.406)  # mobilenet_v2's
    t = art.metrics["train"]
    assert t["n_train"] == 8 and t["n_val"] == 16 and t["split"] == "given"
    assert t["trials"] == 2 and t["best"]["source"] == "mobilenet_v2"
    assert art.metrics["parity"]["passed"] and t["parity_max_abs"] < 1e-3
    assert sum(sum(r) for r in t["confusion"]["matrix"]) == 16
    assert len(t["mistakes"]) == round((1 - t["val_accuracy"]) * 16)
    html = (trained["out"] / "report.html").read_text()
    for part in ("Leaderboard", "Per class", "Confusion matrix", "Worst mistakes", "Data check"):
        assert part in html
    # pretrained features separate faces from non-faces with 4 examples each (random init would not: ASSETS B4)
    assert t["val_accuracy"] >= 0.8


def test_trained_model_keeps_its_pytorch_reference_and_exports_to_tflite(trained, tmp_path) -> None:
    """The PyTorch-based exports start from the artifact's torch.export program: a trained model keeps one
    (model.pt2, as `bushu import` does for a PyTorch source), so tflite is built, not skipped."""
    pytest.importorskip("litert_torch")
    from bushu.export import export

    art = Artifact.load(trained["out"])
    assert art.files["reference"] == "model.pt2" and art.file("reference").is_file()
    (row,) = export(art, "tflite", tmp_path / "exp", data=trained["data"] / "val", bench=False)
    assert row["status"] == "ok", row
    assert row["max_abs"] < 1e-4 and row["top1_agreement"] == 1.0, row


def test_eval_reproduces_the_recorded_accuracy(trained, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", str(trained["out"]), "--data", str(trained["data"] / "val"), "--json", "--no-record"]) == 0
    res = json.loads(capsys.readouterr().out)
    t = Artifact.load(trained["out"]).metrics["train"]
    assert res["n_images"] == t["n_val"]
    assert res["accuracy"] == pytest.approx(t["val_accuracy"], abs=5e-5)
    got = {(Path(m["path"]).name, m["pred"]) for m in res["mistakes"]}
    assert got == {(Path(m["path"]).name, m["pred"]) for m in t["mistakes"]}


def test_resume_keeps_finished_trials_and_cached_features(trained, capsys) -> None:
    out = trained["out"]
    before = Artifact.load(out).metrics["train"]
    capsys.readouterr()
    assert main(["train", str(trained["data"]), "-o", str(out), *ARGS[:-1], "3"]) == 0
    text = capsys.readouterr().out
    assert "resuming the search: 2 finished trial(s) kept" in text
    assert "from cache" in text
    t = Artifact.load(out).metrics["train"]
    assert t["trials"] == 3 and t["trials_this_run"] == 1
    assert {r["trial"] for r in before["leaderboard"]} < {r["trial"] for r in t["leaderboard"]}
    assert t["val_accuracy"] >= before["val_accuracy"] - 1e-9  # the best of 3 is at least the best of 2


def test_budget_too_small_is_a_clear_error_and_keeps_nothing_half_written(tmp_path, capsys) -> None:
    data = write_faces(tmp_path / "faces", n_train=3, n_val=3)
    out = tmp_path / "art"
    assert (
        main(
            [
                "train",
                str(data),
                "-o",
                str(out),
                "--backbone",
                "mobilenet_v2",
                "--image-size",
                "32",
                "--budget",
                "0.01s",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "the budget (0.01 s) ran out while extracting features" in err
    assert "Hint: give a larger --budget" in err and "Traceback" not in err
    assert not out.exists()
    # the features were cached: a rerun with a real budget does not extract them again
    assert (
        main(
            [
                "train",
                str(data),
                "-o",
                str(out),
                "--backbone",
                "mobilenet_v2",
                "--image-size",
                "32",
                "--budget",
                "2m",
                "--trials",
                "1",
            ]
        )
        == 0
    )
    assert "from cache" in capsys.readouterr().out
    assert np.isfinite(Artifact.load(out).metrics["train"]["val_accuracy"])


def test_other_class_adds_none_of_these(tmp_path) -> None:
    data = write_faces(tmp_path / "faces", n_train=4, n_val=4)
    out = tmp_path / "art"
    assert (
        main(
            [
                "train",
                str(data),
                "-o",
                str(out),
                "--backbone",
                "mobilenet_v2",
                "--image-size",
                "48",
                "--trials",
                "1",
                "--budget",
                "2m",
                "--other",
            ]
        )
        == 0
    )
    art = Artifact.load(out)
    assert art.labels == ["face", "nonface", "other"] and art.outputs[0].shape == ("batch", 3)
    t = art.metrics["train"]
    other = next(r for r in t["per_class"] if r["class"] == "other")
    assert other["support"] >= 1 and t["data_check"]["counts"]["other"] >= 10
    assert main(["train", str(data), "-o", str(out), "--kind", "text", "--other"]) == 2  # texts: a clear error
