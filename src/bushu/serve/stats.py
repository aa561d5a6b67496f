"""Per model-version statistics in Triton's shape (durations in ns), read by /stats, gRPC and /metrics."""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["Stats"]

_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


class Stats:
    def __init__(self, name: str, version: str):
        self.name, self.version = name, version
        self._lock = threading.Lock()
        self.count = dict.fromkeys(_DURATIONS, 0)
        self.ns = dict.fromkeys(_DURATIONS, 0)
        self.inference_count = 0  # rows (batch elements) inferred
        self.execution_count = 0  # backend runs
        self.last_inference_ms = 0
        self.batches: dict[int, list[int]] = {}  # batch rows -> [count, compute ns]

    def _add(self, key: str, ns: int, n: int = 1) -> None:
        self.count[key] += n
        self.ns[key] += ns

    def record_execution(self, batch, start: int, t_in: int, t_infer: int, end: int) -> None:
        rows = sum(r.rows for r in batch)
        n = len(batch)
        with self._lock:
            self.execution_count += 1
            self.inference_count += rows
            self.last_inference_ms = int(time.time() * 1000)
            for r in batch:
                self._add("queue", start - r.enqueued)
                self._add("success", end - r.enqueued)
            self._add("compute_input", (t_in - start) * n, n)
            self._add("compute_infer", (t_infer - t_in) * n, n)
            self._add("compute_output", (end - t_infer) * n, n)
            b = self.batches.setdefault(rows, [0, 0])
            b[0] += 1
            b[1] += end - start

    def record_failure(self, ns: int) -> None:
        with self._lock:
            self._add("fail", ns)

    def to_dict(self) -> dict[str, Any]:
        """Triton's JSON statistics for one model version."""
        with self._lock:
            dur = {k: {"count": self.count[k], "ns": self.ns[k]} for k in _DURATIONS}
            return {
                "name": self.name,
                "version": self.version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {**dur, "cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0}},
                "batch_stats": [
                    {
                        "batch_size": b,
                        "compute_input": {"count": c, "ns": 0},
                        "compute_infer": {"count": c, "ns": ns},
                        "compute_output": {"count": c, "ns": 0},
                    }
                    for b, (c, ns) in sorted(self.batches.items())
                ],
            }
