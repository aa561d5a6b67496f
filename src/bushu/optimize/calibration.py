"""Calibration and validation data for compression: a one-method reader, as ONNX Runtime's.

    reader.get_next() -> {input name: batch array} or None when exhausted

``calibration_reader(source, artifact)`` builds one from a folder of images (folder-per-class or
flat, pre-processed as the artifact says) or from ``.npy`` / ``.npz`` arrays. Labelled folders also
give ``labels`` (class names per sample) so the same data can measure accuracy.
Bad data fails here, before any quantization, with the model's expected input in the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..data.arrays import ArrayReader, scan_images
from ..data.arrays import check_array as _check_array
from ..data.arrays import expected as _expected
from ..data.arrays import image_arrays as from_image_folder
from ..data.suffixes import ARRAY_SUFFIXES
from ..errors import UserInputError
from ..spec import TensorSpec

__all__ = ["ArrayReader", "CalibrationReader", "calibration_reader", "from_arrays", "from_image_folder", "scan_images"]


class CalibrationReader(Protocol):
    def get_next(self) -> dict[str, np.ndarray] | None: ...


def from_arrays(
    source: str | Path | Mapping[str, np.ndarray],
    specs: Sequence[TensorSpec],
    limit: int | None = 100,
    batch_size: int = 1,
) -> ArrayReader:
    """``.npy`` (one input), ``.npz`` (arrays named as inputs) or a dict → a reader, checked against ``specs``."""
    name = str(source) if not isinstance(source, Mapping) else "the given arrays"
    if isinstance(source, Mapping):
        arrays = dict(source)
    else:
        path = Path(source)
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise UserInputError(
                f"cannot read {path} as numpy arrays: {e}", hint="save with numpy.save (.npy) or numpy.savez (.npz)"
            ) from e
        if isinstance(loaded, np.ndarray):
            if len(specs) != 1:
                raise UserInputError(
                    f"{path.name} holds one array but the model has {len(specs)} inputs ({_expected(specs)})",
                    hint="use numpy.savez with one array per input name",
                )
            arrays = {specs[0].name: loaded}
        else:
            arrays = {k: loaded[k] for k in loaded.files}
            if len(specs) == 1 and len(arrays) == 1:
                arrays = {specs[0].name: next(iter(arrays.values()))}
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise UserInputError(
            f"{name} has arrays {sorted(arrays)}, but the model needs {missing} (expected {_expected(specs)})",
            hint="name the arrays after the model's inputs",
        )
    feeds = {}
    for s in specs:
        a = arrays[s.name]
        if a.ndim == len(s.shape) - 1:  # one sample without the batch dim
            a = a[None]
        feeds[s.name] = _check_array(s, a, name)
    counts = {len(a) for a in feeds.values()}
    if len(counts) != 1:
        raise UserInputError(f"{name}: inputs have different numbers of samples {sorted(counts)}")
    if next(iter(counts)) == 0:
        raise UserInputError(f"{name} holds no samples", hint=f"the model expects {_expected(specs)}")
    if limit:
        feeds = {k: v[:limit] for k, v in feeds.items()}
    return ArrayReader(feeds, batch_size, source=name)


def calibration_reader(
    source: str | Path | Mapping[str, np.ndarray] | ArrayReader, artifact, limit: int | None = 100, batch_size: int = 1
) -> ArrayReader:
    """Any supported calibration source for ``artifact`` → an ArrayReader."""
    if isinstance(source, ArrayReader):
        return source
    if isinstance(source, Mapping):
        return from_arrays(source, artifact.inputs, limit, batch_size)
    path = Path(source)
    if path.is_file() and path.suffix.lower() in ARRAY_SUFFIXES:
        return from_arrays(path, artifact.inputs, limit, batch_size)
    if path.is_dir():
        return from_image_folder(path, artifact.inputs, artifact.preprocess, limit, batch_size)
    if not path.exists():
        raise UserInputError(
            f"calibration data not found: {path}", hint="pass a folder of images, or a .npy/.npz file of model inputs"
        )
    raise UserInputError(
        f"cannot use {path.name} as calibration data (suffix {path.suffix or 'none'})",
        hint="pass a folder of images, or a .npy/.npz file of model inputs",
    )
