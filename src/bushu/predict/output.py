"""Result files of `bushu predict`, written so that a killed run can resume without losing or repeating a row.

Rows go to a JSONL journal, each batch as whole lines then flushed: a kill can only tear the last line,
which ``Journal.open`` cuts off (that input is predicted again). For OUT.jsonl the journal is OUT itself;
for OUT.csv / OUT.parquet it is OUT.partial.jsonl, converted into OUT at the end (then removed). On a
rerun, inputs with a row are skipped, except error rows, which are dropped and retried.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import MissingDependencyError, UserInputError

__all__ = ["FORMATS", "Journal", "output_format", "read_rows"]

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
COLUMN_ORDER = ("input", "label", "score", "top_k", "detections", "outputs", "error")
_NESTED = ("top_k", "detections", "outputs")


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserInputError(
            f"cannot tell the output format of {path} from its suffix {path.suffix or '(none)'!r}",
            hint="name the output .jsonl, .csv or .parquet",
        )
    if fmt == "parquet":
        _pyarrow()
    return fmt


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as e:
        raise MissingDependencyError("Parquet output (pyarrow)", "predict") from e
    return pyarrow


class Journal:
    """Append-only JSONL rows for OUT; ``open()`` -> inputs already answered."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.fmt = output_format(self.out)
        self.path = self.out if self.fmt == "jsonl" else self.out.with_name(self.out.name + ".partial.jsonl")
        self._f: BinaryIO | None = None

    def open(self) -> set[str]:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt != "jsonl" and self.out.exists() and not self.path.exists():  # a finished run, extended
            self._rewrite(read_rows(self.out))
        rows, clean = self._load()
        kept = {r["input"]: r for r in rows if "error" not in r}
        if not clean or len(kept) != len(rows):  # a torn tail, error rows to retry, or repeats: rewrite once
            self._rewrite(kept.values())
        self._f = self.path.open("ab")
        return set(kept)

    def _load(self) -> tuple[list[dict], bool]:
        if not self.path.exists():
            return [], True
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # anything after the last newline is a torn write
        rows = []
        for n, line in enumerate(data[:end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserInputError(
                    f"{self.path} line {n} is not a JSON row ({e}); bushu predict did not write it",
                    hint="write to a new output path, or remove that file",
                ) from e
            if not isinstance(row, dict) or "input" not in row:
                raise UserInputError(
                    f"{self.path} line {n} has no 'input'; it was not written by bushu predict",
                    hint="write to a new output path, or remove that file",
                )
            rows.append(row)
        return rows, end == len(data)

    def _rewrite(self, rows: Iterable[dict]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(_lines(rows))
        os.replace(tmp, self.path)

    def write(self, rows: list[dict]) -> None:
        assert self._f is not None, "open() first"
        self._f.write(_lines(rows))
        self._f.flush()

    def close(self, finish: bool = True) -> None:
        """Close; with ``finish``, write OUT.csv / OUT.parquet from the journal and remove the journal."""
        if self._f is not None:
            self._f.close()
            self._f = None
        if finish and self.fmt != "jsonl":
            rows, _ = self._load()
            tmp = self.out.with_name(self.out.name + ".tmp")
            (_write_csv if self.fmt == "csv" else _write_parquet)(tmp, rows)
            os.replace(tmp, self.out)
            self.path.unlink()


def _lines(rows: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _columns(rows: list[dict]) -> list[str]:
    seen = dict.fromkeys(k for r in rows for k in r)
    return [c for c in COLUMN_ORDER if c in seen] + [c for c in seen if c not in COLUMN_ORDER]


def _write_csv(path: Path, rows: list[dict]) -> None:
    cols = _columns(rows) or ["input"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if k in _NESTED and v is not None else v for k, v in r.items()})


def _write_parquet(path: Path, rows: list[dict]) -> None:
    pa = _pyarrow()
    cols = _columns(rows) or ["input"]
    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows])
    pa.parquet.write_table(table, path)


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a result file (JSONL, CSV or Parquet) as dicts, without empty fields."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            return [_from_csv(r) for r in csv.DictReader(f)]
    return [{k: v for k, v in r.items() if v is not None} for r in _pyarrow().parquet.read_table(path).to_pylist()]


def _from_csv(r: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in r.items():
        if v in ("", None):
            continue
        out[k] = json.loads(v) if k in _NESTED else float(v) if k == "score" else v
    return out
