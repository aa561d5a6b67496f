"""Deployments for the web UI: `bushu serve` over one workspace model, as a managed child process.

Each deployment is a one-model repository (WORKSPACE/serve/<name>/repo) served on 127.0.0.1 with
free ports chosen by the server itself (port 0; read back from its log). The process dies with the UI:
stop_all() runs at shutdown, and on Linux the kernel sends it SIGTERM if the UI dies first.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BushuError, UserInputError

__all__ = ["Deployments", "parse_metrics"]

_HOST = "127.0.0.1"  # a served model is never reachable from beyond this machine
_PORTS = {
    "http": re.compile(r"HTTP\s+http://\S+?:(\d+)/v2"),
    "grpc": re.compile(r"gRPC\s+\S+?:(\d+)\s*$", re.M),
    "metrics": re.compile(r"metrics\s+http://\S+?:(\d+)/metrics"),
}


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop_all() at shutdown still stops it


def parse_metrics(text: str, model: str) -> dict[str, float]:
    """Triton-named Prometheus counters of one model, summed over its versions."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(nv_inference_\w+)\{([^}]*)\}\s+(\S+)", line)
        if m and f'model="{model}"' in m.group(2):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


@dataclass
class Deployment:
    name: str
    model: str
    proc: subprocess.Popen
    log: Path
    started: float
    ports: dict[str, int] = field(default_factory=dict)
    last: tuple[float, float] | None = None  # (success count, duration us) at the previous scrape
    recent_ms: float | None = None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def urls(self) -> dict[str, str]:
        p = self.ports
        return {
            "http": f"http://{_HOST}:{p['http']}/v2/models/{self.name}",
            "classify": f"http://{_HOST}:{p['http']}/v1/models/{self.name}:classify",
            "grpc": f"{_HOST}:{p['grpc']}",
            "metrics": f"http://{_HOST}:{p['metrics']}/metrics",
        }


