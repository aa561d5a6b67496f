"""Audio classification: clips -> log-mel spectrogram images -> the image pipeline.

No pretrained audio weights ship offline, so a clip becomes a picture of its spectrogram
(bushu.model.audio, numpy only) and the image backbones' frozen features, head search and export
run unchanged. The artifact's ``preprocess`` is the backbone's with ``kind: audio`` and the
spectrogram settings in ``params``, so `bushu eval` and the server turn a .wav into the same pixels.
Flipped copies (the image augmentation) would play speech backwards, so they are off.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..model.artifact import Preprocess
from ..model.audio import DEFAULT_SPECTROGRAM
from . import TrainConfig
from .data import Dataset
from .features import backbone_preprocess

__all__ = ["audio_preprocess", "spectrogram_settings", "train_audio"]

MAX_SECONDS = 10.0


def spectrogram_settings(ds: Dataset) -> dict[str, Any]:
    """The defaults, with a clip length that holds 95% of the training clips whole (0.25 s steps, 0.5-10 s)."""
    secs = [it.seconds for it in ds.train if it.seconds]
    p95 = float(np.percentile(secs, 95)) if secs else DEFAULT_SPECTROGRAM["duration"]
    duration = min(MAX_SECONDS, max(0.5, math.ceil(p95 * 4) / 4))
    return {**DEFAULT_SPECTROGRAM, "duration": duration}


def audio_preprocess(backbone: str, image_size: int | None, params: dict[str, Any]) -> Preprocess:
    pp = backbone_preprocess(backbone, image_size)
    return replace(pp, kind="audio", resize=None, params=dict(params))  # the spectrogram is drawn at crop x crop


def train_audio(cfg: TrainConfig, ds: Dataset, echo) -> dict[str, Any]:
    from .image import train_images

    params = spectrogram_settings(ds)
    echo(
        f"audio: {params['duration']:g} s clips at {params['sample_rate']} Hz -> {params['n_mels']}-band log-mel "
        "spectrogram images"
    )
    return train_images(
        replace(cfg, augment=False), ds, echo, preprocess_for=lambda name, size: audio_preprocess(name, size, params)
    )
