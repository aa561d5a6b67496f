"""The Deploy page's metrics history (bushu.ui.deploy.Deployments.sample) over a loopback /metrics endpoint
that serves Triton-named counters, as `bushu serve` does: the first look (at readiness) already gives the
latency of the requests answered so far, the rates come from the second look on."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bushu.ui.deploy import Deployment, Deployments


class _Counters(http.server.BaseHTTPRequestHandler):
    values: dict[str, float] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = "".join(f'{k}{{model="pets",version="1"}} {v}\n' for k, v in self.values.items()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counters)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _ports(metrics: http.server.HTTPServer) -> dict[str, int]:
    port = metrics.server_address[1]
    return {"http": port, "grpc": port, "metrics": port}  # only /metrics is read


def _counters(ok: float, fail: float, duration_us: float, queue_us: float) -> dict[str, float]:
    return {
        "nv_inference_request_success": ok,
        "nv_inference_request_failure": fail,
        "nv_inference_request_duration_us": duration_us,
        "nv_inference_queue_duration_us": queue_us,
    }


def test_first_look_has_the_latency_so_far_and_rates_start_at_the_second(metrics, tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dep = Deployment("pets", "pets", proc, tmp_path / "log", 0.0, ports=_ports(metrics))
    deps = Deployments(tmp_path / "ws")
    # two requests answered before the first look (sent right after the deploy): 30 ms each, 2 ms queued
    _Counters.values = _counters(2, 0, 60_000, 4_000)
    first = deps.sample(dep)
    assert first is not None and first["rps"] is None and first["failed_rps"] is None
    assert (first["latency_ms"], first["queue_ms"]) == (30.0, 2.0)
    # four more (one failed), 10 ms each: the second look's interval only
    _Counters.values = _counters(5, 1, 90_000, 4_000)
    second = deps.sample(dep)
    assert second is not None and second["rps"] > 0 and second["failed_rps"] > 0
    assert second["rps"] == pytest.approx(3 * second["failed_rps"], rel=1e-2)
    assert (second["latency_ms"], second["queue_ms"]) == (10.0, 0.0)
    assert list(dep.history) == [first, second]


def test_first_look_without_requests_has_no_latency(metrics, tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dep = Deployment("pets", "pets", proc, tmp_path / "log", 0.0, ports=_ports(metrics))
    _Counters.values = _counters(0, 0, 0, 0)
    point = Deployments(tmp_path / "ws").sample(dep)
    assert point is not None and point["latency_ms"] is None and point["rps"] is None
