"""bushu.ui.deploy.Deployments.wait_ready reads the server's ports from its log: a log that says it is
ready but names no gRPC port is a clear error (and the server is stopped), not an AttributeError."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bushu.errors import BushuError
from bushu.ui.deploy import Deployment, Deployments


def test_ready_log_without_a_port_is_a_clear_error_and_stops_the_server(tmp_path: Path):
    log = tmp_path / "serve.log"
    log.write_text(
        "HTTP    http://127.0.0.1:8000/v2  (OpenAPI: /openapi.json)\n"
        "metrics http://127.0.0.1:8002/metrics\n"
        "ready; Ctrl-C stops\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deps = Deployments(tmp_path / "ws")
        dep = Deployment("pets", "pets", proc, log, time.time())
        deps._deps["pets"] = dep  # as start() registers it
        with pytest.raises(BushuError) as e:
            deps.wait_ready(dep, timeout_s=10)
        assert "names no grpc port" in e.value.message and "gRPC HOST:PORT" in e.value.message
        assert str(log) in (e.value.hint or "")
        assert proc.poll() is not None and not deps.serving("pets")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
