"""The web UI's HTTP side: a Starlette app over a workspace directory (workspace.py); a thin client
of bushu's API.

    WORKSPACE/models/<name>/       bushu artifacts (trained, imported or copied in)
    WORKSPACE/datasets/<name>/     folder-per-class images (uploaded zips are extracted here)
    WORKSPACE/bundles/<name>.zip   offline SDKs built for download
    WORKSPACE/evals/<model>@<dataset>.json   the latest `bushu eval --json` of a model on a dataset
    WORKSPACE/exports/<model>/<format>/      `bushu export` output (export.json + the artifact)
    WORKSPACE/serve/<model>/       the one-model repository and log of a running deployment
    WORKSPACE/serve/deployments.json   what each deployment was started with (remembered across restarts)
    WORKSPACE/jobs/<id>.log|.rc    background job output and exit status
    WORKSPACE/sources/<name>/      an uploaded model file, checked, kept for its import job (and a retry)
    WORKSPACE/bushu-ui.sqlite      job state and linked datasets

Security: the CLI binds 127.0.0.1 unless told otherwise and then requires a token. Every request to
a loopback-bound UI must name a loopback Host (no DNS rebinding); every state-changing request must
carry the ``X-Bushu-UI`` header (a cross-site form cannot set it); uploads are size-limited and
streamed to disk; zip uploads go through safety.extract_image_zip.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError
from ._http import UIContext, endpoint
from .deploy import Deployments
from .jobs import JobStore
from .workspace import Workspace

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["UIConfig", "create_app"]


@dataclass(frozen=True)
class UIConfig:
    workspace: Path
    token: str | None = None
    loopback_only: bool = True  # check the Host header (the UI is bound to a loopback address)
    max_upload_mb: float = 200.0
    max_image_mb: float = 20.0
    max_jobs: int = 1


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()


async def index(request: Request, ui: UIContext) -> Response:
    from starlette.responses import Response

    resp = Response(
        _static("index.html"),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:",
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
        },
    )
    token = ui.config.token
    if token and request.query_params.get("token") == token:
        resp.set_cookie("bushu_token", token, httponly=True, samesite="strict")
    return resp


async def static(request: Request, ui: UIContext) -> Response:
    from starlette.responses import Response

    name = request.path_params["name"]
    types = {"js": "text/javascript", "css": "text/css"}  # the page's scripts and styles, nothing else
    base, _, ext = name.rpartition(".")
    if not (
        base.isidentifier()
        and ext in types
        and resources.files(__package__).joinpath("static").joinpath(name).is_file()
    ):
        raise NotFoundError(f"no static file {name!r}")
    return Response(_static(name), media_type=types[ext])


def create_app(config: UIConfig) -> Starlette:
    """The ASGI app: the pages, then each tab's API routes (ui/routes/), over ``config.workspace``."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from .routes import datasets, deployments, evals, images, jobs, models, results, uploads

    ws = Workspace(Path(config.workspace))
    ui = UIContext(config, ws, JobStore(ws.root, max_running=config.max_jobs), Deployments(ws.root))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        ui.jobs.start()
        try:
            yield
        finally:
            await asyncio.to_thread(ui.deployments.stop_all)
            ui.jobs.close()

    pages = [
        Route("/", endpoint(index)),
        Route("/static/{name}", endpoint(static)),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    app = Starlette(
        routes=[
            *pages,
            *models.ROUTES,
            *evals.ROUTES,
            *deployments.ROUTES,
            *datasets.ROUTES,
            *jobs.ROUTES,
            *images.ROUTES,
            *uploads.ROUTES,
            *results.ROUTES,
        ],
        lifespan=lifespan,
    )
    app.state.ui = ui
    return app


def clean_uploads(workspace: Path) -> None:
    shutil.rmtree(Path(workspace) / "uploads", ignore_errors=True)
