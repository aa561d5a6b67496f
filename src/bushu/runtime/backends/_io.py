"""IO sidecar for formats that do not keep names, dtypes or a symbolic batch dim (ncnn, MNN, LiteRT).

``<model file>.io.json`` beside the model holds the spec the model was exported with, and for each
tensor the name the runtime itself uses (``native``: ncnn's ``in0``, LiteRT's signature key)::

    {"inputs":  [{"name": "input",  "dtype": "float32", "shape": ["batch", 3, 224, 224], "native": "in0"}],
     "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 1000],        "native": "out0"}],
     "batch": "loop"}

``batch``: ``"native"`` when the runtime takes whole batches, ``"loop"`` when the model runs one
sample at a time (ncnn always; LiteRT models exported with a fixed batch of 1).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from ...errors import ModelLoadError
from ...spec import TensorSpec

__all__ = ["quiet_stdout", "read_io", "sidecar_path", "write_io"]

SUFFIX = ".io.json"


def sidecar_path(model: str | Path) -> Path:
    model = Path(model)
    return model.with_name(model.name + SUFFIX)


def write_io(
    model: str | Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    native_inputs: Sequence[str] | None = None,
    native_outputs: Sequence[str] | None = None,
    batch: str = "native",
) -> Path:
    def rows(specs: Sequence[TensorSpec], native: Sequence[str] | None) -> list[dict[str, Any]]:
        return [{**s.to_dict(), "native": (native[i] if native else s.name)} for i, s in enumerate(specs)]

    path = sidecar_path(model)
    path.write_text(
        json.dumps(
            {"inputs": rows(inputs, native_inputs), "outputs": rows(outputs, native_outputs), "batch": batch}, indent=1
        )
    )
    return path


_IO = tuple[list[TensorSpec], list[TensorSpec], list[str], list[str], str]


@overload
def read_io(model: str | Path, required: Literal[True] = True) -> _IO: ...
@overload
def read_io(model: str | Path, required: bool) -> _IO | None: ...
def read_io(model: str | Path, required: bool = True) -> _IO | None:
    """(inputs, outputs, native input names, native output names, batch mode), or None when absent."""
    path = sidecar_path(model)
    if not path.is_file():
        if not required:
            return None
        raise ModelLoadError(
            f"{Path(model).name} has no IO description ({path.name} is missing)",
            hint="export the model with: bushu export ART --format ... (it writes this file)",
        )
    try:
        d = json.loads(path.read_text())
        ins = [TensorSpec.from_dict(r) for r in d["inputs"]]
        outs = [TensorSpec.from_dict(r) for r in d["outputs"]]
        return (
            ins,
            outs,
            [r.get("native", r["name"]) for r in d["inputs"]],
            [r.get("native", r["name"]) for r in d["outputs"]],
            str(d.get("batch", "native")),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{path.name} is not a readable IO description: {e!r}") from e


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence C-level writes to fd 1 (MNN prints to stdout on import and load; --json needs it clean)."""
    import sys

    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real fd 1 (captured by a test runner): nothing to protect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
