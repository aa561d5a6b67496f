"""Tensor and model IO specs: names, dtypes and shapes with symbolic dims ("batch")."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import InferenceInputError

__all__ = [
    "DTYPES",
    "TensorSpec",
    "check_feeds",
    "np_dtype",
    "parse_dtype",
    "resolve_shapes",
    "synthetic_feeds",
    "to_v2_datatype",
    "from_v2_datatype",
]

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
    "bytes": (np.object_, "BYTES", 8),  # strings (UTF-8), as Triton/KServe carry them
    "bfloat16": (None, "BF16", 16),  # no numpy dtype: ml_dtypes provides one when installed
}
_ALIASES = {
    "string": "bytes",
    "str": "bytes",
    "fp32": "float32",
    "fp16": "float16",
    "bf16": "bfloat16",
    "float": "float32",
    "half": "float16",
    "int": "int64",
    "long": "int64",
    "double": "float64",
}
_FROM_V2 = {v2: name for name, (_, v2, _) in DTYPES.items()}
_FROM_ONNX = {enum: name for name, (_, _, enum) in DTYPES.items()}


def np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            from .errors import MissingDependencyError

            raise MissingDependencyError("bfloat16 tensors in numpy", "optimize", package="ml_dtypes") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(DTYPES[name][0])


def parse_dtype(text: str) -> str:
    """A dtype as a user writes it (int64, fp16, string, ...) -> the bushu dtype name, or a precise error."""
    name = _ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in DTYPES:
        from .errors import UnknownNameError

        raise UnknownNameError("dtype", text, [*DTYPES, *_ALIASES])
    return name


def dtype_name(dt: Any) -> str:
    """numpy dtype (or anything np.dtype accepts) -> bushu dtype name."""
    return _dtype_name(np.dtype(dt))


@functools.cache
def _dtype_name(dt: np.dtype) -> str:  # numpy builds dt.name anew on every read: the server checks every request
    if dt.kind in "OSU":
        return "bytes"
    return "bfloat16" if dt.name == "bfloat16" else dt.name


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


#: what an input holds, which decides the safe values bushu feeds it when the user gives none
ROLES = ("image", "token_ids", "attention_mask", "token_type_ids", "position_ids", "tensor")


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor. Optional, and written to bushu.yaml only when set:

    - ``role``: one of ROLES;
    - ``values``: (low, high) of safe values; for integer ids ``high`` is exclusive (the vocabulary size);
    - ``ranges``: symbol -> {"min", "typical", "max"} (any may be missing) for the symbolic dims of ``shape``.
      A dim with no name is the symbol ``"?"``; its range is keyed ``"NAME[i]"``.
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...]
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    role: str | None = field(default=None, compare=False)
    values: tuple[float, float] | None = field(default=None, compare=False)
    ranges: Mapping[str, Mapping[str, int]] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        if self.values is not None:
            object.__setattr__(self, "values", tuple(self.values))

    @property
    def has_batch(self) -> bool:
        return bool(self.shape) and isinstance(self.shape[0], str)

    def symbol(self, i: int) -> str | None:
        """The name binding dim ``i`` across inputs ("seq"), a per-input key for an unnamed dim, None if fixed."""
        d = self.shape[i]
        if isinstance(d, int) and d >= 0:
            return None
        return f"{self.name}[{i}]" if d in ("?", "", None) or isinstance(d, int) else str(d)

    def concrete_shape(self, batch: int = 1, fill: int = 1) -> tuple[int, ...]:
        """Replace the leading symbolic dim by ``batch`` and other symbolic dims by their typical size, else ``fill``."""
        out = []
        for i, d in enumerate(self.shape):
            if isinstance(d, int) and d >= 0:
                out.append(d)
            else:
                sym = self.symbol(i)
                rng = self.ranges.get(sym) if sym is not None else None
                out.append(batch if i == 0 else int((rng or {}).get("typical") or fill))
        return tuple(out)

    def with_(self, **kw: Any) -> TensorSpec:
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.role:
            d["role"] = self.role
        if self.values is not None:
            d["values"] = [v.item() if hasattr(v, "item") else v for v in self.values]
        if self.ranges:
            d["ranges"] = {k: dict(v) for k, v in self.ranges.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        return cls(
            name=str(d["name"]),
            dtype=str(d["dtype"]),
            shape=tuple(d["shape"]),
            role=d.get("role"),
            values=tuple(d["values"]) if d.get("values") is not None else None,
            ranges={str(k): dict(v) for k, v in (d.get("ranges") or {}).items()},
        )

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


class UnresolvedDimError(InferenceInputError):
    """A symbolic dim with no size given, recorded or derivable; the message names the --input to pass."""


def _placeholder(s: TensorSpec, i: int) -> str:
    if s.role == "image" and len(s.shape) == 4:
        return {0: "H", 1: "W"}.get(i - (2 if s.shape[1] in (1, 3) else 1), "N")
    d = str(s.shape[i])
    return d.upper() if d.isidentifier() and len(d) <= 8 else "N"


def _example(s: TensorSpec, known: Mapping[str, int]) -> str:
    parts = []
    for i, d in enumerate(s.shape):
        sym = s.symbol(i)
        parts.append(str(d) if sym is None else str(known.get(sym, 1 if i == 0 else _placeholder(s, i))))
    return f"--input {s.name}:{'x'.join(parts) or 'scalar'}:{s.dtype}"


def _range_of(specs: Sequence[TensorSpec], sym: str) -> Mapping[str, int]:
    return next((s.ranges[sym] for s in specs if sym in s.ranges), {})


def resolve_shapes(
    specs: Sequence[TensorSpec], given: Mapping[str, Sequence[int]] | None = None, batch: int | None = None
) -> dict[str, tuple[int, ...]]:
    """A concrete shape per input: ``given`` shapes first (checked against the spec), a symbol bound by one
    input binds it for all ("seq" of input_ids = "seq" of attention_mask), dim 0 is ``batch`` (default 1),
    other symbols take their recorded typical size. Raises InferenceInputError naming the input, or
    UnresolvedDimError naming the ``--input`` to pass when a dim has no size."""
    given = {k: tuple(int(d) for d in v) for k, v in (given or {}).items()}
    names = [s.name for s in specs]
    for n in given:
        if n not in names:
            from .errors import did_you_mean

            close = did_you_mean(n, names)
            raise InferenceInputError(
                f"the model has no input {n!r}"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + f" Inputs: {', '.join(str(s) for s in specs)}"
            )
    bound: dict[str, int] = {}
    for s in specs:
        if s.name not in given:
            continue
        shape = given[s.name]
        if len(shape) != len(s.shape):
            raise InferenceInputError(
                f"input {s.name!r}: shape {'x'.join(map(str, shape)) or 'scalar'} has rank "
                f"{len(shape)}, expected {list(s.shape)} (rank {len(s.shape)})"
            )
        for i, (g, want) in enumerate(zip(shape, s.shape, strict=True)):
            sym = s.symbol(i)
            if sym is None and g != want:
                raise InferenceInputError(
                    f"input {s.name!r}: dim {i} is {g}, but the model fixes it to {want} (expected {list(s.shape)})"
                )
            if sym is not None and not (i == 0 and batch is not None) and bound.setdefault(sym, g) != g:
                raise InferenceInputError(
                    f"input {s.name!r}: dim {sym!r} is {g}, but another input gives it "
                    f"{bound[sym]}; inputs sharing a dim must agree"
                )
    out: dict[str, tuple[int, ...]] = {}
    for s in specs:
        dims = []
        for i, d in enumerate(s.shape):
            sym = s.symbol(i)
            if sym is None:
                dims.append(int(d))
                continue
            rng = _range_of(specs, sym)
            if i == 0 and batch is not None:
                v = int(batch)
            elif sym in bound:
                v = bound[sym]
            elif rng.get("typical"):
                v = int(rng["typical"])
            elif i == 0:
                v = 1
            else:
                raise UnresolvedDimError(
                    f"input {s.name!r}: dim {i} ({d!r}) has no known size", hint=f"pass it, e.g. {_example(s, bound)}"
                )
            lo, hi = rng.get("min"), rng.get("max")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise InferenceInputError(
                    f"input {s.name!r}: dim {sym!r} = {v} is outside the model's range [{lo}, {hi}]"
                )
            dims.append(v)
        out[s.name] = tuple(dims)
    return out


def synthetic_feeds(
    specs: Sequence[TensorSpec], batch: int = 1, seed: int = 0, shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, np.ndarray]:
    """Deterministic inputs matching ``specs`` (warm-up, parity checks, calibration fallback, benchmarks).

    Safe by role: attention masks are ones, token types zeros, position ids 0..n-1, ids lie within
    ``values`` (the vocabulary), floats within ``values`` when recorded (else standard normal).
    """
    rng = np.random.default_rng(seed)
    resolved = resolve_shapes(specs, shapes, batch)
    feeds: dict[str, np.ndarray] = {}
    for s in specs:
        shape = resolved[s.name]
        dt = np_dtype(s.dtype) if s.dtype in DTYPES and s.dtype != "bfloat16" else np.dtype(np.float32)
        if s.role == "attention_mask":
            feeds[s.name] = np.ones(shape, dt)
        elif s.role == "token_type_ids":
            feeds[s.name] = np.zeros(shape, dt)
        elif s.role == "position_ids" and shape:
            feeds[s.name] = np.broadcast_to(np.arange(shape[-1]), shape).astype(dt)
        elif dt.kind == "f":
            if s.values is not None:
                feeds[s.name] = rng.uniform(s.values[0], s.values[1], size=shape).astype(dt)
            else:
                feeds[s.name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind in "iu":
            lo, hi = (int(s.values[0]), int(s.values[1])) if s.values is not None else (0, 100)
            feeds[s.name] = rng.integers(lo, max(hi, lo + 1), size=shape).astype(dt)
        elif dt.kind == "b":
            feeds[s.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            feeds[s.name] = np.array([b"x"] * int(np.prod(shape)), dtype=object).reshape(shape)
    return feeds
