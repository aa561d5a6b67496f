"""`bushu plan`: from an artifact, data and targets to a measured, verified model repository.

    plan(artifact, data, out, Constraints(...), PlanConfig(budget_s=600)) -> dict (also OUT/plan.json)

1. environment (bushu env) and the model's variants: backend × precision (× compression, when
   ``compress`` specs are given), each with its size and its accuracy on ``data``
   (bushu.optimize.quantize for int8, calibrated on ``data``; bushu.optimize.optimize for pruning and
   low-rank, fine-tuned on ``train``);
2. variants that miss a size or accuracy bound are out; the others are timed in process for every
   threads × batch size (bushu.bench.bench);
3. served configurations (threads × instances × max batch × queue delay) are predicted from those
   rows; those that cannot help at ``concurrency`` (more instances than clients, a batch larger than
   the clients can fill, a queue delay at concurrency 1) and dominated ones are dropped; the best few
   are served for real (``bushu serve`` in a subprocess, closed-loop gRPC load at ``concurrency``);
   the winner's neighbours are served next;
4. confirmation (plan/confirm.py): the leaders (at most 3) are served again in alternating windows
   with the rest of the budget, and the choice is made on upper bounds (p99: the worst window's, or a
   95% order-statistic upper confidence bound from all samples, whichever is larger), not on one
   window's figure; plan.json's "confidence" says how sure the choice is;
5. the chosen configuration is written as OUT/repository (model + config.pbtxt); when nothing meets
   every constraint, the closest candidate and the bound to relax are named;
6. verification: the written repository is served and the same load replayed; its p50/p99/throughput
   are compared with the targets.

Finished work (the int8 and compressed models, accuracy, in-process rows, served measurements) is
journaled in OUT/.work, so a re-run after an interruption (or with other targets) reuses it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UnknownNameError, UserInputError
from ..model.artifact import Artifact
from .compression import parse_specs
from .config import PlanConfig
from .constraints import BOUNDS, MODEL_BOUNDS, Constraints, failures, worst_ratio
from .search import (
    Config,
    measure_variants,
    neighbours,
    objective_key,
    pareto,
    predict,
    shortlist,
    thread_choices,
    useful_batch_sizes,
)
from .variants import BACKENDS, PRECISIONS, Variant, build_variants, load_dataset

__all__ = ["PlanConfig", "check_target", "plan"]

STARTUP_S = 6.0  # a served round: server start + model loads, roughly, for budgeting


def check_target(target: str) -> None:
    """cpu plans here; gpu and edge-<format> fail with what is (not) available."""
    if target == "cpu":
        return
    if target == "gpu":
        from ..envinfo import gpu_info

        gpu = gpu_info()
        if not gpu.get("available"):
            raise UserInputError(
                f"--target gpu is not available here: no GPU found ({gpu.get('reason', 'none listed')})",
                hint="plan for this machine with --target cpu, or run bushu plan on the GPU machine",
            )
        names = ", ".join(d.get("name", "?") for d in gpu.get("devices", []))
        raise UserInputError(
            f"--target gpu: found {names}, but bushu plan searches CPU deployments only in this "
            "version (the server runs its instances on the CPU)",
            hint="use --target cpu; TensorRT/CUDA serving is not wired into the server yet",
        )
    if target.startswith("edge-"):
        raise UserInputError(
            f"--target {target} is not available here: bushu plan measures server deployments "
            "on this machine; edge formats run on the device",
            hint="convert for devices with bushu export ART --format F, then measure on the device",
        )
    raise UnknownNameError(
        "target", target, ["cpu", "gpu", "edge-<format>"], hint="use --target cpu to plan for this machine"
    )


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _fingerprint(art: Artifact, data: Path) -> str:
    from .. import __version__

    h = hashlib.sha256(f"{__version__}:plan-1".encode())
    with open(art.model_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    for p in sorted(Path(data).rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(data)}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


class _Journal:
    """Finished work by key, in OUT/.work/journal.json (written after every step)."""

    def __init__(self, path: Path, fingerprint: str, fresh: bool) -> None:
        self.path = path
        data = {}
        if path.is_file() and not fresh:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
        if data.get("fingerprint") != fingerprint:
            data = {"fingerprint": fingerprint}
        self.data = data
        self.reused = len(data) > 1

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, default=str))
        tmp.replace(self.path)


@dataclass
class _Run:
    """One plan's inputs once checked, and the state its phases share."""

    art: Artifact
    data: Path
    out: Path
    c: Constraints
    cfg: PlanConfig  # resolved: backends, precisions, threads and compression specs filled in and checked
    log: Callable[[str], None]
    journal: _Journal
    cores: int
    env: dict[str, Any]
    t_start: float
    ds: Any = None
    variants: list[Variant] = dataclasses.field(default_factory=list)  # every variant, once built
    phases_s: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per phase, in order

    def mark(self, phase: str) -> None:
        """Record the seconds since the previous mark (or the start) as ``phase``."""
        self.phases_s[phase] = round(time.perf_counter() - self.t_start - sum(self.phases_s.values()), 1)

    @property
    def work(self) -> Path:
        return self.out / ".work"

    @property
    def verify_s(self) -> float:
        return self.cfg.verify_s or max(self.cfg.duration_s * 2, 3.0)

    @property
    def batch_sizes(self) -> list[int]:
        """The max batch sizes worth measuring at the stated concurrency (search.useful_batch_sizes)."""
        return useful_batch_sizes(self.cfg.batch_sizes, self.c.concurrency)

    def serving_room(self, search: bool = True) -> float:
        """Seconds left for served rounds: the budget less the time spent, the verification to come and
        (``search``: while searching) the least time the confirmation of the leaders needs."""
        from .confirm import reserve_s

        verify = STARTUP_S + self.verify_s + 2 if self.cfg.verify else 0
        confirm = STARTUP_S + reserve_s(self.cfg.duration_s) if self.cfg.confirm and search else 0
        return self.cfg.budget_s - (time.perf_counter() - self.t_start) - verify - confirm - STARTUP_S


