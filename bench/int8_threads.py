"""int8 vs fp32 throughput by thread count and batch size, on the Fashion-MNIST CNN of bench/compress.py.

The compression table gives one throughput ratio (batch 8, the backend's default threads). This sweeps
threads × batch to show where int8's speed-up comes from and where it shrinks: on a small CNN the
fixed per-call cost (quantize/dequantize of the input and output, thread hand-off) weighs more at
batch 1 and with more threads.

    .venv/bin/python bench/compress.py --workdir W --only int8,int8-openvino   # builds W/fmnist, W/int8, ...
    .venv/bin/python bench/int8_threads.py --workdir W [--threads 1,2] [--batch 1,8,32] [--rounds 3]

Pairs (fp32 and int8 on the same backend): onnxruntime (W/fmnist vs W/int8, static int8 Q/DQ) and
openvino (W/fmnist vs W/int8-openvino, NNCF), each present in W. Every (pair, threads, batch) is
timed in ``--rounds`` interleaved rounds (bushu.bench.bench, each model in its own process), medians;
the ratio is int8 throughput / fp32 throughput of the same round set.
Writes bench/results/int8_threads.json and .md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402

PAIRS = {  # backend -> (fp32 artifact, int8 artifact) under --workdir
    "onnxruntime": ("fmnist", "int8"),
    "openvino": ("fmnist", "int8-openvino"),
}
COLUMNS = (
    "backend",
    "threads",
    "batch",
    "fp32_img_s",
    "int8_img_s",
    "throughput_x",
    "fp32_p50_ms",
    "int8_p50_ms",
    "latency_speedup",
)


def time_one(path: Path, backend: str, threads: list[int], batches: list[int], duration: float) -> dict:
    """{(threads, batch): row} for one model, one process (bushu.bench.bench)."""
    from bushu.bench.bench import benchmark
    from bushu.model.artifact import Artifact

    art = Artifact.load(path)
    rows = benchmark(
        art,
        backends=[backend],
        batch_sizes=batches,
        threads=threads,
        duration_s=duration,
        progress=False,
        record=False,
    )
    return {(int(r["threads"]), int(r["batch"])): r for r in rows if r.get("status") == "ok"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="bench/compress.py's --workdir")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=0.5, help="seconds per timing")
    ap.add_argument("--backends", default="onnxruntime,openvino")
    a = ap.parse_args()
    threads = [int(v) for v in a.threads.split(",")]
    batches = [int(v) for v in a.batch.split(",")]
    pairs = {
        b: PAIRS[b]
        for b in a.backends.split(",")
        if all((a.workdir / name / "bushu.yaml").is_file() for name in PAIRS[b])
    }
    if not pairs:
        raise SystemExit(f"no fp32/int8 pair in {a.workdir}: run bench/compress.py --workdir {a.workdir} first")
    samples: dict[tuple[str, str], list[dict]] = {}
    for r in range(a.rounds):
        for backend, names in pairs.items():
            for prec, name in zip(("fp32", "int8"), names):
                print(f"round {r + 1}/{a.rounds}: {backend} {prec}", flush=True)
                samples.setdefault((backend, prec), []).append(
                    time_one(a.workdir / name, backend, threads, batches, a.duration)
                )

    def med(backend: str, prec: str, key: tuple[int, int], field: str) -> float | None:
        vals = [s[key][field] for s in samples[(backend, prec)] if key in s and s[key].get(field)]
        return statistics.median(vals) if vals else None

    rows = []
    for backend in pairs:
        for t in threads:
            for b in batches:
                f_tp, i_tp = med(backend, "fp32", (t, b), "throughput"), med(backend, "int8", (t, b), "throughput")
                f_ms, i_ms = med(backend, "fp32", (t, b), "p50_ms"), med(backend, "int8", (t, b), "p50_ms")
                rows.append(
                    {
                        "backend": backend,
                        "threads": t,
                        "batch": b,
                        "fp32_img_s": round(f_tp) if f_tp else None,
                        "int8_img_s": round(i_tp) if i_tp else None,
                        "throughput_x": round(i_tp / f_tp, 2) if f_tp and i_tp else None,
                        "fp32_p50_ms": f_ms,
                        "int8_p50_ms": i_ms,
                        "latency_speedup": round(f_ms / i_ms, 2) if f_ms and i_ms else None,
                    }
                )
    notes = [
        f"command: `{command_line()}`",
        "models: bench/compress.py's Fashion-MNIST CNN (fp32) and its int8 variants (onnxruntime: static "
        "Q/DQ; openvino: NNCF), from the same --workdir",
        f"timing: bushu.bench.bench, {a.rounds} interleaved round(s) of {a.duration:g} s per (threads, batch), "
        "medians; p50 = latency of one batch; throughput_x = int8 / fp32 images per second",
        "shared 2-core CPU with other jobs running: compare ratios, not absolute times",
    ]
    _, md = write_results(
        "int8_threads",
        {"command": command_line(), "rounds": a.rounds},
        rows,
        COLUMNS,
        "int8 vs fp32 throughput by threads and batch (Fashion-MNIST CNN)",
        notes,
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