class Deployments:
    def __init__(self, root: Path):
        self.root = Path(root) / "serve"
        self._deps: dict[str, Deployment] = {}
        self._lock = threading.Lock()

    def start(self, name: str, model_dir: Path) -> Deployment:
        """Write the repository and spawn the server (returns at once; wait_ready() waits)."""
        from ..model.artifact import Artifact
        from ..serve.repository import add_to_repository

        with self._lock:
            old = self._deps.get(name)
            if old is not None and old.running:
                raise UserInputError(
                    f"model {name!r} is already served on port {old.ports.get('http', '?')}", hint="stop it first"
                )
            art = Artifact.load(model_dir)
            if art.model_path.suffix != ".onnx":
                raise UserInputError(
                    f"model {name!r} is {art.format}, not ONNX; the UI serves ONNX artifacts",
                    hint="serve it with `bushu serve` from the command line",
                )
            work = self.root / name
            shutil.rmtree(work / "repo", ignore_errors=True)
            add_to_repository(work / "repo", art, name=name)
            log = work / "server.log"
            with open(log, "wb") as f:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bushu",
                        "serve",
                        str(work / "repo"),
                        "--host",
                        _HOST,
                        "--http-port",
                        "0",
                        "--grpc-port",
                        "0",
                        "--metrics-port",
                        "0",
                    ],
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            dep = self._deps[name] = Deployment(name, name, proc, log, time.time())
        return dep

    def wait_ready(self, dep: Deployment, timeout_s: float = 120) -> Deployment:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = dep.log.read_text(errors="replace")
            if "ready; Ctrl-C stops" in text:
                state = re.search(
                    rf"^\s*model {re.escape(dep.name)} version \S+: (\w+)(.*?)(?=^HTTP|^gRPC|\Z)", text, re.M | re.S
                )
                if state and state.group(1) != "READY":  # the server runs, but without the model
                    self.stop(dep.name)
                    reason = " ".join(state.group(2).split()).strip("()")
                    raise BushuError(f"the server could not load {dep.name!r}: {reason}", hint=f"see {dep.log}")
                dep.ports = {k: int(rx.search(text).group(1)) for k, rx in _PORTS.items()}
                return dep
            if not dep.running:
                with self._lock:
                    self._deps.pop(dep.name, None)
                tail = " | ".join(ln for ln in text.splitlines()[-3:] if ln.strip())
                raise BushuError(
                    f"the server for {dep.name!r} exited ({dep.proc.returncode}): {tail}", hint=f"see {dep.log}"
                )
            time.sleep(0.2)
        self.stop(dep.name)
        raise BushuError(f"the server for {dep.name!r} did not start within {timeout_s:.0f} s", hint=f"see {dep.log}")

    def get(self, name: str) -> Deployment:
        dep = self._deps.get(name)
        if dep is None:
            from ..errors import NotFoundError

            raise NotFoundError(f"model {name!r} is not being served", hint="serve it from the Deploy page first")
        return dep

    def stop(self, name: str) -> dict[str, Any]:
        dep = self.get(name)
        if dep.running:
            dep.proc.send_signal(signal.SIGINT)  # the server's own graceful shutdown
            try:
                dep.proc.wait(15)
            except subprocess.TimeoutExpired:
                dep.proc.kill()
                dep.proc.wait(5)
        with self._lock:
            self._deps.pop(name, None)
        return {"name": name, "running": False, "returncode": dep.proc.returncode}

    def stop_all(self) -> None:
        for name in list(self._deps):
            try:
                self.stop(name)
            except BushuError:
                pass

    def info(self, dep: Deployment, metrics: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": dep.name,
            "running": dep.running,
            "pid": dep.proc.pid,
            "uptime_s": round(time.time() - dep.started, 1),
            "host": _HOST,
        }
        if not dep.ports:
            return out
        urls = dep.urls()
        out["urls"] = urls
        out["curl"] = [
            f"curl -s --data-binary @image.jpg '{urls['classify']}?k=3'",
            f"curl -s {urls['http']}  # metadata; POST {urls['http']}/infer takes KServe v2 tensors",
        ]
        if metrics and dep.running:
            out["metrics"] = self._scrape(dep)
        return out

    def _scrape(self, dep: Deployment) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(dep.urls()["metrics"], timeout=5) as r:
                m = parse_metrics(r.read().decode(), dep.name)
        except (OSError, urllib.error.URLError):
            return None
        ok, fail = m.get("nv_inference_request_success", 0.0), m.get("nv_inference_request_failure", 0.0)
        dur = m.get("nv_inference_request_duration_us", 0.0)
        if dep.last is not None and ok > dep.last[0]:  # mean over the requests since the previous look
            dep.recent_ms = (dur - dep.last[1]) / (ok - dep.last[0]) / 1000
        dep.last = (ok, dur)
        return {
            "requests": int(ok + fail),
            "success": int(ok),
            "failure": int(fail),
            "inferences": int(m.get("nv_inference_count", 0)),
            "mean_latency_ms": round(dur / ok / 1000, 3) if ok else None,
            "recent_latency_ms": round(dep.recent_ms, 3) if dep.recent_ms is not None else None,
        }

    def list(self) -> list[dict[str, Any]]:
        return [self.info(d) for d in list(self._deps.values())]

    def classify(self, name: str, raw: bytes, k: int, content_type: str = "") -> dict[str, Any]:
        """Send an image (or a text) through the served endpoint, as any client would."""
        import json

        dep = self.get(name)
        if not dep.running or not dep.ports:
            raise UserInputError(f"the server for {name!r} is not running", hint="serve it again")
        url = f"{dep.urls()['classify']}?k={k}"
        ctype = "text/plain; charset=utf-8" if content_type.startswith("text/plain") else "application/octet-stream"
        req = urllib.request.Request(url, data=raw, method="POST", headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            raise UserInputError(f"the served model refused the request ({e.code}): {detail}") from None
        except OSError as e:
            raise BushuError(f"cannot reach {url}: {e}", hint="the server may have stopped; serve it again") from None
        return {"model": name, "via": url, "predictions": body["predictions"]}