def plan(
    artifact: Artifact | str | Path,
    data: str | Path,
    out: str | Path,
    constraints: Constraints,
    config: PlanConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Search, serve, choose, write OUT/repository, verify; return the plan (also OUT/plan.json).

    ``config`` (a :class:`PlanConfig`) says what to search and how long to measure; ``options`` replace
    its fields (``plan(..., budget_s=300, refine=False)``). ``compress``: specs such as
    ["prune0.3", "lowrank0.9"] (see plan/compression.py), each adding the compressed model's variants;
    ``train``: images to fine-tune them on for ``epochs`` (one folder per class, or flat: then the
    original model's outputs are the only targets)."""
    run = _start(artifact, data, out, constraints, PlanConfig.from_options(config, **options), log)
    variants, model_fail, eligible = _variant_phase(run)
    run.variants = variants
    run.mark("variants")
    # 2. in-process rows; variants that another beats everywhere are not served
    if len(run.batch_sizes) < len(set(run.cfg.batch_sizes)):
        run.log(
            f"concurrency {run.c.concurrency}: max batch {run.batch_sizes} only (a batch never holds more "
            "requests than there are clients)" + ("; no queue delay, one instance" if run.c.concurrency == 1 else "")
        )
    rows = measure_variants(
        eligible, run.cfg.threads or (), run.batch_sizes, run.cfg.bench_duration_s, run.log, run.journal.data
    )
    run.journal.save()
    run.mark("in_process")
    pruned = _dominated(eligible, rows)
    for v, by in pruned.items():
        run.log(f"{v}: dominated by {by} (no faster, no smaller, no more accurate): not served")
    contenders = [v for v in eligible if v.key not in pruned]
    served, predicted = _serve_phase(run, contenders, rows)
    run.mark("serving")
    result = _choose_phase(run, variants, model_fail, served)
    result["variants"] = [
        v.to_dict() | {"failed": model_fail.get(v.key, []), "pruned": pruned.get(v.key)} for v in variants
    ]
    result["in_process"] = rows
    result.update(_search_summary(run, served, rows, predicted))
    _write_phase(run, result, {v.key: v for v in variants}, _samples(run.ds))
    return result


def _start(
    artifact: Artifact | str | Path,
    data: str | Path,
    out: str | Path,
    c: Constraints,
    cfg: PlanConfig,
    log: Callable[[str], None] | None,
) -> _Run:
    """Check every input (before any work), resolve the machine defaults, open the journal."""
    from ..envinfo import summary

    t_start = time.perf_counter()
    log = log or (lambda _m: None)
    check_target(c.target)
    if cfg.budget_s <= 0:
        raise UserInputError(f"--budget must be > 0 seconds, got {cfg.budget_s:g}")
    if cfg.duration_s <= 0 or cfg.bench_duration_s <= 0:
        raise UserInputError("measurement durations must be > 0 seconds")
    art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
    if art.format != "onnx":
        raise UserInputError(
            f"bushu plan reads ONNX artifacts; {art.path} is {art.format!r}",
            hint="import the model first: bushu import SRC -o ART",
        )
    data = Path(data)
    if not data.is_dir() and not (data.is_file() and data.suffix.lower() == ".npz"):
        raise UserInputError(
            f"--data {data} is not a folder (or a --sample .npz of model inputs)",
            hint="pass a folder of images (one sub-folder per class for accuracy), or real "
            "arrays by input name: --sample FILE.npz",
        )
    backends = tuple(cfg.backends or _installed_backends())
    for b in backends:
        if b not in BACKENDS:
            raise UnknownNameError("backend", b, BACKENDS)
    precisions = tuple(cfg.precisions or PRECISIONS)
    for p in precisions:
        if p not in PRECISIONS:
            raise UnknownNameError("precision", p, PRECISIONS)
    compress = tuple(parse_specs(list(cfg.compress)))
    train = None if cfg.train is None else Path(cfg.train)
    if train is not None:
        if not compress:
            raise UserInputError(
                "--train fine-tunes compressed models, but no --compress spec is given",
                hint="add --compress prune0.3 (or lowrank0.9), or drop --train",
            )
        if not train.is_dir():
            raise UserInputError(
                f"--train {train} is not a folder", hint="pass a folder of images (one sub-folder per class, or flat)"
            )
    if cfg.epochs < 0:
        raise UserInputError(f"--epochs must be ≥ 0, got {cfg.epochs}")
    out = Path(out)
    (out / ".work").mkdir(parents=True, exist_ok=True)
    journal = _Journal(out / ".work" / "journal.json", _fingerprint(art, data), cfg.fresh)
    cores = _cores()
    cfg = dataclasses.replace(
        cfg,
        backends=backends,
        precisions=precisions,
        compress=compress,
        train=train,
        threads=tuple(cfg.threads or thread_choices(cores)),
    )
    env = summary()
    log(
        f"environment: {env['cpu']}, {cores} usable core(s), {env['memory_gb']} GB"
        + (", reusing finished work from an earlier run" if journal.reused else "")
    )
    return _Run(art, data, out, c, cfg, log, journal, cores, env, t_start)


def _variant_phase(run: _Run) -> tuple[list[Variant], dict[str, list[dict[str, Any]]], list[Variant]]:
    """1. The variants, with their size and accuracy; (all, model-bound failures by key, those to time)."""
    cfg, c = run.cfg, run.c
    run.ds = ds = load_dataset(run.data, run.art)
    run.log(f"data: {ds.n} images; {ds.why}")
    variants = build_variants(
        run.art,
        run.data,
        run.work,
        list(cfg.backends or ()),
        list(cfg.precisions or ()),
        c.max_accuracy_drop,
        ds,
        run.log,
        run.journal.data,
        compress=list(cfg.compress),
        train=cfg.train,
        epochs=cfg.epochs,
    )
    run.journal.save()
    usable = [v for v in variants if v.status == "ok"]
    if not usable:
        raise UserInputError(
            "no variant of the model could run here: " + "; ".join(f"{v.key}: {v.reason}" for v in variants)
        )
    model_fail = {v.key: failures(c, _metrics(v), MODEL_BOUNDS) for v in usable}
    eligible = [v for v in usable if not model_fail[v.key]]
    if not eligible:  # nothing can meet the size/accuracy bounds: still measure the closest one
        eligible = [min(usable, key=lambda v: worst_ratio(model_fail[v.key]))]
        run.log(f"no variant meets the size/accuracy bounds; measuring the closest ({eligible[0].key}) to report on it")
    return variants, model_fail, eligible


def _serve_phase(
    run: _Run, contenders: list[Variant], rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """3. Serve the shortlist, then hill-climb around the two best variants' winners while one improves;
    (served measurements, predicted grid)."""
    cfg, c = run.cfg, run.c
    per = cfg.duration_s + 1.0
    room = run.serving_room()
    n_serve = max(len(contenders), min(cfg.serve_top, int(room // per)))
    if room < per * len(contenders):
        run.log(f"budget: {max(room, 0):.0f} s left for serving; serving only the best configuration per variant")
    predicted, to_serve = shortlist(contenders, rows, c, run.cores, n_serve)
    samples = _samples(run.ds)
    served = _serve_round(
        [_config(p) for p in to_serve],
        contenders,
        run.work / "serve-1",
        samples,
        c,
        cfg.duration_s,
        run.journal.data,
        run.journal,
        run.log,
    )
    table = _row_table(rows)
    rounds = 0
    while cfg.refine and rounds < 3:
        leaders = _leaders(served, c, 2)
        room = run.serving_room()
        if not leaders or room < per:
            break
        seen = {s["config"] for s in served}
        more: list[Config] = []
        for lead in leaders:
            more += [
                n
                for n in neighbours(_config(lead), rows, run.cores, c.concurrency)
                if n.key not in seen and n not in more
            ]
        more = more[: max(0, int(room // per))]
        if not more:
            break
        rounds += 1
        run.log(f"refining around {', '.join(x['config'] for x in leaders)}: {len(more)} neighbouring configuration(s)")
        served += _serve_round(
            more,
            contenders,
            run.work / f"serve-{rounds + 1}",
            samples,
            c,
            cfg.duration_s,
            run.journal.data,
            run.journal,
            run.log,
            table=table,
            cores=run.cores,
        )
        if [x["config"] for x in _leaders(served, c, 2)] == [x["config"] for x in leaders]:
            break
    return served, predicted


def _choose_phase(
    run: _Run, variants: list[Variant], model_fail: dict[str, list[dict[str, Any]]], served: list[dict[str, Any]]
) -> dict[str, Any]:
    """4. The best measured configuration that meets every constraint, or the closest candidate; the plan's
    result without its variants and search summary."""
    c, art, ds = run.c, run.art, run.ds
    by_key = {v.key: v for v in variants}
    for s in served:
        v = by_key[s["variant"]]
        s.update(size_mb=v.size_mb, accuracy=v.accuracy, accuracy_drop=v.accuracy_drop)
        s["failed"] = failures(c, s)
    ok = [s for s in served if s.get("status") == "ok"]
    feasible = [s for s in ok if not s["failed"] and s.get("errors", 0) == 0]
    rank = objective_key(c.optimize)
    feasible.sort(key=rank)
    chosen = _with_headroom(feasible, c) if feasible else None
    why = _why(chosen, feasible, served, c) if chosen else None
    confirmation = _confirm_phase(run, served) if run.cfg.confirm else None
    run.mark("confirm")
    if confirmation is not None and confirmation["chosen"] is not None:
        pick = confirmation["chosen"]
        # a leader whose one window missed is chosen only when its bounds hold every target
        if feasible or not pick["bound_failed"]:
            chosen = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in pick.items()}
            chosen["failed"] = failures(c, chosen)
            why = _why_confirmed(chosen, confirmation, served, c)
    closest = None if chosen else _closest(served, variants, model_fail, c)
    front = pareto(ok, [("throughput", 1), ("p99_ms", -1), ("size_mb", -1), ("accuracy", 1)])
    front.sort(key=rank)
    for s in served:
        s["pareto"] = s in front
    return {
        "artifact": str(art.path),
        "model": art.name,
        "data": str(run.data),
        "out": str(run.out),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "constraints": c.to_dict(),
        "objective": c.optimize,
        "env": run.env,
        "cores": run.cores,
        "accuracy_metric": ds.metric,
        "accuracy_note": ds.why,
        "samples": ds.n,
        "met": chosen is not None,
        "chosen": _public(chosen) if chosen else None,
        "why": why,
        "confidence": (confirmation or {}).get("confidence") if chosen else None,
        "confirmation": _confirmation_public(confirmation),
        "closest": closest,
        "pareto": [_public(s) for s in front],
        "candidates": [_public(s) for s in sorted(ok, key=rank) + [s for s in served if s not in ok]],
    }


def _search_summary(
    run: _Run, served: list[dict[str, Any]], rows: list[dict[str, Any]], predicted: list[dict[str, Any]]
) -> dict[str, Any]:
    """What was searched and how (plan.json's "predicted", "search" and "budget_s")."""
    cfg = run.cfg
    return {
        "predicted": sorted(predicted, key=objective_key(run.c.optimize))[:50],
        "search": {
            "backends": list(cfg.backends or ()),
            "precisions": list(cfg.precisions or ()),
            "compression": list(cfg.compress),
            "finetune": (
                {"train": str(cfg.train), "epochs": cfg.epochs} if cfg.train is not None and cfg.compress else None
            ),
            "threads": list(cfg.threads or ()),
            "batch_sizes": list(cfg.batch_sizes),
            "delays_us": sorted({s["max_queue_delay_us"] for s in served}),
            "instances": sorted({s["instances"] for s in served}),
            "grid_size": len(predicted),
            "served": len(served),
            "in_process_rows": len(rows),
            "duration_s": cfg.duration_s,
            "skipped": (
                f"max batch sizes other than {run.batch_sizes}"
                + (", queue delays and more than one instance" if run.c.concurrency == 1 else "")
                + f": they cannot help at concurrency {run.c.concurrency}"
                if len(run.batch_sizes) < len(set(cfg.batch_sizes)) or run.c.concurrency == 1
                else None
            ),
            "method": "grid + dominance pruning; best predicted configurations served, then the winner's neighbours"
            + (
                "; the leaders re-measured in alternating windows, chosen on upper bounds of p99" if cfg.confirm else ""
            ),
            "load": f"closed loop, {run.c.concurrency} gRPC client(s), 1 item per request",
        },
        "budget_s": cfg.budget_s,
    }


def _write_phase(run: _Run, result: dict[str, Any], by_key: dict[str, Variant], samples: list[dict[str, Any]]) -> None:
    """5. OUT/repository (only when the targets are met), its verification, plan.json and the report."""
    from .report import write_report

    repo = run.out / "repository"
    chosen = result["chosen"]
    if chosen is not None:
        v = by_key[chosen["variant"]]
        model_dir = write_repository(repo, v, _config(chosen), run.cfg.name or run.art.name)
        result["repository"] = str(repo)
        result["model_dir"] = str(model_dir)
        if run.cfg.verify:
            result["verification"] = _verify(repo, model_dir.name, v, samples, run.c, run.verify_s, run.log)
            run.mark("verify")
    else:
        shutil.rmtree(repo, ignore_errors=True)  # a repository that misses the targets is not written
        result["repository"] = None
    result["elapsed_s"] = round(time.perf_counter() - run.t_start, 1)
    result["phases_s"] = dict(run.phases_s)
    result["report"] = str(run.out / "report.html")
    (run.out / "plan.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    write_report(result, run.out / "report.html")
    run.journal.save()


# -- helpers --------------------------------------------------------------------------------------
def _installed_backends() -> list[str]:
    from ..bench.bench import default_backends

    return [b for b in default_backends() if b in BACKENDS]


def _metrics(v: Variant) -> dict[str, Any]:
    return {"size_mb": v.size_mb, "accuracy": v.accuracy, "accuracy_drop": v.accuracy_drop}


def _dominated(variants: list[Variant], rows: list[dict[str, Any]]) -> dict[str, str]:
    """variant -> the variant that beats it everywhere that matters: best throughput, batch-1 latency,
    size and accuracy (all at least as good, one better)."""
    stats = {}
    for v in variants:
        ok = [r for r in rows if r["variant"] == v.key and r["status"] == "ok"]
        if not ok:
            continue
        b1 = [r["p50_ms"] for r in ok if r["batch"] == 1]
        stats[v.key] = {
            "throughput": max(r["throughput"] for r in ok),
            "p50_ms": min(b1) if b1 else 1e9,
            "size_mb": v.size_mb or 0,
            "accuracy": v.accuracy or 0,
        }
    out: dict[str, str] = {}
    for a, sa in stats.items():
        for b, sb in stats.items():
            if a == b or b in out:
                continue
            # 25% margin on speed: a shared CPU's noise must not prune a variant
            if (
                sb["throughput"] >= sa["throughput"] * 1.25
                and sb["p50_ms"] * 1.25 <= sa["p50_ms"]
                and sb["size_mb"] <= sa["size_mb"]
                and sb["accuracy"] >= sa["accuracy"]
            ):
                out[a] = b
                break
    return out


def _row_table(rows: list[dict[str, Any]]) -> dict[str, dict[int, dict[int, dict[str, Any]]]]:
    t: dict[str, dict[int, dict[int, dict[str, Any]]]] = {}
    for r in rows:
        if r["status"] == "ok":
            t.setdefault(r["variant"], {}).setdefault(r["threads"], {})[r["batch"]] = r
    return t


def _config(d: dict[str, Any]) -> Config:
    return Config(
        d["backend"],
        d["precision"],
        int(d["threads"]),
        int(d["instances"]),
        int(d["max_batch_size"]),
        int(d["max_queue_delay_us"]),
        d.get("compression") or "",
    )


def _samples(ds) -> list[dict[str, Any]]:
    n = min(ds.n, 32)
    return [{k: v[i : i + 1] for k, v in ds.feeds.items()} for i in range(n)]


def _artifact(v: Variant) -> Artifact:
    if v.artifact is None:  # only variants that ran (status ok) are served, written or verified
        raise RuntimeError(f"bushu bug: variant {v.key} has no artifact ({v.status}: {v.reason})")
    return v.artifact


def write_repository(repo: Path, v: Variant, cfg: Config, name: str) -> Path:
    """REPO/<name>/{config.pbtxt, labels.txt, 1/model.onnx + bushu.yaml}, as `bushu serve` reads it."""
    from google.protobuf import text_format

    from ..serve.config import CONFIG_FILE, read_config
    from ..serve.repository import add_to_repository

    model_dir = Path(repo) / name
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir = add_to_repository(
        Path(repo),
        _artifact(v),
        name=name,
        max_batch_size=cfg.max_batch_size,
        max_queue_delay_us=cfg.max_queue_delay_us,
        instances=cfg.instances,
        backend=cfg.backend,
        threads=cfg.threads,
    )
    if v.options:  # backend options (openvino precision) travel as config.pbtxt parameters
        pb = read_config(model_dir)
        if pb is None:
            raise RuntimeError(f"bushu bug: add_to_repository wrote no config in {model_dir}")
        for k, val in v.options.items():
            pb.parameters[k].string_value = str(val)
        (model_dir / CONFIG_FILE).write_text(text_format.MessageToString(pb))
        read_config(model_dir)
    return model_dir


def _serve_round(
    configs: list[Config],
    variants: list[Variant],
    repo: Path,
    samples,
    c: Constraints,
    duration_s: float,
    cache: dict[str, Any],
    journal: _Journal,
    log: Callable[[str], None],
    table=None,
    cores: int | None = None,
) -> list[dict[str, Any]]:
    """Serve each configuration (one repository, one server) and measure it under the load."""
    from .loadgen import ServedProcess, replay

    by_key = {v.key: v for v in variants}
    results, todo = [], []
    for cfg in configs:
        # the model file's mtime: a rebuilt int8 or compressed model is measured again
        key = f"served:{cfg.key}:{by_key[cfg.variant].path.stat().st_mtime_ns}:c{c.concurrency}:{duration_s}"
        if key in cache:
            log(f"{cfg.key}: reusing the served measurement")
            results.append(cache[key])
        else:
            todo.append((cfg, key))
    if not todo:
        return results
    shutil.rmtree(repo, ignore_errors=True)
    names = {}
    for i, (cfg, _) in enumerate(todo):
        names[cfg.key] = f"c{i:02d}"
        write_repository(repo, by_key[cfg.variant], cfg, names[cfg.key])
    log(f"serving {len(todo)} configuration(s) at concurrency {c.concurrency}, {duration_s:g} s each")
    with ServedProcess(repo) as server:
        for cfg, key in todo:
            name = names[cfg.key]
            row: dict[str, Any] = {**cfg.to_dict()}
            if table is not None and cores:
                row["predicted"] = predict(cfg, table[cfg.variant][cfg.threads], c.concurrency, cores)
            if not server.ready(name):
                row.update(
                    status="error",
                    reason=f"did not load: {server.states.get(name, 'unknown')}",
                    p50_ms=None,
                    p99_ms=None,
                    avg_ms=None,
                    throughput=0.0,
                    errors=1,
                )
                results.append(row)
                continue
            try:
                m = replay(server.url, name, samples, c.concurrency, duration_s)
            except Exception as e:  # noqa: BLE001 - one configuration failing must not end the plan
                row.update(
                    status="error",
                    reason=str(getattr(e, "message", e))[:300],
                    p50_ms=None,
                    p99_ms=None,
                    avg_ms=None,
                    throughput=0.0,
                    errors=1,
                )
                results.append(row)
                continue
            m.pop("_outputs", None)
            row.update(status="ok", **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()})
            log(f"  {cfg.key}: {row['throughput']:.1f} req/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms")
            cache[key] = row
            journal.save()
            results.append(row)
    return results


def _leaders(served: list[dict[str, Any]], c: Constraints, n: int) -> list[dict[str, Any]]:
    """The best served configuration of each of the ``n`` best variants (feasible first)."""
    ok = [s for s in served if s.get("status") == "ok"]
    rank = objective_key(c.optimize)
    ordered = sorted(ok, key=lambda s: (bool(failures(c, s)), worst_ratio(failures(c, s)), *rank(s)))
    out: list[dict[str, Any]] = []
    for s in ordered:
        if s["variant"] not in {o["variant"] for o in out}:
            out.append(s)
    return out[:n]


def _confirm_phase(run: _Run, served: list[dict[str, Any]]) -> dict[str, Any] | None:
    """4. The leaders served again in one server, in alternating windows with what is left of the budget
    (plan/confirm.py); the choice on their upper bounds and how sure it is. None when nothing is worth
    confirming (no served configuration met the targets or came within 15% of them)."""
    from . import confirm
    from .loadgen import ServedProcess, replay

    c, cfg = run.c, run.cfg
    lead = confirm.leaders(c, served)
    if not lead:
        return None
    window_s = cfg.duration_s
    n, windows = confirm.window_plan(run.serving_room(search=False), len(lead), window_s)
    lead = lead[:n]
    variants = {v.key: v for v in run.variants}
    repo = run.work / "confirm"
    shutil.rmtree(repo, ignore_errors=True)
    names = {}
    for i, s in enumerate(lead):
        names[s["config"]] = f"l{i}"
        write_repository(repo, variants[s["variant"]], _config(s), names[s["config"]])
    run.log(
        f"confirming {len(lead)} leader(s) ({', '.join(s['config'] for s in lead)}): {windows} alternating "
        f"window(s) of {window_s:g} s each at concurrency {c.concurrency}"
    )
    samples = _samples(run.ds)
    got: dict[str, list[dict[str, Any]]] = {s["config"]: [] for s in lead}
    down: dict[str, str] = {}
    t0 = time.perf_counter()
    with ServedProcess(repo) as server:
        for s in lead:
            if not server.ready(names[s["config"]]):
                down[s["config"]] = f"did not load: {server.states.get(names[s['config']], 'unknown')}"
        live = [s for s in lead if s["config"] not in down]
        for r in range(windows):
            k = r % max(1, len(live))
            for s in live[k:] + live[:k]:
                try:
                    m = replay(server.url, names[s["config"]], samples, c.concurrency, window_s, keep_latencies=True)
                except Exception as e:  # noqa: BLE001 - a failed window counts as errors, the others go on
                    got[s["config"]].append({"latencies_ms": [], "seconds": window_s, "errors": 1, "error": str(e)})
                    continue
                got[s["config"]].append(
                    {"latencies_ms": m["_latencies_ms"], "seconds": m["seconds"], "errors": m["errors"]}
                )
    confirmed = []
    for s in lead:
        base = {
            k: v for k, v in s.items() if k not in ("p50_ms", "p99_ms", "avg_ms", "throughput", "requests", "seconds")
        }
        base.update(search_p99_ms=s.get("p99_ms"), search_throughput=s.get("throughput"))
        if s["config"] in down:
            confirmed.append({**base, "status": "error", "reason": down[s["config"]]})
            continue
        summary = confirm.summarize(got[s["config"]])
        confirmed.append({**base, **summary})
        if summary["status"] == "ok":
            run.log(
                f"  {s['config']}: p99 {summary['p99_ms']:.2f} ms over {summary['requests']} requests "
                f"(worst window {summary['worst_window_p99_ms']:.2f}, bound {summary['p99_bound_ms']:.2f} ms), "
                f"{summary['throughput']:.1f} req/s"
            )
    chosen, ordered = confirm.choose(c, confirmed)
    result: dict[str, Any] = {
        "chosen": chosen,
        "leaders": ordered + [s for s in confirmed if s not in ordered],
        "windows": windows,
        "window_s": window_s,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if chosen is not None:
        result["confidence"] = confirm.confidence(c, chosen, ordered, window_s)
        run.log(f"confidence: {result['confidence']['text']}")
    return result


def _confirmation_public(conf: dict[str, Any] | None) -> dict[str, Any] | None:
    """plan.json's "confirmation": the leaders' figures over all windows and their bounds (no samples)."""
    if conf is None:
        return None
    keys = (
        "config",
        "status",
        "reason",
        "windows",
        "requests",
        "errors",
        "p50_ms",
        "p99_ms",
        "avg_ms",
        "throughput",
        "window_p99_ms",
        "worst_window_p99_ms",
        "p99_ucb_ms",
        "p99_ucb_confidence",
        "p99_bound_ms",
        "avg_bound_ms",
        "throughput_bound",
        "margin",
        "bound_failed",
        "search_p99_ms",
        "search_throughput",
    )
    leaders = [
        {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items() if k in keys} for s in conf["leaders"]
    ]
    return {
        "leaders": leaders,
        "chosen": (conf.get("chosen") or {}).get("config"),
        "windows": conf["windows"],
        "window_s": conf["window_s"],
        "seconds": conf["seconds"],
        "method": "alternating windows in one server (the order rotates every round); choice on upper bounds",
    }


def _why_confirmed(chosen: dict[str, Any], conf: dict[str, Any], served: list[dict[str, Any]], c: Constraints) -> str:
    what = {
        "throughput": f"the highest throughput ({chosen['throughput']:.1f} req/s)",
        "latency": f"the lowest p99 ({chosen['p99_ms']:.1f} ms)",
        "size": f"the smallest model ({chosen['size_mb']:.1f} MB) at {chosen['throughput']:.1f} req/s",
    }[c.optimize]
    n = len([s for s in conf["leaders"] if s.get("status") == "ok"])
    over = f"{chosen['requests']} requests in {chosen['windows']} windows"
    if not chosen["bound_failed"]:
        parts = [
            f"{chosen['config']} meets every constraint on its upper bounds (p99 ≤ {chosen['p99_bound_ms']:.2f} ms "
            f"over {over}) and has {what} of the {n} leader(s) re-measured in alternation "
            f"(of {len(served)} configurations served at concurrency {c.concurrency})"
        ]
    else:
        f = chosen["bound_failed"][0]
        parts = [
            f"{chosen['config']} met every constraint in the search, but no leader's upper bounds hold them all: "
            f"it misses {f['flag']} {f['limit']:g} by the least ({f['value']:.2f} {f['unit']} over {over})"
        ]
    for s in conf["leaders"]:
        if s["config"] != chosen["config"] and s.get("status") == "ok" and s["bound_failed"]:
            f = s["bound_failed"][0]
            parts.append(f"{s['config']}: bound {f['value']:.2f} {f['unit']} misses {f['flag']} {f['limit']:g}")
    others: dict[str, dict[str, Any]] = {}
    for s in served:
        if s.get("failed") and s["variant"] != chosen["variant"]:
            others.setdefault(s["variant"], s)
    for variant, s in others.items():
        f = s["failed"][0]
        parts.append(f"{variant} misses {f['flag']} {f['limit']:g} ({f['value']:g} {f['unit']})")
    return "; ".join(parts)


NEAR = 0.03  # measured objective values this close are a tie on a shared CPU


def _with_headroom(feasible: list[dict[str, Any]], c: Constraints) -> dict[str, Any]:
    """The best by the objective, except that among those within NEAR of it, the one with the most
    room under the latency bounds wins (served figures on a busy machine move by several percent)."""
    best = feasible[0]
    if c.optimize == "throughput":
        near = [s for s in feasible if s["throughput"] >= best["throughput"] * (1 - NEAR)]
    elif c.optimize == "latency":
        return best
    else:
        near = [
            s
            for s in feasible
            if s["size_mb"] <= best["size_mb"] and s["throughput"] >= best["throughput"] * (1 - NEAR)
        ]
    bounds = [(k, BOUNDS[k][0]) for k in ("max_p99_ms", "max_avg_ms") if getattr(c, k) is not None]
    if not bounds or len(near) < 2:
        return best
    return max(near, key=lambda s: min(getattr(c, k) / max(s[m], 1e-9) for k, m in bounds))


def _public(s: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "config",
        "variant",
        "backend",
        "precision",
        "compression",
        "threads",
        "instances",
        "max_batch_size",
        "max_queue_delay_us",
        "p50_ms",
        "p99_ms",
        "avg_ms",
        "throughput",
        "size_mb",
        "accuracy",
        "accuracy_drop",
        "requests",
        "errors",
        "status",
        "reason",
        "failed",
        "pareto",
        "predicted",
        "p99_bound_ms",
        "windows",
        "search_p99_ms",
        "search_throughput",
    )
    out = {k: s.get(k) for k in keys if k in s}
    if "compression" in out:
        out["compression"] = out["compression"] or None
    return out


def _why(chosen: dict[str, Any], feasible: list[dict[str, Any]], served: list[dict[str, Any]], c: Constraints) -> str:
    what = {
        "throughput": f"the highest throughput ({chosen['throughput']:.1f} req/s)",
        "latency": f"the lowest p99 ({chosen['p99_ms']:.1f} ms)",
        "size": f"the smallest model ({chosen['size_mb']:.1f} MB) at {chosen['throughput']:.1f} req/s",
    }[c.optimize]
    top = feasible[0]
    if top is chosen:
        parts = [
            f"{chosen['config']} meets every constraint and has {what} of the {len(feasible)} served "
            f"configuration(s) that do (of {len(served)} served at concurrency {c.concurrency})"
        ]
    else:
        parts = [
            f"{chosen['config']} meets every constraint with {chosen['throughput']:.1f} req/s, within "
            f"{NEAR:.0%} of the best ({top['config']}, {top['throughput']:.1f} req/s: a tie on a shared CPU), "
            f"and leaves more room under the latency bounds (p99 {chosen['p99_ms']:.1f} vs {top['p99_ms']:.1f} ms); "
            f"{len(feasible)} of {len(served)} served configurations meet every constraint"
        ]
    others: dict[str, dict[str, Any]] = {}
    for s in served:
        if s["failed"] and s["variant"] != chosen["variant"]:
            others.setdefault(s["variant"], s)
    for variant, s in others.items():
        f = s["failed"][0]
        parts.append(f"{variant} misses {f['flag']} {f['limit']:g} ({f['value']:g} {f['unit']})")
    return "; ".join(parts)


def _closest(
    served: list[dict[str, Any]], variants: list[Variant], model_fail: dict[str, list[dict[str, Any]]], c: Constraints
) -> dict[str, Any]:
    """The candidate nearest to meeting everything, the constraint it misses most, what would relax it,
    and the best value any candidate reached for each failed bound."""
    from .constraints import BOUNDS

    pool = [s for s in served if s.get("status") == "ok"]
    if not pool:
        v = min((v for v in variants if v.key in model_fail), key=lambda v: worst_ratio(model_fail[v.key]))
        fails = model_fail[v.key]
        cand: dict[str, Any] = {"config": v.key, "failed": fails}
    else:
        cand = min(pool, key=lambda s: (worst_ratio(s["failed"]), len(s["failed"])))
        fails = cand["failed"]
    worst = fails[0] if fails else None
    best_seen = {}
    for f in fails:
        key, kind = BOUNDS[f["constraint"]][:2]
        vals = [s[key] for s in pool if s.get(key) is not None] or [
            getattr(v, key, None) for v in variants if getattr(v, key, None) is not None
        ]
        if vals:
            best_seen[f["constraint"]] = min(vals) if kind == "max" else max(vals)
    relax = []
    for f in fails:
        relax.append(
            f"{f['flag']} {f['value']:g}"
            + (
                f" (best any candidate reached: {best_seen[f['constraint']]:g} {f['unit']})"
                if f["constraint"] in best_seen
                else ""
            )
        )
    hints = {
        "max_p99_ms": "fewer concurrent clients (--concurrency) or a faster precision (int8) shorten the tail",
        "max_avg_ms": "fewer concurrent clients (--concurrency) or a faster precision (int8)",
        "min_throughput": "more cores, or int8 (it needs an accuracy bound that int8 meets)",
        "max_size_mb": "int8 is about a quarter of fp32's size; --compress prune0.3 (with --train DIR) "
        "removes channels too",
        "min_accuracy": "more representative calibration data, or a larger model",
        "max_accuracy_drop": "more representative calibration data; fp32 has no drop",
    }
    return {
        "config": cand["config"],
        "failed": fails,
        "constraint": worst["constraint"] if worst else None,
        "flag": worst["flag"] if worst else None,
        "message": (
            f"nothing meets the constraints; closest: {cand['config']}, which misses "
            + ", ".join(f"{f['flag']} {f['limit']:g} ({f['value']:g} {f['unit']}, {f['ratio']:.2f}×)" for f in fails)
        )
        if fails
        else "nothing was measured",
        "relax": ("relax to " + ", ".join(relax)) if relax else None,
        "hint": hints.get(worst["constraint"]) if worst else None,
        "best_seen": best_seen,
    }


def _verify(
    repo: Path, name: str, v: Variant, samples, c: Constraints, seconds: float, log: Callable[[str], None]
) -> dict[str, Any]:
    """Serve the written repository as users will (`bushu serve REPO`), replay the load, compare."""
    import numpy as np

    from .loadgen import ServedProcess, replay
    from .variants import _run

    log(f"verifying: bushu serve {repo}, {c.concurrency} client(s) for {seconds:g} s")
    out_name = _artifact(v).outputs[0].name
    with ServedProcess(repo) as server:
        if not server.ready(name):
            return {"passed": False, "reason": f"model {name} did not load: {server.states.get(name)}"}
        m = replay(server.url, name, samples, c.concurrency, seconds, keep_outputs=out_name)
    outs = m.pop("_outputs")
    feeds = {k: np.concatenate([s[k] for s in samples]) for k in samples[0]}
    local = _run(v.path, v.backend, v.options, feeds, out_name)
    idx = sorted(outs)
    agree = float(np.mean([outs[i].reshape(-1).argmax() == local[i].argmax() for i in idx])) if idx else None
    measured = {k: (round(val, 3) if isinstance(val, float) else val) for k, val in m.items()}
    fails = failures(c, measured, only=("max_p99_ms", "max_avg_ms", "min_throughput"))
    targets = {k: c.given()[k] for k in ("max_p99_ms", "max_avg_ms", "min_throughput") if k in c.given()}
    passed = not fails and measured["errors"] == 0
    log(
        f"verification: {measured['throughput']:.1f} req/s, p50 {measured['p50_ms']:.1f} ms, "
        f"p99 {measured['p99_ms']:.1f} ms: {'meets' if passed else 'MISSES'} the targets"
    )
    return {
        **measured,
        "concurrency": c.concurrency,
        "targets": targets,
        "failed": fails,
        "passed": passed,
        "served_top1_agreement": agree,
        "checked_outputs": len(idx),
        "command": f"bushu serve {repo}",
    }
