"""Bad requests get a precise 4xx (or gRPC status) with {"error": ...}; the server stays up and
other requests are unaffected."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tritonhttp = pytest.importorskip("tritonclient.http")
tritongrpc = pytest.importorskip("tritonclient.grpc")

from bushu.serve import start_server  # noqa: E402
from bushu.serve.testing import make_test_repository  # noqa: E402

MAX_BODY_MB = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = make_test_repository(tmp_path_factory.mktemp("repo"), echo_delay_ms=20)
    with start_server(repo, max_body_mb=MAX_BODY_MB) as srv:
        yield srv


def post(server, path, body: bytes, headers: dict | None = None, method: str = "POST"):
    host, port = server.http_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    return r.status, (json.loads(data) if data and r.getheader("content-type") == "application/json" else data)


def infer_json(name="x", shape=(1, 4), datatype="FP32", data=None):
    data = data if data is not None else [0.5] * int(np.prod(shape))
    return json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}]}).encode()


def binary_body(arr: np.ndarray, declared: int | None = None, extra: bytes = b"", name="x", datatype="FP32"):
    raw = arr.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(arr.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": declared if declared is not None else len(raw)},
                }
            ]
        }
    ).encode()
    return header + raw + extra, {"Inference-Header-Content-Length": str(len(header))}


def assert_error(status, body, want_status, *needles):
    assert status == want_status, (status, body)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    for n in needles:
        assert n in body["error"], (n, body["error"])


def test_unknown_model_and_version(server):
    s, b = post(server, "/v2/models/clasifier/infer", infer_json())
    assert_error(s, b, 404, "clasifier", "did you mean 'classifier'")
    s, b = post(server, "/v2/models/classifier/versions/7/infer", infer_json())
    assert_error(s, b, 404, "no version '7'", "['1']")
    s, b = post(server, "/v2/models/classifier/versions/7/ready", b"", method="GET")
    assert s == 404


@pytest.mark.parametrize(
    "body,needles",
    [
        (infer_json(name="xx"), ["no input 'xx'", "did you mean 'x'"]),
        (infer_json(datatype="INT32", data=[1, 2, 3, 4]), ["dtype int32", "expected float32"]),
        (infer_json(shape=(1, 5), data=[0.0] * 5), ["shape [1, 5]", "dim 1 must be 4"]),
        (infer_json(shape=(1, 4), data=[0.0] * 3), ["3 elements", "needs 4"]),
        (infer_json(shape=(9, 4)), ["batch size 9", "1..8"]),
        (infer_json(shape=(1, -4)), ["non-negative"]),
        (infer_json(datatype="FP33"), ["unknown datatype 'FP33'"]),
        (infer_json(data=["a", "b", "c", "d"]), ["not valid FP32"]),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2', ["malformed JSON"]),
        (b"[1, 2, 3]", ["'inputs' list"]),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, NaN, 2, 3]}]}', ["NaN"]),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}', ["neither 'data' nor"]),
    ],
    ids=[
        "name",
        "dtype",
        "shape",
        "count",
        "batch",
        "negative-dim",
        "datatype",
        "strings",
        "json",
        "not-object",
        "nan",
        "no-data",
    ],
)
def test_bad_json_requests(server, body, needles):
    s, b = post(server, "/v2/models/classifier/infer", body)
    assert_error(s, b, 400, *needles)


def test_binary_body_shorter_or_longer_than_declared(server):
    x = np.ones((1, 4), np.float32)
    body, h = binary_body(x, declared=32)
    s, b = post(server, "/v2/models/classifier/infer", body, h)
    assert_error(s, b, 400, "binary_data_size 32 runs past the end")
    body, h = binary_body(x, extra=b"\0" * 8)
    s, b = post(server, "/v2/models/classifier/infer", body, h)
    assert_error(s, b, 400, "8 bytes after the inputs")
    body, h = binary_body(x, declared=12, extra=b"")
    s, b = post(server, "/v2/models/classifier/infer", body, h)
    assert_error(s, b, 400, "12 bytes of binary data", "needs 16")
    s, b = post(server, "/v2/models/classifier/infer", body, {"Inference-Header-Content-Length": "999999"})
    assert_error(s, b, 400, "larger than the body")
    s, b = post(server, "/v2/models/classifier/infer", body, {"Inference-Header-Content-Length": "ten"})
    assert_error(s, b, 400, "not an integer")


def test_bytes_with_bad_length_prefix(server):
    good = struct.pack("<I", 5) + b"hello"
    bad = struct.pack("<I", 50) + b"hello"
    for raw, needle in (
        (bad, "claims 50 bytes"),
        (good[:3], "truncated length prefix"),
        (good + good, "holds 2 elements"),
    ):
        header = json.dumps(
            {
                "inputs": [
                    {"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
                ]
            }
        ).encode()
        s, b = post(
            server, "/v2/models/text/infer", header + raw, {"Inference-Header-Content-Length": str(len(header))}
        )
        assert_error(s, b, 400, needle)


def test_oversized_body_is_413(server):
    big = np.zeros((8, 40000), np.float32)  # 1.28 MB > 1 MB limit
    body, h = binary_body(big)
    s, b = post(server, "/v2/models/classifier/infer", body, h)
    assert_error(s, b, 413, "limit")


def test_unknown_output_and_bad_classification(server):
    body = json.loads(infer_json())
    body["outputs"] = [{"name": "prob"}]
    s, b = post(server, "/v2/models/classifier/infer", json.dumps(body).encode())
    assert_error(s, b, 404, "'prob'", "did you mean 'probs'")
    body["outputs"] = [{"name": "probs", "parameters": {"classification": "two"}}]
    s, b = post(server, "/v2/models/classifier/infer", json.dumps(body).encode())
    assert_error(s, b, 400, "classification")


def test_management_is_off_and_paths_are_not_names(server):
    s, b = post(server, "/v2/repository/models/classifier/unload", b"")
    assert_error(s, b, 403, "--model-control-mode none")
    s, b = post(server, "/v2/models/..%2F..%2Fetc/infer", infer_json())
    assert s == 404
    s, b = post(server, "/v2/models/classifier/infer", b"", method="GET")
    assert_error(s, b, 405, "POST")


def test_grpc_errors_have_precise_status(server):
    c = tritongrpc.InferenceServerClient(server.grpc_url)
    inp = tritongrpc.InferInput("x", [1, 4], "INT32")
    inp.set_data_from_numpy(np.ones((1, 4), np.int32))
    with pytest.raises(tritongrpc.InferenceServerException) as e:
        c.infer("classifier", [inp])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "expected float32" in e.value.message()
    with pytest.raises(tritongrpc.InferenceServerException) as e:
        c.infer("clasifier", [inp])
    assert e.value.status() == "StatusCode.NOT_FOUND" and "did you mean" in e.value.message()
    with pytest.raises(tritongrpc.InferenceServerException) as e:
        c.unload_model("classifier")
    assert e.value.status() == "StatusCode.PERMISSION_DENIED"


def test_garbage_on_the_grpc_and_http_ports(server):
    for url in (server.grpc_url, server.http_url.removeprefix("http://")):
        host, port = url.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"\x00\xffGARBAGE\r\n\r\n" * 100)
            try:
                sock.recv(100)
            except OSError:
                pass
    c = tritonhttp.InferenceServerClient(server.http_url.removeprefix("http://"))
    assert c.is_server_live() and c.is_server_ready()
    assert tritongrpc.InferenceServerClient(server.grpc_url).is_server_ready()


def test_a_bad_request_never_fails_its_batch_mates(server):
    """Good and bad requests sent at once to a batching model: each gets its own answer."""
    results: dict[int, tuple] = {}

    def send(i):
        x = np.full((1, 2), i, np.float32)
        body = infer_json(shape=(1, 2), data=x.ravel().tolist()) if i % 3 else infer_json(shape=(1, 3), data=[1, 2, 3])
        results[i] = post(server, "/v2/models/echo/infer", body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (s, b) in results.items():
        if i % 3:
            assert s == 200 and b["outputs"][0]["data"] == [float(i)] * 2, (i, s, b)
        else:
            assert_error(s, b, 400, "dim 1 must be 2")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "inputs",
                        "name",
                        "shape",
                        "datatype",
                        "data",
                        "parameters",
                        "outputs",
                        "binary_data_size",
                        "classification",
                        "x",
                        "id",
                    ]
                ),
                c,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_fuzzed_json_bodies_never_crash(server, doc):
    try:
        body = json.dumps(doc).encode()
    except ValueError:
        return
    s, b = post(server, "/v2/models/classifier/infer", body)
    assert s in (200, 400, 404), (s, b, body)
    if s != 200:
        assert isinstance(b, dict) and b.get("error")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64), st.integers(0, 80), st.sampled_from(["classifier", "text", "add_sub"]))
def test_fuzzed_binary_bodies_never_crash(server, tail, cut, model):
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "TEXT" if model == "text" else "x",
                    "shape": [1, 1 if model == "text" else 4],
                    "datatype": "BYTES" if model == "text" else "FP32",
                    "parameters": {"binary_data_size": len(tail)},
                }
            ]
        }
    ).encode()
    body = header + tail
    s, b = post(
        server,
        f"/v2/models/{model}/infer",
        body,
        {"Inference-Header-Content-Length": str(min(cut, len(body)) if cut < 80 else len(header))},
    )
    assert s in (200, 400, 404), (s, b)
    if s != 200:
        assert isinstance(b, dict) and b.get("error")


def test_server_still_up_after_all_that(server):
    c = tritonhttp.InferenceServerClient(server.http_url.removeprefix("http://"))
    inp = tritonhttp.InferInput("x", [2, 4], "FP32")
    inp.set_data_from_numpy(np.ones((2, 4), np.float32))
    assert c.infer("classifier", [inp]).as_numpy("probs").shape == (2, 3)
    stats = c.get_inference_statistics("classifier")["model_stats"][0]["inference_stats"]
    assert stats["fail"]["count"] > 0
