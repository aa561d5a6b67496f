"""One format, in its own process: convert → write the artifact → validate → time. See core.py.

Invoked as ``python -m bushu.export._worker JOB_JSON``; writes a result row (JSON) to the job's
``result`` path. If this process dies, the parent reports the step it was in.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BushuError, MissingDependencyError, UnsupportedOpError, ValidationError
from ..model.artifact import Artifact, write_artifact
from .core import DATA_HINT, ConverterError, ExportContext, Exported, Skip
from .formats import FORMATS, Format


def _size_mb(paths: list[Path]) -> float:
    total = 0
    for p in paths:
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return round(total / 1e6, 2)


def _missing(fmt: Format) -> str | None:
    for module, req in fmt.needs:
        if importlib.util.find_spec(module) is None:
            return f"needs {req}: pip install {req}"
    return None


def _gpu_reason() -> str | None:
    if not (Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi")):
        return "needs an NVIDIA GPU; none on this machine (build the engine on the target GPU machine)"
    return None


def _load_reference(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray | None]:
    z = np.load(path)
    feeds = {k[3:]: z[k] for k in z.files if k.startswith("in:")}
    ref = {k[4:]: z[k] for k in z.files if k.startswith("out:")}
    return feeds, ref, (z["targets"] if "targets" in z.files else None)


def _exported_artifact(art: Artifact, fmt: Format, ex: Exported, ctx: ExportContext) -> Artifact:
    pre = art.preprocess
    if pre is not None and ex.layout and ex.layout != pre.layout:
        pre = dataclasses.replace(pre, layout=ex.layout)
    provenance = {k: v for k, v in art.provenance.items() if k != "steps"}
    provenance["exported_from"] = str(art.path)
    new = Artifact(
        path=ctx.work,
        model_file=ex.model_file,
        format=fmt.name,
        inputs=list(art.inputs),
        outputs=list(art.outputs),
        name=art.name,
        task=art.task,
        preprocess=pre,
        postprocess=art.postprocess,
        files=dict(ex.files),
        provenance={**provenance, "steps": list(art.provenance.get("steps", []))},
    )
    new.add_step("export", format=fmt.name, precision=fmt.precision, tool=ex.tool, **ex.details)
    return new


def _validate(
    fmt: Format, ex: Exported, art: Artifact, feeds, ref, targets, bench: bool, ctx: ExportContext
) -> dict[str, Any]:
    from ..validate import accuracy, agreement, check_tolerance, summarize

    row: dict[str, Any] = {}
    backend = None
    if ex.runner is not None:
        run = ex.runner
    else:
        from ..runtime import load_backend

        ctx.step(f"load with the {fmt.backend} backend")
        threads = ctx.options.get("threads")
        opts = {**ex.backend_options, **({"threads": threads} if threads else {})}
        backend = load_backend(art.model_path, fmt.backend, **opts)
        run = backend.infer if all(s.has_batch for s in backend.inputs) else _one_at_a_time(backend.infer)
    try:
        ctx.step("validate against the ONNX model")
        got = run(feeds)
        agree = agreement(ref, got) if set(ref) <= set(got) else {}
        first = next(iter(agree.values()), {})
        row["max_abs"] = max((a["max_abs"] for a in agree.values()), default=None)
        row["top1_agreement"] = first.get("top1_agreement")
        if targets is not None and len(got) == 1 and len(ref) == 1:
            row["accuracy"] = accuracy(next(iter(got.values())), targets.tolist())
            row["accuracy_onnx"] = accuracy(next(iter(ref.values())), targets.tolist())
        parity: dict[str, Any] = {
            "reference": "onnxruntime on the source ONNX model",
            "samples": len(next(iter(feeds.values()))),
            "atol": fmt.atol,
            "rtol": fmt.rtol,
            "agreement": agree,
        }
        if fmt.min_top1 is not None:
            parity |= {"atol": None, "rtol": None, "min_top1_agreement": fmt.min_top1, "min_cosine": MIN_COSINE}
            problems = _agreement_problems(fmt, ref, got, agree)
            if row.get("accuracy") is not None and not problems:
                problems = _accuracy_problem(ref, row["accuracy_onnx"], row["accuracy"], len(targets))
            parity["passed"] = not problems
            row["status"] = "mismatch" if problems else "ok"
            if problems:
                parity["error"] = row["reason"] = "; ".join(problems)
        else:
            try:
                parity["outputs"] = summarize(check_tolerance(f"{fmt.name} export", ref, got, fmt.atol, fmt.rtol))
                parity["passed"] = True
                row["status"] = "ok"
            except ValidationError as e:
                parity["passed"] = False
                parity["error"] = e.message
                row["status"] = "mismatch"
                row["reason"] = "; ".join(m.describe() for m in e.mismatches)
        art.record("parity", parity)
        if bench and row["status"] == "ok":
            ctx.step("time batch-1 inference")
            one = {k: v[:1] for k, v in feeds.items()}
            for _ in range(2):
                run(one)
            times: list[float] = []
            t_end = time.perf_counter() + 1.0
            while len(times) < 5 or (time.perf_counter() < t_end and len(times) < 50):
                t0 = time.perf_counter()
                run(one)
                times.append((time.perf_counter() - t0) * 1e3)
            row["p50_ms"] = round(statistics.median(times), 2)
            art.record(
                "export_bench",
                {
                    "batch": 1,
                    "p50_ms": row["p50_ms"],
                    "runs": len(times),
                    "backend": fmt.backend or "runner",
                    "threads": ctx.options.get("threads"),
                },
            )
        if backend is not None:
            row["backend_details"] = backend.describe()
            row["shapes"] = _shapes_kept(art.inputs, backend.inputs, feeds)
    finally:
        if backend is not None:
            backend.close()
    return row


def _one_at_a_time(infer):
    """A model exported with a fixed batch of 1 (tflite2onnx, YOLO exports) runs the samples one by one."""

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        parts = [infer({k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    return run


def _shapes_kept(specs, loaded, feeds) -> str:
    """'dynamic' when the exported model keeps the artifact's dynamic dims, else the sizes it fixed."""
    got = {s.name: s for s in loaded}
    fixed = []
    for s in specs:
        g = got.get(s.name)
        if g is None or len(g.shape) != len(s.shape):
            continue
        if any(s.symbol(i) is not None and isinstance(d, int) and d > 0 for i, d in enumerate(g.shape)):
            fixed.append(f"{s.name}:{'x'.join(map(str, g.shape))}")
    return ("fixed " + " ".join(fixed)) if fixed else "dynamic"


