"""The backend conformance suite: every backend, built-in or plugin, must pass the same checks.

Each check loads the golden models (testing/golden.py) in every format the backend reads and
compares against their numpy references. Use it from pytest::

    from bushu.testing.conformance import CHECKS, backend_params, run_check

    @pytest.mark.parametrize("backend", backend_params())
    @pytest.mark.parametrize("check", CHECKS)
    def test_conformance(backend, check, tmp_path):
        run_check(backend, check, write_golden(tmp_path))  # better: a session-scoped fixture

or at once: ``check_backend("mybackend")`` raises ConformanceError listing every failure.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    BushuError,
    InferenceInputError,
    ModelLoadError,
    NotFoundError,
    OutputMismatch,
    UnsupportedOpError,
    UserInputError,
)
from ..runtime.backend import Backend, load_backend
from ..runtime.registry import get_backend, list_backends
from ..spec import dtype_name
from .golden import UNSUPPORTED_OP, GoldenCase, golden_cases, write_golden, write_unsupported_onnx

__all__ = [
    "CHECKS",
    "ConformanceError",
    "Target",
    "backend_params",
    "check_backend",
    "golden_cases",
    "run_check",
    "targets",
    "write_golden",
]


class ConformanceError(AssertionError):
    """A backend broke the contract; the message lists each failing model and check."""


@dataclass(frozen=True)
class Target:
    """One golden model in one file format a backend reads."""

    backend: str
    case: GoldenCase
    path: Path

    def __str__(self) -> str:
        return f"{self.backend}:{self.path.name}"

    def load(self, **options: Any) -> Backend:
        return load_backend(self.path, self.backend, **options)


def targets(backend: str, cases: Iterable[GoldenCase]) -> list[Target]:
    """Each (case, file) pair whose suffix the backend reads."""
    suffixes = get_backend(backend).suffixes
    return [Target(backend, c, c.files[s]) for c in cases for s in suffixes if s in c.files]


def _fail(target: Target, what: str) -> None:
    raise ConformanceError(f"{target}: {what}")


def _raises(target: Target, errors: tuple[type[BaseException], ...], what: str, fn: Callable[[], Any]) -> None:
    expected = "/".join(x.__name__ for x in errors)
    try:
        fn()
    except errors:
        return
    except Exception as e:  # noqa: BLE001 - any other exception is the failure we report
        _fail(target, f"{what}: raised {type(e).__name__} ({str(e)[:200]}), expected {expected}")
    _fail(target, f"{what}: no error, expected {expected}")


# -- the checks: each takes one target and raises ConformanceError ------------------------------------
def check_io(t: Target) -> None:
    """IO names, dtypes and shapes as the golden spec, with a symbolic (str) batch dim."""
    with t.load() as b:
        for kind, got, want in (("input", b.inputs, t.case.inputs), ("output", b.outputs, t.case.outputs)):
            if [s.name for s in got] != [s.name for s in want]:
                _fail(t, f"{kind} names {[s.name for s in got]}, expected {[s.name for s in want]}")
            for g, w in zip(got, want, strict=True):
                if g.dtype != w.dtype:
                    _fail(t, f"{kind} {g.name!r} has dtype {g.dtype}, expected {w.dtype}")
                if len(g.shape) != len(w.shape) or not isinstance(g.shape[0], str) or g.shape[1:] != w.shape[1:]:
                    _fail(
                        t,
                        f"{kind} {g.name!r} has shape {list(g.shape)}, expected {list(w.shape)} "
                        "(a symbolic str leading dim, fixed dims equal)",
                    )
        if not isinstance(b.describe(), dict):
            _fail(t, f"describe() returned {type(b.describe()).__name__}, expected a dict")


def _compare(t: Target, outs: dict[str, np.ndarray], expected: dict[str, np.ndarray], batch: int) -> None:
    if sorted(outs) != sorted(expected):
        _fail(t, f"batch {batch}: outputs {sorted(outs)}, expected {sorted(expected)}")
    bad: list[OutputMismatch] = []
    for name, want in expected.items():
        got = np.asarray(outs[name])
        if dtype_name(got.dtype) != dtype_name(want.dtype):
            _fail(t, f"batch {batch}: output {name!r} has dtype {got.dtype}, expected {want.dtype}")
        if got.shape != want.shape:
            bad.append(OutputMismatch(name, np.inf, np.inf, t.case.atol, t.case.rtol, want.shape, got.shape))
            continue
        g, w = got.astype(np.float64), want.astype(np.float64)
        diff = np.abs(g - w)
        if not np.all(diff <= t.case.atol + t.case.rtol * np.abs(w)):
            rel = float((diff / np.maximum(np.abs(w), 1e-12)).max())
            bad.append(OutputMismatch(name, float(diff.max()), rel, t.case.atol, t.case.rtol, want.shape, got.shape))
    if bad:
        _fail(t, f"batch {batch}: " + "; ".join(m.describe() for m in bad))


def check_infer(t: Target) -> None:
    """Batch 1, then batch 3 on the same instance (dynamic batch), against the numpy reference."""
    with t.load() as b:
        for batch in (1, 3):
            feeds = t.case.feeds(batch=batch, seed=batch)
            _compare(t, b.infer(feeds), t.case.expected(feeds), batch)


def check_bad_inputs(t: Target) -> None:
    """Wrong name, missing input, wrong dtype, wrong rank, wrong fixed dim → InferenceInputError."""
    good = t.case.feeds(batch=2)
    first, spec = next(iter(good)), t.case.inputs[0]
    other = np.int32 if spec.dtype.startswith("float") else np.float32
    bad = {
        "unknown input name": {**{k: v for k, v in good.items() if k != first}, first + "_typo": good[first]},
        "missing input": {k: v for k, v in good.items() if k != first},
        "wrong dtype": {**good, first: good[first].astype(other)},
        "wrong rank": {**good, first: good[first][..., None]},
        "wrong fixed dim": {**good, first: np.concatenate([good[first], good[first]], axis=-1)},
    }
    with t.load() as b:
        for what, feeds in bad.items():
            _raises(t, (InferenceInputError,), what, partial(b.infer, feeds))
        _compare(t, b.infer(good), t.case.expected(good), 2)  # still works after rejected requests


def check_corrupt_file(t: Target, tmp: Path) -> None:
    """A truncated file, an empty file, garbage bytes → ModelLoadError; a missing file → a 4xx error."""
    data = t.path.read_bytes()
    for what, content in (("truncated", data[: len(data) // 2]), ("empty", b""), ("garbage", bytes(range(256)) * 8)):
        bad = tmp / f"{what}-{t.path.name}"
        bad.write_bytes(content)
        _raises(t, (ModelLoadError,), f"{what} file", partial(load_backend, bad, t.backend))
    missing = tmp / f"missing-{t.path.name}"
    _raises(t, (ModelLoadError, NotFoundError), "missing file", lambda: load_backend(missing, t.backend))


def check_unsupported_op(t: Target, tmp: Path) -> None:
    """(ONNX readers) a graph with an op nobody implements → UnsupportedOpError naming that op."""
    if t.path.suffix != ".onnx":
        return
    path = write_unsupported_onnx(t.case, tmp / f"unsupported-{t.path.name}")
    try:
        load_backend(path, t.backend)
    except UnsupportedOpError as e:
        if e.op != UNSUPPORTED_OP:
            _fail(t, f"UnsupportedOpError names op {e.op!r}, expected {UNSUPPORTED_OP!r}")
        return
    except Exception as e:  # noqa: BLE001
        _fail(t, f"unsupported op: raised {type(e).__name__} ({str(e)[:200]}), expected UnsupportedOpError")
    _fail(t, "unsupported op: loaded without error, expected UnsupportedOpError")


def check_options(t: Target) -> None:
    """An option the backend does not declare → UserInputError, not silently ignored."""
    _raises(t, (UserInputError,), "unknown option", lambda: t.load(no_such_option=1))


def check_close(t: Target) -> None:
    """close() twice is harmless; infer after close is a BushuError, not a crash."""
    b = t.load()
    b.close()
    b.close()
    feeds = t.case.feeds(batch=1)
    try:
        b.infer(feeds)
    except BushuError:
        pass
    except Exception as e:  # noqa: BLE001
        _fail(t, f"infer after close raised {type(e).__name__} ({str(e)[:200]}), expected a BushuError (or a result)")


CHECKS: dict[str, Callable[..., None]] = {
    "io": check_io,
    "infer": check_infer,
    "bad_inputs": check_bad_inputs,
    "corrupt_file": check_corrupt_file,
    "unsupported_op": check_unsupported_op,
    "options": check_options,
    "close": check_close,
}

_NEEDS_TMP = {"corrupt_file", "unsupported_op"}


def run_check(backend: str, check: str, cases: Iterable[GoldenCase]) -> int:
    """Run one check on every golden target of ``backend``; returns how many targets it ran on.

    Raises ConformanceError listing every failing target (not only the first).
    """
    found = targets(backend, cases)
    if not found:
        raise ConformanceError(f"no golden model in a format {backend!r} reads ({get_backend(backend).suffixes})")
    failures = []
    with tempfile.TemporaryDirectory(prefix="bushu-conformance-") as scratch:
        for t in found:
            try:
                if check in _NEEDS_TMP:
                    CHECKS[check](t, Path(scratch))
                else:
                    CHECKS[check](t)
            except ConformanceError as e:
                failures.append(str(e))
            except Exception as e:  # noqa: BLE001 - an unexpected error is a failure of this target, not of the run
                failures.append(f"{t}: {type(e).__name__}: {str(e)[:300]}")
    if failures:
        raise ConformanceError(
            f"{backend} fails {check!r} on {len(failures)}/{len(found)} model(s):\n  " + "\n  ".join(failures)
        )
    return len(found)


def check_backend(name: str, cases: Iterable[GoldenCase] | None = None, checks: Iterable[str] | None = None) -> None:
    """Run every check on backend ``name`` (golden models written to a temp dir if ``cases`` is None)."""
    tmp = None
    if cases is None:
        tmp = tempfile.mkdtemp(prefix="bushu-golden-")
        cases = write_golden(tmp, torch=".pt2" in get_backend(name).suffixes or ".pt" in get_backend(name).suffixes)
    try:
        failures = []
        for check in checks or CHECKS:
            try:
                run_check(name, check, cases)
            except ConformanceError as e:
                failures.append(str(e))
        if failures:
            raise ConformanceError("\n".join(failures))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def backend_params(names: Iterable[str] | None = None, include_null: bool = True) -> list[Any]:
    """``pytest.param`` per backend (default: every registered one), skipped with the install hint if absent."""
    import pytest

    from ..errors import MissingDependencyError

    params = []
    for name in names or list_backends():
        if name == "null" and not include_null:
            continue
        try:
            why = get_backend(name).unavailable()
            marks = [pytest.mark.skip(reason=f"{name} cannot run here: {why}")] if why else []
            params.append(pytest.param(name, id=name, marks=marks))
        except MissingDependencyError as e:
            params.append(pytest.param(name, id=name, marks=pytest.mark.skip(reason=f"{e.message}; {e.hint}")))
    return params
