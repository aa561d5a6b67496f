"""KServe v2 tensors <-> numpy: JSON data, Triton's binary tensor data extension, gRPC raw contents,
and the classification extension. Every malformed tensor becomes an InferenceInputError that
names the tensor and says what was expected."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np

from ..errors import InferenceInputError
from ..spec import from_v2_datatype, np_dtype, to_v2_datatype

__all__ = ["classify", "decode_bytes", "encode_bytes", "from_json_data", "from_raw", "output_bytes", "to_json_data"]


def check_shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InferenceInputError(f"input {name!r} has shape {shape!r}; expected a list of non-negative integers")
    return tuple(shape)


def _count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def decode_bytes(name: str, buf: bytes | memoryview, count: int) -> np.ndarray:
    """Triton's BYTES wire format: each element is a 4-byte little-endian length, then the bytes."""
    buf = memoryview(buf)
    out: list[bytes] = []
    pos = 0
    while pos < len(buf):
        if pos + 4 > len(buf):
            raise InferenceInputError(f"BYTES input {name!r}: truncated length prefix at byte {pos} of {len(buf)}")
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + n > len(buf):
            raise InferenceInputError(
                f"BYTES input {name!r}: element {len(out)} claims {n} bytes but only {len(buf) - pos} remain",
                hint="each element is a 4-byte little-endian length, then the bytes",
            )
        out.append(bytes(buf[pos : pos + n]))
        pos += n
    if len(out) != count:
        raise InferenceInputError(f"BYTES input {name!r} holds {len(out)} elements, its shape needs {count}")
    return np.array(out, dtype=object)


def encode_bytes(arr: np.ndarray) -> bytes:
    parts = []
    for x in arr.ravel():
        b = x if isinstance(x, bytes) else str(x).encode()
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def from_raw(name: str, datatype: str, shape: tuple[int, ...], buf: bytes | memoryview) -> np.ndarray:
    dtype = from_v2_datatype(datatype)
    count = _count(shape)
    if dtype == "bytes":
        return decode_bytes(name, buf, count).reshape(shape)
    dt = np_dtype(dtype)
    if len(buf) != count * dt.itemsize:
        raise InferenceInputError(
            f"input {name!r}: {len(buf)} bytes of binary data, but shape {list(shape)} of "
            f"{datatype} needs {count * dt.itemsize}"
        )
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def from_json_data(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    dtype = from_v2_datatype(datatype)
    count = _count(shape)
    try:
        if dtype == "bytes":
            flat = np.asarray(data, dtype=object).ravel()
            arr = np.array([x.encode() if isinstance(x, str) else bytes(x) for x in flat], dtype=object)
        else:
            arr = np.asarray(data)
            if arr.dtype == object or arr.dtype.kind in "USV":
                raise ValueError("not a list of numbers")
            if dtype == "bool" and arr.dtype != np.bool_:
                raise ValueError("BOOL data must be true/false")
            if dtype != "bool" and arr.dtype == np.bool_:
                raise ValueError("true/false given for a numeric tensor")
            if arr.dtype.kind == "f" and np_dtype(dtype).kind in "iub":
                raise ValueError(f"{datatype} data must be integers")
            arr = arr.astype(np_dtype(dtype), copy=False)
    except (ValueError, TypeError, OverflowError) as e:
        raise InferenceInputError(f"input {name!r}: data is not valid {datatype}: {e}") from None
    if arr.size != count:
        raise InferenceInputError(
            f"input {name!r} has {arr.size} elements of data, but shape {list(shape)} needs {count}"
        )
    return arr.reshape(shape)


def to_json_data(arr: np.ndarray) -> list:
    if arr.dtype == object:
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.ravel()]
    return arr.ravel().tolist()


def output_bytes(arr: np.ndarray) -> bytes:
    if arr.dtype == object:
        return encode_bytes(arr)
    return np.ascontiguousarray(arr).tobytes()


@cache
def _v2_of(dt: np.dtype) -> str:
    from ..spec import dtype_name

    return to_v2_datatype(dtype_name(dt))


def datatype_of(arr: np.ndarray) -> str:
    return _v2_of(arr.dtype)


def classify(arr: np.ndarray, k: int, labels: Sequence[str] | None, batched: bool) -> np.ndarray:
    """Triton's classification extension: per batch row the top-k as "score:index[:label]" BYTES."""
    if k < 1:
        raise InferenceInputError(f"classification count must be >= 1, got {k}")
    rows = arr.reshape(arr.shape[0], -1) if batched else arr.reshape(1, -1)
    k = min(k, rows.shape[1])
    idx = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty((rows.shape[0], k), dtype=object)
    for r in range(rows.shape[0]):
        for j, i in enumerate(idx[r]):
            s = f"{float(rows[r, i]):f}:{int(i)}"
            if labels and i < len(labels):
                s += f":{labels[i]}"
            out[r, j] = s.encode()
    return out if batched else out[0]


def requested_outputs(specs: Any, all_names: list[str], default_binary: bool) -> list[tuple[str, bool, int]]:
    """[(name, binary, classification k or 0)] from a v2 request's ``outputs`` (all outputs when absent)."""
    if not specs:
        return [(n, default_binary, 0) for n in all_names]
    if not isinstance(specs, list):
        raise InferenceInputError("'outputs' must be a list of {name, parameters}")
    out = []
    for o in specs:
        if not isinstance(o, Mapping) or not isinstance(o.get("name"), str):
            raise InferenceInputError(f"each requested output needs a 'name'; got {o!r}")
        p = o.get("parameters") or {}
        k = p.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise InferenceInputError(f"output {o['name']!r}: classification must be a non-negative integer, got {k!r}")
        out.append((o["name"], bool(p.get("binary_data", default_binary)), k))
    return out
