"""The torch backend runs the rebuilt source module eagerly when the .pt2 says how, else the exported program."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bushu.import_.importer import import_model  # noqa: E402
from bushu.import_.onnx import save_reference  # noqa: E402
from bushu.runtime import load_backend  # noqa: E402

TINY = textwrap.dedent("""
    import torch

    class Tiny(torch.nn.Module):
        input_shape = (1, 3, 16, 16)

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))

    def make():
        return Tiny()  # random init: the weights must come from the .pt2, not from here
""")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    (d / "tinymod_te.py").write_text(TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        art = import_model("tinymod_te:make", d / "art")
    return d, art


def _run(path, x, **options):
    with load_backend(path, "torch", **options) as b:
        return b.infer({"input": x})["output0"], b.describe()


def test_callable_runs_eagerly_with_the_program_weights(tiny, monkeypatch):
    d, art = tiny
    monkeypatch.chdir(d)
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    eager, desc = _run(art.file("reference"), x)
    assert desc["runs"] == "eager tinymod_te:make", desc
    exported, desc_x = _run(art.file("reference"), x, mode="exported")
    assert desc_x["runs"].startswith("exported program")
    program = torch.export.load(str(art.file("reference")))
    with torch.no_grad():
        want = program.module()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(eager, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exported, want, rtol=1e-5, atol=1e-5)
    with load_backend(art.path / art.model_file, "onnxruntime") as ort:
        np.testing.assert_allclose(eager, ort.infer({"input": x})["output0"], rtol=1e-3, atol=1e-4)


def test_falls_back_to_the_program_when_the_module_is_gone(tiny, monkeypatch, tmp_path):
    """Run from elsewhere: the callable cannot be imported, so the exported program runs (and says why)."""
    _, art = tiny
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "tinymod_te", raising=False)
    x = np.ones((1, 3, 16, 16), np.float32)
    out, desc = _run(art.file("reference"), x)
    assert desc["runs"].startswith("exported program") and "ModuleNotFoundError" in desc["eager_unavailable"]
    assert out.shape == (1, 4)
    from bushu.errors import ModelLoadError, UnknownNameError

    with pytest.raises(ModelLoadError, match="cannot run model.pt2 eagerly"):
        load_backend(art.file("reference"), "torch", mode="eager")
    with pytest.raises(UnknownNameError, match="exported"):
        load_backend(art.file("reference"), "torch", mode="exportd")


def test_old_pt2_without_recipe_runs_the_program(tiny, tmp_path):
    _, art = tiny
    with load_backend(art.file("reference"), "torch", mode="exported") as b:
        inputs, outputs = b.inputs, b.outputs
    program = torch.export.load(str(art.file("reference")))
    old = save_reference(program, [np.zeros((2, 3, 16, 16), np.float32)], tmp_path / "old.pt2", inputs, outputs)
    out, desc = _run(old, np.ones((2, 3, 16, 16), np.float32))
    assert desc["runs"].startswith("exported program") and "records no source module" in desc["eager_unavailable"]
    assert out.shape == (2, 4)


def test_zoo_model_runs_eagerly_and_matches_the_source(tmp_path):
    from bushu.model import zoo

    art = import_model("mobilenet_v2", tmp_path / "mv2")
    x = np.random.default_rng(2).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with load_backend(art.file("reference"), "torch") as b:
        got, desc = b.infer({"input": x})["logits"], b.describe()
    assert desc["runs"] == "eager zoo:mobilenet_v2"
    module, _ = zoo.build("mobilenet_v2")
    with torch.no_grad():
        want = module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with load_backend(art.path / art.model_file, "onnxruntime") as ort:
        np.testing.assert_allclose(got, ort.infer({"input": x})["logits"], rtol=1e-3, atol=1e-3)


def test_compile_is_opt_in_and_gives_the_same_outputs(tiny, monkeypatch):
    d, art = tiny
    monkeypatch.chdir(d)
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    plain, desc = _run(art.file("reference"), x)
    compiled, desc_c = _run(art.file("reference"), x, compile=True)
    assert desc["compiled"] is False and desc_c["compiled"] is True
    np.testing.assert_allclose(compiled, plain, rtol=1e-4, atol=1e-5)
