"""The search: measure in process, prune, predict served configurations, pick the few worth serving.

Stage 1 times every surviving variant in its own process (bushu.bench.bench) at each threads ×
batch size. Stage 2 turns those rows into served configurations (threads per instance × instances
× max batch size × queue delay) and predicts each one's throughput and latency at the requested
concurrency with a closed-loop queueing estimate; dominated configurations are dropped, and the best
few (per variant and overall) go on to be served for real.

Why a grid and dominance pruning rather than a sampler (Optuna's TPE, say): the space is small and
discrete (a few variants × a few thread counts × 5 batch sizes), each in-process row costs about a
second and is reused by every served configuration built on it, and a served measurement on a shared
CPU is noisy at the ±5-10% level, which a model-based sampler would chase. The expensive step
(serving) only ever sees the few configurations that the measured rows say can win.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from .constraints import Constraints, failures, worst_ratio
from .variants import Variant

__all__ = [
    "Config",
    "cannot_help",
    "grid",
    "measure_variants",
    "predict",
    "shortlist",
    "thread_choices",
    "useful_batch_sizes",
]

BATCH_SIZES = (1, 2, 4, 8, 16)
DELAYS_US = (0, 1000, 4000)
DEFAULT_DELAY_US = 1000
# Per request: gRPC decode/encode in the server and the client on the same cores (measured order of
# magnitude for the bushu server on this class of machine; refined by the served measurements).
REQUEST_OVERHEAD_MS = 0.6


@dataclass(frozen=True)
class Config:
    """One served configuration: a variant and its config.pbtxt settings."""

    backend: str
    precision: str
    threads: int
    instances: int
    max_batch_size: int
    max_queue_delay_us: int
    compression: str = ""  # the variant's compression spec (prune0.3, ...), "" for none

    @property
    def variant(self) -> str:
        """The Variant.key this configuration serves: backend/precision[+compression]."""
        return f"{self.backend}/{self.precision}" + (f"+{self.compression}" if self.compression else "")

    @property
    def key(self) -> str:
        return f"{self.variant}/t{self.threads}/i{self.instances}/b{self.max_batch_size}/d{self.max_queue_delay_us}"

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.key, "variant": self.variant, **asdict(self)}


def thread_choices(cores: int) -> list[int]:
    out = sorted({1, cores} | {t for t in (2, 4, 8, 16) if t < cores})
    return [t for t in out if t >= 1]


def useful_batch_sizes(batch_sizes: Sequence[int], concurrency: int | None) -> list[int]:
    """The max batch sizes that can change anything at ``concurrency`` closed-loop clients: a batch is
    never larger than the requests waiting, which are at most the clients, so every size up to the
    concurrency and the smallest one that takes all clients at once (at concurrency 1: batch 1 only)."""
    sizes = sorted(set(batch_sizes))
    if concurrency is None:
        return sizes
    keep = [b for b in sizes if b <= concurrency]
    above = [b for b in sizes if b > concurrency]
    if above and (not keep or keep[-1] < concurrency):
        keep.append(above[0])
    return keep


def cannot_help(cfg: Config, concurrency: int | None, batch_sizes: Sequence[int]) -> str | None:
    """Why ``cfg`` cannot do better than a simpler configuration at ``concurrency`` clients, or None:
    more instances than clients leave the extra ones idle; a max batch above what the clients can fill
    is the same as the smaller one; a queue delay at concurrency 1 only waits for a request that
    cannot come (the one client waits for its answer)."""
    if concurrency is None:
        return None
    if cfg.instances > concurrency:
        return f"{cfg.instances} instances for {concurrency} client(s)"
    if cfg.max_batch_size not in useful_batch_sizes([*batch_sizes, cfg.max_batch_size], concurrency):
        return f"max batch {cfg.max_batch_size} with {concurrency} client(s)"
    if concurrency == 1 and cfg.max_queue_delay_us > 0:
        return "a queue delay at concurrency 1"
    return None


def measure_variants(
    variants: Sequence[Variant],
    threads: Sequence[int],
    batch_sizes: Sequence[int],
    duration_s: float,
    log: Callable[[str], None],
    cache: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """In-process rows (bushu.bench.bench, one process per variant) for every threads × batch."""
    from ..bench.bench import benchmark

    rows: list[dict[str, Any]] = []
    for v in variants:
        key = f"bench:{v.key}:{v.path.stat().st_mtime_ns}:{list(threads)}:{list(batch_sizes)}:{duration_s}"
        if cache is not None and key in cache:
            got = cache[key]
            log(f"{v.key}: reusing {len(got)} measured rows")
        else:
            log(f"{v.key}: timing threads {list(threads)} × batch {list(batch_sizes)} in process")
            got = benchmark(
                v.path,
                backends=[v.backend],
                batch_sizes=batch_sizes,
                threads=threads,
                warmup=2,
                repeats=5,
                duration_s=duration_s,
                precision=v.options.get("precision"),
                progress=False,
                record=False,
            )
            got = [{k: val for k, val in r.items() if k != "details"} for r in got]
            if cache is not None and all(r["status"] == "ok" for r in got):
                cache[key] = got
        for r in got:
            rows.append({**r, "variant": v.key, "precision": v.precision, "size_mb": v.size_mb, "accuracy": v.accuracy})
    return rows


def _lat(rows: dict[int, dict[str, Any]], b: int, key: str = "mean_ms") -> float:
    """Latency of one inference of ``b`` items, interpolated between measured batch sizes."""
    sizes = sorted(rows)
    if b in rows:
        return rows[b][key]
    lo = max((s for s in sizes if s < b), default=sizes[0])
    hi = min((s for s in sizes if s > b), default=sizes[-1])
    if lo == hi:
        return rows[lo][key] * b / lo
    f = (b - lo) / (hi - lo)
    return rows[lo][key] * (1 - f) + rows[hi][key] * f


def predict(cfg: Config, rows: dict[int, dict[str, Any]], concurrency: int, cores: int) -> dict[str, float]:
    """Closed-loop estimate at ``concurrency`` clients: the busy instances each run batches of
    min(max_batch, clients per instance); cores shared by more threads than exist slow each one down.
    Mean latency by Little's law (clients ÷ throughput); p99 scaled by the row's own p99/mean."""
    busy = min(cfg.instances, concurrency)
    b = max(1, min(cfg.max_batch_size, math.ceil(concurrency / busy)))
    contention = max(1.0, busy * cfg.threads / cores)
    service = _lat(rows, b) * contention + REQUEST_OVERHEAD_MS * b / max(1, cores)
    throughput = busy * b * 1000.0 / service
    avg = max(concurrency * 1000.0 / throughput, service)
    tail = _lat(rows, b, "p99_ms") / max(_lat(rows, b), 1e-9)
    return {"throughput": throughput, "avg_ms": avg, "p99_ms": avg * max(1.0, tail), "p50_ms": avg, "batch": b}


def grid(
    variants: Sequence[Variant],
    rows: Sequence[dict[str, Any]],
    cores: int,
    delays: Sequence[int] = (DEFAULT_DELAY_US,),
    concurrency: int | None = None,
) -> list[Config]:
    """Every served configuration the measured rows support: threads × instances (threads × instances
    ≤ cores: more only time-slices the same cores) × max batch × delay; with ``concurrency``, not those
    that cannot help at that many clients (:func:`cannot_help`)."""
    out: list[Config] = []
    for v in variants:
        measured = {(r["threads"], r["batch"]) for r in rows if r["variant"] == v.key and r["status"] == "ok"}
        for t in sorted({t for t, _ in measured if isinstance(t, int)}):
            for n in range(1, max(1, cores // t) + 1):
                for b in sorted(b for tt, b in measured if tt == t):
                    for d in delays if b > 1 else (0,):
                        out.append(Config(v.backend, v.precision, t, n, b, d, v.compression))
    if concurrency is not None:
        sizes = sorted({r["batch"] for r in rows})
        out = [cfg for cfg in out if cannot_help(cfg, concurrency, sizes) is None]
    return out


def objective_key(objective: str) -> Callable[[dict[str, Any]], tuple]:
    """Sort key, best first, for a candidate dict with p99_ms / throughput / size_mb."""
    if objective == "latency":
        return lambda c: (c["p99_ms"], -c["throughput"])
    if objective == "size":
        return lambda c: (c["size_mb"], -c["throughput"])
    return lambda c: (-c["throughput"], c["p99_ms"])


def pareto(cands: Sequence[dict[str, Any]], keys: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    """The non-dominated candidates; ``keys`` = [(metric, +1 to maximize | -1 to minimize)]."""

    def dominates(a: dict, b: dict) -> bool:
        ge = all((a[k] - b[k]) * s >= 0 for k, s in keys)
        gt = any((a[k] - b[k]) * s > 0 for k, s in keys)
        return ge and gt

    return [c for c in cands if not any(dominates(o, c) for o in cands if o is not c)]


def shortlist(
    variants: Sequence[Variant],
    rows: Sequence[dict[str, Any]],
    c: Constraints,
    cores: int,
    limit: int,
    per_variant: int = 2,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(predicted candidates for every grid configuration, the few to serve).

    The few: the best predicted configuration of each variant on up to ``per_variant`` threads ×
    instances splits (so every precision is measured served, and the report can say what each one
    reaches), then the best overall, until ``limit``."""
    by_variant = {v.key: v for v in variants}
    table: dict[str, dict[int, dict[int, dict[str, Any]]]] = {}
    for r in rows:
        if r["status"] == "ok":
            table.setdefault(r["variant"], {}).setdefault(r["threads"], {})[r["batch"]] = r
    predicted: list[dict[str, Any]] = []
    for cfg in grid(variants, rows, cores, concurrency=c.concurrency):
        v = by_variant[cfg.variant]
        pred = predict(cfg, table[cfg.variant][cfg.threads], c.concurrency, cores)
        cand: dict[str, Any] = {
            **cfg.to_dict(),
            **pred,
            "size_mb": v.size_mb,
            "accuracy": v.accuracy,
            "accuracy_drop": v.accuracy_drop,
        }
        cand["predicted_failures"] = failures(c, cand)
        predicted.append(cand)
    # dominated on (throughput, p99) within a variant: never served
    front: list[dict[str, Any]] = []
    for key in by_variant:
        mine = [p for p in predicted if p["variant"] == key]
        front += pareto(mine, [("throughput", 1), ("p99_ms", -1)])
    rank = objective_key(c.optimize)

    def order(p: dict[str, Any]) -> tuple:  # predicted-feasible first, then the least violation, then objective
        fails = p["predicted_failures"]
        # ties (the estimate caps the batch at clients per instance): a max batch that can take every
        # client at once, as the first free instance takes all that wait; then the smallest such
        b = p["max_batch_size"]
        return (bool(fails), worst_ratio(fails) if fails else 0.0, *rank(p), -min(b, c.concurrency), b)

    front.sort(key=order)
    chosen: list[dict[str, Any]] = []
    for key in by_variant:  # the best of each variant, on each threads × instances split it has
        splits: set[tuple[int, int]] = set()
        for p in front:
            if p["variant"] == key and (p["threads"], p["instances"]) not in splits and len(splits) < per_variant:
                splits.add((p["threads"], p["instances"]))
                chosen.append(p)
    chosen.sort(key=order)
    for p in front:
        if len(chosen) >= max(limit, 1):
            break
        if p not in chosen:
            chosen.append(p)
    return predicted, chosen[: max(limit, len(by_variant) * per_variant)]