MIN_COSINE = 0.9  # outputs without classes (features, boxes): the int8 output points the fp32 way


def _agreement_problems(fmt: Format, ref, got, agree: dict[str, dict[str, Any]]) -> list[str]:
    """Per output, why a reduced-precision export fails its top-1 (or cosine) gate; [] when it passes.

    Top-1 agreement counts samples where fp32 is confident (when there are 10 or more), as bushu
    optimize's int8 does: on a near tie, int8 rounding picks either class and neither is wrong.
    """
    problems = []
    for name, r in ref.items():
        g = got.get(name)
        if g is None or g.shape != r.shape:
            problems.append(f"{name}: shape {None if g is None else tuple(g.shape)}, expected {tuple(r.shape)}")
            continue
        if not np.isfinite(g).all():
            problems.append(f"{name}: non-finite values")
            continue
        a = agree[name]
        if "gate_agreement" in a:
            if a["gate_agreement"] < fmt.min_top1:
                which = "confident " if a["gate_samples"] < len(r) else ""
                problems.append(
                    f"{name}: top-1 agreement with the fp32 ONNX model {a['gate_agreement']:.1%} on "
                    f"{a['gate_samples']} {which}sample(s), below the {fmt.min_top1:.0%} minimum"
                )
        elif a["cosine_min"] < MIN_COSINE:
            problems.append(
                f"{name}: cosine similarity to the fp32 ONNX model {a['cosine_min']:.3f}, below {MIN_COSINE}"
            )
    return problems


