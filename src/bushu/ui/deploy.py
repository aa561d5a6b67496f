"""Deployments for the web UI: `bushu serve` over one workspace model, as a managed child process.

Each deployment is a one-model repository (WORKSPACE/serve/<name>/repo) served with free ports chosen
by the server itself (port 0; read back from its log), on 127.0.0.1 unless the user asks for every
address (then an API key is required: one is made up when none is given). The process dies with the
UI: stop_all() runs at shutdown, and on Linux the kernel sends it SIGTERM if the UI dies first.

What each deployment was started with (API key, listening beyond loopback, its last ports) is
remembered in WORKSPACE/serve/deployments.json (readable by the owner only: it holds the keys), so a
restarted UI lists them as stopped, to start again (on the same ports when they are free) or forget.
While a deployment runs, a sampler reads the server's Prometheus counters every few seconds into a
short history: requests per second and mean latency per interval, the Deploy page's charts.
"""

from __future__ import annotations

import collections
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BushuError, UserInputError

__all__ = ["Deployments", "Settings", "outward_addresses", "parse_metrics"]

_HOST = "127.0.0.1"  # where the UI reaches its servers (and all they listen on, unless exposed)
_ALL = "0.0.0.0"  # a deployment exposed to other machines listens on every address
STATE_FILE = "deployments.json"
SAMPLE_S = 2.0  # the metrics history's interval
HISTORY = 900  # samples kept per deployment (30 min at 2 s)
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


def outward_addresses() -> list[str]:
    """This machine's addresses that other machines may reach (non-loopback IPv4), best guess first."""
    found: list[str] = []
    try:  # the address of the default route's interface (a UDP "connect" sends nothing)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            found.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.append(str(info[4][0]))
    except OSError:
        pass
    return [a for a in dict.fromkeys(found) if not a.startswith("127.") and a != "0.0.0.0"]


def _port_free(port: int, host: str) -> bool:
    with socket.socket() as s:
        # as the servers bind: a port left in TIME_WAIT by the previous run is free to them
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Settings:
    """What a deployment is started with; remembered across UI restarts."""

    name: str
    api_key: str | None = None
    expose: bool = False  # listen on every address, not only 127.0.0.1
    ports: dict[str, int] = field(default_factory=dict)  # of the last run: reused when free
    created: float = field(default_factory=time.time)


@dataclass
class Deployment:
    name: str
    model: str
    proc: subprocess.Popen
    log: Path
    started: float
    settings: Settings = field(default_factory=lambda: Settings(""))
    ports: dict[str, int] = field(default_factory=dict)
    last: tuple[float, float] | None = None  # (success count, duration us) at the previous scrape
    recent_ms: float | None = None
    history: collections.deque = field(default_factory=lambda: collections.deque(maxlen=HISTORY))
    sampled: tuple[float, dict[str, float]] | None = None  # (time, counters) at the sampler's previous look

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def urls(self, host: str = _HOST) -> dict[str, str]:
        p = self.ports
        return {
            "http": f"http://{host}:{p['http']}/v2/models/{self.name}",
            "classify": f"http://{host}:{p['http']}/v1/models/{self.name}:classify",
            "grpc": f"{host}:{p['grpc']}",
            "metrics": f"http://{host}:{p['metrics']}/metrics",
        }


