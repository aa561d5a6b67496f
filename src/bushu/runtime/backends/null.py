"""The null backend: echoes its inputs, to test server machinery without a framework.

A ``.null`` file is YAML: ``inputs``/``outputs`` as lists of {name, dtype, shape}; output i is a copy
of input i (cast to its dtype). Optional ``delay_ms`` per batch simulates compute.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ...errors import ModelLoadError
from ...spec import TensorSpec, np_dtype
from ..backend import Backend


class NullBackend(Backend):
    name = "null"
    suffixes = (".null",)
    options = ("threads", "delay_ms")

    def load(  # type: ignore[override]
        self, path: Path, device: str = "cpu", *, threads: int | None = None, delay_ms: float | None = None
    ) -> None:
        try:
            cfg = yaml.safe_load(Path(path).read_text())
            self._inputs = [TensorSpec.from_dict(d) for d in cfg["inputs"]]
            self._outputs = [TensorSpec.from_dict(d) for d in cfg.get("outputs", cfg["inputs"])]
        except Exception as e:
            raise ModelLoadError(f"{path} is not a null-backend model: {e}") from e
        self.delay_s = float(delay_ms if delay_ms is not None else cfg.get("delay_ms", 0)) / 1000

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check(feeds)
        if self.delay_s:
            time.sleep(self.delay_s)
        return {
            o.name: np.asarray(feeds[i.name]).astype(np_dtype(o.dtype)) for i, o in zip(self._inputs, self._outputs)
        }

    def describe(self) -> dict[str, Any]:
        return {"delay_ms": self.delay_s * 1000}
