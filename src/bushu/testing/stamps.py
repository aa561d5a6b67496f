"""Real photo cut-outs, offline: the photo stamps of Debian's ``tuxpaint-stamps-default``.

The package installs ~800 PNG photos with transparent backgrounds (about 130 px a side) in category
folders under ``/usr/share/tuxpaint/stamps`` (GPL-2). They are real photos of birds, fruit, flowers,
vegetables, cattle, tools, fish, planets, insects..., which makes them a small, honest photo set for
classification (``stamp_images``) and, composited onto real backgrounds with their exact alpha
bounding boxes, for detection.

``stamp_categories()`` maps a category name to its PNG files. Cartoon drawings, letters, symbols and
other non-photo folders are left out by name: only the folders listed in ``PHOTO_CATEGORIES`` count.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import NotFoundError, UnknownNameError

__all__ = ["PHOTO_CATEGORIES", "STAMPS_DIR", "stamp_categories", "stamp_images"]

#: where Debian installs the stamps; BUSHU_TUXPAINT_STAMPS overrides it (another distribution's layout)
STAMPS_DIR = Path(os.environ.get("BUSHU_TUXPAINT_STAMPS", "/usr/share/tuxpaint/stamps"))

#: category -> folder under STAMPS_DIR (PNGs directly inside; sub-folders such as ``cartoon`` are not photos).
#: The ten largest photo folders of tuxpaint-stamps-default 1:2022.06.04 (counts as installed there).
PHOTO_CATEGORIES: dict[str, str] = {
    "birds": "animals/birds",  # 35
    "fruit": "food/fruit",  # 26
    "flowers": "plants/flowers",  # 24
    "vegetables": "food/vegetables",  # 18
    "bovines": "animals/mammals/bovines",  # 16
    "mammals": "animals/mammals",  # 13
    "tools": "household/tools",  # 13
    "fish": "animals/fish",  # 11
    "planets": "space/planets",  # 10
    "insects": "animals/insects",  # 9
}

_INSTALL = "apt-get install tuxpaint-stamps-default"


def stamp_categories(categories: list[str] | None = None, min_count: int = 1) -> dict[str, list[Path]]:
    """category -> sorted PNG paths, for ``categories`` (default: all of PHOTO_CATEGORIES) with at least ``min_count``.

    Raises NotFoundError with the apt command when the package is not installed.
    """
    if not STAMPS_DIR.is_dir():
        raise NotFoundError(f"the Tux Paint photo stamps are not installed ({STAMPS_DIR} is missing)", hint=_INSTALL)
    names = list(PHOTO_CATEGORIES) if categories is None else categories
    unknown = [n for n in names if n not in PHOTO_CATEGORIES]
    if unknown:
        raise UnknownNameError("stamp category", unknown[0], list(PHOTO_CATEGORIES))
    out: dict[str, list[Path]] = {}
    for name in names:
        files = sorted(p for p in (STAMPS_DIR / PHOTO_CATEGORIES[name]).glob("*.png") if p.is_file())
        if len(files) >= min_count:
            out[name] = files
    return out


def stamp_images(
    categories: list[str] | None = None, size: int | None = None, background: tuple[int, int, int] = (255, 255, 255)
):
    """Yield ``(category, path, PIL RGB image)``: each stamp flattened onto ``background``, optionally resized to ``size``.

    For classification; detection composites the RGBA stamp itself (its alpha gives the exact box).
    """
    from PIL import Image

    for cat, files in stamp_categories(categories).items():
        for path in files:
            with Image.open(path) as im:
                rgba = im.convert("RGBA")
            flat = Image.new("RGB", rgba.size, background)
            flat.paste(rgba, mask=rgba.getchannel("A"))
            if size:
                flat = flat.resize((size, size), Image.Resampling.BILINEAR)
            yield cat, path, flat
