"""INPUT arguments of `bushu predict` -> a de-duplicated list of (key, value) items.

- a folder: every (non-hidden) file under it, recursively; a non-image file there becomes an error row;
- a glob (``*``, ``?``, ``[``; ``**`` recurses);
- ``@FILE`` (or, for image and audio models, a ``.txt``/``.lst`` file): one path a line, relative to FILE's folder;
- a ``.csv``/``.jsonl`` table: the ``--column`` cell of each row (default: the first of path, file, image,
  text). A text model reads a ``path``/``file`` column as files and any other column as the text itself;
- anything else: one file.

A path item's key is the path as found; a text cell's key is ``TABLE:ROW`` (1-based data row), so that a
resumed run recognises it whatever the text.
"""

from __future__ import annotations

import csv
import glob
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError, did_you_mean

__all__ = ["PATH_COLUMNS", "Item", "collect"]

PATH_COLUMNS = ("path", "file", "filename", "image")
DEFAULT_COLUMNS = (*PATH_COLUMNS, "text")
LIST_SUFFIXES = (".txt", ".lst", ".list")
TABLE_SUFFIXES = (".csv", ".jsonl", ".ndjson")


@dataclass(frozen=True)
class Item:
    key: str  # the row's "input"
    value: str  # a file path, or the text itself (is_text)
    is_text: bool = False


def collect(specs: list[str], kind: str, column: str | None = None) -> list[Item]:
    """Expand INPUT arguments for a model whose pre-processing kind is ``kind`` (image, text, audio)."""
    if not specs:
        raise UserInputError("no INPUT given", hint="pass folders, globs, @list.txt or a .csv/.jsonl table")
    items: dict[str, Item] = {}
    for spec in specs:
        found = _expand(spec, kind, column)
        if not found:
            raise UserInputError(
                f"{spec} matches no input", hint="check the path; quote globs so the shell leaves them"
            )
        for it in found:
            items.setdefault(it.key, it)
    return list(items.values())


def _expand(spec: str, kind: str, column: str | None) -> list[Item]:
    if spec.startswith("@"):
        return _path_list(Path(spec[1:]))
    path = Path(spec)
    if path.is_dir():
        return [
            Item(str(p), str(p))
            for p in sorted(path.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
    if any(c in spec for c in "*?[") and not path.exists():
        return [Item(p, p) for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()]
    if not path.exists():
        raise UserInputError(
            f"input not found: {spec}", hint="pass a folder, a file, a quoted glob, @list.txt or a table"
        )
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _table(path, kind, column)
    if suffix in LIST_SUFFIXES and kind != "text":
        return _path_list(path)
    return [Item(spec, spec)]


def _path_list(path: Path) -> list[Item]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"cannot read the list of paths {path}: {e}", hint="one path a line, UTF-8") from e
    out = []
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            p = Path(line.strip())
            p = p if p.is_absolute() else path.parent / p
            out.append(Item(str(p), str(p)))
    return out


def _table(path: Path, kind: str, column: str | None) -> list[Item]:
    rows = _read_table(path)
    columns = list(rows[0]) if rows else []
    if column is None:
        column = next((c for c in DEFAULT_COLUMNS if c in columns), None)
        if column is None:
            raise UserInputError(
                f"{path} has no path or text column (columns: {', '.join(columns) or 'none'})",
                hint="name the column with --column",
            )
    elif column not in columns:
        close = did_you_mean(column, columns)
        raise UserInputError(
            f"{path} has no column {column!r}"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f" Columns: {', '.join(columns) or 'none'}",
            hint="pick one with --column",
        )
    as_text = kind == "text" and column.lower() not in PATH_COLUMNS
    out = []
    for i, row in enumerate(rows, 1):
        cell = row.get(column)
        cell = "" if cell is None else str(cell)
        if as_text:
            out.append(Item(f"{path}:{i}", cell, is_text=True))
        else:
            p = Path(cell)
            p = p if (p.is_absolute() or not cell) else path.parent / p
            out.append(Item(str(p) if cell else f"{path}:{i}", str(p) if cell else ""))
    return out


def _read_table(path: Path) -> list[dict]:
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as f:
                return list(csv.DictReader(f))
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise UserInputError(
                        f"{path} line {n} is not a JSON object", hint='one {"path": ...} object a line'
                    )
                rows.append(row)
        return rows
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError) as e:
        raise UserInputError(
            f"cannot read the table {path}: {e}", hint="a UTF-8 CSV with a header, or JSON lines"
        ) from e
