"""Editing a folder-per-class image data set from the web UI: list its images, delete one, move one to
another class (relabel), add one (an upload or a camera capture).

Every function takes the data set's folder and names as the browser sent them. A name never becomes a
path as given: an existing image is found by looking (class, file) up in the folder's own listing, and a
new file's name is the user's own, sanitised (``safety.safe_name``), in a class folder that the listing
names (or a new one, when asked, under a sanitised name). So ``..``, slashes, absolute paths and hidden
names cannot reach a file outside the folder, and an edited data set keeps the user's file names (a clash
becomes ``name-2.jpg``).

A class folder that an edit leaves empty is removed (it would be a class with no examples); the last image
of the data set cannot be deleted or moved away (delete the data set instead).

Undo: a deleted image can be kept aside (``delete_image(..., keep=folder)``, a folder outside the data set)
and put back by ``restore_image``; a relabel is undone by moving the image back (``relabel_image(...,
create=True)`` recreates the class folder that the move left empty and removed).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..data.suffixes import IMAGE_SUFFIXES
from ..errors import NotFoundError, UserInputError
from .safety import _readable, safe_name

__all__ = ["ImageRef", "add_image", "delete_image", "list_images", "relabel_image", "restore_image"]

# PIL's format name -> the suffix a file of it gets when the browser's file name has none we read
_SUFFIX_OF = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "WEBP": ".webp",
    "GIF": ".gif",
    "TIFF": ".tif",
    "MPO": ".jpg",
}


@dataclass(frozen=True)
class ImageRef:
    """An image of the data set: its class folder and its path inside it (posix; a file name for uploads)."""

    cls: str
    file: str

    def as_dict(self) -> dict[str, str]:
        return {"cls": self.cls, "file": self.file}


def _classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(root: Path) -> dict[str, list[dict[str, object]]]:
    """``{class: [{"file", "bytes", "mtime"}, ...]}``: every image the trainer reads, per class folder, sorted
    (``file`` is the path inside the class folder; ``mtime`` lets a page cache thumbnails safely)."""
    out: dict[str, list[dict[str, object]]] = {}
    for cls in _classes(root):
        rows = []
        for f in sorted((root / cls).rglob("*")):
            rel = f.relative_to(root / cls)
            if any(part.startswith(".") for part in rel.parts) or f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                st = f.stat()
            except OSError:
                continue
            if f.is_file():
                rows.append({"file": rel.as_posix(), "bytes": st.st_size, "mtime": int(st.st_mtime)})
        out[cls] = rows
    return out


def find_image(root: Path, cls: str, file: str) -> Path:
    """The path of the image (cls, file), found in the folder's listing: a name not in it is a 404."""
    if cls not in _classes(root):
        raise NotFoundError(f"the data set has no class {cls!r}", hint=f"its classes: {', '.join(_classes(root))}")
    for f in (root / cls).rglob("*"):
        rel = f.relative_to(root / cls)
        hidden = any(p.startswith(".") for p in rel.parts)
        if rel.as_posix() == file and f.is_file() and not hidden and f.suffix.lower() in IMAGE_SUFFIXES:
            return f
    raise NotFoundError(
        f"class {cls!r} has no image {file!r}", hint="reload the page: it may have been moved or deleted"
    )


def _n_images(root: Path) -> int:
    return sum(len(v) for v in list_images(root).values())


def _drop_if_empty(folder: Path) -> None:
    """Remove a class folder (and its empty sub-folders) once no file is left in it."""
    if any(p.is_file() for p in folder.rglob("*")):
        return
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        d.rmdir()
    folder.rmdir()


def _place(src: Path, folder: Path, name: str) -> Path:
    """Move ``src`` into ``folder`` under ``name``, or ``stem-2.ext``, ``stem-3.ext``... if taken (never
    overwriting: the name is claimed with an exclusive create first)."""
    stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
    n = 1
    while True:
        target = folder / (name if n == 1 else f"{stem}-{n}{suffix}")
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        os.replace(src, target)
        return target


