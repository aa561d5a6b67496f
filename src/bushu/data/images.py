"""A folder-per-class image dataset: ``DIR/<class>/<image>``, read lazily in batches.

Any Pillow-readable jpg/png/bmp/webp (RGBA, greyscale and palette images are converted as the
pre-processing says). Files that do not decode are skipped and listed, never fatal; files with
other suffixes and hidden files are ignored.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NotFoundError, UserInputError
from ..model.processing import IMAGE_SUFFIXES

__all__ = ["ImageFolder", "Skipped"]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class ImageFolder:
    root: Path
    classes: list[str]  # folder names, sorted
    items: list[tuple[Path, int]]  # (file, index into classes)
    skipped: list[Skipped] = field(default_factory=list)  # filled while iterating

    @classmethod
    def scan(cls, root: str | Path) -> ImageFolder:
        root = Path(root)
        if not root.exists():
            raise NotFoundError(f"dataset directory not found: {root}",
                                hint="pass a folder with one sub-folder of images per class")
        if not root.is_dir():
            raise UserInputError(f"{root} is a file, expected a directory with one sub-folder per class")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        items = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).rglob("*"))
                 if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
        if not classes or not items:
            loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES][:3]
            what = f"images directly in it ({', '.join(loose)}) but no class sub-folders" if loose else \
                "no class sub-folders with images" if not items else ""
            raise UserInputError(f"{root} has {what}",
                                 hint=f"lay the dataset out as {root}/<class name>/<image> "
                                      f"({'/'.join(s[1:] for s in IMAGE_SUFFIXES[:5])})")
        return cls(root=root, classes=classes, items=items)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.classes, 0)
        for _, i in self.items:
            out[self.classes[i]] += 1
        return out

    def batches(self, preprocess, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, list[Path]]]:
        """Yield (images [B, ...] float32, class indices [B], paths), skipping files that do not decode."""
        from ..model.processing import preprocess_image

        buf: list[tuple[np.ndarray, int, Path]] = []
        for path, target in self.items:
            try:
                x = preprocess_image(_open(path), preprocess)
            except Exception as e:  # any decode failure: list it and carry on
                reason = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
                self.skipped.append(Skipped(str(path), str(reason).splitlines()[0][:200]))
                warnings.warn(f"skipped {path}: {reason}", stacklevel=2)
                continue
            buf.append((x, target, path))
            if len(buf) == batch_size:
                yield _stack(buf)
                buf = []
        if buf:
            yield _stack(buf)


def _open(path: Path):
    from PIL import Image

    img = Image.open(path)
    img.load()
    if img.mode in ("RGBA", "LA", "P", "PA"):  # composite transparency on white, as viewers show it
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img


def _stack(buf: list[tuple[np.ndarray, int, Path]]) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    return np.stack([b[0] for b in buf]), np.asarray([b[1] for b in buf], np.int64), [b[2] for b in buf]
