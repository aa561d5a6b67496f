"""Progress of long library steps (eval, bench, train), reported through one small protocol.

Library code never prints: it opens a task and advances it::

    with progress.task(progress_arg, "eval", total=len(ds)) as advance:
        advance(8)                          # 8 more done
        advance(0, description="loading")   # only the description changes

``progress_arg`` is what the caller passed: a ``Progress`` (used as is), True (the process's default
reporter: nothing, until the CLI installs its rich bar with ``set_default``), or False/None (nothing).
Messages that are not progress go to ``logging`` (logger ``bushu.*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, runtime_checkable

__all__ = ["Advance", "NoProgress", "Progress", "set_default", "task"]

#: advance(n=1, *, description=None): n more units done (0: only the description changes)
Advance = Callable[..., None]


@runtime_checkable
class Progress(Protocol):
    def task(self, label: str, total: float | None) -> AbstractContextManager[Advance]:
        """A task of ``total`` units (None: unknown); the context yields its ``advance``."""
        ...


def _noop(n: float = 1, *, description: str | None = None) -> None:
    return None


class NoProgress:
    """Reports nothing."""

    @contextmanager
    def task(self, label: str, total: float | None) -> Iterator[Advance]:
        yield _noop


_default: Progress = NoProgress()


def set_default(reporter: Progress | None) -> Progress:
    """Install the reporter that ``progress=True`` means in this process; returns the previous one."""
    global _default
    previous, _default = _default, reporter or NoProgress()
    return previous


def task(progress: bool | Progress | None, label: str, total: float | None) -> AbstractContextManager[Advance]:
    if isinstance(progress, Progress):
        return progress.task(label, total)
    return (_default if progress else NoProgress()).task(label, total)
