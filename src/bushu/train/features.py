"""Frozen-backbone features, extracted once and cached on disk (``WORK/features/*.npz``).

Image backbones are the offline pretrained zoo models with their classifier removed; each yields a
pooled feature vector per image. Training images are also extracted horizontally flipped (the
cheap augmentation that suits frozen features). The cache key covers the backbone, the input size,
the pre-processing and the exact files (names, sizes, mtimes), so a changed dataset is re-extracted
and an unchanged one never is.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.images import open_image
from ..errors import ArtifactError, UnknownNameError
from ..model.artifact import Preprocess
from .data import Dataset, Item

__all__ = ["IMAGE_BACKBONES", "FeatureSet", "backbone_module", "backbone_preprocess", "image_features"]

IMAGE_BACKBONES = ("efficientnet_lite0", "mobilenet_v2", "efficientnet_lite1", "efficientnet_lite2")
BATCH = 16


class FeatureSet(dict):
    """{"train": [N, D], "train_flip": [N, D] (images), "val": [M, D]} float32 arrays, plus timing."""

    seconds: float = 0.0
    cached: bool = False


def input_side(pp: Preprocess) -> int:
    """The side of the square input the model takes (``pp.crop``: every backbone's and audio pre-processing
    records it)."""
    if pp.crop is None:
        raise ArtifactError(f"the {pp.kind} pre-processing records no input size (crop)")
    return int(pp.crop)


def backbone_preprocess(name: str, image_size: int | None) -> Preprocess:
    """The zoo model's pre-processing, scaled to ``image_size`` (resize keeps the zoo's crop ratio)."""
    from ..model import zoo

    m = zoo.get(name)
    pp = m.preprocess
    if not image_size or image_size == pp.crop:
        return pp
    crop = input_side(pp)
    ratio = (pp.resize or crop) / crop
    return replace(pp, crop=int(image_size), resize=int(round(image_size * ratio)))


def backbone_module(name: str) -> Any:
    """The zoo model, pretrained, with its classifier replaced by identity: image -> pooled features."""
    import torch

    from ..model import zoo

    if name not in IMAGE_BACKBONES:
        raise UnknownNameError("backbone", name, IMAGE_BACKBONES)
    module, _ = zoo.build(name)
    if hasattr(module, "reset_classifier"):  # timm
        module.reset_classifier(0)
    else:  # torchvision mobilenet_v2: classifier = Sequential(Dropout, Linear)
        module.classifier = torch.nn.Identity()
    return module.eval()


def _key(name: str, pp: Preprocess, ds: Dataset, flip: bool) -> str:
    h = hashlib.sha1(json.dumps({"backbone": name, "pp": pp.to_dict(), "flip": flip, "v": 1}, sort_keys=True).encode())
    h.update(ds.fingerprint().encode())
    return h.hexdigest()[:16]


def image_features(
    ds: Dataset,
    name: str,
    pp: Preprocess,
    cache_dir: Path,
    *,
    flip: bool = True,
    progress: Callable[[int], None] | None = None,
) -> FeatureSet:
    """Features of every train (and flipped train) and val image for backbone ``name``, from cache if present."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{name}-{pp.crop}-{_key(name, pp, ds, flip)}.npz"
    if path.is_file():
        with np.load(path) as z:
            fs = FeatureSet({k: z[k] for k in z.files if k != "seconds"})
            fs.seconds = float(z["seconds"]) if "seconds" in z.files else 0.0
        fs.cached = True
        if progress:
            progress(len(ds.train) * (2 if flip else 1) + len(ds.val))
        return fs
    t0 = time.perf_counter()
    module = backbone_module(name)
    fs = FeatureSet()
    fs["train"] = _extract(module, ds.train, pp, False, progress)
    if flip:
        fs["train_flip"] = _extract(module, ds.train, pp, True, progress)
    fs["val"] = _extract(module, ds.val, pp, False, progress)
    fs.seconds = time.perf_counter() - t0
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, seconds=np.float64(fs.seconds), **fs)
    tmp.replace(path)  # a killed run never leaves a half-written cache file
    return fs


def load_pixels(items: list[Item], pp: Preprocess, flip: bool = False) -> np.ndarray:
    from PIL import ImageOps

    from ..model.processing import preprocess_image

    arrays = []
    for it in items:
        if pp.kind == "audio":  # a clip's log-mel spectrogram, as the served model computes it
            from ..model.audio import audio_image

            img = audio_image(it.source, pp.params, input_side(pp))
        else:
            img = open_image(it.source)
        if flip:
            img = ImageOps.mirror(img)
        arrays.append(preprocess_image(img, pp))
    return np.stack(arrays) if arrays else np.zeros((0, 3, input_side(pp), input_side(pp)), np.float32)


def _extract(
    module: Any, items: list[Item], pp: Preprocess, flip: bool, progress: Callable[[int], None] | None
) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(items), BATCH):
            chunk = items[i : i + BATCH]
            x = torch.from_numpy(load_pixels(chunk, pp, flip))
            out.append(module(x).reshape(len(chunk), -1).numpy().astype(np.float32))
            if progress:
                progress(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
