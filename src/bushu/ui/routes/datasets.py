"""The Datasets tab: the list, zip uploads (through safety.extract_image_zip), linked folders, thumbnails."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from ...errors import UserInputError
from .._http import HttpError, UIContext, endpoint, read_json, upload_to_file
from ..safety import extract_image_zip, safe_name

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response


async def datasets(request: Request, ui: UIContext) -> dict[str, Any]:
    if request.method == "GET":
        return {"datasets": await asyncio.to_thread(ui.ws.datasets)}
    name = safe_name(request.query_params.get("name", ""), "dataset name")
    dest = ui.ws.root / "datasets" / name
    if dest.exists() or dest.with_suffix(".link").exists():
        raise HttpError(409, f"dataset {name!r} already exists", hint="choose another name")
    tmp = await upload_to_file(request, ui.config.max_upload_mb, ui.ws.root / "uploads")
    try:
        report = await asyncio.to_thread(extract_image_zip, tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    ui.ws.upload_report_path(name).write_text(json.dumps(report.as_dict()))
    return await asyncio.to_thread(ui.ws.dataset_info, name)


async def link(request: Request, ui: UIContext) -> dict[str, Any]:
    params = await read_json(request)
    name = safe_name(params.get("name", ""), "dataset name")
    path = Path(str(params.get("path", ""))).expanduser()
    if not path.is_absolute() or not path.is_dir():
        raise UserInputError(f"{str(path)!r} is not an absolute path to a folder on this machine")
    link = ui.ws.root / "datasets" / f"{name}.link"
    if link.exists() or (ui.ws.root / "datasets" / name).exists():
        raise HttpError(409, f"dataset {name!r} already exists", hint="choose another name")
    from ...data.images import ImageFolder

    ImageFolder.scan(path)  # a clear error now rather than at training time
    link.write_text(str(path.resolve()))
    return await asyncio.to_thread(ui.ws.dataset_info, name)


async def dataset(request: Request, ui: UIContext) -> dict[str, Any]:
    return await asyncio.to_thread(ui.ws.dataset_info, request.path_params["name"])


async def thumb(request: Request, ui: UIContext) -> Response:
    from starlette.responses import Response

    try:
        index = int(request.query_params.get("i", "0"))
    except ValueError:
        raise UserInputError("i must be an integer") from None
    data = await asyncio.to_thread(
        ui.ws.thumbnail, request.path_params["name"], request.query_params.get("cls", ""), index
    )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})  # images can be edited


ROUTES = [
    Route("/api/datasets", endpoint(datasets), methods=["GET", "POST"]),
    Route("/api/datasets/link", endpoint(link), methods=["POST"]),
    Route("/api/datasets/{name}", endpoint(dataset)),
    Route("/api/datasets/{name}/thumb", endpoint(thumb)),
]
