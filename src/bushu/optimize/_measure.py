"""Before/after figures for one model file: parameters, size, p50 latency (batch 1), throughput (batch 8).

Latency comes from bushu.bench.bench (each model timed in its own process); numbers on a shared
CPU are noisy, so only rows measured in the same run are compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["file_size_mb", "measure"]


def file_size_mb(path: str | Path) -> float:
    path = Path(path)
    size = path.stat().st_size
    for extra in (path.with_name(path.name + ".data"), path.with_suffix(".bin")):
        if extra.exists() and extra != path:
            size += extra.stat().st_size
    return round(size / 1e6, 3)


def measure(
    path: str | Path, backend: str = "onnxruntime", duration_s: float = 1.0, speed: bool = True
) -> dict[str, Any]:
    """params, mflops (batch 1), size_mb and (when ``speed``) p50_ms at batch 1 and throughput at batch 8."""
    from ..bench.bench import benchmark

    row: dict[str, Any] = {"size_mb": file_size_mb(path)}
    if Path(path).suffix == ".onnx":
        from ..bench.flops import count_flops, count_params

        # Quantization scales and zero points are counted too; they add well under 1%.
        row["params"] = count_params(str(path))[0]
        row["mflops"] = round(count_flops(str(path), batch=1).flops / 1e6, 2)
    if speed:
        rows = benchmark(
            path, backends=[backend], batch_sizes=(1, 8), duration_s=duration_s, progress=False, record=False
        )
        by_batch = {r["batch"]: r for r in rows if r.get("status") == "ok"}
        row["p50_ms"] = by_batch[1]["p50_ms"] if 1 in by_batch else None
        row["throughput_b8"] = by_batch[8]["throughput"] if 8 in by_batch else None
        if not by_batch:
            row["speed_error"] = next((r.get("reason") for r in rows if r.get("reason")), "benchmark failed")
    return row
