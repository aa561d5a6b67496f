"""Labelled folders, ``DIR/<class>/<file>``: one scan and one reader for images, texts and audio clips.

``scan_folder`` finds the class sub-folders and the files with a kind's suffixes (hidden names and
other suffixes are counted, not read); ``LabelledFolder`` is the reader on top: its items are
(file, class index) pairs, and ``samples``/``batches`` decode them lazily, listing the files that do
not decode instead of failing (any Pillow-readable image; UTF-8 .txt; .wav/.flac).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NotFoundError, UserInputError
from .suffixes import SUFFIXES, suffix_list

__all__ = ["FolderScan", "LabelledFolder", "Skipped", "read_text", "reason_of", "scan_folder"]

NOUNS = {"image": "images", "text": "texts", "audio": "clips"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def reason_of(e: BaseException) -> str:
    """The first line of an error, for a skipped-file list: a BushuError's message, else ``Type: text``."""
    return str(getattr(e, "message", None) or f"{type(e).__name__}: {e}").splitlines()[0][:200]


def read_text(path: Path) -> str:
    """A .txt example: UTF-8 (a BOM is dropped), stripped; a UserInputError for other bytes or an empty file."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserInputError(
            f"not UTF-8 text (byte {e.start}: {raw[e.start : e.start + 1]!r}); re-save it as UTF-8"
        ) from e
    if not text.strip():
        raise UserInputError("empty text")
    return text.strip()


@dataclass(frozen=True)
class FolderScan:
    root: Path
    classes: list[str]  # class sub-folders, sorted, hidden ones left out
    items: list[tuple[Path, int]]  # (file, index into classes), files with the kind's suffixes
    loose: list[Path]  # files with the kind's suffixes directly in root (no class)
    ignored: int  # files inside class folders with other suffixes, or hidden


def scan_folder(root: Path, suffixes: tuple[str, ...], classes: list[str] | None = None) -> FolderScan:
    """Scan ``root/<class>/**/<file>``; with ``classes`` given, those folders (in that order) are read."""
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = found if classes is None else classes
    items, ignored = [], 0
    for i, c in enumerate(classes):
        folder = root / c
        if not folder.is_dir():
            continue
        for f in sorted(folder.rglob("*")):
            if not f.is_file():
                continue
            if f.name.startswith(".") or f.suffix.lower() not in suffixes:
                ignored += 1
                continue
            items.append((f, i))
    loose = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    return FolderScan(root, list(classes), items, loose, ignored)


@dataclass
class LabelledFolder:
    """A folder per class of one kind of data (image, text or audio), read lazily."""

    root: Path
    kind: str
    classes: list[str]  # folder names, sorted
    items: list[tuple[Path, int]]  # (file, index into classes)
    skipped: list[Skipped] = field(default_factory=list)  # filled while reading

    @classmethod
    def scan(cls, root: str | Path, kind: str = "image") -> LabelledFolder:
        root, noun = Path(root), NOUNS[kind]
        if not root.exists():
            raise NotFoundError(
                f"dataset directory not found: {root}", hint=f"pass a folder with one sub-folder of {noun} per class"
            )
        if not root.is_dir():
            raise UserInputError(
                f"{root} is a file, expected a directory with one sub-folder per class",
                hint="pass a folder laid out as DIR/<class name>/<file>",
            )
        scan = scan_folder(root, SUFFIXES[kind])
        if not scan.classes or not scan.items:
            loose = ", ".join(p.name for p in scan.loose[:3])
            what = (
                f"{noun} directly in it ({loose}) but no class sub-folders"
                if loose
                else f"no class sub-folders with {noun} ({suffix_list(kind, 5 if kind == 'image' else 3)})"
            )
            raise UserInputError(
                f"{root} has {what}", hint=f"lay the dataset out as {root}/<class name>/<file> ({suffix_list(kind)})"
            )
        return cls(root=root, kind=kind, classes=scan.classes, items=scan.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Path, int]:
        """(source, target): the reader protocol (see bushu.data)."""
        return self.items[i]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.classes, 0)
        for _, i in self.items:
            out[self.classes[i]] += 1
        return out

    def samples(self, decode: Callable[[Path], Any]) -> Iterator[tuple[Any, int, Path]]:
        """(decoded input, class index, file) per item; a file ``decode`` raises on is listed in ``skipped``."""
        for path, target in self.items:
            try:
                x = decode(path)
            except Exception as e:  # noqa: BLE001 - any decode failure: list it and carry on
                self.skipped.append(Skipped(str(path), reason_of(e)))
                log.warning("skipped %s: %s", path, reason_of(e))
                continue
            yield x, target, path

    def batches(
        self, decode: Callable[[Path], Any], batch_size: int
    ) -> Iterator[tuple[list[Any], np.ndarray, list[Path]]]:
        """Lists of ``batch_size`` decoded inputs with their class indices [B] and files."""
        buf: list[tuple[Any, int, Path]] = []
        for sample in self.samples(decode):
            buf.append(sample)
            if len(buf) == batch_size:
                yield _unzip(buf)
                buf = []
        if buf:
            yield _unzip(buf)


def _unzip(buf: list[tuple[Any, int, Path]]) -> tuple[list[Any], np.ndarray, list[Path]]:
    return [b[0] for b in buf], np.asarray([b[1] for b in buf], np.int64), [b[2] for b in buf]
