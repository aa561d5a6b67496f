"""bushu's own HTTP/1.1 front end (serve/httpserver.py) on raw sockets: keep-alive, pipelining,
chunked bodies, Expect: 100-continue, HTTP/1.0, HEAD, bodies over the limit, binary requests whose
body arrives in pieces; every answer checked against onnxruntime or the server's error format."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("httptools")

from bushu.serve import start_server  # noqa: E402
from bushu.serve.testing import make_test_repository  # noqa: E402

X = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_test_repository(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def server(repo):
    with start_server(repo, grpc_port=None, metrics_port=None, max_body_mb=1.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def expected(repo):
    sess = ort.InferenceSession(str(repo / "classifier" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["probs"], {"x": X})[0]


def _connect(server) -> socket.socket:
    host, port = server.http_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _json_request(path: str = "/v2/models/classifier/infer", version: str = "1.1", extra: str = "") -> bytes:
    body = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]})
    return (f"POST {path} HTTP/{version}\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n{body}").encode()


def _read_response(sock: socket.socket, buf: bytearray, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response from ``sock`` (bytes past it stay in ``buf``); ``head_only``: an answer to HEAD."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response head; got {bytes(buf)[:200]!r}")
        buf += chunk
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    n = 0 if head_only else int(headers.get("content-length", "0"))
    start = len(head) + 4
    while len(buf) < start + n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        buf += chunk
    body = bytes(buf[start : start + n])
    del buf[: start + n]
    return status, headers, body


def _probs(body: bytes) -> np.ndarray:
    out = json.loads(body)["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def test_keep_alive_and_pipelined_requests_answer_in_order(server, expected):
    with _connect(server) as s:
        buf = bytearray()
        for _ in range(3):  # one at a time on the same connection
            s.sendall(_json_request())
            status, headers, body = _read_response(s, buf)
            assert status == 200 and headers["content-type"] == "application/json"
            np.testing.assert_allclose(_probs(body), expected, rtol=1e-6, atol=1e-6)
        # pipelined: an infer, a 404 and a health check sent at once come back in that order
        s.sendall(_json_request() + _json_request("/v2/models/nope/infer") + b"GET /v2/health/live HTTP/1.1\r\n\r\n")
        statuses = [_read_response(s, buf)[0] for _ in range(3)]
        assert statuses == [200, 404, 200]


def test_binary_request_sent_in_small_pieces(server, expected):
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": X.nbytes}}]}
    ).encode()
    req = (
        (
            f"POST /v2/models/classifier/infer HTTP/1.1\r\nHost: t\r\nInference-Header-Content-Length: {len(header)}\r\n"
            f"Content-Length: {len(header) + X.nbytes}\r\n\r\n"
        ).encode()
        + header
        + X.tobytes()
    )
    with _connect(server) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(req), 7):
            s.sendall(req[i : i + 7])
            time.sleep(0.001)
        status, _, body = _read_response(s, bytearray())
    assert status == 200
    np.testing.assert_allclose(_probs(body), expected, rtol=1e-6, atol=1e-6)


def test_chunked_body_and_expect_100_continue(server, expected):
    body = _json_request().partition(b"\r\n\r\n")[2]
    head = b"POST /v2/models/classifier/infer HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 50]), body[i : i + 50]) for i in range(0, len(body), 50))
    with _connect(server) as s:
        buf = bytearray()
        s.sendall(head + b"\r\n" + chunked + b"0\r\n\r\n")
        status, _, out = _read_response(s, buf)
        assert status == 200
        np.testing.assert_allclose(_probs(out), expected, rtol=1e-6, atol=1e-6)
        s.sendall(_json_request(extra="Expect: 100-continue\r\n").partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
        status, _, _ = _read_response(s, buf)
        assert status == 100  # the server asks for the body before reading it
        s.sendall(body)
        status, _, out = _read_response(s, buf)
        assert status == 200
        np.testing.assert_allclose(_probs(out), expected, rtol=1e-6, atol=1e-6)


def test_http10_and_connection_close_end_the_connection(server, expected):
    for req in (_json_request(version="1.0"), _json_request(extra="Connection: close\r\n")):
        with _connect(server) as s:
            s.sendall(req)
            buf = bytearray()
            status, headers, body = _read_response(s, buf)
            assert status == 200 and headers.get("connection") == "close"
            np.testing.assert_allclose(_probs(body), expected, rtol=1e-6, atol=1e-6)
            assert s.recv(100) == b""  # closed by the server


def test_head_has_no_body_and_malformed_http_is_400(server):
    with _connect(server) as s:
        s.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\nGET /v2/health/ready HTTP/1.1\r\n\r\n")
        buf = bytearray()
        status, headers, body = _read_response(s, buf, head_only=True)
        assert status == 405 and int(headers["content-length"]) > 0  # the length GET's answer would have
        assert _read_response(s, buf)[0] == 200  # the next answer is not mistaken for a body
    with _connect(server) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = _read_response(s, bytearray())
        assert status == 400 and "invalid HTTP" in json.loads(body)["error"]


def test_bodies_over_the_limit_are_413_and_the_connection_goes_on(server, expected):
    big = b"x" * (1_100_000)  # the fixture's limit is 1 MB
    with _connect(server) as s:
        buf = bytearray()
        s.sendall(f"POST /v2/models/classifier/infer HTTP/1.1\r\nContent-Length: {len(big)}\r\n\r\n".encode() + big)
        status, _, body = _read_response(s, buf)
        assert status == 413 and "limit" in json.loads(body)["error"]
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(big[i : i + 65536]), big[i : i + 65536]) for i in range(0, len(big), 65536)
        )
        s.sendall(
            b"POST /v2/models/classifier/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        )
        status, _, body = _read_response(s, buf)
        assert status == 413 and "limit" in json.loads(body)["error"]
        s.sendall(_json_request())  # the rest of both bodies was read and dropped: the next request is answered
        status, _, body = _read_response(s, buf)
        assert status == 200
        np.testing.assert_allclose(_probs(body), expected, rtol=1e-6, atol=1e-6)
