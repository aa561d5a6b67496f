"""The Deploy tab: served models (start with an API key and on every address if asked, stop, start again,
forget, classify through the endpoint) and their metrics history."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from ...errors import NotFoundError, UserInputError
from .._http import UIContext, endpoint, read_body, read_json

if TYPE_CHECKING:
    from starlette.requests import Request


def _note_host(request: Request, ui: UIContext) -> None:
    """Remember the address the user reached the UI at: another machine can likely reach a server there."""
    host = request.url.hostname or ""
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return
    except ValueError:
        if host in ("", "localhost"):
            return
    ui.deployments.seen_as = host


async def _start(ui: UIContext, name: str, **settings: Any) -> dict[str, Any]:
    # spawned from the event loop's thread: the child's parent-death signal follows this thread
    dep = ui.deployments.start(name, ui.ws.model_dir(name), **settings)
    await asyncio.to_thread(ui.deployments.wait_ready, dep)
    return await asyncio.to_thread(ui.deployments.info, dep)


async def deployments(request: Request, ui: UIContext) -> dict[str, Any]:
    _note_host(request, ui)
    if request.method == "GET":
        return {"deployments": await asyncio.to_thread(ui.deployments.list)}
    params = await read_json(request)
    name = str(params.get("model", ""))
    return await _start(ui, name, api_key=params.get("api_key") or None, expose=bool(params.get("expose")))


async def deployment(request: Request, ui: UIContext) -> dict[str, Any]:
    _note_host(request, ui)
    return await asyncio.to_thread(ui.deployments.info, ui.deployments.get(request.path_params["name"]))


async def action(request: Request, ui: UIContext) -> Any:
    name, what = request.path_params["name"], request.path_params["action"]
    if what == "stop":
        return await asyncio.to_thread(ui.deployments.stop, name)
    if what == "start":  # start again with what it was started with before (a UI restart stopped it)
        s = ui.deployments.settings(name)
        return await _start(ui, name, api_key=s.api_key, expose=s.expose, ports=s.ports)
    if what == "forget":
        return await asyncio.to_thread(ui.deployments.forget, name)
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
