"""`bushu plan ART --data DIR [constraints]`: the served configuration that meets the targets, measured,
written as a model repository, and verified."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..runtime.registry import BUILTIN, with_flag
from ._inputs import input_options
from ._output import console, print_json, table

if TYPE_CHECKING:
    from ..inputs import InputRequest

COLUMNS = ("config", "p50_ms", "p99_ms", "req/s", "MB", "acc%", "failed")
_SHORT = {n: b.short for n, b in BUILTIN.items() if b.short}
_BOUND = {
    "max_p99_ms": "p99",
    "max_avg_ms": "avg",
    "min_throughput": "req/s",
    "max_size_mb": "size",
    "min_accuracy": "acc",
    "max_accuracy_drop": "drop",
}


def _row(r: dict) -> dict:
    """A served candidate as a narrow table row: ort/int8+prune0.3 1x2 b8 1ms = backend/precision
    [+compression], threads × instances, max batch, queue delay."""
    comp = f"+{r['compression']}" if r.get("compression") else ""
    return {
        "config": f"{_SHORT.get(r['backend'], r['backend'])}/{r['precision']}{comp} "
        f"{r['threads']}x{r['instances']} "
        f"b{r['max_batch_size']} {r['max_queue_delay_us'] / 1000:g}ms",
        "p50_ms": r.get("p50_ms"),
        "p99_ms": r.get("p99_ms"),
        "req/s": r.get("throughput"),
        "MB": r.get("size_mb"),
        "acc%": r.get("accuracy"),
        "failed": ",".join(_BOUND[f["constraint"]] for f in r.get("failed") or []) or "-",
        "key": r["config"],
    }


def _duration(ctx, param, value: str | None) -> float | None:
    """600, 600s, 10m, 1h → seconds."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
    if not m or float(m[1]) <= 0:
        raise click.BadParameter(f"{value!r} is not a duration (e.g. 300, 90s, 10m)")
    return float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[m[2]]


