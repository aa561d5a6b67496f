"""What a command feeds the model: ``--input NAME:SHAPE[:DTYPE]`` shapes and ``--sample FILE.npz`` arrays.

One ``InputRequest`` per command run. Without either, inputs are derived by role from the IO spec
(bushu.spec.synthetic_feeds). ``--input`` may list several shapes (``input_ids:1x16,1x128``): each
position is one configuration of a sweep (bench runs them all, other commands the first); an input
with one shape keeps it in every configuration.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InferenceInputError, UserInputError
from .spec import TensorSpec, check_feeds, parse_dtype, resolve_shapes, synthetic_feeds

__all__ = ["InputRequest", "check_values", "load_sample", "parse_input"]


def _shape(text: str, arg: str) -> tuple[int, ...]:
    text = text.strip()
    if text in ("", "scalar"):
        return ()
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise UserInputError(
            f"--input {arg!r}: {text!r} is not a shape; expected dims joined by x, "
            "e.g. images:1x3x640x640 or input_ids:1x128:int64"
        ) from None
    if any(d < 1 for d in dims):
        raise UserInputError(f"--input {arg!r}: dims must be positive, got {text!r}")
    return dims


def parse_input(arg: str) -> tuple[str, list[tuple[tuple[int, ...], str | None]]]:
    """``NAME:SHAPE[:DTYPE][,SHAPE[:DTYPE]...]`` -> (name, [(shape, dtype or None), ...])."""
    name, sep, rest = arg.partition(":")
    if not sep or not name.strip() or not rest.strip():
        raise UserInputError(
            f"--input {arg!r}: expected NAME:SHAPE[:DTYPE], e.g. images:1x3x640x640 or input_ids:1x16:int64,1x128:int64"
        )
    out = []
    for item in rest.split(","):
        shape, _, dt = item.partition(":")
        out.append((_shape(shape, arg), parse_dtype(dt) if dt.strip() else None))
    return name.strip(), out


def load_sample(path: str | Path) -> dict[str, np.ndarray]:
    """A ``.npz`` of arrays keyed by input name -> dict; anything else -> one precise error."""
    path = Path(path)
    if not path.is_file():
        from .errors import NotFoundError

        raise NotFoundError(f"--sample {path}: file not found")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise InferenceInputError(
                f"--sample {path.name}: a single array, expected a .npz dict of arrays "
                "by input name (np.savez(FILE, input_ids=..., attention_mask=...))"
            )
        with z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise InferenceInputError(
            f"--sample {path.name}: not a .npz of plain arrays ({str(e).splitlines()[0][:200]})",
            hint="write it with numpy.savez(FILE, NAME=array, ...)",
        ) from None
    if not arrays:
        raise InferenceInputError(f"--sample {path.name}: holds no arrays")
    return arrays


def check_values(specs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray], what: str = "--sample") -> None:
    """Integer ids must lie within the recorded vocabulary (an embedding lookup out of range fails in the runtime)."""
    for s in specs:
        a = feeds.get(s.name)
        if a is None or s.values is None or a.size == 0 or a.dtype.kind not in "iu" or s.role != "token_ids":
            continue
        lo, hi = int(a.min()), int(a.max())
        if lo < s.values[0] or hi >= s.values[1]:
            raise InferenceInputError(
                f"{what}: input {s.name!r} has ids in [{lo}, {hi}], outside the model's "
                f"vocabulary [{int(s.values[0])}, {int(s.values[1])})"
            )


@dataclass
class InputRequest:
    """The ``--input``/``--sample`` of one command run (both optional)."""

    shapes: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    sample: dict[str, np.ndarray] | None = None
    sample_path: str | None = None

    @classmethod
    def parse(cls, inputs: Sequence[str] = (), sample: str | Path | None = None) -> InputRequest:
        req = cls(sample=load_sample(sample) if sample else None, sample_path=str(sample) if sample else None)
        for arg in inputs:
            name, items = parse_input(arg)
            if name in req.shapes:
                raise UserInputError(
                    f"--input {name} is given twice; list several shapes in one: --input {name}:1x16,1x128"
                )
            req.shapes[name] = [shape for shape, _ in items]
            dts = {dt for _, dt in items if dt}
            if len(dts) > 1:
                raise UserInputError(f"--input {arg!r}: one input takes one dtype, got {sorted(dts)}")
            if dts:
                req.dtypes[name] = dts.pop()
        return req

    def __bool__(self) -> bool:
        return bool(self.shapes) or self.sample is not None

    @property
    def n_configs(self) -> int:
        return max((len(v) for v in self.shapes.values()), default=1)

    def given(self, index: int = 0) -> dict[str, tuple[int, ...]]:
        """The shapes of configuration ``index`` (an input with one shape keeps it)."""
        return {n: v[min(index, len(v) - 1)] for n, v in self.shapes.items()}

    def check(self, specs: Sequence[TensorSpec]) -> None:
        """Every stated name, dtype and shape (and the sample's arrays) against the model's inputs."""
        for n, dt in self.dtypes.items():
            s = next((s for s in specs if s.name == n), None)
            if s is not None and s.dtype != dt:
                raise InferenceInputError(f"--input {n}: dtype {dt}, but the model's input {s} takes {s.dtype}")
        for i in range(self.n_configs):
            resolve_shapes(specs, self.given(i))
        if self.sample is not None:
            check_feeds(specs, self.sample, what=f"--sample {Path(self.sample_path or 'sample').name}: the model")
            check_values(specs, self.sample)

    def feeds(
        self, specs: Sequence[TensorSpec], batch: int | None = None, index: int = 0, seed: int = 0
    ) -> dict[str, np.ndarray]:
        """The sample (its first ``batch`` rows, repeated when it has fewer), else safe inputs at these shapes."""
        if self.sample is not None:
            check_feeds(specs, self.sample, what="--sample: the model")
            if batch is None:
                return dict(self.sample)
            by_name = {s.name: s for s in specs}
            return {k: _rows(v, batch) if by_name[k].has_batch else v for k, v in self.sample.items()}
        return synthetic_feeds(
            specs,
            batch=batch if batch is not None else (_batch(self.given(index), specs) or 1),
            seed=seed,
            shapes=self.given(index),
        )

    def shapes_at(
        self, specs: Sequence[TensorSpec], batch: int | None = None, index: int = 0
    ) -> dict[str, tuple[int, ...]]:
        if self.sample is not None:
            return {k: (batch, *v.shape[1:]) if batch else tuple(v.shape) for k, v in self.sample.items()}
        return resolve_shapes(specs, self.given(index), batch)

    def describe(self, specs: Sequence[TensorSpec], index: int = 0, batch: int | None = None) -> str:
        """``input_ids:1x128 attention_mask:1x128``: the sizes a row was measured at."""
        shapes = self.shapes_at(specs, batch, index)
        return " ".join(f"{n}:{'x'.join(map(str, v)) or 'scalar'}" for n, v in shapes.items())


def _batch(given: Mapping[str, tuple[int, ...]], specs: Sequence[TensorSpec]) -> int | None:
    """The batch the user's shapes state (None when they state none)."""
    for s in specs:
        if s.has_batch and given.get(s.name):
            return given[s.name][0]
    return None


def _rows(a: np.ndarray, n: int) -> np.ndarray:
    if len(a) >= n:
        return a[:n]
    return np.concatenate([a] * (-(-n // len(a))))[:n]
