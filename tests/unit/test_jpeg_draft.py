"""bushu predict --fast-decode: processing.jpeg_draft decodes a large JPEG at 1/2, 1/4 or 1/8 scale, never below
``gap`` times the size the model's shorter-side resize needs, and leaves everything else alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from bushu.model.artifact import Preprocess
from bushu.model.predict import prepare_one
from bushu.model.processing import DRAFT_GAP, _resized_size, jpeg_draft, load_image

LITE0 = Preprocess(
    resize=256, crop=224, interpolation="bicubic", scale=1 / 255, mean=[0.5] * 3, std=[0.5] * 3, layout="NCHW"
)


def photo(size: tuple[int, int]) -> Image.Image:
    """A smooth photo-like RGB image (gradients and a disc) of ``size`` (w, h)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    disc = ((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2) * 120
    rgb = np.stack([x * 255 // w, y * 255 // h, 60 + disc], -1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("draft")
    out = {}
    for name, size, fmt in [
        ("big.jpg", (2048, 1536), "JPEG"),  # 4x the 341x256 resize on each side: 1/2 at gap 2, 1/4 at gap 1
        ("huge.jpg", (4000, 3000), "JPEG"),
        ("small.jpg", (640, 427), "JPEG"),  # 1/2 would be 213 px, under the resize: full decode
        ("big.png", (2048, 1536), "PNG"),  # not a JPEG: no DCT scaling
    ]:
        photo(size).save(d / name, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
        out[name] = d / name
    return out


@pytest.mark.parametrize(
    ("name", "gap", "scale"),
    [
        ("big.jpg", 2, 2),
        ("big.jpg", 1, 4),
        ("huge.jpg", 2, 4),
        ("huge.jpg", 1, 8),
        ("small.jpg", 1, 1),
        ("big.png", 1, 1),
    ],
)
def test_draft_scale_keeps_gap_times_the_resized_size(files, name, gap, scale):
    with Image.open(files[name]) as img:
        w, h = img.size
        assert jpeg_draft(img, LITE0, gap) == scale
        img.load()
        rw, rh = _resized_size(w, h, 256)
        assert img.size == (-(-w // scale), -(-h // scale))
        assert img.size[0] >= gap * rw and img.size[1] >= gap * rh


@pytest.mark.parametrize(
    "pp",
    [
        dataclasses.replace(LITE0, resize=None),  # crop only: the crop's pixels come from the full image
        dataclasses.replace(LITE0, params={"size": [320, 320]}),  # a detector's whole-image fit
        dataclasses.replace(LITE0, resize=200),  # a crop wider than the resized image
    ],
    ids=["crop-only", "detector-fit", "crop-beyond"],
)
def test_no_draft_where_the_preprocessing_is_not_a_shorter_side_resize(files, pp):
    with Image.open(files["huge.jpg"]) as img:
        assert jpeg_draft(img, pp) == 1
        img.load()
        assert img.size == (4000, 3000)


def test_fast_decode_gives_the_same_shape_and_nearly_the_same_input(files):
    exact = prepare_one(LITE0, str(files["huge.jpg"]), fused=True)
    fast = prepare_one(LITE0, str(files["huge.jpg"]), fused=True, fast_decode=True)
    assert fast.shape == exact.shape == (3, 224, 224) and fast.dtype == np.float32
    grey = 1 / 255 / 0.5  # one grey level in the model's units
    assert np.abs(fast - exact).mean() < 2 * grey, np.abs(fast - exact).mean() / grey
    assert not np.array_equal(fast, exact)  # it did decode at a reduced scale
    small = str(files["small.jpg"])  # too small to scale: the exact path, bit for bit
    assert np.array_equal(
        prepare_one(LITE0, small, fused=True, fast_decode=True), prepare_one(LITE0, small, fused=True)
    )
    assert DRAFT_GAP == 2  # the gap docs/notes.md and --fast-decode's figures were measured with


def test_load_image_drafts_only_when_asked(files):
    assert load_image(files["huge.jpg"]).size == (4000, 3000)
    assert load_image(files["huge.jpg"], LITE0).size == (1000, 750)
    assert load_image(files["huge.jpg"].read_bytes(), LITE0).size == (1000, 750)
