"""Triton's system shared memory extension: clients on the same host put input tensors in POSIX shared
memory (/dev/shm) and name a registered region instead of sending the bytes, and may ask for outputs
to be written there. tritonclient.utils.shared_memory creates such regions; perf_analyzer uses them with
``--shared-memory system``.

A region is a window (offset, byte_size) onto a shared memory object (its key). Only keys that are
plain POSIX shared memory names are opened (no paths), and every read and write is bounds-checked.
"""

from __future__ import annotations

import mmap
import os
import re
import threading
from pathlib import Path
from typing import Any

from ..errors import InferenceInputError, UserInputError

__all__ = ["SharedMemoryOffError", "SharedMemoryRegions", "cuda_unsupported", "require", "wants_shared_memory"]

_REGION, _OFFSET, _SIZE = "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"

_KEY = re.compile(r"/?[A-Za-z0-9_.\-]{1,250}")
_SHM_DIR = Path("/dev/shm")


class SharedMemoryOffError(UserInputError):
    http_status = 403


def require(shm: SharedMemoryRegions | None) -> SharedMemoryRegions:
    """The server's regions, or a 403 when the extension is off (both front ends ask through this)."""
    if shm is None:
        raise SharedMemoryOffError(
            "the shared memory extension is off on this server",
            hint="start bushu serve with --shared-memory (on by default when it listens on loopback)",
        )
    return shm


def cuda_unsupported() -> UserInputError:
    return UserInputError(
        "CUDA shared memory is not supported by this server",
        hint="use system shared memory (/v2/systemsharedmemory), or send tensors in the request",
    )


def wants_shared_memory(params: Any) -> bool:
    """Whether a tensor's v2 parameters name a shared memory region."""
    return isinstance(params, dict) and _REGION in params


class _Region:
    __slots__ = ("name", "key", "offset", "byte_size", "map")

    def __init__(self, name: str, key: str, offset: int, byte_size: int, mapped: mmap.mmap) -> None:
        self.name, self.key, self.offset, self.byte_size, self.map = name, key, offset, byte_size, mapped


class SharedMemoryRegions:
    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}
        self._lock = threading.Lock()

    def register(self, name: Any, key: Any, offset: Any, byte_size: Any) -> None:
        if not isinstance(name, str) or not name:
            raise InferenceInputError("a shared memory region needs a name")
        if not isinstance(key, str) or not _KEY.fullmatch(key) or key.lstrip("/") in (".", ".."):
            raise InferenceInputError(
                f"shared memory key {key!r} is not a POSIX shared memory name",
                hint="keys look like '/input_data' (as shm_open takes them); paths are refused",
            )
        for what, v in (("offset", offset), ("byte_size", byte_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InferenceInputError(
                    f"shared memory region {name!r}: {what} must be a non-negative integer, got {v!r}"
                )
        path = _SHM_DIR / key.lstrip("/")
        with self._lock:
            if name in self._regions:
                raise InferenceInputError(
                    f"shared memory region {name!r} is already registered",
                    hint="unregister it first, or pick another name",
                )
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                raise InferenceInputError(
                    f"shared memory key {key!r} does not exist on the server's host",
                    hint="create it first (tritonclient.utils.shared_memory.create_shared_"
                    "memory_region); shared memory works only on the same host",
                ) from None
            except OSError as e:
                raise InferenceInputError(f"cannot open shared memory key {key!r}: {e.strerror}") from None
            try:
                size = os.fstat(fd).st_size
                if size == 0:
                    raise InferenceInputError(f"shared memory key {key!r} is empty")
                if offset + byte_size > size:
                    raise InferenceInputError(
                        f"shared memory region {name!r}: offset {offset} + byte_size "
                        f"{byte_size} is past the end of {key!r} ({size} bytes)"
                    )
                self._regions[name] = _Region(name, key, offset, byte_size, mmap.mmap(fd, size))
            finally:
                os.close(fd)

    def unregister(self, name: str | None = None) -> None:
        """Forget one region (unknown names are fine, as in Triton) or, with no name, all of them."""
        with self._lock:
            gone = list(self._regions.values()) if name is None else [r for r in [self._regions.get(name)] if r]
            for r in gone:
                del self._regions[r.name]
                r.map.close()  # reads copy out under the lock, so no view of it outlives this

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if name is not None and name not in self._regions:
                raise UserInputError(
                    f"no shared memory region {name!r} is registered",
                    hint=f"registered: {sorted(self._regions) or 'none'}",
                )
            regions = [self._regions[name]] if name is not None else list(self._regions.values())
            return [{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size} for r in regions]

    def _window(self, params: dict, what: str) -> tuple[_Region, int, int]:
        """(region, start, byte_size) of the window a tensor's v2 parameters name, bounds-checked."""
        name, offset, byte_size = params.get(_REGION), params.get(_OFFSET, 0), params.get(_SIZE)
        region = self._regions.get(name) if isinstance(name, str) else None
        if region is None:
            raise InferenceInputError(
                f"{what}: no shared memory region {name!r} is registered",
                hint="register it first (POST /v2/systemsharedmemory/region/NAME/register)",
            )
        if (
            not isinstance(offset, int)
            or not isinstance(byte_size, int)
            or offset < 0
            or byte_size < 0
            or offset + byte_size > region.byte_size
        ):
            raise InferenceInputError(
                f"{what}: offset {offset!r} + byte_size {byte_size!r} is outside shared memory "
                f"region {name!r} ({region.byte_size} bytes)"
            )
        return region, region.offset + offset, byte_size

    def read(self, params: dict, what: str) -> bytes:
        """A copy of the input's bytes: the client may overwrite the region once it has its answer."""
        with self._lock:
            region, start, byte_size = self._window(params, what)
            return region.map[start : start + byte_size]

    def write(self, params: dict, data: bytes, what: str) -> dict[str, Any]:
        """Put an output's bytes in its window; returns the parameters its response entry carries."""
        with self._lock:
            region, start, byte_size = self._window(params, what)
            if len(data) > byte_size:
                raise InferenceInputError(
                    f"{what} needs {len(data)} bytes, but its shared memory window "
                    f"({params[_REGION]!r}) has {byte_size}",
                    hint="register a larger region",
                )
            region.map[start : start + len(data)] = data
        return {_REGION: params[_REGION], _SIZE: len(data)}
