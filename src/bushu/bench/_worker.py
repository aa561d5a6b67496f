"""Benchmark one backend on one model file; run in a fresh process so peak RSS is that backend's own.

Reads a JSON job on stdin, writes one ``BUSHU-ROW {json}`` line per (threads, batch) row on stdout
(frameworks may print their own lines there too; the prefix tells ours apart).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

PREFIX = "BUSHU-ROW "
MAX_RUNS = 100_000


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: VmHWM, the high-water mark of this process's own memory map. Not ru_maxrss, which a
    child inherits from its parent across fork+exec and so reports the parent's peak when larger.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB elsewhere
    except ImportError:  # Windows
        import psutil

        return round(getattr(psutil.Process().memory_info(), "peak_wset", 0) / 2**20, 1)


def current_rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def time_runs(infer, feeds, warmup: int, repeats: int, duration_s: float) -> dict[str, Any]:
    """Warm up, then run until both ``repeats`` runs and ``duration_s`` seconds are done."""
    for _ in range(max(1, warmup)):
        infer(feeds)
    times: list[float] = []
    cpu0, start = time.process_time(), time.perf_counter()
    while len(times) < max(1, repeats) or (time.perf_counter() - start < duration_s and len(times) < MAX_RUNS):
        t = time.perf_counter()
        infer(feeds)
        times.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "cpu_ms": cpu * 1000 / len(times),  # process CPU time per run, all threads together
        "cpu_util": cpu / wall if wall > 0 else None,  # cores kept busy on average
        "runs": len(times),
        "wall_s": wall,
    }


def run_job(job: dict[str, Any], emit, in_process: bool = False) -> None:
    """Benchmark ``job['backend']`` on ``job['path']`` for every threads × batch; ``emit(row)`` each row."""
    from ..errors import BushuError
    from ..inputs import InputRequest, load_sample
    from ..runtime import load_backend

    name = job["backend"]
    base = {"backend": name, "file": job["path"].rsplit("/", 1)[-1], "precision": job.get("precision") or "fp32"}
    rss0 = current_rss_mb()
    for threads in job["threads"]:
        rows = [{**base, "batch": b, "threads": threads or "auto"} for b in job["batch_sizes"]]
        options = dict(job.get("options") or {})
        if threads:
            options["threads"] = threads
        want = job.get("precision")
        if want and _accepts(name, "precision"):
            options["precision"] = want
        elif want and _canonical(want) != "fp32":
            for r in rows:
                emit(
                    {
                        **r,
                        "status": "skipped",
                        "reason": f"{name} takes no precision option; it runs the "
                        "model file's own precision (convert the model with bushu optimize instead)",
                    }
                )
            continue
        t0 = time.perf_counter()
        try:
            be = load_backend(job["path"], name, **options)
        except BushuError as e:
            for r in rows:
                emit({**r, "status": "error", "reason": e.message.splitlines()[0]})
            continue
        except Exception as e:  # a framework's own exception: report it on the row, keep going
            for r in rows:
                emit({**r, "status": "error", "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})
            continue
        load_s = time.perf_counter() - t0
        details = _jsonable(be.describe())
        precision = _canonical(details.get("precision") or base["precision"])
        specs = _specs(be.inputs, job.get("inputs"))
        req = InputRequest(
            shapes={k: [tuple(v) for v in vs] for k, vs in (job.get("shapes") or {}).items()},
            sample=load_sample(job["sample"]) if job.get("sample") else None,
        )
        for r in rows:
            b = r["batch"]
            fixed = [
                s for s in be.inputs if s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0 and s.shape[0] != b
            ]
            for k in range(req.n_configs):
                rk = {**r, "config": k}
                if fixed:
                    emit(
                        {
                            **rk,
                            "precision": precision,
                            "status": "skipped",
                            "reason": f"input {fixed[0].name!r} has a fixed batch of {fixed[0].shape[0]}",
                        }
                    )
                    continue
                try:
                    feeds = req.feeds(specs, batch=b, index=k)
                    infer, post = be.infer, {}
                    if job.get("postprocess"):  # the detector's decoding and NMS timed with the model, on a photo
                        infer, feeds, post = _with_postprocess(be, job["postprocess"], b, job)
                    rk["inputs"] = " ".join(f"{n}:{'x'.join(map(str, a.shape))}" for n, a in feeds.items())
                    stats = time_runs(infer, feeds, job["warmup"], job["repeats"], job["duration_s"])
                except Exception as e:
                    msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
                    emit({**rk, "precision": precision, "status": "error", "reason": str(msg).splitlines()[0][:300]})
                    continue
                stats["throughput"] = b * 1000 / stats["mean_ms"]
                mem = (
                    {"peak_rss_mb": current_rss_mb(), "rss_note": "in-process: current RSS, shared with other backends"}
                    if in_process
                    else {"peak_rss_mb": peak_rss_mb(), "base_rss_mb": rss0}
                )
                emit(
                    {
                        **rk,
                        "precision": precision,
                        "status": "ok",
                        "reason": None,
                        **stats,
                        **mem,
                        "load_s": load_s,
                        "details": details,
                        **post,
                    }
                )
        be.close()


def _with_postprocess(be, artifact: str, batch: int, job: dict[str, Any]):
    """(infer + decode + NMS, feeds from a photo, {"postprocess_ms": decode and NMS alone, "postprocess": what})."""
    from ..detection.detector import head_for, prepare
    from ..model.artifact import Artifact

    art = Artifact.load(artifact)
    head = head_for(art)
    try:
        from skimage import data

        photo, what = data.chelsea(), "scikit-image chelsea"
    except ImportError:
        photo, what = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8), "random pixels"
    assert art.preprocess is not None  # detectors record their pre-processing
    x, transforms = prepare([photo] * batch, art.preprocess)
    feeds = {be.inputs[0].name: x}

    def infer_and_decode(f):
        return head(be.infer(f), transforms)

    outputs = be.infer(feeds)
    decode = time_runs(lambda _: head(outputs, transforms), None, job["warmup"], job["repeats"], 0.2)
    n = len(head(outputs, transforms)[0])
    return (
        infer_and_decode,
        feeds,
        {
            "postprocess_ms": decode["p50_ms"],
            "postprocess": f"{head.decoder} decode + class-wise NMS on {what} ({n} boxes kept)",
        },
    )


def _specs(model_specs, recorded) -> list:
    """The artifact's specs (with roles, safe values, typical sizes) where they name the model file's inputs."""
    from ..spec import TensorSpec

    rec = {d["name"]: TensorSpec.from_dict(d) for d in recorded or []}
    return [rec.get(s.name, s) if len(rec.get(s.name, s).shape) == len(s.shape) else s for s in model_specs]


_CANONICAL = {"f32": "fp32", "float32": "fp32", "f16": "fp16", "float16": "fp16", "bfloat16": "bf16", "i8": "int8"}


def _canonical(precision: str) -> str:
    """One name per precision across backends (OpenVINO says f32, others fp32)."""
    return _CANONICAL.get(str(precision).lower(), str(precision).lower())


def _accepts(backend: str, option: str) -> bool:
    from ..errors import BushuError
    from ..runtime.registry import get_backend

    try:
        return option in get_backend(backend).options
    except BushuError:
        return False  # load_backend reports the real problem on the row


def _jsonable(d: Any) -> Any:
    return json.loads(json.dumps(d, default=str))


def main() -> None:
    job = json.loads(sys.stdin.read())

    def emit(row: dict[str, Any]) -> None:
        sys.stdout.write(PREFIX + json.dumps(row) + "\n")
        sys.stdout.flush()

    run_job(job, emit)


if __name__ == "__main__":
    main()
