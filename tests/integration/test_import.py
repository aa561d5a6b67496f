"""`bushu import` from every source kind, checked against PyTorch itself and torchvision's reference model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bushu.cli import main  # noqa: E402
from bushu.errors import ToleranceError  # noqa: E402
from bushu.model.artifact import Artifact  # noqa: E402
from bushu.runtime import load_backend  # noqa: E402

CATS = {"tabby", "tiger cat", "Egyptian cat", "lynx", "Persian cat"}


class Tiny(torch.nn.Module):
    """conv → pool → linear, 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class Noisy(torch.nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)  # differs between PyTorch and ONNX Runtime by construction


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory) -> Artifact:
    assert main(["import", "mobilenet_v2", "-o", str(tmp_path_factory.mktemp("zoo") / "mv2")]) == 0
    return Artifact.load(tmp_path_factory.getbasetemp() / "zoo0" / "mv2")


def test_zoo_model_matches_torchvision_reference_on_a_real_photo(mobilenet):
    """The ONNX graph equals torchvision's own MobileNetV2 loaded with the shipped weights, and sees a cat."""
    import torchvision
    from skimage import data as skdata

    from bushu.model import zoo
    from bushu.model.processing import preprocess_images

    ref = torchvision.models.mobilenet_v2()
    ref.load_state_dict(torch.load(zoo.weights_path(zoo.get("mobilenet_v2")), weights_only=True))
    x = preprocess_images([skdata.chelsea()], mobilenet.preprocess)
    with torch.no_grad():
        want = ref.eval()(torch.from_numpy(x)).numpy()
    with load_backend(mobilenet.model_path, "onnxruntime") as be:
        got = be.infer({"input": x})["logits"]
    assert np.abs(got - want).max() < 1e-3
    assert mobilenet.labels[int(got.argmax())] in CATS
    assert len(mobilenet.labels) == 1000


def test_artifact_records_io_provenance_parity_and_reference(mobilenet):
    assert mobilenet.inputs[0].shape == ("batch", 3, 224, 224)
    assert mobilenet.outputs[0].name == "logits"
    assert mobilenet.provenance["source_kind"] == "zoo"
    assert mobilenet.provenance["steps"][0]["command"] == "import"
    parity = mobilenet.metrics["parity"]
    assert parity["passed"] and parity["outputs"][0]["max_abs"] < 1e-4
    assert mobilenet.file("reference").name == "model.pt2"


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_dynamic_batch(mobilenet, backend):
    path = mobilenet.model_path if backend == "onnxruntime" else mobilenet.file("reference")
    with load_backend(path, backend) as be:
        for batch in (1, 4):
            x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
            assert be.infer({"input": x})[be.outputs[0].name].shape == (batch, 1000)


def _tiny_reference(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return Tiny().eval()(torch.from_numpy(x)).numpy()


def _check_tiny(out: Path) -> None:
    art = Artifact.load(out)
    x = np.random.default_rng(7).standard_normal((5, 3, 16, 16)).astype(np.float32)
    with load_backend(art.model_path, "onnxruntime") as be:
        got = be.infer({be.inputs[0].name: x})[be.outputs[0].name]
    np.testing.assert_allclose(got, _tiny_reference(x), atol=1e-5)
    assert art.metrics["parity"]["passed"]


def test_import_module_callable(tmp_path):
    (tmp_path / "mymodels.py").write_text(
        textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_import import Tiny
        def build():
            return Tiny()
    """)
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bushu",
            "import",
            "mymodels:build",
            "-o",
            "art",
            "--input-shape",
            "1,3,16,16",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["parity"]["passed"]
    _check_tiny(tmp_path / "art")


def test_import_torch_export_and_torchscript(tmp_path):
    from torch.export import Dim

    x = torch.randn(2, 3, 16, 16)
    prog = torch.export.export(Tiny().eval(), (x,), dynamic_shapes=({0: Dim("batch", min=1, max=64)},))
    torch.export.save(prog, str(tmp_path / "tiny.pt2"))
    assert main(["import", str(tmp_path / "tiny.pt2"), "-o", str(tmp_path / "a")]) == 0
    _check_tiny(tmp_path / "a")

    torch.jit.save(torch.jit.trace(Tiny().eval(), x), str(tmp_path / "tiny.pt"))
    assert main(["import", str(tmp_path / "tiny.pt"), "-o", str(tmp_path / "b"), "--input-shape", "1,3,16,16"]) == 0
    _check_tiny(tmp_path / "b")


def test_import_onnx_keeps_numbers(tmp_path):
    x = torch.randn(2, 3, 16, 16)
    torch.onnx.export(
        Tiny().eval(),
        (x,),
        str(tmp_path / "tiny.onnx"),
        dynamo=False,
        input_names=["image"],
        output_names=["scores"],
        dynamic_axes={"image": {0: "n"}, "scores": {0: "n"}},
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    assert main(["import", str(tmp_path / "tiny.onnx"), "-o", str(tmp_path / "art"), "--labels", str(labels)]) == 0
    art = Artifact.load(tmp_path / "art")
    assert [s.name for s in art.inputs] == ["image"] and art.labels == ["a", "b", "c", "d"]
    _check_tiny(tmp_path / "art")


def test_parity_failure_names_the_output_and_keeps_the_old_artifact(tmp_path):
    from bushu.import_.importer import Tolerance, _import_torch
    from bushu.spec import TensorSpec

    out = tmp_path / "art"
    assert main(["import", "mobilenet_v2", "-o", str(out)]) == 0
    before = (out / "bushu.yaml").read_text()
    with pytest.raises(ToleranceError) as e:
        _import_torch(
            Noisy(),
            "noisy",
            "callable",
            out,
            example=[TensorSpec("input", "float32", (1, 3, 8, 8))],
            labels=None,
            preprocess=None,
            postprocess=None,
            tolerance=Tolerance(),
            simplify=True,
            reference=False,
            name="noisy",
            details={},
        )
    assert "output0" in str(e.value) and "max abs diff" in str(e.value)
    assert (out / "bushu.yaml").read_text() == before  # the previous artifact is intact
    Artifact.load(out)


@pytest.mark.parametrize(
    "args, expect",
    [
        (["mobilenet_v3"], "did you mean 'mobilenet_v2'"),
        (["missing.onnx"], "not found"),
        (["{tmp}/trunc.onnx"], "not a loadable ONNX model"),
        (["{tmp}/weights.pth"], "state dict"),
        (["{tmp}/garbage.pt2"], "not a readable PyTorch archive"),
        (["no_such_module_xyz:build"], "cannot import module"),
    ],
)
def test_bad_sources_give_one_clear_line(tmp_path, args, expect):
    (tmp_path / "trunc.onnx").write_bytes(b"\x08\x07\x12\x05bushu" * 3)
    (tmp_path / "weights.pth").write_bytes(b"x")
    (tmp_path / "garbage.pt2").write_bytes(b"not a zip")
    proc = subprocess.run(
        [sys.executable, "-m", "bushu", "import", *(a.format(tmp=tmp_path) for a in args), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
