"""`bushu predict ART INPUT... -o OUT`: batch prediction over folders, globs, lists and tables, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._output import console, err_console

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


@click.command("predict")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Result file: .jsonl, .csv or .parquet. Rerunning with the same file resumes.",
)
@click.option("--column", help="The path or text column of a .csv/.jsonl INPUT (default: path, file, image or text).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option(
    "--backend",
    help="Runtime (default onnxruntime); another one runs the artifact file it reads "
    "(openvino reads the .onnx; tflite, ncnn, mnn need bushu export first).",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="Intra-op threads per backend (default: in one process on onnxruntime, cores - 1, so that its two batches in "
    "flight and the pool fill the cores; otherwise the backend's own; with --workers, the cores shared out).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Processes, each with its own backend (with --ray: actors).",
)
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1), help="Labels per row (classifiers).")
@click.option(
    "--ray",
    "ray",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run as a Ray Data job: on a Ray started for the run (--ray), or on the cluster at "
    "ADDRESS (--ray=HOST:6379, or ray://HOST:10001).",
)
@click.option(
    "--fast-decode",
    is_flag=True,
    help="Decode large JPEGs at 1/2, 1/4 or 1/8 scale where the model's resize allows (less CPU per image; "
    "scores differ a little from the exact decode that bushu serve uses, see docs/notes.md).",
)
@click.option("--fail-fast", is_flag=True, help="Stop at the first input that cannot be read.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(
    artifact: Path,
    inputs: tuple[str, ...],
    output: Path,
    column: str | None,
    batch_size: int,
    backend: str | None,
    threads: int | None,
    workers: int,
    top_k: int,
    ray: str | None,
    fast_decode: bool,
    fail_fast: bool,
    quiet: bool,
) -> int:
    """Run ARTIFACT over every INPUT and write one row per input to OUTPUT.

    INPUT: a folder (recursively), a quoted glob, @paths.txt (one path a line), or a .csv/.jsonl table
    (--column). Rows: input, label, score, top_k [{index, label, score}] for classifiers, detections
    [{box, score, label, index}] for detectors, outputs for other tasks, or error for an input that could not be read; the run goes on. Exit code 0 when every
    input was answered, 1 when some failed. A killed run, rerun with the same -o, skips what is done."""
    from ..predict import predict_to_file
    from ..predict.output import output_format

    output_format(output)  # an unknown suffix fails before any work
    options = {
        "column": column,
        "batch_size": batch_size,
        "backend": backend,
        "threads": threads,
        "workers": workers,
        "top_k": top_k,
        "ray": None if ray is None else (True if ray == "local" else ray),
        "fast_decode": fast_decode,
    }
    with _Bar(quiet) as bar:
        s = predict_to_file(artifact, list(inputs), output, progress=bar.update, fail_fast=fail_fast, **options)
    done = f", {s.skipped:,} answered before" if s.skipped else ""
    steady = f"; {s.steady_rate:.1f}/s after the first rows at {s.first_rows_s:.1f} s" if s.steady_rate else ""
    console.print(
        f"{s.answered:,} answered, {s.failed:,} failed of {s.total:,} inputs{done} in {s.seconds:.1f} s "
        f"({s.rate:.1f} inputs/s{steady}) -> {s.output}",
        style="yellow" if s.failed else "bold green",
        soft_wrap=True,
    )
    if s.stopped:
        console.print("stopped at the first failure (--fail-fast); rerun to go on", style="yellow")
    if s.failed:
        console.print(f"the failed inputs have an 'error' field in {s.output}; a rerun retries them", soft_wrap=True)
    return 1 if s.failed else 0


class _Bar:
    """A rich progress bar with count, rate and ETA on stderr (nothing when quiet)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> _Bar:  # noqa: PYI034
        return self

    def update(self, done: int, total: int, failed: int) -> None:
        if self.quiet:
            return
        if self.progress is None or self.task is None:  # started by the first report: an early error prints alone
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            progress = Progress(
                TextColumn("predict"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} inputs/s, {task.fields[failed]} failed"),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            progress.start()
            self.progress, self.task = progress, progress.add_task("predict", total=total, rate="-", failed=0)
        self.progress.update(self.task, completed=done, failed=failed)
        speed = self.progress.tasks[0].speed
        self.progress.update(self.task, rate=f"{speed:.1f}" if speed else "-")

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
