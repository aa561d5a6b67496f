"""Triton's system shared memory extension, driven as tritonclient's own example drives it: inputs
written to /dev/shm regions and outputs read back from them, over HTTP and gRPC, compared with
onnxruntime run directly. Bad regions get precise 400s and the server keeps serving."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import numpy as np
import onnxruntime as ort
import pytest

tritonhttp = pytest.importorskip("tritonclient.http")
tritongrpc = pytest.importorskip("tritonclient.grpc")
shm = pytest.importorskip("tritonclient.utils.shared_memory")
from tritonclient.utils import InferenceServerException  # noqa: E402

from bushu.serve import start_server  # noqa: E402
from bushu.serve.testing import make_test_repository  # noqa: E402


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_test_repository(tmp_path_factory.mktemp("repo"), echo_delay_ms=5)


@pytest.fixture(scope="module")
def server(repo):
    with start_server(repo, metrics_port=None) as srv:
        yield srv


@pytest.fixture
def regions():
    """Input and output regions for add_sub (2 x 16 int32 each way), removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    made = {}
    for kind in ("in", "out"):
        key = f"/bushu_test_{kind}_{tag}"
        made[kind] = (f"{kind}_{tag}", key, shm.create_shared_memory_region(f"{kind}_{tag}", key, 128))
    yield made
    for _, _, handle in made.values():
        shm.destroy_shared_memory_region(handle)


def _expected(repo, a, b):
    sess = ort.InferenceSession(str(repo / "add_sub" / "1" / "model.onnx"))
    return sess.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": a, "INPUT1": b})


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_inputs_and_outputs_in_shared_memory_match_onnxruntime(server, repo, regions, proto):
    mod, client = (
        (tritonhttp, tritonhttp.InferenceServerClient(server.http_url.removeprefix("http://")))
        if proto == "http"
        else (tritongrpc, tritongrpc.InferenceServerClient(server.grpc_url))
    )
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    (in_name, in_key, in_handle), (out_name, out_key, out_handle) = regions["in"], regions["out"]
    shm.set_shared_memory_region(in_handle, [a, b])
    client.register_system_shared_memory(in_name, in_key, 128)
    client.register_system_shared_memory(out_name, out_key, 128)
    try:
        inputs = [mod.InferInput("INPUT0", [1, 16], "INT32"), mod.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_shared_memory(in_name, 64)
        inputs[1].set_shared_memory(in_name, 64, offset=64)
        outputs = [mod.InferRequestedOutput("OUTPUT0"), mod.InferRequestedOutput("OUTPUT1")]
        outputs[0].set_shared_memory(out_name, 64)
        outputs[1].set_shared_memory(out_name, 64, offset=64)
        result = client.infer("add_sub", inputs, outputs=outputs)
        want_sum, want_diff = _expected(repo, a, b)
        out0 = result.get_output("OUTPUT0")
        assert out0 is not None
        got_sum = shm.get_contents_as_numpy(out_handle, np.int32, [1, 16])
        got_diff = shm.get_contents_as_numpy(out_handle, np.int32, [1, 16], offset=64)
        np.testing.assert_array_equal(got_sum, want_sum)
        np.testing.assert_array_equal(got_diff, want_diff)

        status = client.get_system_shared_memory_status()
        names = [r["name"] for r in status] if proto == "http" else list(status.regions)
        assert sorted(names) == sorted([in_name, out_name])
    finally:
        client.unregister_system_shared_memory()
    status = client.get_system_shared_memory_status()
    assert (len(status) if proto == "http" else len(status.regions)) == 0


def _post(server, path, body: dict | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{server.http_url.removesuffix('/v2')}/v2/{path}", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize(
    "key, fragment",
    [
        ("/../etc/passwd", "not a POSIX shared memory name"),
        ("/etc/passwd", "not a POSIX shared memory name"),
        ("..", "not a POSIX shared memory name"),
        ("/bushu_no_such_region", "does not exist"),
    ],
)
def test_bad_keys_are_refused_precisely(server, key, fragment):
    status, body = _post(server, "systemsharedmemory/region/bad/register", {"key": key, "offset": 0, "byte_size": 8})
    assert status == 400 and fragment in body["error"], body


def test_windows_outside_the_region_and_unknown_regions_are_400(server, regions):
    name, key, _ = regions["in"]
    status, body = _post(
        server, f"systemsharedmemory/region/{name}/register", {"key": key, "offset": 64, "byte_size": 128}
    )
    assert status == 400 and "past the end" in body["error"]
    assert (
        _post(server, f"systemsharedmemory/region/{name}/register", {"key": key, "offset": 0, "byte_size": 128})[0]
        == 200
    )
    try:

        def infer(region, offset):
            return _post(
                server,
                "models/add_sub/infer",
                {
                    "inputs": [
                        {
                            "name": n,
                            "shape": [1, 16],
                            "datatype": "INT32",
                            "parameters": {
                                "shared_memory_region": region,
                                "shared_memory_byte_size": 64,
                                "shared_memory_offset": offset,
                            },
                        }
                        for n in ("INPUT0", "INPUT1")
                    ]
                },
            )

        status, body = infer(name, 96)
        assert status == 400 and "outside shared memory region" in body["error"] and "INPUT0" in body["error"]
        status, body = infer("nope", 0)
        assert status == 400 and "no shared memory region 'nope'" in body["error"]
        status, body = infer(name, 0)  # the server is fine and the region still works
        assert status == 200 and body["outputs"][0]["data"] == [0] * 16
    finally:
        assert _post(server, "systemsharedmemory/unregister", b"")[0] == 200


def test_off_on_a_public_address_unless_asked_for(repo):
    from bushu.serve.app import ServerOptions

    assert ServerOptions(host="127.0.0.1").shared_memory_on and ServerOptions(host="::1").shared_memory_on
    assert not ServerOptions(host="0.0.0.0").shared_memory_on
    assert ServerOptions(host="0.0.0.0", shared_memory=True).shared_memory_on
    with start_server(repo, grpc_port=None, metrics_port=None, shared_memory=False) as srv:
        client = tritonhttp.InferenceServerClient(srv.http_url.removeprefix("http://").removesuffix("/v2"))
        with pytest.raises(InferenceServerException, match="shared memory extension is off"):
            client.get_system_shared_memory_status()
        url = f"{srv.http_url.removesuffix('/v2')}/v2/systemsharedmemory/status"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
        answer = json.loads(e.value.read())
        assert e.value.code == 403 and "is off" in answer["error"] and "--shared-memory" in answer["hint"]


def test_grpc_unknown_region_is_invalid_argument_and_the_server_keeps_serving(server):
    client = tritongrpc.InferenceServerClient(server.grpc_url)
    inputs = [tritongrpc.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for i in inputs:
        i.set_shared_memory("never_registered", 64)
    with pytest.raises(InferenceServerException, match="no shared memory region 'never_registered'") as e:
        client.infer("add_sub", inputs)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="CUDA shared memory is not supported"):
        client.register_cuda_shared_memory("gpu", b"\0" * 64, 0, 64)
    a = np.ones((1, 16), np.int32)
    for i in inputs:
        i.set_data_from_numpy(a)
    np.testing.assert_array_equal(client.infer("add_sub", inputs).as_numpy("OUTPUT0"), a + a)