@click.command("plan")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Images: one folder per class (accuracy, calibration); folders that are not the model's labels "
    "make the accuracy figure top-1 agreement with fp32.",
)
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Output folder [default: ART-plan].")
@click.option("--max-p99-ms", type=float, help="Largest p99 latency per request, served, at --concurrency.")
@click.option("--max-avg-ms", type=float, help="Largest mean latency per request.")
@click.option("--min-throughput", type=float, help="Fewest requests per second.")
@click.option(
    "--concurrency",
    type=int,
    default=1,
    show_default=True,
    help="Clients sending requests at once (each waits for its answer).",
)
@click.option("--max-size-mb", type=float, help="Largest model file.")
@click.option("--min-accuracy", type=float, help="Lowest top-1 accuracy on --data, in percent.")
@click.option("--max-accuracy-drop", type=float, help="Most points of accuracy lost against the fp32 model.")
@click.option("--target", default="cpu", show_default=True, help="cpu (this machine), gpu, or edge-<format>.")
@click.option(
    "--optimize",
    "objective",
    type=click.Choice(["latency", "throughput", "size"]),
    default="throughput",
    show_default=True,
    help="What to make best among the configurations that meet the constraints.",
)
@click.option(
    "--budget",
    default="10m",
    show_default=True,
    callback=_duration,
    help="Time for the search (e.g. 300, 90s, 10m); fewer configurations are served when short.",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(with_flag("plannable")),
    help="Search only these backends (repeatable) [default: every installed one].",
)
@click.option(
    "--precision",
    "precisions",
    multiple=True,
    type=click.Choice(["fp32", "int8", "bf16", "fp16"]),
    help="Search only these precisions (repeatable) [default: all that help on this machine].",
)
@click.option(
    "--compress",
    "compress",
    metavar="SPEC[,SPEC...]",
    help="Also search compressed models: prune<ratio> (structured pruning, e.g. prune0.3) or "
    "lowrank<energy> (low-rank factorization, e.g. lowrank0.9); each becomes fp32 (and int8) variants. "
    "Needs an artifact imported from a module:callable or zoo name [default: none].",
)
@click.option(
    "--train",
    type=click.Path(path_type=Path),
    help="Images to fine-tune the compressed models on, as bushu optimize --train does (one folder per "
    "class, or flat: the original model's outputs are the targets).",
)
@click.option(
    "--epochs", type=int, default=3, show_default=True, help="Fine-tuning epochs on --train after pruning / low-rank."
)
@click.option(
    "--duration", type=float, default=3.0, show_default=True, help="Seconds of load per served configuration."
)
@click.option("--batch-sizes", default="1,2,4,8,16", show_default=True, help="Max batch sizes to try (comma list).")
@click.option(
    "--threads", "threads", default=None, help="Threads per instance to try (comma list) [default: 1..cores]."
)
@click.option("--bench-duration", type=float, default=0.5, show_default=True, help="Seconds per in-process timing row.")
@click.option(
    "--serve-top",
    type=int,
    default=4,
    show_default=True,
    help="Served configurations in the first round (at least one per variant).",
)
@click.option(
    "--no-confirm",
    is_flag=True,
    help="Choose on the search's one window per configuration, without serving the leaders again in "
    "alternating windows and judging them on upper bounds of p99.",
)
@click.option("--no-verify", is_flag=True, help="Skip serving the written repository once more.")
@click.option("--name", help="Model name in the repository [default: the artifact's].")
@click.option("--fresh", is_flag=True, help="Ignore finished work saved by an earlier run in OUT.")
@click.option("--json", "as_json", is_flag=True, help="Print plan.json's content.")
@input_options
def command(
    artifact: Path,
    data: Path | None,
    out: Path | None,
    max_p99_ms: float | None,
    max_avg_ms: float | None,
    min_throughput: float | None,
    concurrency: int,
    max_size_mb: float | None,
    min_accuracy: float | None,
    max_accuracy_drop: float | None,
    target: str,
    objective: str,
    budget: float,
    backends: tuple[str, ...],
    precisions: tuple[str, ...],
    compress: str | None,
    train: Path | None,
    epochs: int,
    duration: float,
    batch_sizes: str,
    threads: str | None,
    bench_duration: float,
    serve_top: int,
    no_confirm: bool,
    no_verify: bool,
    name: str | None,
    fresh: bool,
    as_json: bool,
    inputs,
) -> None:
    """Find the served configuration of ART that meets the targets (backend × precision × compression ×
    threads × instances × max batch × queue delay), measured for real; write it as a model repository
    (OUT/repository) that `bushu serve` runs as is, a report (OUT/report.html) and OUT/plan.json.

    \b
    bushu plan ART --data images/ --max-p99-ms 50 --concurrency 8
    bushu plan ART --data images/ --min-throughput 200 --max-accuracy-drop 1 --optimize size
    bushu plan ART --data images/ --max-size-mb 5 --compress prune0.3,lowrank0.9 --train train/
    Exit code 1 when nothing meets the constraints (the closest candidate is named) or the
    verification replay misses them.
    """
    from ..plan import Constraints, PlanConfig, check_target, plan

    data = _plan_data(artifact, data, out, inputs)
    batches = _ints("--batch-sizes", batch_sizes)
    thread_list = _ints("--threads", threads) if threads else None

    c = Constraints(
        max_p99_ms=max_p99_ms,
        max_avg_ms=max_avg_ms,
        min_throughput=min_throughput,
        max_size_mb=max_size_mb,
        min_accuracy=min_accuracy,
        max_accuracy_drop=max_accuracy_drop,
        concurrency=concurrency,
        target=target,
        optimize=objective,
    )
    check_target(target)
    out = out or artifact.with_name(artifact.name + "-plan")
    log = (lambda _m: None) if as_json else (lambda m: console.print(f"[dim]{m}[/]"))
    config = PlanConfig.from_options(
        budget_s=budget,
        backends=backends or None,
        precisions=precisions or None,
        duration_s=duration,
        serve_top=serve_top,
        batch_sizes=batches,
        threads=thread_list,
        bench_duration_s=bench_duration,
        confirm=not no_confirm,
        verify=not no_verify,
        name=name,
        fresh=fresh,
        compress=compress,
        train=train,
        epochs=epochs,
    )
    result = plan(artifact, data, out, c, config, log=log)
    ver = result.get("verification")
    ok = result["met"] and (ver is None or ver.get("passed"))
    if as_json:
        print_json(result)
    else:
        _print(result)
    if not ok:
        # SystemExit, not click's Exit: bushu.cli.main turns Exit into a return value it then drops
        raise SystemExit(1)