def neighbours(cfg: Config, rows: Sequence[dict[str, Any]], cores: int, concurrency: int | None = None) -> list[Config]:
    """Configurations next to the winner: other queue delays, the next larger and smaller measured
    max batch, other threads × instances splits of the cores (only where in-process rows exist); with
    ``concurrency``, not those that cannot help at that many clients (:func:`cannot_help`)."""
    measured = {(r["threads"], r["batch"]) for r in rows if r["variant"] == cfg.variant and r["status"] == "ok"}
    out = []
    for d in DELAYS_US:
        if d != cfg.max_queue_delay_us and cfg.max_batch_size > 1:
            out.append(replace(cfg, max_queue_delay_us=d))
    sizes = sorted(b for t, b in measured if t == cfg.threads)
    below = [b for b in sizes if b < cfg.max_batch_size]
    above = [b for b in sizes if b > cfg.max_batch_size]
    for b in ([above[0]] if above else []) + ([below[-1]] if below else []):
        if (cfg.threads, b) in measured:
            out.append(replace(cfg, max_batch_size=b, max_queue_delay_us=cfg.max_queue_delay_us if b > 1 else 0))
    for t in sorted({t for t, _ in measured}):
        for n in range(1, max(1, cores // t) + 1):
            if (t, n) != (cfg.threads, cfg.instances) and (t, cfg.max_batch_size) in measured:
                out.append(replace(cfg, threads=t, instances=n))
    sizes = sorted({b for _, b in measured})
    return [n for n in dict.fromkeys(out) if cannot_help(n, concurrency, sizes) is None]
