"""Shared by the bench/ scripts: write results as JSON (for machines) and a markdown table (for people)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def command_line() -> str:
    """The command that produced the results, to quote next to them."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}" if abs(v) >= 10_000 else f"{v:.1f}"
    return str(v)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    name: str,
    data: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    title: str,
    notes: Sequence[str] = (),
    out_dir: Path = RESULTS,
) -> tuple[Path, Path]:
    """Write ``out_dir/name.json`` (``data`` plus ``rows``) and ``out_dir/name.md`` (title, notes, table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    js.write_text(json.dumps({**data, "rows": list(rows)}, indent=2, default=str) + "\n")
    body = [f"# {title}", "", *[f"- {n}" for n in notes], "", markdown_table(rows, columns), ""]
    md.write_text("\n".join(body))
    return js, md
