"""Latency, throughput and peak memory of a model on each backend × batch size × threads.

Each backend runs in a fresh subprocess (``isolate=True``, the default), so its peak RSS is its own
and one framework's thread pools never slow another's. Every row has the same plain keys
(``ROW_KEYS``); a backend that cannot run the model gets a row whose ``status`` says why.

Which file a backend runs: the artifact's model file when the backend reads its suffix
(onnxruntime, openvino → model.onnx), else another file of the artifact it reads, the
``reference`` role first (torch → model.pt2).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UnknownNameError, UserInputError
from ..model.artifact import META_FILE, Artifact

__all__ = ["ROW_KEYS", "benchmark", "resolve_model", "files_for_backends"]

#: Keys every row has (timing keys are None unless status is "ok"):
#: backend, batch, threads ("auto" = the backend's default), precision (fp32, bf16, ...),
#: status ("ok" | "skipped" | "error") and reason; p50_ms/p90_ms/p99_ms/mean_ms/min_ms: wall-clock
#: latency of one inference of the whole batch; cpu_ms: process CPU time per inference (all threads);
#: cpu_util: cpu/wall; throughput: items/s (batch / mean latency); peak_rss_mb: the worker process's
#: peak resident memory (interpreter + framework + model + buffers; base_rss_mb is before loading);
#: runs: timed inferences; file: the model file the backend ran; inputs: the sizes fed
#: (``input_ids:8x128 ...``; one row per --input configuration). Rows also carry load_s and details.
ROW_KEYS = (
    "backend",
    "batch",
    "threads",
    "precision",
    "status",
    "reason",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "min_ms",
    "cpu_ms",
    "cpu_util",
    "throughput",
    "peak_rss_mb",
    "runs",
    "file",
    "inputs",
)


def resolve_model(model: Artifact | str | Path) -> tuple[Artifact | None, Path]:
    """An artifact (directory) or a plain model file → (artifact or None, main model file)."""
    if isinstance(model, Artifact):
        return model, model.model_path
    path = Path(model)
    if path.is_dir() or (not path.exists() and not path.suffix):
        art = Artifact.load(path)
        return art, art.model_path
    if not path.is_file():
        from ..errors import NotFoundError

        raise NotFoundError(f"model not found: {path}", hint="pass an artifact directory or a model file")
    if path.name == META_FILE:
        art = Artifact.load(path.parent)
        return art, art.model_path
    return None, path


def _suffixes(name: str) -> tuple[str, ...]:
    from ..runtime.registry import BUILTIN, get_backend

    return BUILTIN[name].suffixes if name in BUILTIN else get_backend(name).suffixes


def files_for_backends(art: Artifact | None, main: Path, backends: Sequence[str]) -> dict[str, Path | str]:
    """backend → the file it runs, or a string saying why there is none."""
    out: dict[str, Path | str] = {}
    for name in backends:
        sfx = _suffixes(name)
        candidates = [main]
        if art is not None:
            roles = sorted(art.files, key=lambda r: r != "reference")
            candidates += [art.path / art.files[r] for r in roles]
        found = next((p for p in candidates if p.suffix.lower() in sfx and p.is_file()), None)
        out[name] = found or f"no {'/'.join(sfx)} file in {'the artifact' if art else main.name} for {name}"
    return out


_GPU_BACKENDS = ("onnxruntime-cuda", "onnxruntime-trt", "tensorrt")


def _installed(name: str) -> bool:
    """Installed, judged without importing the framework (the worker process imports it)."""
    from ..envinfo import _version
    from ..runtime.registry import BUILTIN, distributions, is_installed

    if name not in BUILTIN:
        return is_installed(name)
    module = BUILTIN[name].target.partition(":")[0]
    if name in _GPU_BACKENDS:  # their framework is light to import; what matters is the GPU
        return is_installed(name)
    return importlib.util.find_spec(module) is not None and _version(*distributions(name)) is not None


def default_backends() -> list[str]:
    from ..runtime.registry import list_backends

    return [n for n in list_backends() if n != "null" and _installed(n)]


def _check_names(backends: Sequence[str]) -> None:
    from ..runtime.registry import list_backends

    known = list_backends()
    for b in backends:
        if b not in known:
            raise UnknownNameError("backend", b, known, hint="see the installed ones with: bushu env")


def benchmark(
    model: Artifact | str | Path,
    backends: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 8),
    threads: Sequence[int | None] = (None,),
    warmup: int = 3,
    repeats: int = 10,
    duration_s: float = 1.0,
    precision: str | dict[str, str] | None = None,
    isolate: bool = True,
    progress: bool = True,
    record: bool = True,
    on_row: Callable[[dict], None] | None = None,
    with_postprocess: bool = False,
    inputs: Any = None,
) -> list[dict[str, Any]]:
    """Benchmark ``model`` on each backend; return one row per backend × threads × batch (keys: ROW_KEYS).

    Each row runs ``warmup`` untimed inferences, then timed ones until both ``repeats`` runs and
    ``duration_s`` seconds are done. ``precision`` is one name for all backends or a dict per
    backend (fp32 by default); it is passed to backends that take a ``precision`` option.
    Rows are recorded into the artifact's metrics["bench"] unless ``record=False``.
    ``with_postprocess``: a detection artifact's runs include decoding and NMS (bushu.detection), on a photo;
    the rows add ``postprocess_ms`` (decode + NMS alone, median).
    ``inputs`` (an InputRequest): the input sizes to sweep (each configuration × each batch) or real
    arrays; without it, safe inputs at the recorded typical sizes.
    """
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise UserInputError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if any(t is not None and int(t) < 1 for t in threads):
        raise UserInputError(f"thread counts must be positive integers, got {list(threads)}")
    art, main = resolve_model(model)
    if with_postprocess and (art is None or art.task != "detection"):
        raise UserInputError(
            f"--with-postprocess times a detector's decoding, but {main} is not a detection artifact",
            hint="import the detector first: bushu import MODEL -o ART --task detection",
        )
    if backends:
        _check_names(backends)
    specs = _input_specs(art, main)
    if inputs:
        inputs.check(specs)  # a wrong --input/--sample: one error now, not one per row
    configs = inputs.n_configs if inputs else 1
    names = list(backends) if backends else default_backends()
    files = files_for_backends(art, main, names)
    jobs, rows = [], []
    for name in names:
        prec = precision.get(name) if isinstance(precision, dict) else precision
        target = files[name]
        if isinstance(target, str):  # nothing in the artifact this backend reads
            rows += [
                _row(
                    {
                        "backend": name,
                        "precision": prec or "fp32",
                        "batch": b,
                        "threads": t or "auto",
                        "status": "skipped",
                        "reason": target,
                    }
                )
                for t in threads
                for b in batch_sizes
                for _ in range(configs)
            ]
            continue
        jobs.append(
            {
                "backend": name,
                "path": str(target),
                "batch_sizes": [int(b) for b in batch_sizes],
                "threads": [int(t) if t else None for t in threads],
                "warmup": int(warmup),
                "repeats": int(repeats),
                "duration_s": float(duration_s),
                "precision": prec,
                "postprocess": str(art.path) if with_postprocess and art is not None else None,
                "inputs": [s.to_dict() for s in specs],
                "shapes": {k: [list(v) for v in vs] for k, vs in (inputs.shapes if inputs else {}).items()},
                "sample": inputs.sample_path if inputs else None,
            }
        )
    rows += _run_jobs(jobs, isolate, progress, on_row)
    order = {n: i for i, n in enumerate(names)}
    rows.sort(
        key=lambda r: (
            order[r["backend"]],
            r["threads"] == "auto",
            r["threads"] if r["threads"] != "auto" else 0,
            r.get("config") or 0,
            r["batch"],
        )
    )
    if art is not None and record:
        _record(art, rows)
    return rows


def _input_specs(art: Artifact | None, main: Path) -> list:
    """The artifact's input specs; for a plain .onnx file, its graph's, annotated the way import does."""
    if art is not None:
        return list(art.inputs)
    if main.suffix.lower() != ".onnx":
        return []
    import onnx

    from ..import_.signature import annotate
    from .info import onnx_io

    try:
        proto = onnx.load(str(main), load_external_data=False)
    except Exception:  # noqa: BLE001 - a corrupt file: each backend's row says why it cannot load it
        return []
    return annotate(proto, onnx_io(proto)[0])


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {**dict.fromkeys(ROW_KEYS), **r}


def _run_jobs(jobs: list[dict], isolate: bool, progress: bool, on_row) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    total = sum(
        len(j["batch_sizes"]) * len(j["threads"]) * max(map(len, (j.get("shapes") or {"": [0]}).values())) for j in jobs
    )
    from .. import progress as _progress

    with _progress.task(progress if total > 0 else False, "bench", total) as advance:
        for job in jobs:

            def emit(row: dict, job=job) -> None:
                rows.append(_row(row))
                advance(1, description=f"{row['backend']} batch {row['batch']}: {row['status']}")
                if on_row:
                    on_row(rows[-1])

            advance(0, description=f"{job['backend']}: loading")
            if isolate:
                _run_isolated(job, emit)
            else:
                from ._worker import run_job

                run_job(job, emit, in_process=True)
    return rows


def _run_isolated(job: dict, emit: Callable[[dict], None]) -> None:
    from ._worker import PREFIX

    n = max((len(v) for v in (job.get("shapes") or {}).values()), default=1)
    expected = {(t or "auto", b, k) for t in job["threads"] for b in job["batch_sizes"] for k in range(n)}
    with subprocess.Popen(
        [sys.executable, "-m", "bushu.bench._worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:  # closes the pipes
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # PIPE above
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        for line in proc.stdout:
            if line.startswith(PREFIX):
                row = json.loads(line[len(PREFIX) :])
                expected.discard((row["threads"], row["batch"], row.get("config", 0)))
                emit(row)
        err = proc.stderr.read()
        proc.wait()
    if expected:  # the worker died (crash, out of memory): say so on the rows it never wrote
        last = next((ln for ln in reversed(err.strip().splitlines()) if ln.strip()), "no output")
        reason = f"worker exited with code {proc.returncode}: {last[:300]}"
        for threads, batch, k in sorted(expected, key=str):
            emit(
                {
                    "backend": job["backend"],
                    "batch": batch,
                    "threads": threads,
                    "config": k,
                    "precision": job.get("precision") or "fp32",
                    "status": "error",
                    "reason": reason,
                    "file": Path(job["path"]).name,
                }
            )


def _record(art: Artifact, rows: list[dict[str, Any]]) -> None:
    """Merge rows into metrics['bench'] (same backend/batch/threads/precision replaces the old row)."""
    from ..envinfo import summary

    def key(r: dict) -> tuple:
        return (r["backend"], r["batch"], str(r["threads"]), r["precision"], r.get("inputs"))

    old = (art.metrics.get("bench") or {}).get("rows", [])
    merged = {key(r): r for r in old}
    merged.update({key(r): {k: v for k, v in r.items() if k != "details"} for r in rows})
    art.record(
        "bench",
        {
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "env": summary(),
            "rows": list(merged.values()),
        },
    )
