"""Pre- and post-processing with numpy and Pillow only (the serving path and SDK never need torch)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.suffixes import IMAGE_SUFFIXES
from ..errors import UserInputError
from .artifact import Postprocess, Preprocess

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "fit_image",
    "fused_crop",
    "image_array",
    "jpeg_draft",
    "load_image",
    "preprocess_image",
    "preprocess_image_fused",
    "preprocess_images",
    "softmax",
    "top_k",
]


def load_image(src: str | Path | bytes | np.ndarray, draft_for: Preprocess | None = None):
    """Decode an image file or bytes (or wrap an HxW[xC] uint8 array) into a PIL image; a clear error otherwise.
    ``draft_for``: decode a large JPEG at 1/2, 1/4 or 1/8 scale when that stays at or above what ``draft_for``'s
    resize needs (``jpeg_draft``; bushu predict --fast-decode)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(src, np.ndarray):
        if src.dtype != np.uint8 or src.ndim not in (2, 3):
            raise UserInputError(f"an image array must be uint8 HxW or HxWxC, got {src.dtype} {list(src.shape)}")
        return Image.fromarray(src)
    try:
        img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
        if draft_for is not None:
            jpeg_draft(img, draft_for)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        name = "the uploaded bytes" if isinstance(src, (bytes, bytearray)) else str(src)
        why = (
            "this file is not an image we can read (JPEG, PNG, BMP, WebP, GIF)"
            if isinstance(e, UnidentifiedImageError)
            else str(e)
        )  # PIL's text names a BytesIO object's repr
        raise UserInputError(
            f"cannot decode {name} as an image: {why}",
            hint=f"send a {'/'.join(s[1:] for s in IMAGE_SUFFIXES[:5])} file",
        ) from e
    return img


#: jpeg_draft keeps the decoded image at least this many times the size the resize needs (bench/predict_draft.py:
#: with 2, 240/240 top-1 agreement with the exact decode on the check set; with 1, 230/240)
DRAFT_GAP = 2


