"""Background jobs: train and import start here (the other tabs submit theirs); list, follow, cancel, retry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from ...errors import NotFoundError, UserInputError
from .._http import UIContext, endpoint, read_json
from ..safety import safe_name

if TYPE_CHECKING:
    from starlette.requests import Request


async def jobs(request: Request, ui: UIContext) -> dict[str, Any]:
    if request.method == "GET":
        return {"jobs": ui.jobs.list()}
    params = await read_json(request)
    kind = params.get("kind")
    if kind == "train":
        return _train(params, ui)
    if kind == "import":
        from ...model import zoo

        src = zoo.get(str(params.get("source", ""))).name  # an unknown name: "did you mean", not a mangled file name
        name = safe_name(params.get("name") or src, "model name")
        out = ui.ws.root / "models" / name
        return ui.jobs.submit("import", f"import {src}", ["import", src, "-o", str(out)], str(out))
    raise UserInputError(f"unknown job kind {kind!r}", hint="kind is 'train' or 'import'")


def _train(params: dict[str, Any], ui: UIContext) -> dict[str, Any]:
    data = ui.ws.dataset_dir(str(params.get("dataset", "")))
    name = safe_name(params.get("name") or f"{data.name}-model", "model name")
    out = ui.ws.root / "models" / name
    budget = str(params.get("budget", "2m"))
    argv = [
        "train",
        str(data),
        "-o",
        str(out),
        "--budget",
        budget,
        "--work-dir",
        str(ui.ws.root / "jobs" / f"{name}.work"),
    ]
    if params.get("image_size"):
        argv += ["--image-size", str(int(params["image_size"]))]
    if params.get("backbone"):
        argv += ["--backbone", safe_name(params["backbone"], "backbone")]
    return ui.jobs.submit("train", f"train {name} on {data.name} ({budget})", argv, str(out))


async def zoo_models(request: Request, ui: UIContext) -> dict[str, Any]:
    """What the zoo can import here: each model with its size, input and whether its weights are installed."""
    from ...errors import BushuError
    from ...model import zoo

    rows = []
    for m in zoo.ZOO.values():
        try:
            ready = not m.pretrained or zoo.weights_path(m).is_file()
        except BushuError:
            ready = False
        rows.append({**m.describe(), "installed": ready})
    return {"models": rows}


async def job(request: Request, ui: UIContext) -> dict[str, Any]:
    return ui.jobs.get(int(request.path_params["id"]), log_lines=200)


async def action(request: Request, ui: UIContext) -> dict[str, Any]:
    job_id, what = int(request.path_params["id"]), request.path_params["action"]
    if what == "cancel":
        return ui.jobs.cancel(job_id)
    if what == "retry":
        return ui.jobs.retry(job_id)
    raise NotFoundError(f"no job action {what!r}")


ROUTES = [
    Route("/api/jobs", endpoint(jobs), methods=["GET", "POST"]),
    Route("/api/zoo", endpoint(zoo_models)),
    Route("/api/jobs/{id:int}", endpoint(job)),
    Route("/api/jobs/{id:int}/{action}", endpoint(action), methods=["POST"]),
]
