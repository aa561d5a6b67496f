"""What the user asks of a deployment, and how far a measured candidate is from it.

Each constraint is a bound on one plain metric key of a candidate:

    max_p99_ms ≥ p99_ms        max_avg_ms ≥ avg_ms        min_throughput ≤ throughput
    max_size_mb ≥ size_mb      min_accuracy ≤ accuracy    max_accuracy_drop ≥ accuracy_drop

``failures(metrics)`` lists the bounds a candidate misses, each with a ``ratio`` (how many times
over the bound it is; 1.0 = on the bound), so the closest candidate and the constraint to relax can
be named when nothing meets them all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UnknownNameError, UserInputError

__all__ = ["BOUNDS", "OBJECTIVES", "Constraints", "failures", "worst_ratio"]

OBJECTIVES = ("latency", "throughput", "size")

#: constraint field -> (metric key, "max" | "min", unit, the CLI flag)
BOUNDS: dict[str, tuple[str, str, str, str]] = {
    "max_p99_ms": ("p99_ms", "max", "ms", "--max-p99-ms"),
    "max_avg_ms": ("avg_ms", "max", "ms", "--max-avg-ms"),
    "min_throughput": ("throughput", "min", "req/s", "--min-throughput"),
    "max_size_mb": ("size_mb", "max", "MB", "--max-size-mb"),
    "min_accuracy": ("accuracy", "min", "%", "--min-accuracy"),
    "max_accuracy_drop": ("accuracy_drop", "max", "points", "--max-accuracy-drop"),
}
#: bounds that depend on the model file only (checked before any serving)
MODEL_BOUNDS = ("max_size_mb", "min_accuracy", "max_accuracy_drop")


@dataclass(frozen=True)
class Constraints:
    max_p99_ms: float | None = None
    max_avg_ms: float | None = None
    min_throughput: float | None = None
    max_size_mb: float | None = None
    min_accuracy: float | None = None  # percent, top-1 on --data (or agreement with fp32, see plan.json)
    max_accuracy_drop: float | None = None  # points below the fp32 model
    concurrency: int = 1  # clients sending one request at a time each (closed loop)
    target: str = "cpu"
    optimize: str = "throughput"

    def __post_init__(self) -> None:
        for name in BOUNDS:
            v = getattr(self, name)
            if v is not None and not v >= 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be a number ≥ 0, got {v}")
        for name in ("max_p99_ms", "max_avg_ms", "min_throughput", "max_size_mb"):
            if getattr(self, name) == 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be > 0")
        if self.min_accuracy is not None and self.min_accuracy > 100:
            raise UserInputError(
                f"--min-accuracy is a percentage (0..100), got {self.min_accuracy}",
                hint="e.g. --min-accuracy 70 for 70% top-1",
            )
        if int(self.concurrency) != self.concurrency or self.concurrency < 1:
            raise UserInputError(f"--concurrency must be a positive integer, got {self.concurrency}")
        if self.optimize not in OBJECTIVES:
            raise UnknownNameError("objective", self.optimize, OBJECTIVES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def given(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in BOUNDS if getattr(self, k) is not None}

    def describe(self) -> str:
        parts = [f"{BOUNDS[k][3]} {v:g}" for k, v in self.given().items()]
        return ", ".join(parts + [f"--concurrency {self.concurrency}", f"--optimize {self.optimize}"])


def failures(c: Constraints, metrics: dict[str, Any], only: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The bounds ``metrics`` misses: [{constraint, flag, limit, value, unit, ratio}], worst first.

    A metric that was never measured (None) is not a failure here; the caller decides."""
    out = []
    for name, limit in c.given().items():
        if only is not None and name not in only:
            continue
        key, kind, unit, flag = BOUNDS[name]
        value = metrics.get(key)
        if value is None:
            continue
        ok = value <= limit if kind == "max" else value >= limit
        if ok:
            continue
        if kind == "max":
            ratio = value / limit if limit > 0 else float("inf")
        else:
            ratio = limit / value if value > 0 else float("inf")
        if name == "max_accuracy_drop":  # a drop bound of 0 (or 1 point) makes ratios meaningless
            ratio = 1.0 + (value - limit) / 100.0
        out.append(
            {
                "constraint": name,
                "flag": flag,
                "limit": limit,
                "value": round(float(value), 4),
                "unit": unit,
                "ratio": round(float(ratio), 4),
            }
        )
    return sorted(out, key=lambda f: -f["ratio"])


def worst_ratio(fails: list[dict[str, Any]]) -> float:
    return max((f["ratio"] for f in fails), default=1.0)
