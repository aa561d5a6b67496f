"""Calibration and validation data for compression: a one-method reader, as ONNX Runtime's.

    reader.get_next() -> {input name: batch array} or None when exhausted

``calibration_reader(source, artifact)`` builds one from a folder of images (folder-per-class or
flat, pre-processed as the artifact says) or from ``.npy`` / ``.npz`` arrays. Labelled folders also
give ``labels`` (class names per sample) so the same data can measure accuracy.
Bad data fails here, before any quantization, with the model's expected input in the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import UserInputError
from ..model.processing import IMAGE_SUFFIXES, load_image, preprocess_image
from ..spec import TensorSpec, dtype_name

__all__ = ["ArrayReader", "CalibrationReader", "calibration_reader", "from_arrays", "from_image_folder",
           "scan_images"]

ARRAY_SUFFIXES = (".npy", ".npz")


class CalibrationReader(Protocol):
    def get_next(self) -> dict[str, np.ndarray] | None: ...


@dataclass
class ArrayReader:
    """In-memory samples served in batches; ``rewind()`` starts over (calibration, then validation)."""

    feeds: dict[str, np.ndarray]  # name -> [N, ...]
    batch_size: int = 1
    labels: list[str] | None = None  # class name per sample, for labelled image folders
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # files that could not be read
    _pos: int = 0

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self):
            return None
        sl = slice(self._pos, self._pos + self.batch_size)
        self._pos += self.batch_size
        return {k: v[sl] for k, v in self.feeds.items()}

    def rewind(self) -> None:
        self._pos = 0

    def take(self, n: int) -> ArrayReader:
        """The first ``n`` samples as a new reader (a cheap subset for sensitivity analysis)."""
        return ArrayReader({k: v[:n] for k, v in self.feeds.items()}, self.batch_size,
                           self.labels[:n] if self.labels else None, self.source)


def _expected(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(str(s) for s in specs)


def scan_images(folder: Path) -> list[tuple[Path, str | None]]:
    """(image path, class name or None): images directly in ``folder`` and in its sub-folders.

    A folder whose images all sit in sub-folders is folder-per-class (the sub-folder is the class).
    """
    if not folder.is_dir():
        raise UserInputError(f"data folder not found: {folder}", hint="pass a folder of images or a .npy/.npz file")
    flat = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    nested = sorted((p, d.name) for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
                    for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if flat and nested:
        return [(p, None) for p in flat] + [(p, None) for p, _ in nested]
    return nested if nested else [(p, None) for p in flat]


def from_image_folder(folder: str | Path, specs: Sequence[TensorSpec], preprocess, limit: int | None = 100,
                      batch_size: int = 1) -> ArrayReader:
    """Images under ``folder`` → pre-processed float batches for the model's one image input."""
    folder = Path(folder)
    if preprocess is None or getattr(preprocess, "kind", "image") != "image":
        raise UserInputError(f"{folder} holds images, but the artifact has no image pre-processing; "
                             f"the model expects {_expected(specs)}",
                             hint="pass the inputs as a .npy/.npz file instead")
    if len(specs) != 1:
        raise UserInputError(f"an image folder can feed a model with one input; this one has {_expected(specs)}",
                             hint="pass a .npz file with one array per input name")
    items = scan_images(folder)
    if not items:
        raise UserInputError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)} files, "
                             "directly or one folder per class)",
                             hint=f"put a few dozen representative images there; the model expects {_expected(specs)}")
    if limit and len(items) > limit:
        # An even spread over classes beats the first N files of the first class.
        idx = np.linspace(0, len(items) - 1, num=limit).round().astype(int)
        items = [items[i] for i in sorted(set(idx))]
    arrays, labels, skipped = [], [], []
    for path, label in items:
        try:
            arrays.append(preprocess_image(load_image(path), preprocess))
            labels.append(label)
        except UserInputError:
            skipped.append(path.name)
    if not arrays:
        raise UserInputError(f"none of the {len(items)} image file(s) in {folder} could be decoded "
                             f"(e.g. {skipped[0]})", hint="check the files are real images, not truncated")
    x = np.stack(arrays)
    _check_array(specs[0], x, str(folder))
    return ArrayReader({specs[0].name: x}, batch_size, labels if all(labels) else None, str(folder), skipped)


def from_arrays(source: str | Path | Mapping[str, np.ndarray], specs: Sequence[TensorSpec],
                limit: int | None = 100, batch_size: int = 1) -> ArrayReader:
    """``.npy`` (one input), ``.npz`` (arrays named as inputs) or a dict → a reader, checked against ``specs``."""
    name = str(source) if not isinstance(source, Mapping) else "the given arrays"
    if isinstance(source, Mapping):
        arrays = dict(source)
    else:
        path = Path(source)
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise UserInputError(f"cannot read {path} as numpy arrays: {e}",
                                 hint="save with numpy.save (.npy) or numpy.savez (.npz)") from e
        if isinstance(loaded, np.ndarray):
            if len(specs) != 1:
                raise UserInputError(f"{path.name} holds one array but the model has {len(specs)} inputs "
                                     f"({_expected(specs)})", hint="use numpy.savez with one array per input name")
            arrays = {specs[0].name: loaded}
        else:
            arrays = {k: loaded[k] for k in loaded.files}
            if len(specs) == 1 and len(arrays) == 1:
                arrays = {specs[0].name: next(iter(arrays.values()))}
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise UserInputError(f"{name} has arrays {sorted(arrays)}, but the model needs {missing} "
                             f"(expected {_expected(specs)})", hint="name the arrays after the model's inputs")
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


def _check_array(spec: TensorSpec, a: np.ndarray, where: str) -> np.ndarray:
    want = np.dtype(spec.dtype) if spec.dtype != "bytes" else np.dtype(object)
    if a.dtype != want:
        # float64 from numpy defaults is fine for a float32 input; anything else is a real mismatch.
        if not (a.dtype.kind == "f" and want.kind == "f"):
            raise UserInputError(f"{where}: array for input {spec.name!r} has dtype {dtype_name(a.dtype)}, "
                                 f"expected {spec.dtype} ({spec})", hint=f"convert with .astype('{spec.dtype}')")
        a = a.astype(want)
    if a.ndim != len(spec.shape) or any(isinstance(d, int) and d >= 0 and g != d
                                        for g, d in zip(a.shape[1:], spec.shape[1:])):
        raise UserInputError(f"{where}: array for input {spec.name!r} has shape {list(a.shape)}, "
                             f"expected {list(spec.shape)} ({spec})",
                             hint="stack samples along the first axis; other dims must match the model")
    return np.ascontiguousarray(a)


def calibration_reader(source: str | Path | Mapping[str, np.ndarray] | ArrayReader, artifact,
                       limit: int | None = 100, batch_size: int = 1) -> ArrayReader:
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
        raise UserInputError(f"calibration data not found: {path}",
                             hint="pass a folder of images, or a .npy/.npz file of model inputs")
    raise UserInputError(f"cannot use {path.name} as calibration data (suffix {path.suffix or 'none'})",
                         hint="pass a folder of images, or a .npy/.npz file of model inputs")
