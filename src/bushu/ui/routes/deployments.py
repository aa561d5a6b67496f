"""The Deploy tab: served models (start, stop, classify through the endpoint)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from ...errors import NotFoundError, UserInputError
from .._http import UIContext, endpoint, read_body, read_json

if TYPE_CHECKING:
    from starlette.requests import Request


async def deployments(request: Request, ui: UIContext) -> dict[str, Any]:
    if request.method == "GET":
        return {"deployments": await asyncio.to_thread(ui.deployments.list)}
    params = await read_json(request)
    name = str(params.get("model", ""))
    # spawned from the event loop's thread: the child's parent-death signal follows this thread
    dep = ui.deployments.start(name, ui.ws.model_dir(name))
    await asyncio.to_thread(ui.deployments.wait_ready, dep)
    return await asyncio.to_thread(ui.deployments.info, dep)


async def deployment(request: Request, ui: UIContext) -> dict[str, Any]:
    return await asyncio.to_thread(ui.deployments.info, ui.deployments.get(request.path_params["name"]))


async def action(request: Request, ui: UIContext) -> Any:
    name, what = request.path_params["name"], request.path_params["action"]
    if what == "stop":
        return await asyncio.to_thread(ui.deployments.stop, name)
    if what == "classify":
        body = await read_body(request, ui.config.max_image_mb)
        if not body:
            raise UserInputError("the body is empty; send an image file")
        return await asyncio.to_thread(ui.deployments.classify, name, body, 5, request.headers.get("content-type", ""))
    raise NotFoundError(f"no deployment action {what!r}")


ROUTES = [
    Route("/api/deployments", endpoint(deployments), methods=["GET", "POST"]),
    Route("/api/deployments/{name}", endpoint(deployment)),
    Route("/api/deployments/{name}/{action}", endpoint(action), methods=["POST"]),
]
