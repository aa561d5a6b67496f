"""`bushu serve REPO`: the inference server (KServe v2 HTTP + gRPC, Prometheus metrics)."""

from __future__ import annotations

from pathlib import Path

import click


def _port(ctx, param, value: int) -> int | None:
    if value < 0:  # -1 turns a front end off
        return None
    if value > 65535:
        raise click.BadParameter(f"{value} is not a port (0..65535, 0 = any free port, -1 = off)")
    return value


@click.command("serve")
@click.argument("repo", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--http-port", default=8000, show_default=True, callback=_port, help="KServe v2 HTTP port (-1: off).")
@click.option("--grpc-port", default=8001, show_default=True, callback=_port, help="KServe v2 gRPC port (-1: off).")
@click.option("--metrics-port", default=8002, show_default=True, callback=_port, help="Prometheus port (-1: off).")
@click.option(
    "--model-control-mode",
    type=click.Choice(["none", "poll", "explicit"]),
    default="none",
    show_default=True,
    help="none: load all at start; poll: also pick up changes; explicit: load/unload through the repository API only.",
)
@click.option(
    "--load-model",
    "load_models",
    multiple=True,
    metavar="NAME",
    help="With explicit control: load this model at start (repeatable; '*' = all).",
)
@click.option("--repository-poll-secs", default=15.0, show_default=True, help="Poll interval in poll mode.")
@click.option(
    "--api-key",
    envvar="BUSHU_API_KEY",
    default=None,
    help="Require this key for inference (Authorization: Bearer KEY or X-API-Key). Env: BUSHU_API_KEY.",
)
@click.option(
    "--admin-key",
    envvar="BUSHU_ADMIN_KEY",
    default=None,
    help="Require this key for the repository API. Env: BUSHU_ADMIN_KEY.",
)
@click.option("--max-body-mb", default=64.0, show_default=True, help="Largest request body accepted.")
@click.option(
    "--shared-memory/--no-shared-memory",
    default=None,
    help="Triton's system shared memory extension (same-host clients pass tensors in /dev/shm). "
    "Default: on when --host is a loopback address.",
)
@click.option("--access-log", is_flag=True, help="Log one JSON line per HTTP request (logger bushu.serve.access).")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
def command(
    repo: tuple[Path, ...],
    host: str,
    http_port: int | None,
    grpc_port: int | None,
    metrics_port: int | None,
    model_control_mode: str,
    load_models: tuple[str, ...],
    repository_poll_secs: float,
    api_key: str | None,
    admin_key: str | None,
    max_body_mb: float,
    shared_memory: bool | None,
    access_log: bool,
    log_level: str,
) -> None:
    """Serve the Triton-layout model repository REPO (REPO/<model>/<version>/model.onnx) over KServe v2
    HTTP and gRPC, with dynamic batching. REPO may also be one or more artifact directories (bushu import,
    train or optimize writes them), each served as model <its name>, version 1, in place. Ctrl-C stops it."""
    import logging
    import tempfile

    try:
        import grpc  # noqa: F401
        import httptools  # noqa: F401
        import tritonclient.grpc.model_config_pb2  # noqa: F401
    except ImportError as e:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(f"bushu serve ({e.name})", "serve") from e
    from ..serve.app import ServerOptions

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if access_log:  # asked for explicitly: shown whatever --log-level says
        logging.getLogger("bushu.serve.access").setLevel(logging.INFO)
    opts = ServerOptions(
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        model_control_mode=model_control_mode,
        repository_poll_secs=repository_poll_secs,
        load_models=load_models,
        api_key=api_key,
        admin_key=admin_key,
        max_body_mb=max_body_mb,
        access_log=access_log,
        shared_memory=shared_memory,
    )
    with tempfile.TemporaryDirectory(prefix="bushu-serve-") as tmp:
        _serve(_repository(repo, Path(tmp)), opts, host)


def _repository(paths: tuple[Path, ...], tmp: Path) -> Path:
    """REPO, or a repository of links to the artifact directories given."""
    from ..errors import UserInputError
    from ..serve.repository import artifact_repository, is_artifact_dir

    arts = [p for p in paths if is_artifact_dir(p)]
    if not arts and len(paths) == 1:
        return paths[0]
    if len(arts) != len(paths):
        others = [str(p) for p in paths if p not in arts]
        raise UserInputError(
            f"{', '.join(others)} {'is' if len(others) == 1 else 'are'} not an artifact directory "
            "(no bushu.yaml); several paths must all be artifacts",
            hint="serve one repository (REPO/<model>/<version>/...), or artifact directories",
        )
    return artifact_repository(arts, tmp)


def _serve(repo: Path, opts, host: str) -> None:
    import asyncio

    from ..serve.app import Server, new_event_loop
    from ._output import console

    server = Server(repo, opts)

    def started(s: Server) -> None:
        for row in s.manager.index():
            state = row["state"] + (f" ({row['reason']})" if row.get("reason") else "")
            console.print(f"  model {row['name']} version {row.get('version', '-')}: {state}")
        h = f"[{host}]" if ":" in host else host
        if s.http_port is not None:
            console.print(f"HTTP    http://{h}:{s.http_port}/v2  (OpenAPI: /openapi.json)")
            for name, verb, kind in _raw_input_endpoints(s):
                where = "127.0.0.1" if host in ("0.0.0.0", "::") else h
                url = f"http://{where}:{s.http_port}/v1/models/{name}:{verb}"
                query = "?score=0.5" if verb == "detect" else "?k=3"
                body = _CURL_BODY.get(kind, _CURL_BODY["image"])
                console.print(f"        {url}\n        curl -s {body} '{url}{query}'", soft_wrap=True)
        if s.grpc_port is not None:
            console.print(f"gRPC    {h}:{s.grpc_port}")
        if s.metrics_port is not None:
            console.print(f"metrics http://{h}:{s.metrics_port}/metrics")
        console.print("ready; Ctrl-C stops", style="bold green")

    # not asyncio.Runner: it is Python 3.11+, and bushu supports 3.10
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(server.serve(on_started=started, handle_signals=True))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    console.print("stopped")


_CURL_BODY = {
    "image": "--data-binary @image.jpg",
    "audio": "--data-binary @clip.wav",
    "text": "-H 'Content-Type: text/plain' --data-binary @note.txt",
}


def _raw_input_endpoints(s) -> list[tuple[str, str, str]]:
    """(name, classify or detect, input kind) of the ready models that take raw inputs (pre-processing recorded)."""
    out = {}
    for row in s.manager.index(ready_only=True):
        for m in s.manager.loaded_versions(row["name"]):
            if m.preprocess is not None:
                task = m.artifact.task if m.artifact is not None else "classification"
                out[row["name"]] = ("detect" if task == "detection" else "classify", m.preprocess.kind)
    return sorted((name, verb, kind) for name, (verb, kind) in out.items())
