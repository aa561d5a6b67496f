"""bushu predict's one-pass resize + centre crop (processing.fused_crop, preprocess_image_fused) against the
two-step path every other command uses (preprocess_image: resize the whole image, then crop)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bushu.model.artifact import Preprocess
from bushu.model.processing import fused_crop, load_image, preprocess_image, preprocess_image_fused

# EfficientNet-Lite0's recorded pre-processing (bushu import efficientnet_lite0)
LITE0 = Preprocess(
    resize=256, crop=224, interpolation="bicubic", scale=1 / 255, mean=[0.5] * 3, std=[0.5] * 3, layout="NCHW"
)
IMAGENET = Preprocess(resize=256, crop=224)  # bilinear, ImageNet mean / std


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list:
    pytest.importorskip("skimage")
    from bushu.testing.photos import write_imagenet_photos

    root = write_imagenet_photos(tmp_path_factory.mktemp("photos"), per_class=40)
    paths = sorted(root.rglob("*.jpg"))
    assert len(paths) == 200
    return [load_image(p) for p in paths]


def two_step(img, pp: Preprocess):
    """preprocess_image's resize + crop, as PIL images (its float conversion left out)."""
    from PIL import Image

    img = img.convert("RGB")
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[pp.interpolation]
    w, h = img.size
    s = pp.resize / min(w, h)
    img = img.resize((max(1, round(w * s)), max(1, round(h * s))), resample)
    w, h = img.size
    left, top = int(round((w - pp.crop) / 2.0)), int(round((h - pp.crop) / 2.0))
    return img.crop((left, top, left + pp.crop, top + pp.crop))


@pytest.mark.parametrize("pp", [LITE0, IMAGENET], ids=["bicubic", "bilinear"])
def test_fused_crop_matches_resize_then_crop_on_200_photos(photos, pp):
    worst, differing, total = 0, 0, 0
    for img in photos:
        a = np.asarray(two_step(img, pp), np.int16)
        b = np.asarray(fused_crop(img, pp), np.int16)
        assert a.shape == b.shape == (224, 224, 3)
        d = np.abs(a - b)
        worst, differing, total = max(worst, int(d.max())), differing + int((d > 0).sum()), total + d.size
    # the same source pixels and filter weights; float rounding in the fixed-point weights flips a few values
    # (measured: 0.01% of them for bicubic, 0.1% for bilinear, by 1 or 2 grey levels)
    assert worst <= 2, worst
    assert differing / total < 5e-3, differing / total


@pytest.mark.parametrize(
    "pp",
    [
        LITE0,
        IMAGENET,
        dataclasses.replace(IMAGENET, color="BGR", layout="NHWC"),
        dataclasses.replace(IMAGENET, resize=None),  # crop only
        dataclasses.replace(IMAGENET, crop=None),  # resize only
        dataclasses.replace(IMAGENET, resize=200),  # a crop larger than the resized image: black borders
    ],
    ids=["lite0", "imagenet", "bgr-nhwc", "crop-only", "resize-only", "crop-beyond"],
)
def test_fused_preprocess_matches_the_two_step_arrays(photos, pp):
    per_level = float(np.max(pp.scale / np.asarray(pp.std)))  # one grey level in the model's units
    for img in photos[::20] + [photos[0].convert("L"), photos[1].convert("RGBA"), photos[2].convert("P")]:
        a, b = preprocess_image(img, pp), preprocess_image_fused(img, pp)
        assert a.shape == b.shape and b.dtype == np.float32 and b.flags.c_contiguous
        assert np.abs(a - b).max() <= 2 * per_level + 1e-5
