"""Image folders as model inputs in memory: the samples `bushu optimize`, `plan` and compression read.

    reader = image_arrays(folder, art.inputs, art.preprocess)      # calibration: labels optional
    ds = labelled_arrays(folder, art, require="accuracy")          # + targets (output index per sample)

A folder is read flat (images directly in it) or folder-per-class (the sub-folder is the class);
``labelled_arrays`` maps the class folders to the model's outputs as `bushu eval` does.
Bad data fails here, with the model's expected input in the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..spec import TensorSpec, dtype_name
from .folders import scan_folder
from .suffixes import IMAGE_SUFFIXES

__all__ = ["ArrayReader", "image_arrays", "labelled_arrays", "scan_images"]

_LAYOUT_HINT = "put the images in one sub-folder per class (named as in labels.txt)"


@dataclass
class ArrayReader:
    """In-memory samples served in batches (ONNX Runtime's one-method calibration reader: ``get_next``);
    ``rewind()`` starts over (calibration, then validation)."""

    feeds: dict[str, np.ndarray]  # name -> [N, ...]
    batch_size: int = 1
    labels: list[str] | None = None  # class name per sample, for labelled image folders
    source: str = ""
    skipped: list[str] = field(default_factory=list)  # files that could not be read
    _pos: int = 0
    #: output index per sample, where the class folders are the model's labels (labelled_arrays)
    targets: np.ndarray | None = None
    #: why there are no targets: "" (there are), no class folders, or the folders are not the model's labels
    unlabelled: str = ""

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    @property
    def x(self) -> np.ndarray:
        """The one input's samples [N, ...]."""
        return next(iter(self.feeds.values()))

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
        return ArrayReader(
            {k: v[:n] for k, v in self.feeds.items()},
            self.batch_size,
            self.labels[:n] if self.labels else None,
            self.source,
            targets=self.targets[:n] if self.targets is not None else None,
            unlabelled=self.unlabelled,
        )


def expected(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(str(s) for s in specs)


def scan_images(folder: Path) -> list[tuple[Path, str | None]]:
    """(image path, class name or None): images directly in ``folder`` and in its sub-folders.

    A folder whose images all sit in sub-folders is folder-per-class (the sub-folder is the class).
    """
    if not folder.is_dir():
        raise UserInputError(f"data folder not found: {folder}", hint="pass a folder of images or a .npy/.npz file")
    scan = scan_folder(folder, IMAGE_SUFFIXES)
    unlabelled: list[tuple[Path, str | None]] = [(p, None) for p in scan.loose]
    if not scan.items:
        return unlabelled
    if scan.loose:  # both: no class per image
        return unlabelled + [(p, None) for p, _ in scan.items]
    return [(p, scan.classes[i]) for p, i in scan.items]


def image_arrays(
    folder: str | Path, specs: Sequence[TensorSpec], preprocess, limit: int | None = 100, batch_size: int = 1
) -> ArrayReader:
    """Images under ``folder`` → pre-processed float batches for the model's one image input."""
    from ..model.processing import preprocess_image
    from .images import open_image

    folder = Path(folder)
    if preprocess is None or getattr(preprocess, "kind", "image") != "image":
        raise UserInputError(
            f"{folder} holds images, but the artifact has no image pre-processing; the model expects {expected(specs)}",
            hint="pass the inputs as a .npy/.npz file instead",
        )
    if len(specs) != 1:
        raise UserInputError(
            f"an image folder can feed a model with one input; this one has {expected(specs)}",
            hint="pass a .npz file with one array per input name",
        )
    items = scan_images(folder)
    if not items:
        raise UserInputError(
            f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)} files, directly or one folder per class)",
            hint=f"put a few dozen representative images there; the model expects {expected(specs)}",
        )
    if limit and len(items) > limit:
        # An even spread over classes beats the first N files of the first class.
        idx = np.linspace(0, len(items) - 1, num=limit).round().astype(int)
        items = [items[i] for i in sorted(set(idx))]
    arrays, labels, skipped = [], [], []
    for path, label in items:
        try:
            arrays.append(preprocess_image(open_image(path), preprocess))
            labels.append(label)
        except Exception:  # noqa: BLE001 - any decode failure: list and skip
            skipped.append(path.name)
    if not arrays:
        raise UserInputError(
            f"none of the {len(items)} image file(s) in {folder} could be decoded (e.g. {skipped[0]})",
            hint="check the files are real images, not truncated",
        )
    x = np.stack(arrays)
    check_array(specs[0], x, str(folder))
    named = [label for label in labels if label]
    return ArrayReader(
        {specs[0].name: x}, batch_size, named if len(named) == len(labels) else None, str(folder), skipped
    )


def labelled_arrays(
    folder: str | Path,
    art: Any,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    require: str | None = None,
    allow_unmatched: bool = False,
) -> ArrayReader:
    """``image_arrays`` plus ``targets``: the model's output index per sample, where the class folders are
    the model's labels. A flat folder gives ``targets`` None (``unlabelled`` says why), or an error with
    ``require`` (what needs the labels, e.g. "accuracy"). Class folders that are not the model's labels
    raise match_classes' error, or with ``allow_unmatched`` give ``targets`` None as well."""
    from .labels import match_classes

    ds = image_arrays(folder, art.inputs, art.preprocess, limit=limit, batch_size=batch_size)
    if ds.labels is None:
        ds.unlabelled = f"{folder} has no class folders"
        if require:
            raise UserInputError(f"{ds.unlabelled}, so {require} cannot be measured", hint=_LAYOUT_HINT)
        return ds
    shape = art.outputs[0].shape
    n_out = shape[-1] if isinstance(shape[-1], int) else (len(art.labels) if art.labels else 1 << 30)
    try:
        index = match_classes(sorted(set(ds.labels)), art.labels, n_out)
    except UserInputError as e:
        if require or not allow_unmatched:
            raise
        ds.unlabelled = e.message
        return ds
    ds.targets = np.asarray([index[c] for c in ds.labels], np.int64)
    return ds


def check_array(spec: TensorSpec, a: np.ndarray, where: str) -> np.ndarray:
    """``a`` as ``spec`` wants it (float64 → float32 is fine), or a UserInputError naming the mismatch."""
    want = np.dtype(spec.dtype) if spec.dtype != "bytes" else np.dtype(object)
    if a.dtype != want:
        # float64 from numpy defaults is fine for a float32 input; anything else is a real mismatch.
        if not (a.dtype.kind == "f" and want.kind == "f"):
            raise UserInputError(
                f"{where}: array for input {spec.name!r} has dtype {dtype_name(a.dtype)}, "
                f"expected {spec.dtype} ({spec})",
                hint=f"convert with .astype('{spec.dtype}')",
            )
        a = a.astype(want)
    if a.ndim != len(spec.shape) or any(
        isinstance(d, int) and d >= 0 and g != d for g, d in zip(a.shape[1:], spec.shape[1:])
    ):
        raise UserInputError(
            f"{where}: array for input {spec.name!r} has shape {list(a.shape)}, expected {list(spec.shape)} ({spec})",
            hint="stack samples along the first axis; other dims must match the model",
        )
    return np.ascontiguousarray(a)
