"""Tensor and model IO specs: names, dtypes and shapes with symbolic dims ("batch")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InferenceInputError

__all__ = ["DTYPES", "TensorSpec", "check_feeds", "np_dtype", "synthetic_feeds", "to_v2_datatype", "from_v2_datatype"]

# bushu dtype name -> (numpy dtype, KServe v2 / Triton datatype, ONNX TensorProto enum)
DTYPES: dict[str, tuple[Any, str, int]] = {
    "bool": (np.bool_, "BOOL", 9),
    "uint8": (np.uint8, "UINT8", 2),
    "uint16": (np.uint16, "UINT16", 4),
    "uint32": (np.uint32, "UINT32", 12),
    "uint64": (np.uint64, "UINT64", 13),
    "int8": (np.int8, "INT8", 3),
    "int16": (np.int16, "INT16", 5),
    "int32": (np.int32, "INT32", 6),
    "int64": (np.int64, "INT64", 7),
    "float16": (np.float16, "FP16", 10),
    "float32": (np.float32, "FP32", 1),
    "float64": (np.float64, "FP64", 11),
    "bytes": (np.object_, "BYTES", 8),
}
_FROM_V2 = {v2: name for name, (_, v2, _) in DTYPES.items()}
_FROM_ONNX = {enum: name for name, (_, _, enum) in DTYPES.items()}


def np_dtype(name: str) -> np.dtype:
    return np.dtype(DTYPES[name][0])


def dtype_name(dt: Any) -> str:
    """numpy dtype (or anything np.dtype accepts) -> bushu dtype name."""
    dt = np.dtype(dt)
    if dt.kind in "OSU":
        return "bytes"
    return dt.name


def to_v2_datatype(name: str) -> str:
    return DTYPES[name][1]


def from_v2_datatype(v2: str) -> str:
    try:
        return _FROM_V2[v2]
    except KeyError:
        raise InferenceInputError(f"unknown datatype {v2!r}; expected one of {sorted(_FROM_V2)}") from None


def from_onnx_elem_type(enum: int) -> str:
    return _FROM_ONNX.get(enum, f"onnx:{enum}")


Dim = int | str  # a str is a symbolic dimension such as "batch"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[Dim, ...]
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def has_batch(self) -> bool:
        return bool(self.shape) and isinstance(self.shape[0], str)

    def concrete_shape(self, batch: int = 1, fill: int = 1) -> tuple[int, ...]:
        """Replace the leading symbolic dim by ``batch`` and other symbolic dims by ``fill``."""
        out = []
        for i, d in enumerate(self.shape):
            out.append(d if isinstance(d, int) and d >= 0 else (batch if i == 0 else fill))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        return cls(name=str(d["name"]), dtype=str(d["dtype"]), shape=tuple(d["shape"]))

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(str(d) for d in self.shape)}]"


def check_feeds(specs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray], *, what: str = "model") -> None:
    """Raise InferenceInputError naming the first wrong input (name, dtype, rank or fixed dim)."""
    names = [s.name for s in specs]
    unknown = [k for k in feeds if k not in names]
    if unknown:
        from .errors import did_you_mean

        close = did_you_mean(unknown[0], names)
        extra = f"; did you mean {close[0]!r}?" if close else ""
        raise InferenceInputError(f"{what} has no input {unknown[0]!r}{extra} Expected inputs: {names}")
    for s in specs:
        if s.name not in feeds:
            raise InferenceInputError(f"{what} is missing input {s.name!r} ({s})")
        a = feeds[s.name]
        if dtype_name(a.dtype) != s.dtype:
            raise InferenceInputError(f"input {s.name!r} has dtype {dtype_name(a.dtype)}, expected {s.dtype}")
        if len(a.shape) != len(s.shape):
            raise InferenceInputError(
                f"input {s.name!r} has shape {list(a.shape)} (rank {a.ndim}), expected {list(s.shape)} (rank {len(s.shape)})"
            )
        for i, (got, want) in enumerate(zip(a.shape, s.shape, strict=True)):
            if isinstance(want, int) and want >= 0 and got != want:
                raise InferenceInputError(
                    f"input {s.name!r} has shape {list(a.shape)}, expected {list(s.shape)} (dim {i} must be {want})"
                )


def synthetic_feeds(specs: Sequence[TensorSpec], batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random inputs matching ``specs`` (for warm-up, parity checks and benchmarks)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for s in specs:
        shape = s.concrete_shape(batch)
        dt = np_dtype(s.dtype) if s.dtype in DTYPES else np.dtype(np.float32)
        if dt.kind == "f":
            feeds[s.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind in "iu":
            feeds[s.name] = rng.integers(0, 100, size=shape).astype(dt)
        elif dt.kind == "b":
            feeds[s.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            feeds[s.name] = np.array([b"x"] * int(np.prod(shape)), dtype=object).reshape(shape)
    return feeds
