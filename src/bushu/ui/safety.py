"""Untrusted input for the web UI: names that become directory names, and zip uploads.

File names from a browser or inside a zip are never used as paths as given. A zip is read member by
member: only images are taken, each into ``<dest>/<class>/<name>`` where class and name are the user's
own, sanitised (so a misclassified example can be traced back to the user's file); absolute paths, ``..``,
links, too many members, too many bytes (counted while decompressing, not taken from the header) and
extreme compression ratios are refused. Every image is decoded once: unreadable ones, other files and
class folders left empty are reported together (``UploadReport``), before any training.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..data.suffixes import IMAGE_SUFFIXES
from ..errors import UserInputError

__all__ = ["UnsafeArchiveError", "UploadReport", "ZipLimits", "extract_image_zip", "safe_name"]

_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")


class UnsafeArchiveError(UserInputError):
    """A zip upload that would write outside its folder, or expand far beyond its size."""


def safe_name(raw: str, what: str = "name", max_len: int = 64) -> str:
    """A user-given name -> a safe single path component (letters, digits, '_', '-', '.')."""
    name = _NAME.sub("_", str(raw)).strip("._-")[:max_len]
    if not name:
        raise UserInputError(f"invalid {what} {raw!r}", hint="use letters, digits, '_', '-' and '.'")
    return name


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 20_000
    max_total_bytes: int = 2 << 30  # uncompressed, all members together
    max_member_bytes: int = 64 << 20
    max_ratio: float = 200.0  # uncompressed / compressed, per member (images barely compress)


@dataclass
class UploadReport:
    """What an upload gave: images per class, and everything it left out, each with the reason."""

    classes: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"file": name in the zip, "reason": ...}
    empty_classes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"classes": self.classes, "skipped": self.skipped, "empty_classes": self.empty_classes}


def _readable(path: Path) -> str | None:
    """None if the file decodes as an image, else why not (in plain words)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))  # JPEG: decode at a reduced scale; still reads every byte
            img.load()
    except UnidentifiedImageError:
        return "not an image we can read (JPEG, PNG, BMP, WebP, GIF)"
    except (OSError, SyntaxError, ValueError) as e:
        return f"a damaged image ({str(e).split(' <')[0]})"
    return None


def _unique(folder: Path, name: str) -> Path:
    target, n = folder / name, 2
    while target.exists():
        stem, suffix = name.rsplit(".", 1) if "." in name else (name, "")
        target, n = folder / f"{stem}-{n}{'.' + suffix if suffix else ''}", n + 1
    return target


def _member_parts(info: zipfile.ZipInfo) -> list[str]:
    name = info.filename.replace("\\", "/")
    p = PurePosixPath(name)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in p.parts:
        raise UnsafeArchiveError(
            f"zip member {info.filename!r} points outside the archive's folder",
            hint="zip a folder with one sub-folder per class",
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"zip member {info.filename!r} is a symbolic link; links are not accepted")
    return [part for part in p.parts if part not in ("", ".")]


def extract_image_zip(src: str | Path, dest: str | Path, limits: ZipLimits = ZipLimits()) -> UploadReport:
    """Extract a folder-per-class image zip into ``dest``; returns the classes and what was left out.

    Layout accepted: ``class/img.jpg`` or ``top/class/img.jpg`` (one common top folder). Other files
    (READMEs) and unreadable images are skipped and reported; __MACOSX and hidden files are skipped
    silently. ``dest`` must not exist; on any error it is removed.
    """
    dest = Path(dest)
    if dest.exists():
        raise UserInputError(f"{dest.name} already exists", hint="choose another dataset name")
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserInputError(
            f"the upload is not a readable zip file: {e}", hint="upload a .zip of class folders"
        ) from e
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise UnsafeArchiveError(f"the zip has {len(infos)} members, more than the {limits.max_members} allowed")
        entries, others, folders = [], [], []
        for info in infos:
            parts = _member_parts(info)  # checks every member, even the ones skipped below
            if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue
            if info.is_dir():
                folders.append(parts)
                continue
            if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
                others.append((info, parts))
                continue
            if info.file_size > limits.max_member_bytes:
                raise UnsafeArchiveError(
                    f"zip member {info.filename!r} expands to {info.file_size} bytes, over the "
                    f"{limits.max_member_bytes}-byte limit per image"
                )
            entries.append((info, parts))
        if not entries:
            raise UserInputError("the zip holds no images", hint="one folder per class, with .jpg/.png images inside")
        tops = {parts[0] for _, parts in entries}
        strip = 1 if len(tops) == 1 and all(len(parts) >= 3 for _, parts in entries) else 0
        report = UploadReport(
            {},
            [
                {
                    "file": info.filename,
                    "reason": "not an image (only .jpg, .png, .bmp, .webp, .gif and .tif files are taken)",
                }
                for info, _ in others
            ],
        )
        # class folders the zip names (folder entries, or the folder of a non-image file), with images or not
        named = {safe_name(p[strip], "class name") for p in folders if len(p) == strip + 1} | {
            safe_name(p[strip], "class name") for _, p in others if len(p) == strip + 2
        }
        declared = sum(info.file_size for info, _ in entries)
        if declared > limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"the zip expands to {declared} bytes, over the {limits.max_total_bytes}-byte limit"
            )
        counts: Counter[str] = Counter()
        total = 0
        dest.mkdir(parents=True)
        try:
            for info, parts in entries:
                parts = parts[strip:]
                if len(parts) != 2:
                    raise UserInputError(
                        f"zip member {info.filename!r} is not in a class folder",
                        hint="lay the zip out as CLASS/IMAGE (or TOP/CLASS/IMAGE)",
                    )
                cls = safe_name(parts[0], "class name")
                suffix = PurePosixPath(parts[1]).suffix  # as the user wrote it (.JPG too)
                out_dir = dest / cls
                out_dir.mkdir(exist_ok=True)
                target = _unique(out_dir, f"{safe_name(PurePosixPath(parts[1]).stem, 'file name')}{suffix}")
                written = 0
                with zf.open(info) as r, open(target, "wb") as w:
                    while True:
                        chunk = r.read(1 << 16)
                        if not chunk:
                            break
                        written += len(chunk)
                        total += len(chunk)
                        # count real bytes: a header can lie about file_size
                        if written > limits.max_member_bytes or total > limits.max_total_bytes:
                            raise UnsafeArchiveError(f"zip member {info.filename!r} expands beyond the size limits")
                        if written > 1 << 20 and written > limits.max_ratio * max(info.compress_size, 1):
                            raise UnsafeArchiveError(
                                f"zip member {info.filename!r} expands more than {limits.max_ratio:.0f}x: "
                                "refusing a likely zip bomb"
                            )
                        w.write(chunk)
                why = _readable(target)
                if why:
                    target.unlink()
                    report.skipped.append({"file": info.filename, "reason": why})
                    continue
                counts[cls] += 1
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            shutil.rmtree(dest, ignore_errors=True)
            raise UserInputError(f"the zip is damaged: {e}", hint="zip the folder again and re-upload") from e
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    for d in dest.iterdir():
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()  # every image in it was unreadable
    report.classes = dict(sorted(counts.items()))
    report.empty_classes = sorted(named - set(counts))
    if not counts:
        shutil.rmtree(dest, ignore_errors=True)
        listed = "; ".join(f"{s['file']}: {s['reason']}" for s in report.skipped[:5])
        raise UserInputError(
            f"no image in the zip could be read ({listed})", hint="one folder per class, with .jpg/.png images inside"
        )
    return report
