"""``Detector(ART).predict(images)``: images -> boxes in each image's own pixels, without torch.

The server's ``:detect`` endpoint, the packaged SDK and ``bushu eval`` share ``prepare`` and
``DetectionHead`` (bushu.detection.decode), so they all see the same boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError
from ..model.artifact import Artifact, Preprocess
from .boxes import Detection
from .decode import DetectionHead, Transform

__all__ = ["Detector", "head_for", "prepare"]


def prepare(images: Sequence[Any], pp: Preprocess) -> tuple[np.ndarray, list[Transform]]:
    """Images (paths, bytes, PIL images, HxWxC uint8 arrays) -> one float32 batch + each image's transform."""
    from ..model.processing import fit_image, load_image, preprocess_image

    arrays, transforms = [], []
    for im in images:
        img = (im if hasattr(im, "convert") else load_image(im)).convert("RGB")
        fitted, t = fit_image(img, pp)
        arrays.append(preprocess_image(fitted, _without_resize(pp)))
        transforms.append((*t, *img.size))
    return np.stack(arrays), transforms


def _without_resize(pp: Preprocess) -> Preprocess:
    from dataclasses import replace

    return replace(pp, resize=None, crop=None, params={k: v for k, v in pp.params.items() if k != "size"})


def head_for(art: Artifact, labels: Sequence[str] | None = None) -> DetectionHead:
    """The decoder an artifact records (class names: ``labels``, else the artifact's), or an ArtifactError."""
    post, pp = art.postprocess, art.preprocess
    if art.task != "detection" or post is None or post.kind != "detection" or not post.params:
        raise ArtifactError(
            f"{art.path} is not a detection artifact (task {art.task!r})",
            hint="import the detector with: bushu import MODEL -o ART --task detection",
        )
    if pp is None or not pp.params.get("size"):
        raise ArtifactError(
            f"{art.path} records no detection pre-processing (preprocess.params.size)",
            hint="re-import it with this bushu version: bushu import MODEL -o ART --task detection",
        )
    h, w = (int(v) for v in pp.params["size"])
    return DetectionHead(post.params, labels or art.labels, (h, w))


class Detector:
    """Images -> ``list[list[Detection]]`` from a detection artifact, on any installed backend."""

    def __init__(
        self,
        artifact: Artifact | str | Path,
        backend: str | None = None,
        threads: int | None = None,
        model_path: str | Path | None = None,
        **backend_options: Any,
    ):
        """``model_path``: another model file with the artifact's inputs, pre-processing and decoder (an int8 or
        converted copy being judged against the artifact's own, see bushu.detection.validate)."""
        from ..runtime import load_backend

        self.art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        self.head = head_for(self.art)
        opts = {**backend_options, **({"threads": threads} if threads else {})}
        self.backend = load_backend(model_path or self.art.model_path, backend, **opts)
        self.input_name = self.backend.inputs[0].name
        self.one_at_a_time = self.backend.inputs[0].shape[:1] == (1,)  # exported with a fixed batch of 1

    def predict(
        self, images: Sequence[Any], score: float | None = None, iou: float | None = None, max_det: int | None = None
    ) -> list[list[Detection]]:
        """Defaults for score / iou / max_det are the artifact's recorded postprocess."""
        images = list(images)
        if not images:
            return []
        self.head.settings(score, iou, max_det)  # bad thresholds fail before the model runs
        assert self.art.preprocess is not None  # a detector artifact records its pre-processing
        batch, transforms = prepare(images, self.art.preprocess)
        step = 1 if self.one_at_a_time else len(batch)
        parts = [self.backend.infer({self.input_name: batch[i : i + step]}) for i in range(0, len(batch), step)]
        outputs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return self.head(outputs, transforms, score, iou, max_det)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