class Deployments:
    def __init__(self, root: Path):
        self.root = Path(root) / "serve"
        self._deps: dict[str, Deployment] = {}
        self._lock = threading.Lock()
        self._remembered: dict[str, Settings] = self._load()
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self.seen_as: str | None = None  # the address a user reached the UI at, when not loopback

    def hosts(self) -> list[str]:
        """The addresses to give for calls from another machine: the one the user reached this UI at
        (when that is not loopback), then this machine's outward addresses."""
        return list(dict.fromkeys(([self.seen_as] if self.seen_as else []) + outward_addresses()))

    # -- what is remembered -----------------------------------------------------------------------------
    def _load(self) -> dict[str, Settings]:
        try:
            raw = json.loads((self.root / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        out = {}
        for name, d in (raw.get("deployments") or {}).items():
            try:
                out[name] = Settings(**{k: v for k, v in d.items() if k in Settings.__dataclass_fields__})
            except TypeError:
                continue
        return out

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{STATE_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the API keys
        with os.fdopen(fd, "w") as f:
            json.dump({"deployments": {n: asdict(s) for n, s in self._remembered.items()}}, f, indent=2)
        os.replace(tmp, self.root / STATE_FILE)

    def settings(self, name: str) -> Settings:
        s = self._remembered.get(name)
        if s is None:
            from ..errors import NotFoundError

            raise NotFoundError(f"no deployment of {name!r} is remembered", hint="serve it from the Deploy page")
        return s

    def forget(self, name: str) -> dict[str, Any]:
        """Stop it if it runs, and drop it from the list (and its repository copy and log)."""
        if name in self._deps:
            self.stop(name)
        with self._lock:
            known = self._remembered.pop(name, None)
            self._save()
        if known is None:
            self.settings(name)  # NotFoundError
        shutil.rmtree(self.root / name, ignore_errors=True)
        return {"name": name, "forgotten": True}

    def serving(self, name: str) -> bool:
        dep = self._deps.get(name)
        return dep is not None and dep.running

    def remembers(self, name: str) -> bool:
        return name in self._remembered

    # -- running ----------------------------------------------------------------------------------------
    def start(
        self,
        name: str,
        model_dir: Path,
        api_key: str | None = None,
        expose: bool = False,
        ports: dict[str, int] | None = None,
    ) -> Deployment:
        """Write the repository and spawn the server (returns at once; wait_ready() waits). ``expose``: listen
        on every address, with ``api_key`` required (one is made up when none is given); ``ports``: the ones
        to use when free (a restarted deployment keeps its addresses), else the server picks free ones."""
        from ..model.artifact import Artifact
        from ..serve.repository import add_to_repository

        api_key = (api_key or "").strip() or None
        if api_key is not None and (len(api_key) < 8 or not re.fullmatch(r"[\x21-\x7e]+", api_key)):
            raise UserInputError(
                "an API key needs at least 8 characters, without spaces", hint="or leave it empty for none"
            )
        if expose and api_key is None:
            api_key = secrets.token_hex(16)  # never open to the network without one
        host = _ALL if expose else _HOST
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
            want = {k: int(v) for k, v in (ports or {}).items() if k in _PORTS}
            if len(want) != len(_PORTS) or not all(_port_free(p, host) for p in want.values()):
                want = dict.fromkeys(_PORTS, 0)
            env = {k: v for k, v in os.environ.items() if k not in ("BUSHU_API_KEY", "BUSHU_ADMIN_KEY")}
            if api_key:
                env["BUSHU_API_KEY"] = api_key  # not on the command line, where `ps` shows it
            with open(log, "wb") as f:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bushu",
                        "serve",
                        str(work / "repo"),
                        "--host",
                        host,
                        "--http-port",
                        str(want["http"]),
                        "--grpc-port",
                        str(want["grpc"]),
                        "--metrics-port",
                        str(want["metrics"]),
                    ],
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            known = self._remembered.get(name)
            settings = Settings(name, api_key, expose, created=known.created if known else time.time())
            dep = self._deps[name] = Deployment(name, name, proc, log, time.time(), settings)
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
                found = {k: rx.search(text) for k, rx in _PORTS.items()}
                ports = {k: int(m.group(1)) for k, m in found.items() if m is not None}
                if len(ports) < len(_PORTS):  # the UI needs all three: the page's endpoints and the charts
                    self.stop(dep.name)
                    missing = ", ".join(k for k in _PORTS if k not in ports)
                    raise BushuError(
                        f"the server for {dep.name!r} is ready but its log names no {missing} port "
                        f"(expected lines like 'HTTP http://HOST:PORT/v2', 'gRPC HOST:PORT', "
                        f"'metrics http://HOST:PORT/metrics')",
                        hint=f"see {dep.log}; `bushu serve` prints them when it serves HTTP, gRPC and metrics",
                    )
                dep.ports = ports
                with self._lock:  # remembered once it serves (a model that fails to load is not)
                    dep.settings.ports = dict(dep.ports)
                    self._remembered[dep.name] = dep.settings
                    self._save()
                self.sample(dep)  # the first look: the counters at readiness, so the first interval starts now
                self._start_sampler()
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
        """Stop every server (the UI is shutting down); they stay remembered, to start again."""
        self._stop_sampling.set()
        for name in list(self._deps):
            try:
                self.stop(name)
            except BushuError:
                pass

    def info(self, dep: Deployment, metrics: bool = True) -> dict[str, Any]:
        s = dep.settings
        out: dict[str, Any] = {
            "name": dep.name,
            "running": dep.running,
            "state": "serving" if dep.running else "stopped",
            "pid": dep.proc.pid,
            "uptime_s": round(time.time() - dep.started, 1),
            "host": _ALL if s.expose else _HOST,
            "expose": s.expose,
            "api_key": s.api_key,
        }
        if not dep.ports:
            return out
        urls = dep.urls()
        out["urls"] = urls
        auth = f"-H 'Authorization: Bearer {s.api_key}' " if s.api_key else ""
        out["curl"] = [
            f"curl -s {auth}--data-binary @image.jpg '{urls['classify']}?k=3'",
            f"curl -s {auth}{urls['http']}  # metadata; POST {urls['http']}/infer takes KServe v2 tensors",
        ]
        if s.expose:  # what another machine calls: this machine's address instead of 127.0.0.1
            hosts = self.hosts()
            out["remote"] = {"hosts": hosts, "urls": dep.urls(hosts[0]) if hosts else None}
            if hosts:
                out["curl"].insert(
                    1,
                    f"# from another machine:\ncurl -s {auth}--data-binary @image.jpg "
                    f"'{out['remote']['urls']['classify']}?k=3'",
                )
        if metrics and dep.running:
            out["metrics"] = self._scrape(dep)
        out["history"] = list(dep.history)
        return out

    def stopped_info(self, s: Settings) -> dict[str, Any]:
        """A remembered deployment that is not running (stopped, or the UI restarted since)."""
        return {
            "name": s.name,
            "running": False,
            "state": "stopped",
            "expose": s.expose,
            "api_key": s.api_key,
            "ports": s.ports,
            "created": s.created,
        }

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
        """The running deployments, then the remembered ones that are not running."""
        running = [self.info(d) for d in list(self._deps.values())]
        names = {d["name"] for d in running}
        return running + [self.stopped_info(s) for n, s in sorted(self._remembered.items()) if n not in names]

    # -- the metrics history ----------------------------------------------------------------------------
    def _start_sampler(self) -> None:
        with self._lock:
            if self._sampler is not None and self._sampler.is_alive():
                return
            self._stop_sampling.clear()
            self._sampler = threading.Thread(target=self._sample_loop, name="bushu-ui-metrics", daemon=True)
            self._sampler.start()

    def _sample_loop(self) -> None:
        while not self._stop_sampling.wait(SAMPLE_S):
            deps = [d for d in list(self._deps.values()) if d.running and d.ports]
            if not deps:
                return  # started again by the next deployment
            for dep in deps:
                self.sample(dep)

    def sample(self, dep: Deployment) -> dict[str, Any] | None:
        """One point of the history: requests answered (and failed) per second, and the mean latency (and time
        queued) per request, over the interval since the previous look. The first look (taken when the server
        becomes ready) has no interval, so no rates (None): its latency is the mean over the requests answered
        since the server started, None when there were none. None when the metrics cannot be read."""
        try:
            with urllib.request.urlopen(dep.urls()["metrics"], timeout=SAMPLE_S) as r:
                m = parse_metrics(r.read().decode(), dep.name)
        except (OSError, urllib.error.URLError):
            return None
        now, prev = time.time(), dep.sampled
        dep.sampled = (now, m)
        before: dict[str, float] = prev[1] if prev is not None else {}  # counters start at 0 with the server

        def delta(k: str) -> float:
            return max(0.0, m.get(k, 0.0) - before.get(k, 0.0))

        ok, fail = delta("nv_inference_request_success"), delta("nv_inference_request_failure")
        dt = max(now - prev[0], 1e-6) if prev is not None else None
        point = {
            "t": round(now, 2),
            "rps": round(ok / dt, 3) if dt is not None else None,
            "failed_rps": round(fail / dt, 3) if dt is not None else None,
            "latency_ms": round(delta("nv_inference_request_duration_us") / ok / 1000, 3) if ok else None,
            "queue_ms": round(delta("nv_inference_queue_duration_us") / ok / 1000, 3) if ok else None,
        }
        dep.history.append(point)
        return point

    def classify(self, name: str, raw: bytes, k: int, content_type: str = "") -> dict[str, Any]:
        """Send an image (or a text) through the served endpoint, as any client would."""
        import json

        dep = self.get(name)
        if not dep.running or not dep.ports:
            raise UserInputError(f"the server for {name!r} is not running", hint="serve it again")
        url = f"{dep.urls()['classify']}?k={k}"
        ctype = "text/plain; charset=utf-8" if content_type.startswith("text/plain") else "application/octet-stream"
        headers = {"Content-Type": ctype}
        if dep.settings.api_key:
            headers["Authorization"] = f"Bearer {dep.settings.api_key}"
        req = urllib.request.Request(url, data=raw, method="POST", headers=headers)
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
