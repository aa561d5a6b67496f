"""Every error bushu raises on purpose.

    BushuError                      base; ``hint`` says how to fix it, ``http_status`` how a server answers
    ├── UserInputError              bad arguments, files or requests (HTTP 400)
    │   ├── NotFoundError           a file, model, version or name that does not exist (HTTP 404)
    │   │   ├── UnknownNameError    a name not in a registry, with close matches ("did you mean")
    │   │   └── ModelNotFoundError  the server has no such model/version
    │   ├── ArtifactError           a directory that is not a readable bushu artifact
    │   ├── ModelLoadError          a model file that is corrupt, truncated or not a model
    │   └── InferenceInputError     wrong input name, dtype, shape or element count
    ├── MissingDependencyError      an optional package is not installed (HTTP 501); hint = pip command
    ├── BackendError                a runtime failed while loading or running a model (HTTP 500)
    │   └── UnsupportedOpError      an op a backend cannot run
    ├── ValidationError             a converted/compressed model differs from its source (HTTP 500)
    │   ├── ShapeError              an output has the wrong shape
    │   └── ToleranceError          an output differs beyond rtol/atol
    └── ServerBusyError             a bounded queue is full (HTTP 503)

The CLI prints ``str(error)`` and the hint on one line each and exits with code 2;
tracebacks only with ``--debug``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ArtifactError",
    "BackendError",
    "BushuError",
    "InferenceInputError",
    "MissingDependencyError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotFoundError",
    "OutputMismatch",
    "ServerBusyError",
    "ShapeError",
    "ToleranceError",
    "UnknownNameError",
    "UnsupportedOpError",
    "UserInputError",
    "ValidationError",
    "as_flags",
    "did_you_mean",
]


class BushuError(Exception):
    """Library errors name a parameter as `name` (in backticks): the Python API's argument; the CLI shows
    the flag instead (``as_flags``: `calib_size` -> --calib-size)."""

    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class UserInputError(BushuError):
    http_status = 400


class NotFoundError(UserInputError):
    http_status = 404


_PARAM = re.compile(r"`([a-z][a-z0-9_]*)`")


def as_flags(text: str) -> str:
    """A library message for the command line: each `parameter` becomes its --flag."""
    return _PARAM.sub(lambda m: "--" + m[1].replace("_", "-"), text)


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


class UnknownNameError(NotFoundError):
    """``kind`` 'x' is unknown; suggests close matches among ``choices``."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], *, hint: str | None = None):
        choices = sorted(choices)
        close = did_you_mean(name, choices)
        msg = f"unknown {kind} {name!r}"
        msg += f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        msg += f" Available: {', '.join(choices)}" if choices else ""
        super().__init__(msg, hint=hint)
        self.name, self.choices, self.suggestions = name, choices, close


class ModelNotFoundError(NotFoundError):
    pass


class ArtifactError(UserInputError):
    pass


class ModelLoadError(UserInputError):
    pass


class InferenceInputError(UserInputError):
    pass


class MissingDependencyError(BushuError):
    http_status = 501

    def __init__(self, what: str, extra: str, package: str | None = None):
        pkg = f"'bushu[{extra}]'" if package is None else package
        super().__init__(f"{what} needs an optional dependency that is not installed", hint=f"pip install {pkg}")
        self.extra = extra


class BackendError(BushuError):
    pass


class UnsupportedOpError(BackendError):
    def __init__(self, op: str, backend: str, detail: str = ""):
        super().__init__(
            f"op={op!r} is not supported by backend {backend!r}" + (f": {detail}" if detail else ""),
            hint="try another backend (bushu bench ART --backend onnxruntime) or export at another opset",
        )
        self.op, self.backend = op, backend


@dataclass(frozen=True)
class OutputMismatch:
    """How one output differed from the reference."""

    name: str
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    expected_shape: tuple[int, ...] | None = None
    actual_shape: tuple[int, ...] | None = None

    def describe(self) -> str:
        if self.expected_shape != self.actual_shape:
            return f"{self.name}: shape {self.actual_shape}, expected {self.expected_shape}"
        return (
            f"{self.name}: max abs diff {self.max_abs:.3g} (atol {self.atol:g}), "
            f"max rel diff {self.max_rel:.3g} (rtol {self.rtol:g})"
        )


class ValidationError(BushuError):
    def __init__(self, what: str, mismatches: list[OutputMismatch], hint: str | None = None):
        lines = "\n".join("  - " + m.describe() for m in mismatches)
        super().__init__(f"{what}: {len(mismatches)} output(s) differ from the reference:\n{lines}", hint=hint)
        self.mismatches = mismatches


class ShapeError(ValidationError):
    pass


class ToleranceError(ValidationError):
    pass


class ServerBusyError(BushuError):
    http_status = 503
