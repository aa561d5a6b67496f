"""The Models tab: the list, one model's page, try-it, the offline SDK, bench / optimize / export jobs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from ...errors import UserInputError
from .._http import HttpError, UIContext, endpoint, read_body, read_json
from ..safety import safe_name

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response


async def models(request: Request, ui: UIContext) -> dict[str, Any]:
    return {"models": await asyncio.to_thread(ui.ws.models)}


async def model(request: Request, ui: UIContext) -> dict[str, Any]:
    return await asyncio.to_thread(ui.ws.model_info, request.path_params["name"], True)


async def classify(request: Request, ui: UIContext) -> dict[str, Any]:
    body = await read_body(request, ui.config.max_image_mb)
    if not body:
        raise UserInputError("the body is empty; send an image file (or the text, for a text model)")
    try:
        k = int(request.query_params.get("k", "5"))
    except ValueError:
        raise UserInputError("k must be an integer") from None
    out = await asyncio.to_thread(ui.ws.classify, request.path_params["name"], body, max(1, min(k, 100)))
    return {"model": request.path_params["name"], **out}


async def report(request: Request, ui: UIContext) -> Response:
    from starlette.responses import FileResponse

    from ...errors import NotFoundError

    path = ui.ws.model_dir(request.path_params["name"]) / "report.html"
    if not path.is_file():
        raise NotFoundError(
            f"model {request.path_params['name']!r} has no training report",
            hint="only models trained by bushu have one",
        )
    # bushu's own self-contained page: no scripts of its own run on the UI's origin
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return FileResponse(path, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": csp})


async def export_download(request: Request, ui: UIContext) -> Response:
    from starlette.responses import FileResponse

    path = await asyncio.to_thread(ui.ws.export_zip, request.path_params["name"], request.path_params["format"])
    return FileResponse(path, media_type="application/zip", filename=path.name)


async def sdk(request: Request, ui: UIContext) -> Response:
    from starlette.responses import FileResponse

    path = await asyncio.to_thread(ui.ws.bundle, request.path_params["name"])
    return FileResponse(path, media_type="application/zip", filename=path.name)


async def bench(request: Request, ui: UIContext) -> dict[str, Any]:
    name = request.path_params["name"]
    d = ui.ws.model_dir(name)
    params = await read_json(request)
    duration = float(params.get("duration", 1.0))
    if not 0 < duration <= 60:
        raise UserInputError("duration must be between 0 and 60 seconds")
    return ui.jobs.submit(
        "bench", f"bench {name}", ["bench", str(d), "--duration", str(duration), "--batch", "1", "--in-process"], str(d)
    )


async def optimize(request: Request, ui: UIContext) -> dict[str, Any]:
    name = request.path_params["name"]
    d = ui.ws.model_dir(name)
    params = await read_json(request)
    quant = str(params.get("quantize", "int8"))
    if quant not in ("int8", "fp16", "dynamic"):
        raise UserInputError(f"unknown quantization {quant!r}", hint="int8, fp16 or dynamic")
    out_name = safe_name(params.get("name") or f"{name}-{quant}", "model name")
    out = ui.ws.root / "models" / out_name
    if out.exists():
        raise HttpError(409, f"model {out_name!r} already exists", hint="choose another name")
    argv = ["optimize", str(d), "-o", str(out), "--quantize", quant]
    if params.get("dataset"):
        data = ui.ws.dataset_dir(str(params["dataset"]))
        argv += ["--calib", str(data), "--data", str(data)]  # calibrate on it, and measure accuracy on it
    elif quant == "int8":
        raise UserInputError(
            "int8 quantization calibrates on images: choose a dataset", hint="or choose 'dynamic', which needs none"
        )
    return ui.jobs.submit("optimize", f"optimize {name} → {out_name} ({quant})", argv, str(out))


async def export(request: Request, ui: UIContext) -> dict[str, Any]:
    from ...export import FORMATS

    name = request.path_params["name"]
    d = ui.ws.model_dir(name)
    params = await read_json(request)
    fmt = str(params.get("format", ""))
    if fmt not in FORMATS:
        raise UserInputError(f"unknown export format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    out = ui.ws.root / "exports" / safe_name(name) / fmt
    argv = ["export", str(d), "--format", fmt, "-o", str(out)]
    if params.get("dataset"):
        argv += ["--data", str(ui.ws.dataset_dir(str(params["dataset"])))]
    elif FORMATS[fmt].row()["precision"] == "int8":
        raise UserInputError(
            f"{fmt} calibrates on images: choose a calibration data set",
            hint="about 100 representative images; or pick a format that is not int8",
        )
    return ui.jobs.submit("export", f"export {name} → {fmt}", argv, str(out))


async def export_formats(request: Request, ui: UIContext) -> dict[str, Any]:
    from ...export import FORMATS

    return {
        "formats": [
            {k: f.row()[k] for k in ("format", "precision", "runs_here", "description")} for f in FORMATS.values()
        ]
    }


async def mistake(request: Request, ui: UIContext) -> Response:
    from starlette.responses import Response

    data = await asyncio.to_thread(ui.ws.train_mistake_thumb, request.path_params["name"], request.path_params["i"])
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


ROUTES = [
    Route("/api/models", endpoint(models)),
    Route("/api/models/{name}", endpoint(model)),
    Route("/api/models/{name}/classify", endpoint(classify), methods=["POST"]),
    Route("/api/models/{name}/sdk", endpoint(sdk)),
    Route("/api/models/{name}/report", endpoint(report)),
    Route("/api/models/{name}/exports/{format}.zip", endpoint(export_download)),
    Route("/api/models/{name}/bench", endpoint(bench), methods=["POST"]),
    Route("/api/models/{name}/optimize", endpoint(optimize), methods=["POST"]),
    Route("/api/models/{name}/export", endpoint(export), methods=["POST"]),
    Route("/api/models/{name}/mistakes/{i:int}", endpoint(mistake)),
    Route("/api/export-formats", endpoint(export_formats)),
]
