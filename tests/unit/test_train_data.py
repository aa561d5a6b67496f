"""`bushu train` input handling: the data check, the split, the budget parser, and every bad input
the issue lists answered by one clear error line (no model is loaded in these tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bushu.cli import main
from bushu.errors import UserInputError
from bushu.train import parse_budget
from bushu.train.data import load_dataset, split_stratified


def _img(path: Path, value: int, size=(20, 16), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    arr = rng.integers(0, 255, (size[1], size[0], 4 if mode == "RGBA" else 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGBA" if mode == "RGBA" else "RGB")
    img.convert(mode).save(path)


def _run_error(args: list[str], capsys) -> str:
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ")
    return err


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(6):
        _img(root / "cat" / f"{i}.png", i)
    for i in range(6):
        _img(root / "dog" / f"{i}.jpg", 100 + i, mode="L" if i % 2 else "RGB")
    _img(root / "dog" / "alpha.png", 300, mode="RGBA")
    _img(root / "bird" / "0.webp", 400)  # one example only -> a warning, and one for val... see below
    _img(root / "bird" / "1.bmp", 401)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "cat" / "notes.md").write_text("ignored")
    (root / "dog" / "copy.png").write_bytes((root / "cat" / "0.png").read_bytes())  # duplicate across classes
    return root


def test_data_check_lists_counts_corrupt_duplicates_and_warnings(images: Path) -> None:
    ds = load_dataset(images, seed=0)
    c = ds.check
    assert ds.kind == "image" and ds.classes == ["bird", "cat", "dog"]
    assert c.counts == {"bird": 2, "cat": 6, "dog": 7}  # broken.jpg skipped, copy.png dropped
    assert [Path(s["path"]).name for s in c.skipped] == ["broken.jpg"]
    assert len(c.duplicates) == 1 and c.duplicates[0]["classes"] == ["cat", "dog"]
    assert c.ignored == 1
    assert any("few examples: bird (2)" in w for w in c.warnings)
    assert any("different classes" in w for w in c.warnings)
    assert c.imbalance == 3.5
    # stratified: every class in both splits, nothing lost or repeated
    assert {it.label for it in ds.train} == {0, 1, 2} == {it.label for it in ds.val}
    assert sorted(it.source for it in ds.train + ds.val) == sorted(
        str(p) for p in images.rglob("*") if p.suffix in (".png", ".jpg", ".webp", ".bmp")
        and p.name not in ("broken.jpg", "copy.png"))


def test_split_is_stratified_and_reproducible() -> None:
    from bushu.train.data import Item

    items = [Item(f"{c}{i}", c) for c in range(3) for i in range(10 * (c + 1))]
    tr, va = split_stratified(items, 0.2, seed=1)
    assert [sum(1 for it in va if it.label == c) for c in range(3)] == [2, 4, 6]
    assert split_stratified(items, 0.2, seed=1) == (tr, va)
    assert not set(tr) & set(va)


def test_given_train_val_folders_are_kept(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 2)):
        for c in ("a", "b"):
            for i in range(n):
                _img(tmp_path / split / c / f"{i}.png", hash((split, c, i)) % 1000)
    ds = load_dataset(tmp_path)
    assert ds.split == "given" and len(ds.train) == 6 and len(ds.val) == 4


def test_text_folder_and_csv(tmp_path: Path) -> None:
    for c in ("sport", "tech"):
        for i in range(3):
            (tmp_path / "t" / c).mkdir(parents=True, exist_ok=True)
            (tmp_path / "t" / c / f"{i}.txt").write_text(f"{c} story number {i}", encoding="utf-8")
    (tmp_path / "t" / "tech" / "latin1.txt").write_bytes("caf\xe9 na\xefve".encode("latin-1"))
    ds = load_dataset(tmp_path / "t")
    assert ds.kind == "text" and ds.check.counts == {"sport": 3, "tech": 3}
    assert "not UTF-8" in ds.check.skipped[0]["reason"]
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\nhello there,greet\n\"bye, now\",leave\nhi,greet\nso long,leave\n,greet\n")
    ds = load_dataset(csv)
    assert ds.classes == ["greet", "leave"] and ds.check.counts == {"greet": 2, "leave": 2}
    assert len(ds.check.skipped) == 1


@pytest.mark.parametrize(("text", "seconds"), [("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600),
                                               ("1m30s", 90), ("none", None), (45, 45)])
def test_parse_budget(text, seconds) -> None:
    assert parse_budget(text) == seconds


def test_parse_budget_rejects_nonsense() -> None:
    with pytest.raises(UserInputError, match="cannot read the budget"):
        parse_budget("five minutes")


def test_bad_inputs_give_one_clear_error(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "art")
    (tmp_path / "empty").mkdir()
    assert "is empty" in _run_error([str(tmp_path / "empty"), "-o", out], capsys)

    assert "not found" in _run_error([str(tmp_path / "nope"), "-o", out], capsys)

    for i in range(3):
        _img(tmp_path / "one" / "cat" / f"{i}.png", i)
    assert "at least 2 classes" in _run_error([str(tmp_path / "one"), "-o", out], capsys)

    for i in range(3):
        _img(tmp_path / "zero" / "cat" / f"{i}.png", i)
    (tmp_path / "zero" / "dog").mkdir(parents=True)
    (tmp_path / "zero" / "dog" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    err = _run_error([str(tmp_path / "zero"), "-o", out], capsys)
    assert "no usable images: 'dog' (1 unreadable)" in err

    _img(tmp_path / "single" / "cat" / "0.png", 1)
    _img(tmp_path / "single" / "cat" / "1.png", 2)
    _img(tmp_path / "single" / "dog" / "0.png", 3)
    err = _run_error([str(tmp_path / "single"), "-o", out], capsys)
    assert "dog have only one usable example" in err

    for c in ("a", "b"):
        (tmp_path / "txt" / c).mkdir(parents=True)
        (tmp_path / "txt" / c / "0.txt").write_bytes(b"\xff\xfe\x00bad")
    assert "no usable texts" in _run_error([str(tmp_path / "txt"), "-o", out], capsys)

    assert "cannot read the budget" in _run_error([str(tmp_path / "one"), "-o", out, "--budget", "soon"], capsys)
    assert "unknown head 'tree'" in _run_error([str(tmp_path / "one"), "-o", out, "--head", "tree"], capsys)
    assert not (tmp_path / "art").exists()
