"""What every UI endpoint shares: the request checks (loopback Host, token, CSRF header), error
responses, size-limited bodies, and the workspace/jobs/deployments it works on (``UIContext``)."""

from __future__ import annotations

import hmac
import json
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BushuError, UserInputError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .app import UIConfig
    from .deploy import Deployments
    from .jobs import JobStore
    from .workspace import Workspace

__all__ = ["HttpError", "UIContext", "endpoint", "plain", "read_body", "read_json", "upload_to_file"]

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
CSRF_HEADER = "x-bushu-ui"


@dataclass(frozen=True)
class UIContext:
    """The app's state, as app.state.ui."""

    config: UIConfig
    ws: Workspace
    jobs: JobStore
    deployments: Deployments


# the CLI's words for what the UI's forms choose: a user of the page never types a flag
_FLAGS = [
    (
        re.compile(r"pass --data DIR: a folder of representative images"),
        "choose a calibration data set in the form: representative images",
    ),
    (
        re.compile(
            r"; or, for a model without image pre-processing, --sample FILE\.npz with real arrays by input name"
        ),
        "",
    ),
    (re.compile(r"(?:pass |add )?--(?:data|calib) DIR"), "a data set (choose one in the form)"),
    (re.compile(r"(?:give )?a larger --budget"), "a larger training budget"),
    (re.compile(r"--image-size"), "the image size"),
    # the model upload form's inputs box takes what --input takes, one per line
    (
        re.compile(r"--input NAME:SHAPE\[:DTYPE\](?: \(repeatable\))?"),
        "NAME:SHAPE[:DTYPE] in the inputs box, one per line",
    ),
    (re.compile(r",? or real arrays: --sample FILE\.npz"), ""),
    (re.compile(r"--input ('[^']*')"), r"input \1"),
    (re.compile(r"--input ([\w.]+:\S+)"), r"\1 in the inputs box"),
    (re.compile(r"--input (\w+)"), r"input \1"),
]
_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def plain(text: str | None) -> str | None:
    """An error or hint in the page's words: no Python object reprs, no command-line flags."""
    if not text:
        return text
    text = _REPR.sub("", text)
    for pattern, words in _FLAGS:
        text = pattern.sub(words, text)
    return text


class HttpError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def check(request: Request, config: UIConfig) -> None:
    if config.loopback_only:
        raw = request.headers.get("host", "")
        host = raw.split("]")[0] + "]" if raw.startswith("[") else raw.rsplit(":", 1)[0]
        if host not in _LOOPBACK_HOSTS:
            raise HttpError(
                403,
                f"Host {host!r} is not this machine's loopback address",
                hint="open the UI at http://127.0.0.1:PORT/",
            )
    if config.token:
        given = (
            request.headers.get("authorization", "").removeprefix("Bearer ")
            or request.cookies.get("bushu_token", "")
            or request.query_params.get("token", "")
        )
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise HttpError(401, "this UI needs its login token", hint="open the URL that `bushu ui` printed")
    if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
        raise HttpError(
            403,
            f"state-changing requests need the {CSRF_HEADER} header",
            hint="send 'X-Bushu-UI: 1' (the UI's own pages do)",
        )


Handler = Callable[["Request", UIContext], Awaitable[Any]]


def endpoint(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``fn(request, ui)`` as a Starlette endpoint: the checks first; a dict becomes JSON; HttpError and
    bushu's errors become ``{"error", "hint"}`` with their status."""

    async def wrapped(request: Request) -> Response:
        from starlette.responses import JSONResponse, Response

        ui: UIContext = request.app.state.ui
        try:
            check(request, ui.config)
            result = await fn(request, ui)
        except HttpError as e:
            return JSONResponse({"error": plain(e.message), "hint": plain(e.hint)}, status_code=e.status)
        except BushuError as e:
            return JSONResponse(
                {"error": plain(e.message), "hint": plain(e.hint)}, status_code=getattr(e, "http_status", 400)
            )
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    return wrapped


async def read_body(request: Request, limit_mb: float) -> bytes:
    limit = int(limit_mb * 1e6)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"upload of {int(declared)} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"upload is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> dict[str, Any]:
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


async def upload_to_file(request: Request, limit_mb: float, folder: Path) -> Path:
    """The body streamed to a temporary .zip in ``folder`` (the caller deletes it)."""
    limit = int(limit_mb * 1e6)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HttpError(
            413,
            f"upload of {int(declared)} bytes is over the {limit}-byte limit",
            hint="start the UI with a larger --max-upload-mb, or link a folder instead",
        )
    fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".zip", dir=folder)
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HttpError(
                        413,
                        f"upload is over the {limit}-byte limit",
                        hint="start the UI with a larger --max-upload-mb, or link a folder instead",
                    )
                f.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)
