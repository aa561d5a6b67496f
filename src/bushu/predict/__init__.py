"""Batch prediction over data sets: ``predict(ART, inputs)`` -> one ``Prediction`` per input.

Locally in this process (decoding the next batch while the backend runs this one), in ``workers``
processes, or as a Ray Data job (``ray=True`` for a Ray started for the run, or a cluster address).
``predict_to_file`` writes the rows to JSONL / CSV / Parquet and resumes an interrupted run (output.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .inputs import Item, collect
from .output import Journal, read_rows

__all__ = ["PredictSummary", "Prediction", "predict", "predict_to_file", "read_rows"]

#: progress(done, total, failed): called after each batch
ProgressFn = Callable[[int, int, int], None]


@dataclass(frozen=True)
class Prediction:
    """One input's row: ``label``/``score``/``top_k`` for a classifier, ``detections`` ([{box, score, label,
    index}], boxes in the image's pixels) for a detector, ``outputs`` for other tasks,
    or ``error`` when the input could not be read."""

    input: str
    label: str | None = None
    score: float | None = None
    top_k: list[dict[str, Any]] = field(default_factory=list)  # [{index, label, score}], best first
    detections: list[dict[str, Any]] | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Prediction:
        return cls(**row)

    def to_row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and v != []}


@dataclass
class PredictSummary:
    output: Path
    total: int  # inputs found
    skipped: int  # answered by an earlier run
    answered: int
    failed: int
    seconds: float
    stopped: bool = False  # fail_fast stopped the run
    first_rows_s: float | None = None  # when the first rows came (model load, worker / Ray start, first batch)
    first_rows: int = 0

    @property
    def rate(self) -> float:
        return (self.answered + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_rate(self) -> float | None:
        """Inputs per second after the first rows, without the start-up."""
        if self.first_rows_s is None or self.seconds <= self.first_rows_s:
            return None
        return (self.answered + self.failed - self.first_rows) / (self.seconds - self.first_rows_s)


def _artifact_kind(artifact: str | Path) -> tuple[Path, str]:
    from ..model.artifact import Artifact
    from .runner import raw_input_preprocess

    art = Artifact.load(artifact)
    return art.path, raw_input_preprocess(art).kind


def _rows(
    artifact: Path,
    items: Sequence[Item],
    batch_size: int,
    backend: str | None,
    threads: int | None,
    top_k: int,
    workers: int,
    ray: bool | str | None,
    ray_options: dict | None,
    fast_decode: bool = False,
) -> Iterator[list[dict]]:
    if batch_size < 1 or workers < 1 or top_k < 1 or (threads is not None and threads < 1):
        raise UserInputError(
            f"batch size, workers, top-k and threads must be positive integers (got {batch_size}, "
            f"{workers}, {top_k}, {threads})"
        )
    if not items:
        return iter(())
    if backend is not None:  # an unknown or uninstalled backend fails here, before workers start
        from ..runtime import get_backend

        get_backend(backend)
    if ray:
        from .ray_job import check_address, run_ray

        if ray is not True:
            check_address(str(ray))  # a dead address fails here, before any progress is shown
        return run_ray(
            artifact,
            items,
            batch_size,
            backend,
            threads,
            top_k,
            workers,
            None if ray is True else str(ray),
            fast_decode=fast_decode,
            **(ray_options or {}),
        )
    from .runner import run_local, run_processes

    if workers > 1:
        return run_processes(artifact, items, batch_size, backend, threads, top_k, workers, fast_decode)
    return run_local(artifact, items, batch_size, backend, threads, top_k, fast_decode)


def predict(
    artifact: str | Path,
    inputs: str | Sequence[str],
    *,
    column: str | None = None,
    batch_size: int = 16,
    backend: str | None = None,
    threads: int | None = None,
    top_k: int = 5,
    workers: int = 1,
    ray: bool | str | None = None,
    fail_fast: bool = False,
    progress: ProgressFn | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
    ray_options: dict | None = None,
    fast_decode: bool = False,
) -> Iterator[Prediction]:
    """Predict every input (folders, globs, ``@list.txt``, .csv/.jsonl tables; see bushu.predict.inputs);
    yields one ``Prediction`` per input, in completion order. ``skip``: input keys not to run again.
    ``fail_fast``: stop after the first error row. ``fast_decode``: decode large JPEGs at 1/2, 1/4 or 1/8 scale
    where the resize allows (processing.jpeg_draft): less CPU, scores a little off the exact decode's."""
    path, kind = _artifact_kind(artifact)
    items = [
        it for it in collect([inputs] if isinstance(inputs, str) else list(inputs), kind, column) if it.key not in skip
    ]
    done = failed = 0
    for rows in _rows(path, items, batch_size, backend, threads, top_k, workers, ray, ray_options, fast_decode):
        for row in rows:
            done += 1
            failed += "error" in row
            yield Prediction.from_row(row)
            if fail_fast and "error" in row:
                return
        if progress:
            progress(done, len(items), failed)


def predict_to_file(
    artifact: str | Path,
    inputs: str | Sequence[str],
    output: str | Path,
    *,
    progress: ProgressFn | None = None,
    fail_fast: bool = False,
    **options: Any,
) -> PredictSummary:
    """``predict`` into OUTPUT (.jsonl, .csv or .parquet), resuming: inputs already answered there are skipped."""
    path, kind = _artifact_kind(artifact)
    journal = Journal(output)
    items = collect([inputs] if isinstance(inputs, str) else list(inputs), kind, options.pop("column", None))
    done = journal.open()
    todo = [it for it in items if it.key not in done]
    t0 = time.perf_counter()
    answered = failed = 0
    stopped, first = False, None
    results = _rows(
        path,
        todo,
        **{
            "batch_size": 16,
            "backend": None,
            "threads": None,
            "top_k": 5,
            "workers": 1,
            "ray": None,
            "ray_options": None,
            "fast_decode": False,
            **options,
        },
    )
    if progress:
        progress(0, len(todo), 0)
    try:
        for rows in results:
            if fail_fast and any("error" in r for r in rows):
                rows = rows[: next(i for i, r in enumerate(rows) if "error" in r) + 1]
                stopped = True
            journal.write(rows)
            if first is None:
                first = (time.perf_counter() - t0, len(rows))
            bad = sum("error" in r for r in rows)
            answered, failed = answered + len(rows) - bad, failed + bad
            if progress:
                progress(answered + failed, len(todo), failed)
            if stopped:
                break
    except BaseException:
        journal.close(finish=False)  # the journal keeps every finished row for the rerun
        raise
    journal.close()
    return PredictSummary(
        journal.out,
        len(items),
        len(items) - len(todo),
        answered,
        failed,
        time.perf_counter() - t0,
        stopped,
        *(first or (None, 0)),
    )
