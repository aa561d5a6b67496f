"""A data set's images (the Datasets tab's browser): list them per class, a thumbnail of each, delete one,
relabel one (move it to another class), add one (a file or a camera capture). The edits are
dataset_edit's; a linked folder (the user's own, elsewhere on the machine) is browsed but never changed.

    GET    /api/datasets/{name}/images                      {"classes": {cls: [{"file", ...}]}, "editable"}
    POST   /api/datasets/{name}/images?cls=&filename=[&create=1]   body: the image file
    GET    /api/datasets/{name}/image?cls=&file=[&size=]    a JPEG thumbnail
    DELETE /api/datasets/{name}/image?cls=&file=            {"deleted", "undo": token, "dataset"}
    POST   /api/datasets/{name}/image/relabel               {"cls", "file", "to"[, "create"]}
    POST   /api/datasets/{name}/image/restore               {"undo": token}: the last deleted image put back

A deleted image is kept aside (the workspace's .trash/<data set>/<token>/<class>/<file>) until the next
delete in that data set, so the page's "Undo" can put it back; a relabel is undone by moving it back.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from ...errors import NotFoundError, UserInputError
from .. import dataset_edit
from .._http import HttpError, UIContext, endpoint, read_body, read_json
from ..safety import safe_name

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response


_TOKEN = re.compile(r"[0-9a-f]{16}")


def _linked(ui: UIContext, name: str) -> bool:
    return (ui.ws.root / "datasets" / f"{safe_name(name, 'dataset name')}.link").is_file()


def _editable(ui: UIContext, name: str) -> Path:
    """The folder of an uploaded data set (in the workspace); a linked folder is refused (409)."""
    root = ui.ws.dataset_dir(name)  # 404 for an unknown data set
    if _linked(ui, name):
        raise HttpError(
            409,
            f"data set {name!r} is a folder linked from this machine ({root}); the UI does not change it",
            hint="edit that folder itself, or upload it as a zip to edit it here",
        )
    return root


def _param(request: Request, key: str) -> str:
    value = request.query_params.get(key, "")
    if not value:
        raise UserInputError(f"missing {key!r}", hint=f"say which {'class' if key == 'cls' else 'image'} (?{key}=...)")
    return value


async def images(request: Request, ui: UIContext) -> dict[str, Any]:
    name = request.path_params["name"]
    if request.method == "POST":
        return await _add(request, ui, name)
    root = await asyncio.to_thread(ui.ws.dataset_dir, name)
    classes = await asyncio.to_thread(dataset_edit.list_images, root)
    return {"name": name, "editable": not _linked(ui, name), "classes": classes}


async def _add(request: Request, ui: UIContext, name: str) -> dict[str, Any]:
    root = _editable(ui, name)
    cls, filename = _param(request, "cls"), request.query_params.get("filename", "") or "image"
    data = await read_body(request, ui.config.max_image_mb)
    create = request.query_params.get("create") in ("1", "true")
    ref = await asyncio.to_thread(dataset_edit.add_image, root, cls, filename, data, create)
    return {**ref.as_dict(), "dataset": await asyncio.to_thread(ui.ws.dataset_info, name)}


async def image(request: Request, ui: UIContext) -> Any:
    name = request.path_params["name"]
    cls, file = _param(request, "cls"), _param(request, "file")
    if request.method == "DELETE":
        root = _editable(ui, name)
        token = secrets.token_hex(8)
        trash = _trash(ui, name)
        await asyncio.to_thread(dataset_edit.delete_image, root, cls, file, trash / token)
        for old in trash.iterdir():  # one level of undo: only the last deleted image is kept
            if old.name != token:
                await asyncio.to_thread(shutil.rmtree, old, True)
        return {
            "deleted": {"cls": cls, "file": file},
            "undo": token,
            "dataset": await asyncio.to_thread(ui.ws.dataset_info, name),
        }
    return await _thumbnail(request, ui, name, cls, file)


async def _thumbnail(request: Request, ui: UIContext, name: str, cls: str, file: str) -> Response:
    from starlette.responses import Response

    from ..workspace import _thumb

    try:
        size = int(request.query_params.get("size", "128"))
    except ValueError:
        raise UserInputError("size must be an integer") from None
    if not 16 <= size <= 512:
        raise UserInputError("size must be between 16 and 512 pixels")
    root = await asyncio.to_thread(ui.ws.dataset_dir, name)
    path = await asyncio.to_thread(dataset_edit.find_image, root, cls, file)
    try:
        data = await asyncio.to_thread(_thumb, path, root, size)
    except (OSError, SyntaxError, ValueError) as e:  # a damaged file in a linked folder: PIL's errors
        raise UserInputError(f"{file} is not an image we can read ({type(e).__name__})") from None
    # the page adds the file's mtime to the address (?v=): a changed file is a new address
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


async def relabel(request: Request, ui: UIContext) -> dict[str, Any]:
    name = request.path_params["name"]
    root = _editable(ui, name)
    params = await read_json(request)
    cls, file, to = (str(params.get(k) or "") for k in ("cls", "file", "to"))
    if not (cls and file and to):
        raise UserInputError("relabel needs the image's class and file, and the class to move it to (cls, file, to)")
    create = params.get("create") in (True, 1, "1", "true")
    ref = await asyncio.to_thread(dataset_edit.relabel_image, root, cls, file, to, create)
    return {**ref.as_dict(), "dataset": await asyncio.to_thread(ui.ws.dataset_info, name)}


def _trash(ui: UIContext, name: str) -> Path:
    """Where a data set's last deleted image is kept for Undo (outside the data set: never trained on)."""
    return ui.ws.root / ".trash" / safe_name(name, "dataset name")


async def restore(request: Request, ui: UIContext) -> dict[str, Any]:
    name = request.path_params["name"]
    root = _editable(ui, name)
    token = str((await read_json(request)).get("undo") or "")
    kept_dir = _trash(ui, name) / token
    kept = sorted(p for p in kept_dir.glob("*/*") if p.is_file()) if _TOKEN.fullmatch(token) else []
    if not kept:
        raise NotFoundError(
            "there is no deleted image to put back", hint="only the last image deleted in this data set can be"
        )
    ref = await asyncio.to_thread(dataset_edit.restore_image, root, kept[0])
    await asyncio.to_thread(shutil.rmtree, kept_dir, True)
    return {**ref.as_dict(), "dataset": await asyncio.to_thread(ui.ws.dataset_info, name)}


ROUTES = [
    Route("/api/datasets/{name}/images", endpoint(images), methods=["GET", "POST"]),
    Route("/api/datasets/{name}/image", endpoint(image), methods=["GET", "DELETE"]),
    Route("/api/datasets/{name}/image/relabel", endpoint(relabel), methods=["POST"]),
    Route("/api/datasets/{name}/image/restore", endpoint(restore), methods=["POST"]),
]
