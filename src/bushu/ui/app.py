"""The web UI's HTTP side: a Starlette app over a workspace directory; a thin client of bushu's API.

    WORKSPACE/models/<name>/       bushu artifacts (trained, imported or copied in)
    WORKSPACE/datasets/<name>/     folder-per-class images (uploaded zips are extracted here)
    WORKSPACE/bundles/<name>.zip   offline SDKs built for download
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
import io
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BushuError, NotFoundError, UserInputError
from .jobs import JobStore
from .safety import extract_image_zip, safe_name

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


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        for d in ("models", "datasets", "bundles", "jobs", "uploads"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self._models: dict[str, tuple[float, Any]] = {}  # name -> (mtime, (artifact, backend))
        self._lock = threading.Lock()

    # -- models -----------------------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        d = self.root / "models" / safe_name(name, "model name")
        if not (d / "bushu.yaml").is_file():
            raise NotFoundError(f"no model {name!r} in the workspace")
        return d

    def models(self) -> list[dict[str, Any]]:
        out = []
        for d in sorted((self.root / "models").iterdir()):
            if (d / "bushu.yaml").is_file():
                try:
                    out.append(self.model_info(d.name))
                except BushuError as e:
                    out.append({"name": d.name, "error": e.message})
        return out

    def model_info(self, name: str) -> dict[str, Any]:
        from ..model.artifact import Artifact

        art = Artifact.load(self.model_dir(name))
        m = art.metrics
        bench = [{k: r.get(k) for k in ("backend", "batch", "threads", "precision", "p50_ms", "p99_ms",
                                        "throughput", "peak_rss_mb")} for r in (m.get("bench") or {}).get("rows", [])
                 if r.get("p50_ms") is not None]  # rows of backends that were skipped carry no numbers
        train = m.get("train") or {}
        ev = m.get("eval") or {}
        accuracy = ev.get("accuracy", train.get("val_accuracy"))
        return {"name": name, "task": art.task, "format": art.format, "size_mb": round(art.size_bytes / 1e6, 2),
                "inputs": [str(s) for s in art.inputs], "outputs": [str(s) for s in art.outputs],
                "labels": (art.labels or [])[:1000], "n_labels": len(art.labels or []),
                "accuracy": accuracy, "bench": bench,
                "train": {k: train.get(k) for k in ("backbone", "head", "val_accuracy", "macro_f1", "trials",
                                                    "image_size") if k in train},
                "confusion": train.get("confusion") or ev.get("confusion"),
                "created": art.provenance.get("created"),
                "steps": [s.get("command") for s in art.provenance.get("steps", [])],
                "can_classify": art.preprocess is not None and art.model_path.suffix == ".onnx"}

    def classify(self, name: str, image: bytes, k: int) -> list[dict[str, Any]]:
        from ..model.artifact import Artifact
        from ..model.processing import load_image, preprocess_image, top_k
        from ..runtime import load_backend

        d = self.model_dir(name)
        mtime = (d / "bushu.yaml").stat().st_mtime
        with self._lock:
            cached = self._models.get(name)
            if cached is None or cached[0] != mtime:
                art = Artifact.load(d)
                if art.preprocess is None:
                    raise UserInputError(f"model {name!r} records no image pre-processing; it cannot classify images")
                backend = load_backend(art.model_path, threads=1) if art.model_path.suffix == ".onnx" \
                    else load_backend(art.model_path)
                self._models[name] = cached = (mtime, (art, backend))
            art, backend = cached[1]
            x = preprocess_image(load_image(image), art.preprocess)[None]
            out = backend.infer({art.inputs[0].name: x})
        logits = out[art.outputs[0].name]
        preds = top_k(logits.reshape(logits.shape[0], -1), art.labels, art.postprocess, k=k)[0]
        return [{"label": lbl, "index": i, "score": s} for i, lbl, s in preds]

    def bundle(self, name: str) -> Path:
        from ..package.bundle import build_bundle

        d = self.model_dir(name)
        out = self.root / "bundles" / f"{safe_name(name)}-sdk.zip"
        newest = max(p.stat().st_mtime for p in d.iterdir() if p.is_file())
        if not out.is_file() or out.stat().st_mtime < newest:
            build_bundle(d, out)
        return out

    # -- datasets ---------------------------------------------------------------------------------------
    def dataset_dir(self, name: str) -> Path:
        d = self.root / "datasets" / safe_name(name, "dataset name")
        link = d.with_suffix(".link")
        if link.is_file():
            d = Path(link.read_text().strip())
        if not d.is_dir():
            raise NotFoundError(f"no dataset {name!r} in the workspace")
        return d

    def datasets(self) -> list[dict[str, Any]]:
        names = sorted({p.name.removesuffix(".link") for p in (self.root / "datasets").iterdir()
                        if p.is_dir() or p.suffix == ".link"})
        out = []
        for n in names:
            try:
                out.append(self.dataset_info(n))
            except BushuError as e:
                out.append({"name": n, "error": e.message})
        return out

    def dataset_info(self, name: str) -> dict[str, Any]:
        from ..data.images import ImageFolder

        d = self.dataset_dir(name)
        counts = ImageFolder.scan(d).counts()
        warnings = []
        if len(counts) < 2:
            warnings.append("only one class: training needs at least two")
        small = [c for c, n in counts.items() if n < 5]
        if small:
            warnings.append(f"fewer than 5 images in {', '.join(small)}: add more for a trustworthy accuracy")
        if counts and max(counts.values()) > 10 * max(1, min(counts.values())):
            warnings.append("classes are imbalanced more than 10:1")
        return {"name": name, "path": str(d), "classes": counts, "n_images": sum(counts.values()),
                "warnings": warnings}

    def thumbnail(self, name: str, cls: str, index: int, size: int = 96) -> bytes:
        from PIL import Image

        from ..data.images import ImageFolder

        folder = ImageFolder.scan(self.dataset_dir(name))
        if cls not in folder.classes:
            raise NotFoundError(f"dataset {name!r} has no class {cls!r}")
        files = [p for p, i in folder.items if folder.classes[i] == cls]
        if not 0 <= index < len(files):
            raise NotFoundError(f"class {cls!r} has {len(files)} images; no index {index}")
        with Image.open(files[index]) as img:
            img = img.convert("RGB")
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=85)
        return buf.getvalue()


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


def create_app(config: UIConfig):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    ws = Workspace(Path(config.workspace))
    jobs = JobStore(ws.root, max_running=config.max_jobs)

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
        return await asyncio.to_thread(ws.model_info, request.path_params["name"])

    async def api_classify(request: Request):
        body = await read_body(request, config.max_image_mb)
        if not body:
            raise UserInputError("the body is empty; send an image file")
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
            jobs.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.workspace = ws
    app.state.jobs = jobs
    return app


def clean_uploads(workspace: Path) -> None:
    shutil.rmtree(Path(workspace) / "uploads", ignore_errors=True)