def _ints(flag: str, text: str) -> list[int]:
    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        vals = []
    if not vals or vals[0] < 1:
        raise click.BadParameter(f"{text!r} is not a comma list of positive integers (e.g. 1,4,16)", param_hint=flag)
    return vals


def _print(result: dict) -> None:
    from ..plan.report import failed_text

    rows = [_row(r) for r in result["candidates"] if r.get("status") == "ok"]
    console.print(f"accuracy: {result['accuracy_note']}")
    pareto = {r["config"] for r in result["pareto"]}
    table([r for r in rows if r["key"] in pareto], COLUMNS, title="Pareto front (served)")
    others = [r for r in rows if r["key"] not in pareto]
    if others:
        table(others, COLUMNS, title="Other served candidates")
    console.print(
        "config: backend/precision[+compression] threads×instances, max batch, queue delay; failed: the bounds missed"
    )
    if result["search"].get("compression"):
        chosen = (result.get("chosen") or {}).get("variant")
        table(
            [
                {
                    "variant": v["variant"],
                    "MB": v["size_mb"],
                    "acc%": v["accuracy"],
                    "drop": v["accuracy_drop"],
                    "status": v["status"],
                    "chosen": "*" if v["variant"] == chosen else "",
                }
                for v in result["variants"]
            ],
            ("variant", "MB", "acc%", "drop", "status", "chosen"),
            title="Variants (size, accuracy)",
        )
    for v in result["variants"]:
        if v["status"] != "ok" or v.get("failed") or v.get("pruned"):
            why = v["reason"] or (failed_text(v["failed"]) if v.get("failed") else f"dominated by {v['pruned']}")
            console.print(f"[dim]{v['variant']}: {v['status'] if v['status'] != 'ok' else 'not served'}: {why}[/]")
    if result["met"]:
        ch = result["chosen"]
        console.print(
            f"[bold green]chosen[/] {ch['config']}: p99 {ch['p99_ms']:.1f} ms, {ch['throughput']:.1f} req/s, "
            f"{ch['size_mb']:.1f} MB, {result['accuracy_metric']} {ch['accuracy']:.1f}%"
        )
        console.print(f"why: {result['why']}")
        if result.get("confidence"):
            console.print(f"how sure: {result['confidence']['text']}")
    else:
        cl = result["closest"]
        console.print(f"[bold red]{cl['message']}[/]")
        if cl.get("relax"):
            console.print(cl["relax"])
        if cl.get("hint"):
            console.print(f"Hint: {cl['hint']}")
    ver = result.get("verification")
    if ver:
        status = "[green]meets[/]" if ver.get("passed") else "[red]misses[/]"
        console.print(
            f"verification ({ver.get('command')}, {ver.get('concurrency')} client(s)): "
            f"p50 {ver['p50_ms']:.1f} ms, p99 {ver['p99_ms']:.1f} ms, {ver['throughput']:.1f} req/s "
            f"→ {status} the targets {ver.get('targets') or '(none given)'}"
            + (f"; failed: {failed_text(ver['failed'])}" if ver.get("failed") else "")
        )
    console.print(
        f"wrote {result['out']}/plan.json, {result['report']}"
        + (f", {result['repository']}" if result.get("repository") else "")
    )
    if result.get("repository"):
        console.print(f"next: [bold]bushu serve {result['repository']}[/]")


def _plan_data(artifact: Path, data: Path | None, out: Path | None, inputs: InputRequest) -> Path:
    """What the plan measures on: --data, else --sample, else inputs derived at the --input sizes (written
    beside the plan, OUT/derived-inputs.npz, for the verification's replay)."""
    data = data or (Path(inputs.sample_path) if inputs.sample_path else None)
    if data is None and inputs.shapes:
        import numpy as np

        from ..model.artifact import Artifact

        art = Artifact.load(artifact)
        inputs.check(art.inputs)
        data = (out or artifact.with_name(artifact.name + "-plan")) / "derived-inputs.npz"
        data.parent.mkdir(parents=True, exist_ok=True)
        # not allow_pickle=True to please numpy's stubs: numpy < 2.1 (bushu allows >= 1.24) would save it as an array
        np.savez(data, **inputs.feeds(art.inputs, batch=16, seed=3))  # type: ignore[arg-type]
    if data is None:
        raise click.UsageError(
            "missing --data DIR (images), --sample FILE.npz (model inputs by name) or "
            "--input NAME:SHAPE (derived inputs of that size)"
        )
    return data
