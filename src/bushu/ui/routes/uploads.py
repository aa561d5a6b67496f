"""Your own model (the Models tab's upload form): an .onnx, .pt2 or zipped Hugging Face folder, checked
(model_upload), then imported by a background ``bushu import`` job with the inputs the form states.

    POST /api/uploads/model?filename=FILE[&name=NAME][&input=NAME:SHAPE[:DTYPE]]...   body: the file
"""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from .. import model_upload
from .._http import HttpError, UIContext, endpoint, upload_to_file
from ..safety import safe_name

if TYPE_CHECKING:
    from starlette.requests import Request


async def upload_model(request: Request, ui: UIContext) -> dict[str, Any]:
    filename = request.query_params.get("filename", "")
    model_upload.model_kind(filename)  # the wrong kind of file: refused before its bytes are read
    inputs = model_upload.check_inputs(request.query_params.getlist("input"))
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    name = safe_name(request.query_params.get("name") or stem, "model name")
    out = ui.ws.root / "models" / name
    if out.exists():
        raise HttpError(409, f"model {name!r} already exists", hint="choose another name")
    if any(j["output"] == str(out) and j["status"] in ("queued", "running") for j in ui.jobs.list()):
        raise HttpError(409, f"model {name!r} is being imported now", hint="wait for that job, or choose another name")
    tmp = await upload_to_file(request, ui.config.max_upload_mb, ui.ws.root / "uploads")
    try:
        src = await asyncio.to_thread(model_upload.place_model, tmp, filename, ui.ws.root / "sources" / name)
    finally:
        tmp.unlink(missing_ok=True)
    argv = ["import", str(src), "-o", str(out)]
    for spec in inputs:
        argv += ["--input", spec]
    shown = PurePosixPath(filename.replace("\\", "/")).name
    return ui.jobs.submit("import", f"import {shown} → {name}", argv, str(out))


ROUTES = [Route("/api/uploads/model", endpoint(upload_model), methods=["POST"])]
