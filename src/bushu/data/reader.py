"""The reader protocol (timm's data/readers in miniature): a sequence of (source, target) pairs.

    reader = create_reader("image", "photos/")   # LabelledFolder: targets are class indices
    path, target = reader[0]; len(reader); reader.classes

New layouts register a factory ``(root, **options) -> Reader`` in READERS under their name (the
detection formats: "coco", "yolo", "voc", with targets that are an image's boxes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import UnknownNameError
from .folders import LabelledFolder

__all__ = ["READERS", "Reader", "create_reader"]


@runtime_checkable
class Reader(Protocol):
    classes: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[Path, Any]: ...


READERS: dict[str, Callable[..., Reader]] = {
    kind: (lambda root, _kind=kind, **_: LabelledFolder.scan(root, _kind)) for kind in ("image", "text", "audio")
}


def create_reader(name: str, root: str | Path, **options: Any) -> Reader:
    """The reader ``name`` (a kind of labelled folder, or a registered layout) over ``root``."""
    if name not in READERS:
        raise UnknownNameError("data layout", name, list(READERS))
    return READERS[name](root, **options)
