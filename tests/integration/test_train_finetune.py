"""Fine-tuning the top blocks in `bushu train` (real MobileNetV2 weights, lfw_subset faces, tiny sizes):
only the chosen blocks and the head change, batch-norm statistics stay, the exported ONNX model computes
the fine-tuned weights, the CLI records which model was kept, `--no-finetune` skips it, and audio
spectrograms get a time shift only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bushu.cli import main
from bushu.model.artifact import Artifact
from bushu.train.samples import write_faces

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return write_faces(tmp_path_factory.mktemp("ft") / "faces", n_train=3, n_val=4)


def test_finetune_trains_only_the_top_block_and_the_export_computes_it(faces, tmp_path) -> None:
    import onnxruntime as ort

    from bushu.train.data import load_dataset
    from bushu.train.features import backbone_module, backbone_preprocess, load_pixels
    from bushu.train.finetune import FinetuneConfig, finetune
    from bushu.train.heads import HeadConfig, build_head
    from bushu.train.image import _export

    ds = load_dataset(faces, kind="image", val=None, val_fraction=0.2, seed=0)
    pp = backbone_preprocess("mobilenet_v2", 48)
    torch.manual_seed(0)
    head = build_head(HeadConfig("linear"), np.zeros(1280, np.float32), np.ones(1280, np.float32), 2).eval()
    head0 = {k: v.clone() for k, v in head.state_dict().items()}
    reported: list = []
    res = finetune(
        "mobilenet_v2",
        head,
        ds.train,
        ds.val,
        pp,
        2,
        FinetuneConfig(blocks=1, max_epochs=1, lr=1e-2, head_lr=1e-2, batch_size=4, warmup_steps=1),
        progress=lambda n=1, **kw: reported.append((n, kw)),
    )
    assert res.epochs == 1 and res.best_epoch == 1 and len(res.history) == 2
    # each epoch's figures go to the progress reporter (the UI's live chart): validation and training loss
    assert sum(n for n, _ in reported) == len(ds.train)
    assert [kw["epoch"] for _, kw in reported if "epoch" in kw] == res.history[1:]
    assert res.history[1]["train_loss"] > 0
    assert all(torch.equal(head0[k], v) for k, v in head.state_dict().items())  # the searched head is untouched

    ref, tuned = backbone_module("mobilenet_v2").state_dict(), res.module[0].state_dict()
    changed = {k for k in ref if not torch.equal(ref[k], tuned[k])}
    assert changed and all(k.startswith("features.18.") for k in changed), changed  # the last block only
    assert not any("running" in k for k in changed)  # batch-norm statistics stay pretrained
    assert any(not torch.equal(head0[k], v) for k, v in res.module[1].state_dict().items())  # the head trained too

    path, parity, logits = _export(res.module, ds, pp, tmp_path, False)
    assert parity["passed"] and logits.shape == (len(ds.val), 2)
    x = load_pixels(ds.val, pp)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]
    with torch.no_grad():
        want = res.module(torch.from_numpy(x)).numpy()
        before = torch.nn.Sequential(backbone_module("mobilenet_v2"), head).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    assert np.abs(got - before).max() > 1e-3  # the exported graph is the fine-tuned one, not the pretrained one


def test_cli_records_the_kept_model_and_no_finetune_skips(faces, tmp_path, capsys) -> None:
    work = tmp_path / "work"
    base = [
        "train",
        str(faces),
        "--backbone",
        "mobilenet_v2",
        "--image-size",
        "48",
        "--trials",
        "1",
        "--budget",
        "3m",
        "--work-dir",
        str(work),
        "--json",
    ]
    assert main([*base, "-o", str(tmp_path / "ft"), "--finetune-blocks", "1"]) == 0
    s = json.loads(capsys.readouterr().out)
    f = s["finetune"]
    assert f["ran"] and f["blocks"] == 1 and f["augment"] == "image" and f["epochs"] >= 1
    assert f["kept"] in ("fine-tuned", "frozen")
    assert f["history"][0]["epoch"] == 0 and f["history"][0]["val_accuracy"] == f["frozen_val_accuracy"]
    better = (f["finetuned_val_accuracy"], -f["finetuned_val_loss"]) > (f["frozen_val_accuracy"], -f["frozen_val_loss"])
    assert f["kept"] == ("fine-tuned" if better else "frozen")
    art = Artifact.load(tmp_path / "ft")
    assert art.metrics["train"]["finetune"]["kept"] == f["kept"]
    assert art.provenance["finetuned_blocks"] == (1 if f["kept"] == "fine-tuned" else 0)
    kept_acc = f["finetuned_val_accuracy"] if f["kept"] == "fine-tuned" else f["frozen_val_accuracy"]
    assert s["val_accuracy"] == pytest.approx(kept_acc, abs=1e-4)  # ONNX Runtime agrees with the kept model
    assert "kept the" in (tmp_path / "ft" / "report.html").read_text()

    assert main([*base, "-o", str(tmp_path / "frozen"), "--no-finetune"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["finetune"] == {"ran": False, "reason": "turned off (--no-finetune)"}
    assert Artifact.load(tmp_path / "frozen").provenance["finetuned_blocks"] == 0
    assert s["val_accuracy"] == pytest.approx(s["head_val_accuracy"], abs=1e-4)


def test_no_budget_left_skips_with_a_reason(faces) -> None:
    from bushu.train import TrainConfig
    from bushu.train.data import load_dataset
    from bushu.train.features import backbone_preprocess
    from bushu.train.image import _finetune
    from bushu.train.runner import Clock

    ds = load_dataset(faces, kind="image", val=None, val_fraction=0.2, seed=0)
    cfg = TrainConfig(data=faces, out=faces.parent / "x")
    lines: list[str] = []
    clock = Clock(1e-9)
    info, module = _finetune(
        cfg, ds, "mobilenet_v2", None, backbone_preprocess("mobilenet_v2", 48), 0.01, clock, lines.append
    )
    assert module is None and not info["ran"] and info["reason"].startswith("the budget left (0 s)")
    assert lines == [f"fine-tuning skipped: {info['reason']}"]


def test_zero_epochs_skips_with_a_reason(faces) -> None:
    """TrainConfig(finetune_epochs=0) through the Python API: no epoch runs, so none is the best one; fine-tuning
    is skipped with a reason (it raised TypeError loading the best epoch's weights, which were None)."""
    from bushu.train import TrainConfig
    from bushu.train.data import load_dataset
    from bushu.train.features import backbone_preprocess
    from bushu.train.heads import HeadConfig, build_head
    from bushu.train.image import _finetune
    from bushu.train.runner import Clock

    ds = load_dataset(faces, kind="image", val=None, val_fraction=0.2, seed=0)
    cfg = TrainConfig(data=faces, out=faces.parent / "x", finetune_epochs=0, progress=False)
    head = build_head(HeadConfig("linear"), np.zeros(1280, np.float32), np.ones(1280, np.float32), 2).eval()
    lines: list[str] = []
    info, module = _finetune(
        cfg, ds, "mobilenet_v2", head, backbone_preprocess("mobilenet_v2", 48), 0.01, Clock(None), lines.append
    )
    assert module is None and info == {"ran": False, "reason": "max_epochs is 0: no epoch to fine-tune"}
    assert lines == [f"fine-tuning skipped: {info['reason']}"]


def test_audio_augmentation_only_shifts_time() -> None:
    from PIL import Image

    from bushu.model.artifact import Preprocess
    from bushu.train.finetune import augmenter

    pp = Preprocess(kind="audio", resize=None, crop=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    rng = np.random.default_rng(0)
    spec = rng.integers(1, 255, (32, 32), dtype=np.uint8)  # rows = mel bands, columns = time
    img = Image.fromarray(spec, "L").convert("RGB")
    aug = augmenter(pp, "audio", seed=1)
    shifts = set()
    for _ in range(12):
        x = aug(img)
        assert x.shape == (3, 32, 32)
        px = np.rint((x[0] * 0.5 + 0.5) * 255).astype(int)  # back to pixel values
        # StopIteration here: the output is not a pure time shift of the input
        s = next(s for s in range(-4, 5) if np.array_equal(px, _shift(spec.astype(int), s)))
        shifts.add(s)
    assert len(shifts) > 1  # it does shift, by different amounts, and nothing else (no flip, no colour change)


def _shift(a: np.ndarray, s: int) -> np.ndarray:
    out = np.zeros_like(a)
    if s >= 0:
        out[:, s:] = a[:, : a.shape[1] - s]
    else:
        out[:, :s] = a[:, -s:]
    return out
