"""Confirmation: the leaders of the search served again, in alternating windows, and the choice made on
upper bounds of their latency instead of one window's figure.

One served window of a few seconds on a shared CPU gives a p99 that moves by 10-30% from one window to
the next, so the configuration whose one window happened to come in under the target is often the one
whose next window (the verification) does not. Here each leader is measured in ``windows`` windows,
taken in turn (leader A, B, C, then B, C, A, ...) so that the machine's drift falls on all of them alike,
and judged by

    p99 bound = max(the worst window's p99, a 95% upper confidence bound on p99 from all samples)

The confidence bound is distribution-free: the k-th smallest of n samples lies above the true 0.99
quantile with probability P(Binomial(n, 0.99) < k), and k is the smallest order statistic for which
that probability reaches 0.95 (n ≥ 299 is needed for the largest sample to be such a bound). The
worst window covers what the bound does not: samples within a window are not independent (a slow
spell of the machine makes several slow requests in a row), and the verification is one more window:
when windows are exchangeable, a further window's p99 exceeds the worst of W with probability at most
1/(W + 1), so the budget aims at TARGET_WINDOWS = 9 windows for the leaders (≥ 90%), and "high"
confidence needs that many.
The average latency is bounded the same way (the worst window's mean, and the mean plus z·sd/√n) and
throughput by the worst window.

Pure functions; the serving is done by bushu.plan.core.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from .constraints import BOUNDS, Constraints, failures, worst_ratio
from .search import objective_key

__all__ = [
    "CONFIDENCE",
    "QUANTILE",
    "choose",
    "confidence",
    "leaders",
    "quantile_ucb",
    "quantile_ucb_index",
    "summarize",
    "window_plan",
]

QUANTILE = 0.99
CONFIDENCE = 0.95
MAX_LEADERS = 3
MIN_WINDOWS = 2
TARGET_WINDOWS = 9  # the worst of 9 windows bounds a 10th (the verification) with probability ≥ 0.9
MAX_WINDOWS = 10
NEAR = 0.03  # throughputs this close are a tie on a shared CPU; the tie goes to the larger latency margin
SERVED_BOUNDS = ("max_p99_ms", "max_avg_ms", "min_throughput")
HIGH_MARGIN = 0.05  # a bound this far (or more) inside the target, at the full confidence, is "high"


def quantile_ucb_index(n: int, q: float = QUANTILE, conf: float = CONFIDENCE) -> int | None:
    """The 0-based index i into n sorted samples whose value x[i] is at or above the true ``q``
    quantile with probability ≥ ``conf``: the smallest i with P(Binomial(n, q) ≤ i) ≥ conf. None when
    even the largest sample is not (1 - q**n < conf; n < 299 for q = 0.99, conf = 0.95)."""
    if not 0 < q < 1 or not 0 < conf < 1:
        raise ValueError(f"q and conf must be in (0, 1), got {q}, {conf}")
    if n < 1:
        return None
    alpha = 1.0 - conf
    # walk the upper tail T(m) = P(Bin >= m) down from m = n; the pmf by its ratio, in logs (q**n underflows)
    log_pmf = n * math.log(q)
    log_ratio = math.log1p(-q) - math.log(q)
    tail = 0.0
    for m in range(n, 0, -1):
        tail += math.exp(log_pmf)
        if tail > alpha:  # P(Bin >= m) > alpha: x[m - 1] is not a bound, x[m] is (when m < n)
            return m if m < n else None
        log_pmf += math.log(m) - math.log(n - m + 1) + log_ratio
    return 0  # only reached when conf is tiny: the smallest sample is already a bound


def quantile_ucb(
    samples: Sequence[float] | np.ndarray, q: float = QUANTILE, conf: float = CONFIDENCE
) -> dict[str, Any]:
    """The order-statistic upper confidence bound on the ``q`` quantile of ``samples``:
    {"value", "confidence", "samples", "rank"}. With too few samples for ``conf`` the largest sample is
    returned with the confidence it does have (1 - q**n), never a number that claims more."""
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        return {"value": math.inf, "confidence": 0.0, "samples": 0, "rank": None}
    i = quantile_ucb_index(n, q, conf)
    if i is None:
        return {"value": float(x[-1]), "confidence": round(1.0 - q**n, 4), "samples": n, "rank": n}
    return {"value": float(x[i]), "confidence": conf, "samples": n, "rank": i + 1}


def summarize(windows: Sequence[Mapping[str, Any]], conf: float = CONFIDENCE) -> dict[str, Any]:
    """One leader's confirmation windows (each {"latencies_ms": [...], "seconds": s, ...}) as figures
    over all of them and the bounds a choice is made on:

    p50_ms, p99_ms, avg_ms, throughput: over all samples (throughput: requests ÷ seconds);
    p99_bound_ms = max(worst window p99, quantile_ucb), avg_bound_ms = max(worst window mean, mean +
    z·sd/√n), throughput_bound = the worst window's throughput."""
    lat = [np.asarray(w["latencies_ms"], dtype=float) for w in windows if len(w["latencies_ms"])]
    if not lat:
        return {"status": "error", "reason": "no request succeeded in the confirmation windows"}
    allx = np.concatenate(lat)
    n = len(allx)
    seconds = sum(float(w["seconds"]) for w in windows)
    win_p99 = [float(np.percentile(x, 99)) for x in lat]
    win_avg = [float(x.mean()) for x in lat]
    win_tp = [len(x) / float(w["seconds"]) for x, w in zip(lat, windows, strict=False) if float(w["seconds"]) > 0]
    ucb = quantile_ucb(allx, QUANTILE, conf)
    z = NormalDist().inv_cdf(conf)
    mean_ucb = float(allx.mean() + z * allx.std(ddof=1) / math.sqrt(n)) if n > 1 else float(allx.mean())
    return {
        "status": "ok",
        "p50_ms": float(np.percentile(allx, 50)),
        "p99_ms": float(np.percentile(allx, 99)),
        "avg_ms": float(allx.mean()),
        "throughput": n / seconds if seconds > 0 else 0.0,
        "requests": int(n),
        "errors": int(sum(int(w.get("errors", 0)) for w in windows)),
        "windows": len(lat),
        "seconds": round(seconds, 2),
        "window_p99_ms": [round(v, 3) for v in win_p99],
        "worst_window_p99_ms": max(win_p99),
        "p99_ucb_ms": ucb["value"],
        "p99_ucb_confidence": ucb["confidence"],
        "p99_bound_ms": max(max(win_p99), ucb["value"]),
        "avg_bound_ms": max(max(win_avg), mean_ucb),
        "throughput_bound": min(win_tp) if win_tp else 0.0,
    }