def _accuracy_problem(ref, before: float, after: float, n: int) -> list[str]:
    """int8 keeps accuracy within 1 point of fp32 (PRODUCT.md), or within one sample on fewer than 100."""
    allowed = max(1.0, 100.0 / n)
    if before - after <= allowed + 1e-9:
        return []
    name = next(iter(ref))
    return [
        f"{name}: accuracy on the labelled --data {after:.2f}% vs {before:.2f}% for the fp32 ONNX model, "
        f"a drop of {before - after:.2f} points on {n} sample(s) (at most {allowed:.3g} allowed)"
    ]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    fmt = FORMATS.get(job["format"]) or Format(job["format"], job["exporter"], "", "")
    if fmt.exporter != job["exporter"]:  # a format registered at run time (tests, plugins)
        fmt = dataclasses.replace(fmt, exporter=job["exporter"])
    out = Path(job["out"])
    log, step_file = Path(job["log"]), Path(job["step_file"])
    art = Artifact.load(job["artifact"])
    missing = _missing(fmt)
    if missing:
        return {"status": "skipped", "reason": missing}
    if fmt.gpu and (why := _gpu_reason()):
        return {"status": "skipped", "reason": why}
    if fmt.calibrated and not (job.get("calibration") or job.get("data")):
        return {"status": "skipped", "reason": f"int8 needs calibration images: {DATA_HINT}"}
    feeds, ref, targets = _load_reference(job["reference"])
    with tempfile.TemporaryDirectory(prefix=f".{fmt.name}-", dir=out) as tmpd:
        ctx = ExportContext(
            art=art,
            fmt=fmt,
            work=Path(tmpd),
            log=log,
            step_file=step_file,
            options={
                "opset": job.get("opset"),
                "threads": job.get("threads"),
                "data": job.get("data"),
                "calibration": job.get("calibration"),
                "calib_size": job.get("calib_size"),
            },
        )
        ctx.step("import the exporter")
        module, _, func = fmt.exporter.partition(":")
        exporter = getattr(importlib.import_module(module), func)
        t0 = time.perf_counter()
        try:
            ex: Exported = exporter(ctx)
        except Skip as e:
            return {"status": "skipped", "reason": str(e)}
        except MissingDependencyError as e:
            return {"status": "skipped", "reason": f"{e.message}; {e.hint}"}
        convert_s = round(time.perf_counter() - t0, 1)
        ctx.step("write the artifact")
        ex.details.setdefault("convert_s", convert_s)
        new = _exported_artifact(art, fmt, ex, ctx)
        files = {name: ctx.work / name for name in [ex.model_file, *ex.files.values()]}
        files |= {f: art.path / f for f in (art.preprocess.files if art.preprocess else [])}  # e.g. the tokenizer
        main_is_dir = (ctx.work / ex.model_file).is_dir()
        if main_is_dir:  # e.g. a Core ML .mlpackage directory: copy its files one by one
            files.pop(ex.model_file)
            files |= {str(p.relative_to(ctx.work)): p for p in (ctx.work / ex.model_file).rglob("*") if p.is_file()}
            new.model_file = next(n for n in files if n.startswith(ex.model_file + "/") and n.endswith("Manifest.json"))
        dest = out / fmt.name
        written = write_artifact(dest, files, new, labels=art.labels)
        size_paths = [dest / ex.model_file, *(dest / n for n in ex.files.values() if not n.endswith(".io.json"))]
        row: dict[str, Any] = {
            "file": str(dest / ex.model_file),
            "size_mb": _size_mb(size_paths),
            "convert_s": convert_s,
        }
        if fmt.backend is None and ex.runner is None:
            row |= {"status": "exported", "reason": fmt.note or "convert-only: no runtime for it on this machine"}
            return row
        row |= _validate(fmt, ex, written, feeds, ref, targets, bool(job.get("bench", True)), ctx)
        if art.task == "detection" and job.get("data") and fmt.backend is not None and ex.runner is None:
            from ..detection.validate import judge_export

            ctx.step("judge the boxes against the ONNX model")
            row = judge_export(row, art, written, fmt.name, fmt.backend, job["data"], ex.backend_options)
        if fmt.note and row.get("status") == "ok":
            row.setdefault("reason", fmt.note)
        return row


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    result = Path(job["result"])
    try:
        row = run_job(job)
    except ConverterError as e:
        row = {"status": "error", "reason": str(e)}
    except UnsupportedOpError as e:  # the op and the target; the generic backend hint does not apply here
        row = {"status": "error", "reason": e.message}
    except BushuError as e:
        row = {"status": "error", "reason": e.message + (f" ({e.hint})" if e.hint else "")}
    except Exception as e:  # noqa: BLE001 - a converter's own exception: report it in the row, log the traceback
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:300]
        row = {"status": "error", "reason": f"{type(e).__name__}: {first}"}
    step_file = Path(job["step_file"])
    if row.get("status") == "error" and step_file.is_file():
        row["step"] = step_file.read_text().strip()
        row["reason"] = f"{row['reason']} (step {row['step']!r}; log {job['log']})"
    sys.stdout.flush()
    result.write_text(json.dumps(row, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