def delete_image(root: Path, cls: str, file: str, keep: Path | None = None) -> Path | None:
    """Delete (cls, file); with ``keep`` (a folder outside the data set), move it to ``keep/<cls>/`` instead,
    for ``restore_image`` to put back: the path it was kept at."""
    path = find_image(root, cls, file)
    if _n_images(root) <= 1:
        raise UserInputError("this is the data set's last image", hint="delete the whole data set instead")
    kept = None
    if keep is None:
        path.unlink()
    else:
        (keep / cls).mkdir(parents=True, exist_ok=True)
        kept = _place(path, keep / cls, path.name)
    _drop_if_empty(root / cls)
    return kept


def restore_image(root: Path, kept: Path) -> ImageRef:
    """Put an image that ``delete_image(..., keep=...)`` kept aside (at ``keep/<cls>/<file>``) back into its
    class, under its name (``name-2.jpg`` if that is taken meanwhile); the class folder is made again if the
    delete removed it."""
    cls = new_class_name(root, kept.parent.name, create=True)
    (root / cls).mkdir(exist_ok=True)
    return ImageRef(cls, _place(kept, root / cls, kept.name).name)


def relabel_image(root: Path, cls: str, file: str, to: str, create: bool = False) -> ImageRef:
    """Move (cls, file) into the class ``to`` (an existing class, or with ``create`` a new one: how a move
    is undone when it emptied its class), keeping its file name."""
    path = find_image(root, cls, file)
    classes = _classes(root)
    if create and to not in classes:
        to = new_class_name(root, to, create=True)
        (root / to).mkdir()
        classes.append(to)
    if to not in classes:
        raise NotFoundError(
            f"the data set has no class {to!r} to move the image to",
            hint=f"its classes: {', '.join(classes)}; add an image to a new class to create one",
        )
    if to == cls:
        return ImageRef(cls, file)
    target = _place(path, root / to, path.name)
    _drop_if_empty(root / cls)
    return ImageRef(to, target.name)


def new_class_name(root: Path, cls: str, create: bool) -> str:
    """The class folder an added image goes to: an existing class, or (``create``) a new one, sanitised."""
    if cls in _classes(root):
        return cls
    if not create:
        raise NotFoundError(
            f"the data set has no class {cls!r}", hint="choose one of its classes, or name a new class to create it"
        )
    name = safe_name(cls, "class name")
    if name != cls:
        raise UserInputError(
            f"invalid class name {cls!r}", hint=f"use letters, digits, '_', '-' and '.', e.g. {name!r}"
        )
    return name


def add_image(root: Path, cls: str, filename: str, data: bytes, create: bool = False) -> ImageRef:
    """Write ``data`` (an image file's bytes) into class ``cls`` under the user's file name (sanitised).

    Bytes that do not decode as an image are refused with the reason; a name without an image suffix gets
    the suffix of what the bytes are. ``create``: ``cls`` may be a new class (its folder is made).
    """
    if not data:
        raise UserInputError("the file is empty", hint="send an image file (JPEG, PNG, BMP, WebP, GIF)")
    cls = new_class_name(root, cls, create)
    folder = root / cls
    folder.mkdir(exist_ok=True)
    # a hidden name while it is checked: the trainer's scan skips hidden files
    fd, tmp_name = tempfile.mkstemp(prefix=".adding-", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        why = _readable(tmp)
        if why:
            raise UserInputError(f"{PurePosixPath(filename).name or 'the file'}: {why}")
        from PIL import Image

        with Image.open(tmp) as img:
            fmt = img.format or ""
        raw = PurePosixPath(str(filename).replace("\\", "/")).name
        suffix = PurePosixPath(raw).suffix
        if suffix.lower() not in IMAGE_SUFFIXES:
            suffix = _SUFFIX_OF.get(fmt, ".png")
        try:
            stem = safe_name(PurePosixPath(raw).stem, "file name")
        except UserInputError:
            stem = "image"
        target = _place(tmp, folder, f"{stem}{suffix}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()  # a new class that got no image
        raise
    return ImageRef(cls, target.name)
