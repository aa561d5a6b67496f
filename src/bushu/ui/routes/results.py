"""What a user does with results: compare models (and one model's variants) on the same data set, fill in
the missing measurements, and delete models, data sets and jobs."""

from __future__ import annotations

import asyncio
import shutil
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from ...errors import UserInputError
from .._http import HttpError, UIContext, endpoint, read_json
from ..compare import compare, missing
from ..safety import safe_name

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.requests import Request


def _scope(params: Any, ui: UIContext) -> tuple[str, str | None]:
    dataset = str(params.get("dataset") or "")
    if not dataset:
        raise UserInputError("choose the data set to compare on", hint="every row is measured on the same images")
    model = params.get("model") or None
    if model is not None:
        ui.ws.model_dir(str(model))  # a clear 404 for an unknown model
    return dataset, model


async def compare_table(request: Request, ui: UIContext) -> dict[str, Any]:
    dataset, model = _scope(request.query_params, ui)
    return await asyncio.to_thread(compare, ui.ws, dataset, model)


async def measure(request: Request, ui: UIContext) -> dict[str, Any]:
    """Queue the evaluations (and speed measurements) the table lacks; jobs already queued are not repeated."""
    dataset, model = _scope(await read_json(request), ui)
    todo = await asyncio.to_thread(missing, ui.ws, dataset, model)
    pending = {tuple(j["argv"]) for j in ui.jobs.list() if j["status"] in ("queued", "running")}
    jobs = [
        ui.jobs.submit(t["kind"], t["title"], t["argv"], t["output"]) for t in todo if tuple(t["argv"]) not in pending
    ]
    return {"jobs": [{k: j[k] for k in ("id", "kind", "title", "status")} for j in jobs]}


def _not_in_use(ui: UIContext, path: Path, what: str) -> None:
    busy = ui.jobs.using(path)
    if busy:
        job = busy[0]
        raise HttpError(
            409,
            f"{what} is in use by job #{job['id']} ({job['title']}, {job['status']})",
            hint="wait for it or cancel it",
        )


async def delete_model(request: Request, ui: UIContext) -> dict[str, Any]:
    """The model, its exports, SDK and export downloads, evaluations and remembered deployment; never while
    it is served or a job uses it. Models optimized from it are models of their own and stay."""
    name = request.path_params["name"]
    d = ui.ws.model_dir(name)
    name = d.name
    if ui.deployments.serving(name):
        raise HttpError(409, f"model {name!r} is being served", hint="stop it on the Deploy page first")
    _not_in_use(ui, d, f"model {name!r}")

    def remove() -> None:
        root = ui.ws.root
        exports = root / "exports" / name
        for fmt in exports.iterdir() if exports.is_dir() else []:
            (root / "bundles" / f"{name}-{fmt.name}.zip").unlink(missing_ok=True)
        (root / "bundles" / f"{name}-sdk.zip").unlink(missing_ok=True)
        shutil.rmtree(exports, ignore_errors=True)
        for pattern in (f"{name}@*.json", f"{name}~*@*.json"):
            for p in (root / "evals").glob(pattern):
                p.unlink(missing_ok=True)
        ui.ws.forget_predictor(name)
        shutil.rmtree(d)

    await asyncio.to_thread(remove)
    if ui.deployments.remembers(name):
        await asyncio.to_thread(ui.deployments.forget, name)
    return {"deleted": name}


async def delete_dataset(request: Request, ui: UIContext) -> dict[str, Any]:
    """An uploaded data set's images; a linked folder is only unlinked (the folder itself is never touched).
    Evaluations made on it stay."""
    name = safe_name(request.path_params["name"], "dataset name")
    d = ui.ws.dataset_dir(name)
    _not_in_use(ui, d, f"data set {name!r}")
    link = ui.ws.root / "datasets" / f"{name}.link"
    if link.is_file():
        link.unlink()
        out = {"deleted": name, "note": f"unlinked; the folder {d} itself is untouched"}
    else:
        await asyncio.to_thread(shutil.rmtree, d)
        out = {"deleted": name}
    await asyncio.to_thread(shutil.rmtree, ui.ws.root / ".trash" / name, True)  # its image kept for Undo
    ui.ws.upload_report_path(name).unlink(missing_ok=True)
    return out


async def delete_job(request: Request, ui: UIContext) -> dict[str, Any]:
    return ui.jobs.delete(int(request.path_params["id"]))


async def model_formats(request: Request, ui: UIContext) -> dict[str, Any]:
    """The export formats as they stand for one model: what cannot be built from it is marked, with why."""
    from ...export import FORMATS
    from ...model.artifact import Artifact

    art = Artifact.load(ui.ws.model_dir(request.path_params["name"]))
    ref = art.file("reference")
    rows = []
    for f in FORMATS.values():
        why = None
        if art.model_path.suffix != ".onnx":
            why = f"exports start from an ONNX model, and this one is {art.format}"
        elif f.reference and (ref is None or not ref.is_file()):
            why = (
                "it is converted from the model's PyTorch program, which this model does not have (it came from "
                "an ONNX or TFLite file): import it from its PyTorch source or the zoo"
            )
        rows.append({"format": f.name, "precision": f.precision, "available": why is None, "why": why})
    return {"model": art.path.name, "formats": rows}


ROUTES = [
    Route("/api/compare", endpoint(compare_table)),
    Route("/api/compare/measure", endpoint(measure), methods=["POST"]),
    Route("/api/models/{name}", endpoint(delete_model), methods=["DELETE"]),
    Route("/api/models/{name}/export-formats", endpoint(model_formats)),
    Route("/api/datasets/{name}", endpoint(delete_dataset), methods=["DELETE"]),
    Route("/api/jobs/{id:int}", endpoint(delete_job), methods=["DELETE"]),
]
