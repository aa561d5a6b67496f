"""`bushu optimize --lowrank` through the CLI on the lfw_subset face CNN (built in test_prune.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
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


def test_factorized_layers_are_exact_svd_products(in_root, tmp_path, capsys):
    """Each factorized layer's two weights multiply back to the best rank-r approximation of the original."""
    import torch

    from bushu.cli import main

    out = tmp_path / "lr"
    assert (
        main(
            [
                "optimize",
                str(in_root["artifact"]),
                "-o",
                str(out),
                "--lowrank",
                "0.25",
                "--lowrank-max-error",
                "10",
                "--epochs",
                "0",
                "--no-bench",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    step = result["steps"][0]
    chosen = [r for r in step["layers"] if r["chosen"]]
    assert chosen and step["params_after"] < step["params_before"]
    original = H_module(in_root)
    factorized = torch.load(str(out / "module.pt"), weights_only=False)
    for row in chosen:
        w = original.get_submodule(row["layer"]).weight.detach()
        pair = factorized.get_submodule(row["layer"])
        a, b = pair[0].weight.detach(), pair[1].weight.detach()
        prod = (b.reshape(b.shape[0], -1) @ a.reshape(a.shape[0], -1)).reshape(w.shape)
        u, s, vh = np.linalg.svd(w.reshape(w.shape[0], -1).numpy().astype(np.float64), full_matrices=False)
        r = row["rank"]
        best = (u[:, :r] * s[:r]) @ vh[:r]
        assert np.abs(prod.reshape(w.shape[0], -1).numpy() - best).max() < 1e-4
        assert r == int(np.ceil(0.25 * len(s)))
    assert H.onnx_params(out / "model.onnx") == result["rows"][-1]["params"] < result["rows"][0]["params"]


def H_module(in_root):
    import sys

    sys.path.insert(0, str(in_root["root"]))
    try:
        import facenet_model
    finally:
        sys.path.pop(0)
    return facenet_model.build()


def test_sensitivity_selection_and_finetune(in_root, tmp_path, capsys):
    from bushu.cli import main

    out = tmp_path / "lr-ft"
    assert (
        main(
            [
                "optimize",
                str(in_root["artifact"]),
                "-o",
                str(out),
                "--lowrank-energy",
                "0.8",
                "--lowrank-max-error",
                "0.3",
                "--train",
                str(in_root["train"]),
                "--data",
                str(in_root["heldout"]),
                "--epochs",
                "3",
                "--no-bench",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    layers = result["steps"][0]["layers"]
    for r in layers:  # the decision follows the measured sensitivity
        if "error" in r:
            assert r["chosen"] == (r["error"] <= 0.3)
    assert [r["model"] for r in result["rows"]] == ["original", "low-rank energy=0.8", "+ fine-tune"]
    acc = H.heldout_accuracy(out / "model.onnx", in_root["heldout"])
    assert result["rows"][-1]["accuracy"] == pytest.approx(acc, abs=1e-6)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lowrank", "1.2"], "between 0 and 1"),
        (["--lowrank", "0.5", "--lowrank-energy", "0.9"], "not both"),
        (["--lowrank", "0.9"], "no layer can be factorized"),
    ],
)
def test_bad_input(in_root, tmp_path, args, needle, capsys):
    from bushu.cli import main

    assert main(["optimize", str(in_root["artifact"]), "-o", str(tmp_path / "o"), *args, "--no-bench"]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
