"""`bushu ui`: the web interface, served locally (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Any

import click

from ._output import console


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("ui")
@click.option(
    "--workspace",
    "-w",
    default="bushu-workspace",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for models, datasets, jobs and SDKs.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Any non-loopback address requires a login token.",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.option(
    "--token",
    envvar="BUSHU_UI_TOKEN",
    help="Login token (default: none on loopback, a random one "
    "otherwise). Send it as ?token=, a Bearer header, or the cookie the first page sets.",
)
@click.option(
    "--max-upload-mb",
    default=200.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Largest dataset zip accepted.",
)
@click.option("--max-jobs", default=1, show_default=True, type=click.IntRange(1), help="Background jobs run at once.")
def command(workspace: Path, host: str, port: int, token: str | None, max_upload_mb: float, max_jobs: int) -> None:
    """Serve the web UI: datasets (upload a zip or link a folder), training jobs that survive restarts
    (with live charts), models with their accuracy and speed, evaluation (metrics, confusion matrix,
    misclassified examples), optimize and export actions, a comparison table on one data set, a try-it
    panel, a deploy page (serve a model, with an API key and for other machines if asked, its endpoints,
    latency and throughput charts, try it through the endpoint), and offline SDK downloads."""
    try:
        import uvicorn

        from ..ui import UIConfig, create_app
    except ImportError as e:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(f"bushu ui ({e.name})", "ui") from None

    loopback = _is_loopback(host)
    if not loopback and not token:
        token = secrets.token_urlsafe(24)
    workspace.mkdir(parents=True, exist_ok=True)
    app = create_app(
        UIConfig(
            workspace=workspace.resolve(),
            token=token,
            loopback_only=loopback,
            max_upload_mb=max_upload_mb,
            max_jobs=max_jobs,
        )
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
            console.print(f"bushu ui on {url}  (workspace {workspace})", soft_wrap=True)
            if not loopback:
                console.print("[yellow]listening beyond this machine: anyone with the token can use it[/]")

    _Server(config).run()
