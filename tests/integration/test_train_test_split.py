"""The held-out test part of `bushu train`: nothing before the final measurement sees it.

Checked by construction: the feature extraction (whose output is all the search and its early
stopping get) and fine-tuning are wrapped to record the examples they receive; no test example may
be among them, and the summary must give the test figure with its interval beside the validation one.
Real training throughout (faces at 64 px with fine-tuning; BBC News with TF-IDF)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bushu.cli import main
from bushu.train.samples import write_faces, write_news


def _flatten(given: Path, out: Path) -> Path:
    """DATA/train + DATA/val -> DATA/<class>/ (the layout that `train` splits itself)."""
    for f in sorted(given.glob("*/*/*")):
        d = out / f.parent.name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f"{f.parent.parent.name}_{f.name}")
    return out


def _record(monkeypatch, module, name: str, seen: set[str], items_of) -> None:
    real = getattr(module, name)

    def wrapper(*args, **kw):
        for it in items_of(*args, **kw):
            seen.add(it.source)
        return real(*args, **kw)

    monkeypatch.setattr(module, name, wrapper)


def test_image_test_part_never_reaches_search_or_finetuning(tmp_path, monkeypatch, capsys) -> None:
    from bushu.train import finetune as ft
    from bushu.train import image

    data = _flatten(write_faces(tmp_path / "given", n_train=5, n_val=10), tmp_path / "faces")  # 15 a class
    searched, tuned, tested = set(), set(), set()
    _record(monkeypatch, image, "image_features", searched, lambda ds, *a, **k: ds.train + ds.val)
    _record(monkeypatch, ft, "finetune", tuned, lambda name, head, train, val, *a, **k: train + val)
    _record(
        monkeypatch,
        image,
        "onnx_logits",
        tested,
        lambda path, items, pp, progress, label: items if label == "test" else [],
    )
    out = tmp_path / "art"
    capsys.readouterr()
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
                "64",
                "--trials",
                "2",
                "--budget",
                "5m",
                "--test-size",
                "0.2",
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert s["n_test"] == 6 and s["test_split"] == "stratified"  # round(15 * 0.2) = 3 per class
    assert len(tested) == 6 and len(searched) == s["n_train"] + s["n_val"] == 24
    assert not searched & tested
    if s["finetune"]["ran"]:
        assert tuned == searched
    assert s["test"]["n"] == 6 and s["test"]["ci_method"] == "wilson"
    lo, hi = s["test_ci95"]
    assert 0 <= lo <= s["test_accuracy"] <= hi <= 1
    assert [r["class"] for r in s["test"]["per_class"]] == ["face", "nonface"]
    assert sum(r["support"] for r in s["test"]["per_class"]) == 6
    assert {str(data / m["path"]) for m in s["test"]["mistakes"]} <= tested
    html = (out / "report.html").read_text()
    assert "test accuracy" in html and "Per class (test" in html


def test_text_given_test_folder_is_kept_and_unseen(tmp_path, monkeypatch, capsys) -> None:
    from bushu.train import text

    data = write_news(tmp_path / "news", n_train=6, n_val=4)
    test_src = write_news(tmp_path / "other", n_train=0, n_val=6, seed=5)
    shutil.copytree(test_src / "val", data / "test")
    for f in (data / "test").rglob("*.txt"):  # the same article in two splits would be dropped as a duplicate
        if (data / "train" / f.parent.name / f.name).exists() or (data / "val" / f.parent.name / f.name).exists():
            f.unlink()
    seen: set[str] = set()
    _record(monkeypatch, text, "text_features", seen, lambda ds, *a, **k: ds.train + ds.val)
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                str(data),
                "-o",
                str(tmp_path / "art"),
                "--backbone",
                "tfidf",
                "--trials",
                "3",
                "--budget",
                "2m",
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    test = {str(f) for f in (data / "test").rglob("*.txt")}
    assert s["test_split"] == "given" and s["n_test"] == len(test) > 0
    assert s["n_train"] == 30 and s["n_val"] == 20  # the given train/val split is untouched
    assert len(seen) == 50 and not seen & test
    for key in ("test_accuracy", "test_ci95", "test_macro_f1", "test", "n_test"):
        assert key in s
    assert s["test"]["n"] == s["n_test"] and len(s["test"]["confusion"]["matrix"]) == 5
    assert s["test_accuracy"] > 0.5  # 5 topics, TF-IDF on 6 articles each: far above chance (0.2)


def test_given_val_without_test_folder_has_no_test_part_and_says_so(tmp_path, capsys) -> None:
    data = write_news(tmp_path / "news", n_train=4, n_val=2, seed=1)
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                str(data),
                "-o",
                str(tmp_path / "art"),
                "--backbone",
                "tfidf",
                "--trials",
                "1",
                "--budget",
                "1m",
                "--json",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert s["n_test"] == 0 and s["test"] is None and s["test_accuracy"] is None
    html = (tmp_path / "art" / "report.html").read_text()
    assert "no test part" in html
