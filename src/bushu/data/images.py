"""Opening image files: the one decoder `bushu train`, `eval`, `optimize`, `plan` and `export` share.

Any Pillow-readable jpg/png/bmp/webp/...; transparency (RGBA, LA, palette) is composited on white,
as image viewers show it, before the pre-processing converts to RGB.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserInputError
from .folders import LabelledFolder, Skipped
from .suffixes import suffix_list

__all__ = ["ImageFolder", "Skipped", "open_image"]

#: a folder per class of images (the name the UI and older callers use)
ImageFolder = LabelledFolder


def open_image(path: str | Path):
    """Decode an image file fully, transparency composited on white; a UserInputError for a file that
    is not an image, corrupt or truncated."""
    from PIL import Image, UnidentifiedImageError

    try:
        img: Image.Image = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserInputError(f"cannot decode {path} as an image: {e}", hint=f"use a {suffix_list('image')} file") from e
    if img.width < 1 or img.height < 1:
        raise UserInputError(f"{path}: image has no pixels")
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img
