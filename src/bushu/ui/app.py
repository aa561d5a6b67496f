"""The web UI's HTTP side: a Starlette app over a workspace directory (workspace.py); a thin client
of bushu's API.

    WORKSPACE/models/<name>/       bushu artifacts (trained, imported or copied in)
    WORKSPACE/datasets/<name>/     folder-per-class images (uploaded zips are extracted here)
    WORKSPACE/bundles/<name>.zip   offline SDKs built for download
    WORKSPACE/evals/<model>@<dataset>.json   the latest `bushu eval --json` of a model on a dataset
    WORKSPACE/exports/<model>/<format>/      `bushu export` output (export.json + the artifact)
    WORKSPACE/serve/<model>/       the one-model repository and log of a running deployment
    WORKSPACE/jobs/<id>.log|.rc    background job output and exit status
    WORKSPACE/bushu-ui.sqlite      job state and linked datasets

Security: the CLI binds 127.0.0.1 unless told otherwise and then requires a token. Every request to
a loopback-bound UI must name a loopback Host (no DNS rebinding); every state-changing request must
carry the ``X-Bushu-UI`` header (a cross-site form cannot set it); uploads are size-limited and
streamed to disk; zip uploads go through safety.extract_image_zip.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BushuError, NotFoundError, UserInputError
from .deploy import Deployments
from .jobs import JobStore
from .safety import extract_image_zip, safe_name
from .workspace import Workspace

__all__ = ["UIConfig", "create_app"]

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
_CSRF_HEADER = "x-bushu-ui"


@dataclass(frozen=True)
class UIConfig:
    workspace: Path
    token: str | None = None
    loopback_only: bool = True  # check the Host header (the UI is bound to a loopback address)
    max_upload_mb: float = 200.0
    max_image_mb: float = 20.0
    max_jobs: int = 1


class _HttpError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


def create_app(config: UIConfig):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    ws = Workspace(Path(config.workspace))
    jobs = JobStore(ws.root, max_running=config.max_jobs)
    deployments = Deployments(ws.root)

    def check(request: Request) -> None:
        if config.loopback_only:
            raw = request.headers.get("host", "")
            host = raw.split("]")[0] + "]" if raw.startswith("[") else raw.rsplit(":", 1)[0]
            if host not in _LOOPBACK_HOSTS:
                raise _HttpError(403, f"Host {host!r} is not this machine's loopback address",
                                 hint="open the UI at http://127.0.0.1:PORT/")
        if config.token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ") or \
                request.cookies.get("bushu_token", "") or request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), config.token.encode()):
                raise _HttpError(401, "this UI needs its login token", hint="open the URL that `bushu ui` printed")
        if request.method not in ("GET", "HEAD") and request.headers.get(_CSRF_HEADER) != "1":
            raise _HttpError(403, f"state-changing requests need the {_CSRF_HEADER} header",
                             hint="send 'X-Bushu-UI: 1' (the UI's own pages do)")

    async def read_body(request: Request, limit_mb: float) -> bytes:
        limit = int(limit_mb * 1e6)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _HttpError(413, f"upload of {int(declared)} bytes is over the {limit}-byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _HttpError(413, f"upload is over the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def upload_to_file(request: Request, limit_mb: float) -> Path:
        limit = int(limit_mb * 1e6)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _HttpError(413, f"upload of {int(declared)} bytes is over the {limit}-byte limit",
                             hint="start the UI with a larger --max-upload-mb, or link a folder instead")
        fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".zip", dir=ws.root / "uploads")
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _HttpError(413, f"upload is over the {limit}-byte limit",
                                         hint="start the UI with a larger --max-upload-mb, or link a folder instead")
                    f.write(chunk)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def endpoint(fn):
        async def wrapped(request: Request):
            try:
                check(request)
                result = await fn(request)
            except _HttpError as e:
                return JSONResponse({"error": e.message, "hint": e.hint}, status_code=e.status)
            except BushuError as e:
                return JSONResponse({"error": e.message, "hint": e.hint}, status_code=getattr(e, "http_status", 400))
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return wrapped

    async def index(request: Request):
        resp = Response(_static("index.html"), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:",
                                 "X-Frame-Options": "DENY", "Cache-Control": "no-store"})
        if config.token and request.query_params.get("token") == config.token:
            resp.set_cookie("bushu_token", config.token, httponly=True, samesite="strict")
        return resp

    async def static(request: Request):
        name = request.path_params["name"]
        types = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in types:
            raise NotFoundError(f"no static file {name!r}")
        return Response(_static(name), media_type=types[name])

    async def api_models(request: Request):
        return {"models": await asyncio.to_thread(ws.models)}

    async def api_model(request: Request):
        return await asyncio.to_thread(ws.model_info, request.path_params["name"], True)

    async def api_classify(request: Request):
        body = await read_body(request, config.max_image_mb)
        if not body:
            raise UserInputError("the body is empty; send an image file (or the text, for a text model)")
        try:
            k = int(request.query_params.get("k", "5"))
        except ValueError:
            raise UserInputError("k must be an integer") from None
        preds = await asyncio.to_thread(ws.classify, request.path_params["name"], body, max(1, min(k, 100)))
        return {"model": request.path_params["name"], "predictions": preds}

    async def api_sdk(request: Request):
        name = request.path_params["name"]
        path = await asyncio.to_thread(ws.bundle, name)
        return FileResponse(path, media_type="application/zip", filename=path.name)

    async def api_bench(request: Request):
        name = request.path_params["name"]
        d = ws.model_dir(name)
        params = await _json(request)
        duration = float(params.get("duration", 1.0))
        if not 0 < duration <= 60:
            raise UserInputError("duration must be between 0 and 60 seconds")
        return jobs.submit("bench", f"bench {name}", ["bench", str(d), "--duration", str(duration),
                                                      "--batch", "1", "--in-process"], str(d))

    async def api_optimize(request: Request):
        name = request.path_params["name"]
        d = ws.model_dir(name)
        params = await _json(request)
        quant = str(params.get("quantize", "int8"))
        if quant not in ("int8", "fp16", "dynamic"):
            raise UserInputError(f"unknown quantization {quant!r}", hint="int8, fp16 or dynamic")
        out_name = safe_name(params.get("name") or f"{name}-{quant}", "model name")
        out = ws.root / "models" / out_name
        if out.exists():
            raise _HttpError(409, f"model {out_name!r} already exists", hint="choose another name")
        argv = ["optimize", str(d), "-o", str(out), "--quantize", quant]
        if params.get("dataset"):
            data = ws.dataset_dir(str(params["dataset"]))
            argv += ["--calib", str(data), "--data", str(data)]  # calibrate on it, and measure accuracy on it
        elif quant == "int8":
            raise UserInputError("int8 quantization calibrates on images: choose a dataset",
                                 hint="or choose 'dynamic', which needs none")
        return jobs.submit("optimize", f"optimize {name} → {out_name} ({quant})", argv, str(out))

    async def api_export(request: Request):
        from ..export import FORMATS

        name = request.path_params["name"]
        d = ws.model_dir(name)
        params = await _json(request)
        fmt = str(params.get("format", ""))
        if fmt not in FORMATS:
            raise UserInputError(f"unknown export format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
        out = ws.root / "exports" / safe_name(name) / fmt
        argv = ["export", str(d), "--format", fmt, "-o", str(out)]
        if params.get("dataset"):
            argv += ["--data", str(ws.dataset_dir(str(params["dataset"])))]
        return jobs.submit("export", f"export {name} → {fmt}", argv, str(out))

    async def api_export_formats(request: Request):
        from ..export import FORMATS

        return {"formats": [{k: f.row()[k] for k in ("format", "precision", "runs_here", "description")}
                            for f in FORMATS.values()]}

    async def api_model_mistake(request: Request):
        data = await asyncio.to_thread(ws.train_mistake_thumb, request.path_params["name"], request.path_params["i"])
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})

    async def api_evals(request: Request):
        if request.method == "GET":
            return {"evals": await asyncio.to_thread(ws.evals)}
        params = await _json(request)
        model, dataset = str(params.get("model", "")), str(params.get("dataset", ""))
        d, data = ws.model_dir(model), ws.dataset_dir(dataset)
        out = ws.eval_path(model, dataset)
        # --no-record: the dataset may be the training data; the artifact keeps its held-out accuracy
        argv = ["eval", str(d), "--data", str(data), "--json", "--no-record"]
        job = jobs.submit("eval", f"evaluate {model} on {dataset}", argv, str(out))
        return {**job, "key": out.stem}

    async def api_eval(request: Request):
        return await asyncio.to_thread(ws.eval_result, request.path_params["key"])

    async def api_eval_mistake(request: Request):
        data = await asyncio.to_thread(ws.eval_mistake_thumb, request.path_params["key"], request.path_params["i"])
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=60"})

    async def api_deployments(request: Request):
        if request.method == "GET":
            return {"deployments": await asyncio.to_thread(deployments.list)}
        params = await _json(request)
        name = str(params.get("model", ""))
        # spawned from the event loop's thread: the child's parent-death signal follows this thread
        dep = deployments.start(name, ws.model_dir(name))
        await asyncio.to_thread(deployments.wait_ready, dep)
        return await asyncio.to_thread(deployments.info, dep)

    async def api_deployment(request: Request):
        return await asyncio.to_thread(deployments.info, deployments.get(request.path_params["name"]))

    async def api_deployment_action(request: Request):
        name, action = request.path_params["name"], request.path_params["action"]
        if action == "stop":
            return await asyncio.to_thread(deployments.stop, name)
        if action == "classify":
            body = await read_body(request, config.max_image_mb)
            if not body:
                raise UserInputError("the body is empty; send an image file")
            return await asyncio.to_thread(deployments.classify, name, body, 5, request.headers.get("content-type", ""))
        raise NotFoundError(f"no deployment action {action!r}")

    async def api_datasets(request: Request):
        if request.method == "GET":
            return {"datasets": await asyncio.to_thread(ws.datasets)}
        name = safe_name(request.query_params.get("name", ""), "dataset name")
        dest = ws.root / "datasets" / name
        if dest.exists() or dest.with_suffix(".link").exists():
            raise _HttpError(409, f"dataset {name!r} already exists", hint="choose another name")
        tmp = await upload_to_file(request, config.max_upload_mb)
        try:
            await asyncio.to_thread(extract_image_zip, tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return await asyncio.to_thread(ws.dataset_info, name)

    async def api_dataset_link(request: Request):
        params = await _json(request)
        name = safe_name(params.get("name", ""), "dataset name")
        path = Path(str(params.get("path", ""))).expanduser()
        if not path.is_absolute() or not path.is_dir():
            raise UserInputError(f"{str(path)!r} is not an absolute path to a folder on this machine")
        link = ws.root / "datasets" / f"{name}.link"
        if link.exists() or (ws.root / "datasets" / name).exists():
            raise _HttpError(409, f"dataset {name!r} already exists", hint="choose another name")
        from ..data.images import ImageFolder

        ImageFolder.scan(path)  # a clear error now rather than at training time
        link.write_text(str(path.resolve()))
        return await asyncio.to_thread(ws.dataset_info, name)

    async def api_dataset(request: Request):
        return await asyncio.to_thread(ws.dataset_info, request.path_params["name"])

    async def api_thumb(request: Request):
        try:
            index = int(request.query_params.get("i", "0"))
        except ValueError:
            raise UserInputError("i must be an integer") from None
        data = await asyncio.to_thread(ws.thumbnail, request.path_params["name"], request.query_params.get("cls", ""),
                                       index)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})

    async def api_jobs(request: Request):
        if request.method == "GET":
            return {"jobs": jobs.list()}
        params = await _json(request)
        kind = params.get("kind")
        if kind == "train":
            data = ws.dataset_dir(str(params.get("dataset", "")))
            name = safe_name(params.get("name") or f"{data.name}-model", "model name")
            out = ws.root / "models" / name
            budget = str(params.get("budget", "2m"))
            argv = ["train", str(data), "-o", str(out), "--budget", budget,
                    "--work-dir", str(ws.root / "jobs" / f"{name}.work")]
            if params.get("image_size"):
                argv += ["--image-size", str(int(params["image_size"]))]
            if params.get("backbone"):
                argv += ["--backbone", safe_name(params["backbone"], "backbone")]
            return jobs.submit("train", f"train {name} on {data.name} ({budget})", argv, str(out))
        if kind == "import":
            src = safe_name(str(params.get("source", "")), "zoo model")
            name = safe_name(params.get("name") or src, "model name")
            out = ws.root / "models" / name
            return jobs.submit("import", f"import {src}", ["import", src, "-o", str(out)], str(out))
        raise UserInputError(f"unknown job kind {kind!r}", hint="kind is 'train' or 'import'")

    async def api_job(request: Request):
        return jobs.get(int(request.path_params["id"]), log_lines=200)

    async def api_job_action(request: Request):
        job_id, action = int(request.path_params["id"]), request.path_params["action"]
        if action == "cancel":
            return jobs.cancel(job_id)
        if action == "retry":
            return jobs.retry(job_id)
        raise NotFoundError(f"no job action {action!r}")

    async def _json(request: Request) -> dict[str, Any]:
        body = await read_body(request, 1)
        if not body.strip():
            return {}
        try:
            obj = json.loads(body)
        except ValueError as e:
            raise UserInputError(f"the body is not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise UserInputError("the body must be a JSON object")
        return obj

    routes = [
        Route("/", endpoint(index)),
        Route("/static/{name}", endpoint(static)),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/models", endpoint(api_models)),
        Route("/api/models/{name}", endpoint(api_model)),
        Route("/api/models/{name}/classify", endpoint(api_classify), methods=["POST"]),
        Route("/api/models/{name}/sdk", endpoint(api_sdk)),
        Route("/api/models/{name}/bench", endpoint(api_bench), methods=["POST"]),
        Route("/api/models/{name}/optimize", endpoint(api_optimize), methods=["POST"]),
        Route("/api/models/{name}/export", endpoint(api_export), methods=["POST"]),
        Route("/api/models/{name}/mistakes/{i:int}", endpoint(api_model_mistake)),
        Route("/api/export-formats", endpoint(api_export_formats)),
        Route("/api/evals", endpoint(api_evals), methods=["GET", "POST"]),
        Route("/api/evals/{key}", endpoint(api_eval)),
        Route("/api/evals/{key}/mistakes/{i:int}", endpoint(api_eval_mistake)),
        Route("/api/deployments", endpoint(api_deployments), methods=["GET", "POST"]),
        Route("/api/deployments/{name}", endpoint(api_deployment)),
        Route("/api/deployments/{name}/{action}", endpoint(api_deployment_action), methods=["POST"]),
        Route("/api/datasets", endpoint(api_datasets), methods=["GET", "POST"]),
        Route("/api/datasets/link", endpoint(api_dataset_link), methods=["POST"]),
        Route("/api/datasets/{name}", endpoint(api_dataset)),
        Route("/api/datasets/{name}/thumb", endpoint(api_thumb)),
        Route("/api/jobs", endpoint(api_jobs), methods=["GET", "POST"]),
        Route("/api/jobs/{id:int}", endpoint(api_job)),
        Route("/api/jobs/{id:int}/{action}", endpoint(api_job_action), methods=["POST"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        jobs.start()
        try:
            yield
        finally:
            await asyncio.to_thread(deployments.stop_all)
            jobs.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.workspace = ws
    app.state.jobs = jobs
    app.state.deployments = deployments
    return app


def clean_uploads(workspace: Path) -> None:
    shutil.rmtree(Path(workspace) / "uploads", ignore_errors=True)
