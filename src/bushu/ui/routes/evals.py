"""The Evaluate tab: evaluation jobs (`bushu eval --json`), their results and mistakes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from .._http import UIContext, endpoint, read_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response


async def evals(request: Request, ui: UIContext) -> dict[str, Any]:
    if request.method == "GET":
        return {"evals": await asyncio.to_thread(ui.ws.evals)}
    params = await read_json(request)
    model, dataset = str(params.get("model", "")), str(params.get("dataset", ""))
    d, data = ui.ws.model_dir(model), ui.ws.dataset_dir(dataset)
    out = ui.ws.eval_path(model, dataset)
    # --no-record: the dataset may be the training data; the artifact keeps its held-out accuracy
    argv = ["eval", str(d), "--data", str(data), "--json", "--no-record"]
    job = ui.jobs.submit("eval", f"evaluate {model} on {dataset}", argv, str(out))
    return {**job, "key": out.stem}


async def result(request: Request, ui: UIContext) -> dict[str, Any]:
    return await asyncio.to_thread(ui.ws.eval_result, request.path_params["key"])


async def mistake(request: Request, ui: UIContext) -> Response:
    from starlette.responses import Response

    data = await asyncio.to_thread(ui.ws.eval_mistake_thumb, request.path_params["key"], request.path_params["i"])
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=60"})


ROUTES = [
    Route("/api/evals", endpoint(evals), methods=["GET", "POST"]),
    Route("/api/evals/{key}", endpoint(result)),
    Route("/api/evals/{key}/mistakes/{i:int}", endpoint(mistake)),
]