def _bounded(s: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics a bound is checked on: the upper bounds for latency, the worst window for throughput."""
    return {"p99_ms": s["p99_bound_ms"], "avg_ms": s["avg_bound_ms"], "throughput": s["throughput_bound"]}


def bound_failures(c: Constraints, s: Mapping[str, Any]) -> list[dict[str, Any]]:
    return failures(c, _bounded(s), only=SERVED_BOUNDS)


def _margin(c: Constraints, s: Mapping[str, Any]) -> float | None:
    """The smallest relative room of the bounds under the served targets (negative: over a target);
    None when no served target is given."""
    b = _bounded(s)
    out = []
    for name, limit in c.given().items():
        if name not in SERVED_BOUNDS:
            continue
        key, kind = BOUNDS[name][:2]
        v = b[key]
        out.append(1 - v / limit if kind == "max" else (1 - limit / v if v > 0 else -math.inf))
    return min(out) if out else None


def choose(c: Constraints, confirmed: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The leader to deploy, and all of them ordered as they were judged.

    ``confirmed``: leaders with the fields of :func:`summarize` (and size_mb, accuracy for the
    objective). Those whose bounds meet every served target come first, by the objective on the
    figures over all windows (throughputs within NEAR of the best are a tie, won by the larger margin
    under the targets); then those whose bounds miss, the least over first. The first is chosen; it is
    one whose bounds miss only when none meets them (confidence() then says so)."""
    ok = [s for s in confirmed if s.get("status") == "ok" and not s.get("errors")]
    rank = objective_key(c.optimize)
    for s in ok:
        s["bound_failed"] = bound_failures(c, s)
        s["margin"] = _margin(c, s)
    holds = sorted((s for s in ok if not s["bound_failed"]), key=rank)
    misses = sorted((s for s in ok if s["bound_failed"]), key=lambda s: (worst_ratio(s["bound_failed"]), *rank(s)))
    if len(holds) > 1 and c.optimize != "latency" and holds[0].get("margin") is not None:
        best = holds[0]
        near = [
            s
            for s in holds
            if s["throughput"] >= best["throughput"] * (1 - NEAR)
            and (c.optimize != "size" or s.get("size_mb", 0) <= best.get("size_mb", 0))
        ]
        pick = max(near, key=lambda s: s["margin"])
        holds.remove(pick)
        holds.insert(0, pick)
    ordered = holds + misses
    return (ordered[0] if ordered else None), ordered


def leaders(c: Constraints, served: Sequence[dict[str, Any]], n: int = MAX_LEADERS) -> list[dict[str, Any]]:
    """Up to ``n`` served configurations worth confirming: the best by the objective among those whose
    one window met every constraint, the one of those with the most room under the latency targets
    (the safest), then the next best by the objective; when fewer met everything, those that missed
    only a served target by at most 15% (a window can be unlucky too)."""
    ok = [s for s in served if s.get("status") == "ok" and not s.get("errors")]
    rank = objective_key(c.optimize)
    feasible = sorted((s for s in ok if not failures(c, s)), key=rank)
    near = sorted(
        (
            s
            for s in ok
            if (f := failures(c, s)) and all(x["constraint"] in SERVED_BOUNDS for x in f) and worst_ratio(f) <= 1.15
        ),
        key=lambda s: (worst_ratio(failures(c, s)), *rank(s)),
    )
    out: list[dict[str, Any]] = feasible[:1]
    lat = [(k, BOUNDS[k][0]) for k in ("max_p99_ms", "max_avg_ms") if getattr(c, k) is not None]
    if lat and feasible:
        safest = max(feasible, key=lambda s: min(getattr(c, k) / max(s[m], 1e-9) for k, m in lat))
        if safest not in out:
            out.append(safest)
    for s in feasible + near:
        if len(out) >= n:
            break
        if s not in out:
            out.append(s)
    return out[:n]


def window_plan(room_s: float, n_leaders: int, window_s: float, per_window_overhead_s: float = 0.5) -> tuple[int, int]:
    """(leaders, windows each) that fit ``room_s`` seconds: fewer leaders before fewer than
    TARGET_WINDOWS windows each, then as many windows as fit, up to MAX_WINDOWS; never less than one
    leader × MIN_WINDOWS (the budget is then overrun a little rather than the choice left unchecked)."""
    per = window_s + per_window_overhead_s
    n = max(1, n_leaders)
    while n > 1 and room_s < n * TARGET_WINDOWS * per:
        n -= 1
    w = int(room_s // (n * per)) if room_s > 0 else 0
    return n, max(MIN_WINDOWS, min(MAX_WINDOWS, w))


def reserve_s(window_s: float, per_window_overhead_s: float = 0.5) -> float:
    """Seconds the search leaves for the confirmation: two leaders × TARGET_WINDOWS windows."""
    return 2 * TARGET_WINDOWS * (window_s + per_window_overhead_s)


def confidence(
    c: Constraints, chosen: Mapping[str, Any], ordered: Sequence[Mapping[str, Any]], window_s: float
) -> dict[str, Any]:
    """How sure the choice is, for plan.json and the report: the level, the margin of the chosen
    configuration's bounds to the targets, the samples and windows behind them, and the runner-up.

    high: every bound meets its target with HIGH_MARGIN to spare, the p99 confidence bound has its full
    confidence and there were TARGET_WINDOWS windows or more; medium: the bounds meet the targets with
    less (margin, samples or windows); low: a bound misses a target (no leader's bounds met them all)."""
    fails = chosen.get("bound_failed") or []
    margin = chosen.get("margin")
    full = chosen.get("p99_ucb_confidence", 0.0) >= CONFIDENCE
    windows = int(chosen.get("windows", 0))
    served_targets = {k: v for k, v in c.given().items() if k in SERVED_BOUNDS}
    if not served_targets:
        level = "n/a"
    elif fails:
        level = "low"
    elif full and margin is not None and margin >= HIGH_MARGIN and windows >= TARGET_WINDOWS:
        level = "high"
    else:
        level = "medium"
    runner = next((s for s in ordered if s is not chosen), None)
    p99 = chosen["p99_bound_ms"]
    basis = (
        f"{chosen['requests']} requests in {chosen['windows']} windows of {window_s:g} s, alternating with "
        f"{len(ordered) - 1} other leader(s); p99 bound = max(worst window p99 {chosen['worst_window_p99_ms']:.2f} ms, "
        f"{chosen['p99_ucb_confidence']:.0%} upper confidence bound on p99 {chosen['p99_ucb_ms']:.2f} ms)"
    )
    if level == "n/a":
        text = f"no latency or throughput target to hold; p99 bound {p99:.2f} ms over {basis}"
    elif fails:
        f = fails[0]
        text = (
            f"low: the bound misses {f['flag']} {f['limit']:g} ({f['value']:.2f} {f['unit']}); no leader's bound met "
            f"every target, this one misses least; expect the verification to miss too at times ({basis})"
        )
    else:
        what = []
        if c.max_p99_ms is not None:
            what.append(f"p99 bound {p99:.2f} ms is {1 - p99 / c.max_p99_ms:.0%} under the {c.max_p99_ms:g} ms target")
        if c.max_avg_ms is not None:
            what.append(f"mean bound {chosen['avg_bound_ms']:.2f} ms vs {c.max_avg_ms:g} ms")
        if c.min_throughput is not None:
            what.append(f"worst window {chosen['throughput_bound']:.1f} req/s vs {c.min_throughput:g}")
        text = f"{level}: " + "; ".join(what) + f" ({basis})"
        if windows < TARGET_WINDOWS:
            text += (
                f"; {windows} window(s) only: a further window's p99 stays under the worst of them with "
                f"probability ≥ {windows / (windows + 1):.0%} ({TARGET_WINDOWS} windows for 90%; a larger --budget)"
            )
        if not full:
            text += (
                f"; too few samples for a {CONFIDENCE:.0%} bound (the largest sample bounds p99 at "
                f"{chosen['p99_ucb_confidence']:.0%})"
            )
    return {
        "level": level,
        "text": text,
        "statistic": "p99 bound = max(worst window p99, order-statistic upper confidence bound on p99 of all samples)",
        "confidence": CONFIDENCE,
        "achieved_confidence": chosen.get("p99_ucb_confidence"),
        "margin": None if margin is None else round(margin, 4),
        "p99_bound_ms": round(p99, 3),
        "p99_ucb_ms": round(chosen["p99_ucb_ms"], 3),
        "worst_window_p99_ms": round(chosen["worst_window_p99_ms"], 3),
        "avg_bound_ms": round(chosen["avg_bound_ms"], 3),
        "throughput_bound": round(chosen["throughput_bound"], 2),
        "targets": served_targets,
        "failed": list(fails),
        "samples": chosen["requests"],
        "windows": chosen["windows"],
        "next_window_within": round(windows / (windows + 1), 3),
        "window_s": window_s,
        "leaders": len(ordered),
        "runner_up": None
        if runner is None
        else {
            "config": runner["config"],
            "p99_bound_ms": round(runner["p99_bound_ms"], 3),
            "throughput": round(runner["throughput"], 2),
            "margin": None if runner.get("margin") is None else round(runner["margin"], 4),
            "failed": list(runner.get("bound_failed") or []),
        },
    }
