"""The CLI's progress reporter: a transient rich bar on stderr (so --json output on stdout stays clean)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..progress import Advance

__all__ = ["RichProgress"]


class RichProgress:
    @contextmanager
    def task(self, label: str, total: float | None) -> Iterator[Advance]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ._output import err_console

        bar = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=err_console,
            transient=True,
        )
        bar.start()
        tid = bar.add_task("", total=total)
        try:
            yield lambda n=1, *, description=None: bar.update(
                tid, advance=n, **({"description": description} if description is not None else {})
            )
        finally:
            bar.stop()
