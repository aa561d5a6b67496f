"""The comparison table: accuracy on one data set, size and speed, for every model or for one model's
variants (the models optimized from it and its exports), side by side.

Accuracy comes only from evaluations on the chosen data set (WORKSPACE/evals/<model>@<dataset>.json;
an export's is <model>~<format>@<dataset>.json), so every row is measured on the same images; a row
without one says so, and ``missing()`` lists the evaluation and speed jobs that would fill it. An
evaluation older than its model file is marked stale; a model evaluated on the data it was trained on is
marked (its accuracy there is optimistic).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import BushuError
from .safety import safe_name
from .workspace import Workspace, accuracy_note

__all__ = ["compare", "export_dir", "missing"]


def export_dir(ws: Workspace, model: str, fmt: str) -> Path:
    """The artifact that `bushu export` wrote for one format (WORKSPACE/exports/<model>/<format>/<format>)."""
    return ws.root / "exports" / safe_name(model, "model name") / safe_name(fmt, "format") / safe_name(fmt, "format")


def _eval(ws: Workspace, key: str, dataset: str, newer_than: float | None) -> dict[str, Any]:
    path = ws.eval_path(key, dataset)
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"accuracy": None, "eval": None, "stale": False}
    return {
        "accuracy": r.get("accuracy"),
        "accuracy_note": accuracy_note(r.get("accuracy"), r.get("n_images")),
        "n_images": r.get("n_images"),
        "macro_f1": (r.get("macro") or {}).get("f1"),
        "eval": path.stem,
        "stale": newer_than is not None and path.stat().st_mtime < newer_than,
    }


def _model_mtime(d: Path) -> float | None:
    """When the model file itself last changed (bushu.yaml changes with every recorded measurement)."""
    from ..model.artifact import Artifact

    try:
        return Artifact.load(d).model_path.stat().st_mtime
    except (BushuError, OSError):
        return None


def _speed(art) -> dict[str, Any]:
    """p50 latency and throughput at batch 1, from the model's own `bushu bench` (or optimize's timing)."""
    rows = sorted(  # the engine that serves it first: onnxruntime for an ONNX model (a .pt2 adds torch rows)
        (
            r
            for r in (art.metrics.get("bench") or {}).get("rows", [])
            if r.get("batch") == 1 and r.get("p50_ms") is not None
        ),
        key=lambda r: r.get("backend") != "onnxruntime",
    )
    if rows:
        return {"p50_ms": rows[0]["p50_ms"], "throughput": rows[0].get("throughput"), "speed_from": "bench"}
    after = ((art.metrics.get("optimize") or {}).get("rows") or [{}])[-1]
    if after.get("p50_ms") is not None:
        return {"p50_ms": after["p50_ms"], "throughput": None, "speed_from": "optimize"}
    return {"p50_ms": None, "throughput": None, "speed_from": None}


def _model_row(ws: Workspace, name: str, dataset: str, data_dir: Path | None) -> dict[str, Any] | None:
    from ..model.artifact import Artifact

    try:
        d = ws.model_dir(name)
        art = Artifact.load(d)
    except BushuError:
        return None
    opt = [s for s in art.provenance.get("steps", []) if s.get("command") == "optimize"]
    q = (opt[-1].get("quantize") or {}) if opt else {}
    trained_on = next((s.get("data") for s in art.provenance.get("steps", []) if s.get("command") == "train"), None)
    return {
        "name": name,
        "kind": f"optimized: {q.get('kind') or q.get('type') or 'optimized'}" if opt else "model",
        "from": Path(str(opt[-1].get("source", "")).split(" (after")[0]).name if opt else None,
        "format": art.format,
        "size_mb": round(art.size_bytes / 1e6, 3),
        **_speed(art),
        **_eval(ws, name, dataset, art.model_path.stat().st_mtime),
        "trained_on_this_data": bool(
            trained_on and data_dir is not None and Path(trained_on).resolve() == data_dir.resolve()
        ),
        "runs_here": True,
        "model": name,
        "download": f"/api/models/{name}/sdk" if art.model_path.suffix == ".onnx" else None,
        "_path": str(d),
    }


def _export_rows(ws: Workspace, model: str, dataset: str) -> list[dict[str, Any]]:
    out = []
    folder = ws.root / "exports" / safe_name(model, "model name")
    for report in sorted(folder.glob("*/export.json")) if folder.is_dir() else []:
        try:
            rows = json.loads(report.read_text()).get("rows", [])
        except (OSError, ValueError):
            continue
        for r in rows:
            fmt = str(r.get("format"))
            art_dir = export_dir(ws, model, fmt)
            if r.get("status") not in ("ok", "exported", "mismatch") or not (art_dir / "bushu.yaml").is_file():
                continue  # a skipped or failed export has nothing to measure
            out.append(
                {
                    "name": f"{model} ({fmt})",
                    "kind": f"export: {fmt}",
                    "from": model,
                    "format": fmt,
                    "size_mb": r.get("size_mb"),
                    "p50_ms": r.get("p50_ms"),
                    "throughput": round(1000 / r["p50_ms"], 1) if r.get("p50_ms") else None,
                    "speed_from": "export" if r.get("p50_ms") is not None else None,
                    **_eval(ws, f"{model}~{fmt}", dataset, _model_mtime(art_dir)),
                    "trained_on_this_data": False,
                    "model": None,
                    "download": f"/api/models/{model}/exports/{report.parent.name}.zip",
                    "runs_here": r.get("backend") is not None,  # Core ML converts here but runs on Apple only
                    "_path": str(art_dir),
                }
            )
    return out


def _family(ws: Workspace, model: str) -> list[str]:
    """The model and the models optimized from it (directly or through another optimized model)."""
    from ..model.artifact import Artifact

    members = [model]
    me = {ws.model_dir(model).resolve()}
    others = []
    for d in sorted((ws.root / "models").iterdir()):
        if d.name != model and (d / "bushu.yaml").is_file():
            try:
                others.append((d, Artifact.load(d)))
            except BushuError:
                continue
    grew = True
    while grew:
        grew = False
        for d, art in others:
            if d.name in members:
                continue
            sources = [
                Path(str(s.get("source", "")).split(" (after")[0]).resolve()
                for s in art.provenance.get("steps", [])
                if s.get("command") == "optimize"
            ]
            if any(s in me for s in sources):
                members.append(d.name)
                me.add(d.resolve())
                grew = True
    return members


def _rows(ws: Workspace, dataset: str, model: str | None) -> list[dict[str, Any]]:
    data_dir = ws.dataset_dir(dataset)
    if model is not None:
        names = _family(ws, model)
    else:
        names = [d.name for d in sorted((ws.root / "models").iterdir()) if (d / "bushu.yaml").is_file()]
    rows = [r for r in (_model_row(ws, n, dataset, data_dir) for n in names) if r is not None]
    if model is not None:
        rows += _export_rows(ws, model, dataset)
    return rows


def compare(ws: Workspace, dataset: str, model: str | None = None) -> dict[str, Any]:
    """The table for ``dataset``: every model, or ``model`` and its variants; the best accuracy, the smallest
    and the fastest row are named."""
    rows = _rows(ws, dataset, model)

    def best(key: str, low: bool) -> str | None:
        have = [r for r in rows if isinstance(r.get(key), (int, float)) and not (key == "accuracy" and r["stale"])]
        if len(have) < 2:
            return None
        pick = min(have, key=lambda r: r[key]) if low else max(have, key=lambda r: r[key])
        return pick["name"]

    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return {
        "dataset": dataset,
        "model": model,
        "rows": public,
        "best": {"accuracy": best("accuracy", False), "size_mb": best("size_mb", True), "p50_ms": best("p50_ms", True)},
        "missing": len(missing(ws, dataset, model, rows)),
    }


def missing(
    ws: Workspace, dataset: str, model: str | None = None, rows: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The jobs that would complete the table: an evaluation on ``dataset`` for each row without a current
    one, a speed measurement for each workspace model without one. Each: {"kind", "title", "argv", "output"}."""
    rows = rows if rows is not None else _rows(ws, dataset, model)
    data = str(ws.dataset_dir(dataset))
    jobs = []
    for r in rows:
        if (r["eval"] is None or r["stale"]) and r["runs_here"]:
            key = r["model"] or f"{r['from']}~{r['format']}"
            out = ws.eval_path(key, dataset)
            jobs.append(
                {
                    "kind": "eval",
                    "title": f"evaluate {r['name']} on {dataset}",
                    "argv": ["eval", r["_path"], "--data", data, "--json", "--no-record"],
                    "output": str(out),
                }
            )
        if r["model"] and r["p50_ms"] is None:
            jobs.append(
                {
                    "kind": "bench",
                    "title": f"bench {r['name']}",
                    "argv": ["bench", r["_path"], "--duration", "1", "--batch", "1", "--in-process"],
                    "output": r["_path"],
                }
            )
    return jobs
