"""The GPU in a few minutes: raw throughput per GPU backend x batch, and served over raw on the GPU.

    python bench/gpu.py [--model M.onnx] [--duration 3] [--out DIR]

Raw: the model in this process with each usable GPU backend (onnxruntime's CUDA and TensorRT
providers) at batch 1, 8 and 32, medians of timed windows. Served: `bushu serve` with the model as a
KIND_GPU instance (onnxruntime's CUDA provider) and dynamic batching, driven by tritonclient's aio client at concurrency 32 (binary
KServe v2, loopback), bounded in time; efficiency = served req/s ÷ the best raw rows/s of the same
backend in the same run. The default model is bench/serving.py's 2.4 GFLOP conv net (no torch needed).
Writes DIR/gpu-bench.json and .md (DIR: bench/results, or --out). Skips, saying why, without a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, write_results  # noqa: E402
from serving import cnn_onnx, start  # noqa: E402

COLUMNS = ("backend", "mode", "batch", "concurrency", "p50_ms", "throughput", "efficiency", "status")


def raw(model: Path, backend: str, batch: int, duration: float, x1: np.ndarray) -> dict:
    from bushu.runtime import load_backend

    x = np.repeat(x1, batch, axis=0)
    with load_backend(model, backend, trt_cache=str(model.parent / ".trt-cache")) as b:
        name = b.inputs[0].name
        for _ in range(3):
            b.infer({name: x})
        times, end = [], time.perf_counter() + duration
        while time.perf_counter() < end or len(times) < 5:
            t0 = time.perf_counter()
            b.infer({name: x})
            times.append(time.perf_counter() - t0)
    p50 = statistics.median(times)
    return {
        "backend": backend,
        "mode": "raw",
        "batch": batch,
        "p50_ms": p50 * 1e3,
        "throughput": batch / p50,
        "status": "ok",
    }


async def _load(url: str, name: str, x1: np.ndarray, concurrency: int, duration: float) -> tuple[float, float]:
    import tritonclient.http.aio as aio
    from tritonclient.http import InferInput

    client = aio.InferenceServerClient(url)
    inp = InferInput(name, list(x1.shape), "FP32")
    inp.set_data_from_numpy(x1, binary_data=True)
    lat: list[float] = []
    end = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await client.infer("m", [inp])
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    await client.close()
    return len(lat) / wall, statistics.median(lat) * 1e3


def served(model: Path, backend: str, x1: np.ndarray, duration: float, concurrency: int, best_raw: float) -> dict:
    repo = model.parent / f"repo-{backend}"
    (repo / "m" / "1").mkdir(parents=True, exist_ok=True)
    (repo / "m" / "1" / "model.onnx").write_bytes(model.read_bytes())
    (repo / "m" / "config.pbtxt").write_text(
        "max_batch_size: 32\ndynamic_batching { max_queue_delay_microseconds: 500 }\n"
        "instance_group [{ count: 1 kind: KIND_GPU }]\n"
    )
    proc, http_url, _ = start(repo)
    try:
        import onnx

        name = onnx.load(str(model), load_external_data=False).graph.input[0].name
        asyncio.run(_load(http_url.removeprefix("http://"), name, x1, concurrency, 1.0))  # warm-up
        rps, p50 = asyncio.run(_load(http_url.removeprefix("http://"), name, x1, concurrency, duration))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "backend": backend,
        "mode": "served (HTTP)",
        "batch": "dynamic",
        "concurrency": concurrency,
        "p50_ms": p50,
        "throughput": rps,
        "efficiency": round(rps / best_raw, 3),
        "status": "ok",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="an ONNX file with one float32 input (default: a 2.4 GFLOP conv net)")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    from bushu.runtime.registry import get_backend, is_installed

    rows: list[dict] = []
    efficiency = None
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else cnn_onnx(Path(tmp) / "cnn.onnx")
        import onnx

        dims = [
            d.dim_value or 1
            for d in onnx.load(str(model), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        ]
        x1 = np.random.default_rng(0).standard_normal([1, *dims[1:]]).astype(np.float32)
        for backend in ("onnxruntime-cuda", "onnxruntime-trt"):
            if not is_installed(backend):
                rows.append({"backend": backend, "status": f"skipped: {get_backend(backend).unavailable()}"})
                continue
            best = 0.0
            for batch in (1, 8, 32):
                r = raw(model, backend, batch, args.duration, x1)
                rows.append(r)
                best = max(best, r["throughput"])
            if backend != "onnxruntime-cuda":  # KIND_GPU serves .onnx with the CUDA provider
                continue
            try:
                s = served(model, backend, x1, args.duration, args.concurrency, best)
            except Exception as e:  # a served row that fails is reported, the raw rows stay
                s = {"backend": backend, "mode": "served (HTTP)", "status": f"error: {str(e)[:200]}"}
            rows.append(s)
            efficiency = s.get("efficiency")
    write_results(
        "gpu-bench",
        {"command": command_line(), "efficiency": efficiency},
        rows,
        COLUMNS,
        "bushu on the GPU: raw and served throughput",
        out_dir=args.out,
        notes=["raw: medians over timed windows; served: tritonclient aio, binary KServe v2, loopback"],
    )


if __name__ == "__main__":
    main()
