"""`bushu optimize --prune` through the CLI on a small CNN trained in the test on real faces (skimage lfw_subset).

The model is imported as a ``module:callable`` (the way users bring their own PyTorch model), so
optimize rebuilds the nn.Module from the provenance; the references are independent: parameter
counts from the ONNX file, accuracy recomputed here with onnxruntime on the held-out images.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

SIZE = 32
CLASSES = ("face", "nonface")

MODEL_SOURCE = """
import torch
from torch import nn

WEIGHTS = {weights!r}


class FaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x):
        return self.head(self.features(x))


def build(trained=True):
    torch.manual_seed(0)
    net = FaceNet()
    if trained:
        net.load_state_dict(torch.load(WEIGHTS, map_location="cpu"))
    net.input_shape = (1, 3, {size}, {size})
    return net.eval()
"""


def build_lfw_facenet(root: Path, epochs: int = 25) -> dict[str, Path]:
    """lfw_subset → train/heldout image folders; a small CNN trained on train; `bushu import` of it."""
    import importlib.util
    import os

    import torch
    from PIL import Image
    from skimage.data import lfw_subset

    from bushu.cli import main
    from bushu.model.artifact import Preprocess
    from bushu.model.processing import preprocess_images

    torch.set_num_threads(2)
    x = lfw_subset()  # 100 faces then 100 non-faces, 25×25 grey in [0, 1]
    y = np.array([0] * 100 + [1] * 100)
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.permutation(100)[:60], 100 + rng.permutation(100)[:60]])
    for split, idx in (("train", train), ("heldout", np.setdiff1d(np.arange(200), train))):
        for i in idx:
            d = root / split / CLASSES[y[i]]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray((x[i] * 255).round().astype(np.uint8)).save(d / f"{i:03d}.png")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    weights = root / "facenet.pt"
    (root / "facenet_model.py").write_text(MODEL_SOURCE.format(weights=str(weights), size=SIZE))
    spec = importlib.util.spec_from_file_location("facenet_model", root / "facenet_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    pp = Preprocess(resize=round(SIZE / 0.875), crop=SIZE)  # what `bushu import --size 32` records
    files = sorted((root / "train").rglob("*.png"))
    xs = torch.from_numpy(preprocess_images(files, pp))
    ys = torch.tensor([CLASSES.index(p.parent.name) for p in files])
    net = mod.build(trained=False).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for b in torch.randperm(len(xs), generator=g).split(32):
            loss = torch.nn.functional.cross_entropy(net(xs[b]), ys[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.save(net.state_dict(), weights)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert (
            main(
                [
                    "import",
                    "facenet_model:build",
                    "-o",
                    str(root / "facenet"),
                    "--size",
                    str(SIZE),
                    "--labels",
                    str(root / "labels.txt"),
                ]
            )
            == 0
        )
    finally:
        os.chdir(cwd)
    return {"root": root, "artifact": root / "facenet", "train": root / "train", "heldout": root / "heldout"}


def heldout_accuracy(model: Path, heldout: Path) -> float:
    """Top-1 % of an ONNX file on the held-out folder, computed independently of bushu.optimize."""
    import onnxruntime as ort

    from bushu.model.artifact import Preprocess
    from bushu.model.processing import preprocess_images

    files = sorted(heldout.rglob("*.png"))
    x = preprocess_images(files, Preprocess(resize=round(SIZE / 0.875), crop=SIZE))
    y = np.array([CLASSES.index(p.parent.name) for p in files])
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return 100.0 * float(np.mean(logits.argmax(1) == y))


def onnx_params(model: Path) -> int:
    import onnx
    from onnx import numpy_helper

    return sum(
        numpy_helper.to_array(t).size
        for t in onnx.load(str(model)).graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
    )


def shared_facenet(tmp_path_factory) -> dict[str, Path]:
    """Built once per test session (the compression tests only read it; they write to their own tmp_path)."""
    root = tmp_path_factory.getbasetemp() / "lfw-facenet"
    if not (root / "facenet" / "bushu.yaml").is_file():
        root.mkdir(exist_ok=True)
        return build_lfw_facenet(root)
    return {"root": root, "artifact": root / "facenet", "train": root / "train", "heldout": root / "heldout"}


@pytest.fixture(scope="module")
def facenet(tmp_path_factory) -> dict[str, Path]:
    return shared_facenet(tmp_path_factory)


@pytest.fixture
def in_root(facenet, monkeypatch):
    """optimize rebuilds the callable from the provenance: run from the folder that holds its module."""
    monkeypatch.chdir(facenet["root"])
    monkeypatch.syspath_prepend(str(facenet["root"]))
    return facenet


def _snapshot(art: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()}


def test_base_model_learned_faces(facenet):
    assert heldout_accuracy(facenet["artifact"] / "model.onnx", facenet["heldout"]) >= 85.0


def test_structured_prune_shrinks_graph_and_recovers(in_root, tmp_path, capsys):
    from bushu.cli import main

    art, out = in_root["artifact"], tmp_path / "pruned"
    before = _snapshot(art)
    assert (
        main(
            [
                "optimize",
                str(art),
                "-o",
                str(out),
                "--prune",
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
    assert _snapshot(art) == before  # the input artifact is untouched
    rows = {r["model"]: r for r in result["rows"]}
    orig, pruned, tuned = rows["original"], rows["prune 0.5 (structured)"], rows["+ fine-tune"]
    # the graph really shrank: parameters counted from the ONNX files themselves
    p0, p1 = onnx_params(art / "model.onnx"), onnx_params(out / "model.onnx")
    assert p1 < 0.5 * p0 and orig["params"] == p0 and tuned["params"] == p1
    assert pruned["mflops"] < 0.6 * orig["mflops"]
    assert result["steps"][0]["importance"] == "taylor"  # data given → gradient criterion
    # accuracy as bushu reports it equals an independent recomputation, and fine-tuning recovers it
    acc0, acc1 = (
        heldout_accuracy(art / "model.onnx", in_root["heldout"]),
        heldout_accuracy(out / "model.onnx", in_root["heldout"]),
    )
    assert orig["accuracy"] == pytest.approx(acc0, abs=1e-6) and tuned["accuracy"] == pytest.approx(acc1, abs=1e-6)
    # a 16-64 channel CNN loses much at 50%; fine-tuning must win back part of it (MobileNetV2: bench/compress.py)
    assert acc1 >= max(pruned["accuracy"], acc0 - 25.0)
    # a new artifact with its module, reference program, provenance and report
    meta = (out / "bushu.yaml").read_text()
    assert "optimize" in meta and (out / "module.pt").is_file() and (out / "report.html").is_file()
    assert (out / "labels.txt").read_text().split() == list(CLASSES)
    assert "prune 0.5 (structured)" in (out / "report.html").read_text()


def test_prune_a_pruned_artifact_uses_its_saved_module(in_root, tmp_path):
    from bushu.cli import main

    first, second = tmp_path / "p1", tmp_path / "p2"
    assert (
        main(
            [
                "optimize",
                str(in_root["artifact"]),
                "-o",
                str(first),
                "--prune",
                "0.3",
                "--epochs",
                "0",
                "--no-bench",
                "--no-report",
            ]
        )
        == 0
    )
    assert (
        main(
            ["optimize", str(first), "-o", str(second), "--prune", "0.3", "--epochs", "0", "--no-bench", "--no-report"]
        )
        == 0
    )
    assert (
        onnx_params(second / "model.onnx")
        < onnx_params(first / "model.onnx")
        < onnx_params(in_root["artifact"] / "model.onnx")
    )


def test_unstructured_reports_real_sparsity(in_root, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    from bushu.cli import main

    out = tmp_path / "sparse"
    assert (
        main(
            [
                "optimize",
                str(in_root["artifact"]),
                "-o",
                str(out),
                "--prune",
                "0.6",
                "--prune-mode",
                "unstructured",
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
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["model"] for r in rows] == ["original", "prune 0.6 (unstructured)", "+ fine-tune"]
    row = rows[-1]  # after fine-tuning: the zeros stayed zero
    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(out / "model.onnx")).graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
    ]
    zeros, total = sum(int((w == 0).sum()) for w in weights), sum(w.size for w in weights)
    assert row["sparsity"] == pytest.approx(zeros / total, abs=0.02) and row["sparsity"] > 0.5
    assert rows[1]["zip_mb"] < rows[1]["size_mb"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--prune", "1.5"], "between 0 and 1"),
        (["--prune", "0"], "between 0 and 1"),
        (["--prune", "0.3", "--prune-mode", "structured", "--importance", "taylor"], "Taylor importance needs data"),
        (["--prune", "0.3", "--distill", "resnet50"], "student"),
    ],
)
def test_bad_input_clear_error_nothing_written(in_root, tmp_path, args, needle, capsys):
    from bushu.cli import main

    art, out = in_root["artifact"], tmp_path / "out"
    before = _snapshot(art)
    assert main(["optimize", str(art), "-o", str(out), *args, "--no-bench"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not out.exists() and _snapshot(art) == before


def test_nothing_prunable(tmp_path, monkeypatch, capsys):
    """A model whose only layer produces the output: structured pruning has nothing to remove."""
    from bushu.cli import main

    (tmp_path / "linear_model.py").write_text(
        textwrap.dedent("""
        import torch
        def build():
            torch.manual_seed(0)
            m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
            m.input_shape = (1, 3, 2, 2)
            return m
    """)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["import", "linear_model:build", "-o", "lin"]) == 0
    capsys.readouterr()
    assert main(["optimize", "lin", "-o", "out", "--prune", "0.5", "--no-bench"]) == 2
    assert "nothing to prune" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_onnx_only_artifact_is_refused(tmp_path, capsys):
    import torch

    from bushu.cli import main

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)
    ).eval()
    torch.onnx.export(
        model,
        torch.randn(2, 3, 8, 8),
        str(tmp_path / "m.onnx"),
        dynamo=False,
        input_names=["input"],
        output_names=["out"],
        dynamic_axes={"input": {0: "b"}, "out": {0: "b"}},
    )
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "art")]) == 0
    capsys.readouterr()
    assert main(["optimize", str(tmp_path / "art"), "-o", str(tmp_path / "out"), "--prune", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "no PyTorch module structure" in err and "Hint:" in err
