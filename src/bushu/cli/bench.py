"""`bushu bench ART`: latency, throughput and peak memory per backend × batch size × threads."""

from __future__ import annotations

from pathlib import Path

import click

from ._inputs import input_options
from ._output import console, print_json, table

# row key -> short column header (the terminal table must fit 80 columns)
COLUMNS = {
    "backend": "backend",
    "batch": "batch",
    "threads": "thr",
    "precision": "prec",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "throughput": "items/s",
    "cpu_ms": "cpu ms",
    "peak_rss_mb": "RSS MB",
}


def _ints(value: str | None, what: str) -> list[int]:
    if not value:
        return []
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers such as 1,8, got {value!r}", param_hint=what
        ) from None
    if not out or any(v < 1 for v in out):
        raise click.BadParameter(f"expected positive integers, got {value!r}", param_hint=what)
    return out


@click.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--backend",
    "backends",
    help="Comma-separated backends, e.g. onnxruntime,openvino,torch (default: every installed backend).",
)
@click.option("--batch", "batch", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--threads", default=None, help="Comma-separated intra-op thread counts (default: the backend's own).")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0), help="Untimed runs first.")
@click.option("--repeats", default=10, show_default=True, type=click.IntRange(1), help="At least this many timed runs.")
@click.option(
    "--duration",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="And at least this many seconds of timed runs per row.",
)
@click.option("--precision", default=None, help="Precision for backends that take one (default fp32).")
@click.option(
    "--in-process", is_flag=True, help="Run every backend in this process (faster start; peak memory is then shared)."
)
@click.option("--no-record", is_flag=True, help="Do not record the results into the artifact.")
@click.option(
    "--with-postprocess",
    is_flag=True,
    help="Detectors: time decoding and NMS with each run (on a photo; rows add postprocess_ms, decode + NMS alone).",
)
@click.option("--json", "as_json", is_flag=True, help="Print {model, env, results} as JSON.")
@input_options
def command(
    model: Path,
    backends: str | None,
    batch: str,
    threads: str | None,
    warmup: int,
    repeats: int,
    duration: float,
    precision: str | None,
    in_process: bool,
    no_record: bool,
    with_postprocess: bool,
    as_json: bool,
    inputs,
) -> None:
    """Latency p50/p99, throughput (items/s), CPU time and peak memory for each backend × batch × threads.

    Each backend runs in its own fresh process; every row says why when a backend cannot run the model.
    JSON row keys: backend, batch, threads, precision, status, reason, p50_ms, p90_ms, p99_ms, mean_ms,
    min_ms, cpu_ms, cpu_util, throughput, peak_rss_mb, runs, file."""
    from ..bench.bench import benchmark
    from ..envinfo import summary

    names = [b.strip() for b in backends.split(",") if b.strip()] if backends else None
    rows = benchmark(
        model,
        backends=names,
        batch_sizes=_ints(batch, "--batch"),
        threads=_ints(threads, "--threads") or [None],
        warmup=warmup,
        repeats=repeats,
        duration_s=duration,
        precision=precision,
        isolate=not in_process,
        progress=not as_json,
        record=not no_record,
        with_postprocess=with_postprocess,
        inputs=inputs,
    )
    if as_json:
        print_json({"model": str(model), "env": summary(), "results": rows})
        return
    ok = [r for r in rows if r["status"] == "ok"]
    sweep = len({r.get("inputs") for r in ok}) > len({r["batch"] for r in ok})
    cols = {**COLUMNS, "postprocess_ms": "post ms"} if with_postprocess else dict(COLUMNS)
    if sweep:
        cols["size"] = "input"
    if ok:  # the sweep column: the first input's shape (the rest follow it; --json has them all)
        table(
            [
                {h: (r.get("inputs") or "").split(" ")[0] if k == "size" else r.get(k) for k, h in cols.items()}
                for r in ok
            ],
            cols.values(),
            title=f"bushu bench {model}",
        )
        if not sweep and ok[0].get("inputs"):
            console.print(f"inputs (batch 1): {next((r['inputs'] for r in ok if r['batch'] == 1), ok[0]['inputs'])}")
    failed: dict[tuple[str, str, str], set[int]] = {}
    for r in rows:
        if r["status"] != "ok":
            failed.setdefault((r["backend"], r["status"], r["reason"]), set()).add(r["batch"])
    for (backend, status, reason), batches in failed.items():
        console.print(f"[yellow]{backend} (batch {','.join(map(str, sorted(batches)))}): {status}: {reason}[/]")
    if ok:
        best = max(ok, key=lambda r: r["throughput"])
        console.print(
            f"best throughput: {best['backend']} batch {best['batch']}: {best['throughput']:.1f} items/s; "
            "times are wall-clock medians on this machine only"
        )