def jpeg_draft(img: Image.Image, pp: Preprocess, gap: int = DRAFT_GAP) -> int:
    """Ask an opened, not yet loaded JPEG to decode at 1/2, 1/4 or 1/8 scale (libjpeg's DCT-domain scaling,
    PIL ``Image.draft``), the largest that keeps both sides at or above ``gap`` times the size ``pp.resize``
    (shorter side) resizes the image to; the bicubic/bilinear resize then starts from the smaller image. Returns
    the scale (1: unchanged: not a JPEG, no shorter-side resize, a detector's whole-image fit, or too small).
    The pixels differ a little from a full decode + resize (bench/predict_draft.py, docs/notes.md), so only
    bushu predict --fast-decode uses it; serve and the packaged SDK decode in full."""
    if getattr(img, "format", None) != "JPEG" or not pp.resize or pp.params.get("size"):
        return 1
    w, h = img.size
    rw, rh = _resized_size(w, h, int(pp.resize))
    if pp.crop and min(rw, rh) < int(pp.crop):  # the crop is wider than the resized image (black borders)
        return 1
    if min(w // (rw * gap), h // (rh * gap)) < 2:
        return 1
    img.draft(None, (rw * gap, rh * gap))
    return round(w / img.size[0])


def fit_image(img: Image.Image, pp: Preprocess) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """Resize a whole RGB image to ``pp.params["size"]`` ([h, w]), letterboxed or stretched.

    Returns the new image and (sx, sy, px, py): a point x in the original image is at x·sx + px in the
    model's input, so boxes map back with (x - px) / sx.
    """
    from PIL import Image

    h, w = (int(v) for v in pp.params["size"])
    resample = _resample(pp)
    iw, ih = img.size
    if pp.params.get("fit", "letterbox") == "stretch":
        return img.resize((w, h), resample), (w / iw, h / ih, 0.0, 0.0)
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    px, py = (w - nw) // 2, (h - nh) // 2
    pad = int(pp.params.get("pad", 114))
    canvas = Image.new("RGB", (w, h), (pad, pad, pad))
    canvas.paste(img.resize((nw, nh), resample) if (nw, nh) != (iw, ih) else img, (px, py))
    return canvas, (nw / iw, nh / ih, float(px), float(py))


def _resample(pp: Preprocess) -> int:
    from PIL import Image

    modes = Image.Resampling
    return {"bilinear": modes.BILINEAR, "bicubic": modes.BICUBIC, "nearest": modes.NEAREST}[pp.interpolation]


def _resized_size(w: int, h: int, short: int) -> tuple[int, int]:
    s = short / min(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _center_box(w: int, h: int, c: int) -> tuple[int, int, int, int]:
    left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
    return left, top, left + c, top + c


def preprocess_image(img: Image.Image, pp: Preprocess) -> np.ndarray:
    """One PIL image -> float32 array, CHW or HWC as ``pp.layout`` says (no batch dim)."""
    img = img.convert("RGB")
    resample = _resample(pp)
    if pp.params.get("size"):  # detectors: the whole image at the model's size
        img, _ = fit_image(img, pp)
    if pp.resize:
        img = img.resize(_resized_size(*img.size, int(pp.resize)), resample)
    if pp.crop:
        img = img.crop(_center_box(*img.size, int(pp.crop)))
    x = np.asarray(img, dtype=np.float32) * np.float32(pp.scale)
    if pp.color == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
    if pp.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def fused_crop(img, pp: Preprocess):
    """``pp.resize`` (shorter side) then the centre ``pp.crop``, in one resampling pass: only the crop's pixels
    are computed, from the same source pixels and filter weights as the two steps (PIL's ``resize(box=...)``
    reaches past the box edges like the full resize does). It differs from ``resize`` + ``crop`` by float rounding
    in the filter weights: at most 1 grey level (tests/unit/test_fused_crop.py). An RGB image of any size."""
    resample = _resample(pp)
    w, h = img.size
    rw, rh = _resized_size(w, h, int(pp.resize)) if pp.resize else (w, h)
    if not pp.crop:
        return img.resize((rw, rh), resample) if (rw, rh) != (w, h) else img
    c = int(pp.crop)
    left, top, right, bottom = _center_box(rw, rh, c)
    if (rw, rh) == (w, h):
        return img.crop((left, top, right, bottom))
    if left < 0 or top < 0 or right > rw or bottom > rh:  # a crop larger than the resized image: black borders
        return img.resize((rw, rh), resample).crop((left, top, right, bottom))
    sx, sy = w / rw, h / rh  # resized pixel -> source pixel, per axis (the rounded size makes them differ a little)
    return img.resize((c, c), resample, box=(left * sx, top * sy, right * sx, bottom * sy))


def image_array(img, pp: Preprocess) -> np.ndarray:
    """An RGB PIL image at the model's size -> float32 (x·scale - mean) / std, CHW or HWC: the uint8 pixels
    laid out once, converted to float32 once, then scaled and shifted in place (per channel ``scale/std`` and
    ``mean/std``), with no intermediate float arrays."""
    u8 = np.asarray(img)  # HxWx3 uint8
    if pp.color == "BGR":
        u8 = u8[..., ::-1]
    std = np.asarray(pp.std, np.float32)
    gain, offset = np.float32(pp.scale) / std, np.asarray(pp.mean, np.float32) / std
    if pp.layout == "NCHW":
        u8, gain, offset = u8.transpose(2, 0, 1), gain[:, None, None], offset[:, None, None]
    x = np.ascontiguousarray(u8).astype(np.float32)
    x *= gain
    x -= offset
    return x


def preprocess_image_fused(img, pp: Preprocess) -> np.ndarray:
    """``preprocess_image`` for throughput (bushu predict): resize and crop in one pass (``fused_crop``) and one
    float conversion (``image_array``). Same top-1; inputs differ by at most 1 grey level of rounding. Detectors'
    whole-image fits (``pp.params["size"]``) take the plain path."""
    if pp.params.get("size"):
        return preprocess_image(img, pp)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return image_array(fused_crop(img, pp), pp)


def preprocess_images(images: Sequence, pp: Preprocess) -> np.ndarray:
    """Images (paths, bytes or PIL images) -> one float32 batch."""
    arrays = [preprocess_image(im if hasattr(im, "convert") else load_image(im), pp) for im in images]
    return np.stack(arrays)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def top_k(
    logits: np.ndarray, labels: Sequence[str] | None, post: Postprocess | None = None, k: int | None = None
) -> list[list[tuple[int, str, float]]]:
    """Per row of a [batch, classes] array: the k best (index, label, score)."""
    post = post or Postprocess()
    k = min(k or post.top_k, logits.shape[-1])
    scores = softmax(logits.astype(np.float64)) if post.softmax else logits.astype(np.float64)
    idx = np.argsort(-scores, axis=-1)[:, :k]
    out = []
    for row, ids in zip(scores, idx):
        out.append([(int(i), labels[i] if labels and i < len(labels) else str(int(i)), float(row[i])) for i in ids])
    return out
