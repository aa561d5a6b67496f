"""The Backend interface: load a model file, describe its IO, run it, close it.

A backend is one small class in ``runtime/backends/<name>.py`` that imports its framework at the
top; the registry imports it only when asked for, and turns an ImportError into an install hint.
Lifecycle as Triton's: ``load`` (init) → ``infer`` any number of times (execute) → ``close`` (finalize).
``infer`` takes and returns whole batches; it is called from one thread at a time per instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..spec import TensorSpec, check_feeds

__all__ = ["Backend", "load_backend"]


class Backend:
    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: options accepted by load(); anything else is a typed error, not silently ignored
    options: ClassVar[tuple[str, ...]] = ("threads",)
    #: infer() may be called from several threads at once on one loaded instance (bushu predict runs two
    #: batches at a time through one backend when it is)
    concurrent_infer: ClassVar[bool] = False

    def __init__(self) -> None:
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this backend cannot run on this machine (no GPU, no provider), or None when it can."""
        return None

    def load(self, path: Path, device: str = "cpu", **options: Any) -> None:
        # Backends declare their options keyword-only (a narrower signature, hence their
        # `type: ignore[override]`); load_backend has already refused any name not in `options`.
        raise NotImplementedError

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- helpers shared by every backend -------------------------------------------------------
    def check(self, feeds: Mapping[str, np.ndarray]) -> None:
        check_feeds(self._inputs, feeds, what=f"{self.name} model")

    def describe(self) -> dict[str, Any]:
        """Extra facts for reports (providers, precision, threads...)."""
        return {}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_backend(path: str | Path, backend: str | None = None, device: str = "cpu", **options: Any) -> Backend:
    """Load ``path`` with the backend named, or the first installed backend that reads its suffix."""
    from .registry import backend_for_path, get_backend

    path = Path(path)
    cls = get_backend(backend) if backend else backend_for_path(path)
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        from ..errors import UserInputError

        raise UserInputError(
            f"backend {cls.name!r} does not accept option(s) {unknown}; it accepts {list(cls.options)}"
        )
    inst = cls()
    inst.load(path, device=device, **options)
    return inst
