"""`bushu serve REPO` as a user runs it: prints where it listens, answers real clients, Ctrl-C stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest

tritonhttp = pytest.importorskip("tritonclient.http")
tritongrpc = pytest.importorskip("tritonclient.grpc")

from bushu.serve.testing import make_test_repository  # noqa: E402


def _bushu(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = make_test_repository(tmp_path_factory.mktemp("repo"), echo_delay_ms=1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bushu",
            "serve",
            str(repo),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines, urls = [], {}
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and "ready" not in "".join(lines[-1:]):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if m := re.match(r"(HTTP|gRPC|metrics)\s+(\S+)", line):
                urls[m[1]] = m[2]
        assert "HTTP" in urls and "gRPC" in urls, "".join(lines) + proc.stderr.read() if proc.poll() is not None else ""
        yield proc, repo, urls, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.stdout.close()
        proc.stderr.close()


def test_prints_models_and_urls(served):
    _, _, urls, out = served
    assert "model classifier version 1: READY" in out and "model add_sub version 1: READY" in out
    assert urls["HTTP"].startswith("http://127.0.0.1:") and urls["metrics"].endswith("/metrics")


def test_answers_tritonclient_over_http_and_grpc(served):
    _, repo, urls, _ = served
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    ref = ort.InferenceSession(str(repo / "classifier" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    h = tritonhttp.InferenceServerClient(urls["HTTP"].removeprefix("http://").removesuffix("/v2"))
    i = tritonhttp.InferInput("x", [3, 4], "FP32")
    i.set_data_from_numpy(x)
    np.testing.assert_allclose(h.infer("classifier", [i]).as_numpy("probs"), ref, rtol=1e-6, atol=1e-6)
    g = tritongrpc.InferenceServerClient(urls["gRPC"])
    gi = tritongrpc.InferInput("x", [3, 4], "FP32")
    gi.set_data_from_numpy(x)
    np.testing.assert_allclose(g.infer("classifier", [gi]).as_numpy("probs"), ref, rtol=1e-6, atol=1e-6)


def test_ctrl_c_stops_cleanly(served):
    proc = served[0]
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(30)
    rest = proc.stdout.read()
    err = proc.stderr.read()
    assert rc == 0, err
    assert "stopped" in rest and "Traceback" not in err


def test_missing_repository_is_a_one_line_error(tmp_path):
    r = _bushu("serve", str(tmp_path / "nope"), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0")
    assert r.returncode == 2 and "model repository not found" in r.stderr and "Hint:" in r.stderr
    assert "Traceback" not in r.stderr


def test_port_in_use_is_a_one_line_error(tmp_path):
    import socket

    make_test_repository(tmp_path / "repo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = _bushu(
            "serve", str(tmp_path / "repo"), "--http-port", str(port), "--grpc-port", "0", "--metrics-port", "-1"
        )
    assert r.returncode == 2 and f"127.0.0.1:{port}" in r.stderr and "Hint:" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_explicit_mode_loads_only_the_models_named(tmp_path):
    repo = make_test_repository(tmp_path / "repo")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bushu",
            "serve",
            str(repo),
            "--http-port",
            "0",
            "--grpc-port",
            "-1",
            "--metrics-port",
            "-1",
            "--model-control-mode",
            "explicit",
            "--load-model",
            "add_sub",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = ""
        for line in proc.stdout:
            out += line
            if "ready" in line:
                break
        assert "model add_sub version 1: READY" in out and "model classifier version -: UNAVAILABLE" in out, out
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        proc.stdout.close()
        proc.stderr.close()
    r = _bushu(
        "serve",
        str(repo),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "add_sup",
        "--http-port",
        "0",
        "--grpc-port",
        "-1",
        "--metrics-port",
        "-1",
    )
    assert r.returncode == 2 and "did you mean 'add_sub'" in r.stderr, r.stderr
