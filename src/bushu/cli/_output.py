"""Shared output helpers: rich tables for people, --json for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_default) + "\n")


def _default(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def table(rows: Sequence[Mapping[str, Any]], columns: Iterable[str] | None = None, title: str | None = None) -> None:
    from rich.table import Table

    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    t = Table(title=title, show_lines=False)
    for c in cols:
        t.add_column(c, justify="right" if rows and isinstance(rows[0].get(c), (int, float)) else "left")
    for r in rows:
        t.add_row(*(fmt(r.get(c)) for c in cols))
    console.print(t)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)
