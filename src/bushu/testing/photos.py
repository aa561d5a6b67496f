"""Real labelled photos for ImageNet models, offline: the photos scikit-image and scikit-learn ship.

``write_imagenet_photos(out)`` writes OUT/<ImageNet label>/*.jpg (an underscore for a space), a few
random crops and mirror images of each photo, so that calibration (int8) and validation have more
than one view per class. Used by the export tests and bench/export.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["PHOTO_CLASSES", "write_imagenet_photos"]

#: folder (ImageNet label) -> where the photo comes from
PHOTO_CLASSES = {
    "Egyptian_cat": "skimage chelsea",
    "espresso": "skimage coffee",
    "missile": "skimage rocket",
    "palace": "sklearn china.jpg",
    "daisy": "sklearn flower.jpg",
}


def _photos() -> dict[str, np.ndarray]:
    try:
        from skimage import data
        from sklearn.datasets import load_sample_images
    except ImportError as e:
        raise MissingDependencyError("the sample photos (scikit-image, scikit-learn)", "data") from e
    sk = load_sample_images()
    by_name = {Path(f).stem: im for f, im in zip(sk.filenames, sk.images, strict=True)}
    return {
        "Egyptian_cat": data.chelsea(),
        "espresso": data.coffee(),
        "missile": data.rocket(),
        "palace": by_name["china"],
        "daisy": by_name["flower"],
    }


def write_imagenet_photos(out: str | Path, per_class: int = 8, seed: int = 0) -> Path:
    """OUT/<class>/<class>_<i>.jpg: the whole photo, then random crops (60-100% a side), every other mirrored."""
    from PIL import Image

    out = Path(out)
    rng = np.random.default_rng(seed)
    for cls, img in _photos().items():
        d = out / cls
        d.mkdir(parents=True, exist_ok=True)
        h, w = img.shape[:2]
        for i in range(per_class):
            s = rng.uniform(0.6, 1.0) if i else 1.0
            ch, cw = int(h * s), int(w * s)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = img[y : y + ch, x : x + cw]
            if i % 2:
                crop = crop[:, ::-1]
            Image.fromarray(np.ascontiguousarray(crop)).save(d / f"{cls}_{i}.jpg", quality=92)
    return out
