"""The real server driven by NVIDIA's tritonclient (HTTP and gRPC, binary and JSON, sync and aio),
every output compared with onnxruntime run directly on the same model file."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest

tritonhttp = pytest.importorskip("tritonclient.http")
tritongrpc = pytest.importorskip("tritonclient.grpc")

from bushu.serve import add_to_repository, start_server  # noqa: E402
from bushu.serve.testing import LABELS, make_test_repository  # noqa: E402


def _image_artifact(tmp):
    """A bushu artifact for an 8x8 RGB classifier with image pre-processing and labels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bushu.model.artifact import Artifact, Preprocess, write_artifact
    from bushu.spec import TensorSpec

    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((192, 3)).astype(np.float32), "W")
    g = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["logits"])],
        "img",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    src = tmp / "img.onnx"
    onnx.save(m, str(src))
    art = Artifact(
        path=tmp,
        model_file="model.onnx",
        format="onnx",
        inputs=[TensorSpec("image", "float32", ("batch", 3, 8, 8))],
        outputs=[TensorSpec("logits", "float32", ("batch", 3))],
        name="tiny_image",
        preprocess=Preprocess(resize=8, crop=8),
    )
    return write_artifact(tmp / "art", {"model.onnx": src}, art, labels=["red", "green", "blue"])


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = make_test_repository(tmp_path_factory.mktemp("repo"), echo_delay_ms=5)
    add_to_repository(root, _image_artifact(tmp_path_factory.mktemp("art")), name="tiny_image")
    return root


@pytest.fixture(scope="module")
def server(repo):
    with start_server(repo) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server):
    return tritonhttp.InferenceServerClient(server.http_url.removeprefix("http://"))


@pytest.fixture(scope="module")
def grpc_client(server):
    return tritongrpc.InferenceServerClient(server.grpc_url)


def _ort(repo, model, feeds):
    sess = ort.InferenceSession(str(repo / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


X = np.random.default_rng(7).standard_normal((5, 4)).astype(np.float32)
A = np.random.default_rng(8).integers(-100, 100, (3, 16)).astype(np.int32)
B = np.random.default_rng(9).integers(-100, 100, (3, 16)).astype(np.int32)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http_classifier_matches_onnxruntime(http, repo, binary):
    inp = tritonhttp.InferInput("x", list(X.shape), "FP32")
    inp.set_data_from_numpy(X, binary_data=binary)
    out = tritonhttp.InferRequestedOutput("probs", binary_data=binary)
    res = http.infer("classifier", [inp], outputs=[out])
    np.testing.assert_allclose(res.as_numpy("probs"), _ort(repo, "classifier", {"x": X})["probs"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http_add_sub_int32_two_outputs(http, repo, binary):
    ins = [
        tritonhttp.InferInput("INPUT0", list(A.shape), "INT32"),
        tritonhttp.InferInput("INPUT1", list(B.shape), "INT32"),
    ]
    ins[0].set_data_from_numpy(A, binary_data=binary)
    ins[1].set_data_from_numpy(B, binary_data=binary)
    res = http.infer(
        "add_sub", ins, outputs=[tritonhttp.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
    )
    ref = _ort(repo, "add_sub", {"INPUT0": A, "INPUT1": B})
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), ref["OUTPUT0"])
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), ref["OUTPUT1"])
    assert res.as_numpy("OUTPUT0").dtype == np.int32


def test_grpc_raw_contents_match_onnxruntime(grpc_client, repo):
    ins = [
        tritongrpc.InferInput("INPUT0", list(A.shape), "INT32"),
        tritongrpc.InferInput("INPUT1", list(B.shape), "INT32"),
    ]
    ins[0].set_data_from_numpy(A)
    ins[1].set_data_from_numpy(B)
    res = grpc_client.infer("add_sub", ins, model_version="1")
    ref = _ort(repo, "add_sub", {"INPUT0": A, "INPUT1": B})
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), ref["OUTPUT0"])
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), ref["OUTPUT1"])
    inp = tritongrpc.InferInput("x", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    np.testing.assert_allclose(
        grpc_client.infer("classifier", [inp]).as_numpy("probs"),
        _ort(repo, "classifier", {"x": X})["probs"],
        rtol=1e-6,
        atol=1e-6,
    )


def test_grpc_typed_contents(server, repo):
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    req = pb.ModelInferRequest(model_name="classifier")
    t = req.inputs.add(name="x", datatype="FP32", shape=list(X.shape))
    t.contents.fp32_contents.extend(X.ravel().tolist())
    with grpc.insecure_channel(server.grpc_url) as ch:
        resp = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req)
    got = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(list(resp.outputs[0].shape))
    np.testing.assert_allclose(got, _ort(repo, "classifier", {"x": X})["probs"], rtol=1e-6, atol=1e-6)


def test_aio_clients(server, repo):
    import tritonclient.grpc.aio as grpcaio
    import tritonclient.http.aio as httpaio

    async def run():
        h = httpaio.InferenceServerClient(server.http_url.removeprefix("http://"))
        g = grpcaio.InferenceServerClient(server.grpc_url)
        try:
            hi = httpaio.InferInput("x", list(X.shape), "FP32")
            hi.set_data_from_numpy(X)
            gi = grpcaio.InferInput("x", list(X.shape), "FP32")
            gi.set_data_from_numpy(X)
            rh, rg = await asyncio.gather(h.infer("classifier", [hi]), g.infer("classifier", [gi]))
            return (
                rh.as_numpy("probs"),
                rg.as_numpy("probs"),
                await h.is_server_ready(),
                await g.is_model_ready("classifier"),
            )
        finally:
            await h.close()
            await g.close()

    ph, pg, ready, model_ready = asyncio.run(run())
    ref = _ort(repo, "classifier", {"x": X})["probs"]
    np.testing.assert_allclose(ph, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pg, ref, rtol=1e-6, atol=1e-6)
    assert ready and model_ready


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_classification_extension(http, grpc_client, repo, proto):
    mod, client = (tritonhttp, http) if proto == "http" else (tritongrpc, grpc_client)
    inp = mod.InferInput("x", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    res = client.infer("classifier", [inp], outputs=[mod.InferRequestedOutput("probs", class_count=2)])
    got = res.as_numpy("probs")
    probs = _ort(repo, "classifier", {"x": X})["probs"]
    assert got.shape == (5, 2)
    for row, p in zip(got, probs):
        best = np.argsort(-p)[:2]
        parts = [x.decode().split(":") for x in row]
        assert [int(i) for _, i, _ in parts] == best.tolist()
        assert [lbl for _, _, lbl in parts] == [LABELS[i] for i in best]
        np.testing.assert_allclose([float(s) for s, _, _ in parts], p[best], atol=1e-5)


def test_bytes_tensors_round_trip(http, grpc_client):
    data = np.array([[b"hello"], [b""], ["\u90e8\u7f72".encode()]], dtype=object)
    for mod, client in ((tritonhttp, http), (tritongrpc, grpc_client)):
        for binary in (True, False) if mod is tritonhttp else (True,):
            inp = mod.InferInput("TEXT", [3, 1], "BYTES")
            inp.set_data_from_numpy(data, **({"binary_data": binary} if mod is tritonhttp else {}))
            out = client.infer("text", [inp]).as_numpy("OUT")
            assert out.tolist() == data.tolist()


def test_metadata_config_stats_index(http, grpc_client):
    md = http.get_model_metadata("add_sub")
    assert md["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]
    assert md["versions"] == ["1"] and md["platform"] == "onnxruntime_onnx"
    cfg = http.get_model_config("classifier")  # completed from the model: no config.pbtxt exists
    assert cfg["max_batch_size"] == 8 and cfg["input"][0]["dims"] == [4] and "dynamic_batching" in cfg
    gcfg = grpc_client.get_model_config("add_sub").config
    assert gcfg.max_batch_size == 8 and gcfg.dynamic_batching.max_queue_delay_microseconds == 1000
    assert grpc_client.get_server_metadata().name == "bushu"
    assert "binary_tensor_data" in http.get_server_metadata()["extensions"]
    inp = tritonhttp.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(X[:1])
    before = http.get_inference_statistics("classifier")["model_stats"][0]["inference_count"]
    http.infer("classifier", [inp])
    stats = http.get_inference_statistics("classifier")["model_stats"][0]
    assert stats["inference_count"] == before + 1 and stats["inference_stats"]["success"]["count"] >= 1
    gstats = grpc_client.get_inference_statistics("classifier").model_stats[0]
    assert gstats.inference_count == before + 1
    names = {m["name"] for m in http.get_model_repository_index()}
    assert names == {"classifier", "add_sub", "echo", "text", "tiny_image"}
    assert {m.name for m in grpc_client.get_model_repository_index().models} == names


def test_image_endpoint_matches_direct_preprocess_and_onnxruntime(server, repo):
    from PIL import Image

    from bushu.model.artifact import Preprocess
    from bushu.model.processing import preprocess_image, softmax

    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    req = urllib.request.Request(
        f"{server.http_url}/v1/models/tiny_image:classify?k=3",
        data=buf.getvalue(),
        headers={"Content-Type": "image/png"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read())
    x = preprocess_image(img, Preprocess(resize=8, crop=8))[None]
    probs = softmax(_ort(repo, "tiny_image", {"image": x})["logits"])[0]
    order = np.argsort(-probs)
    assert [p["label"] for p in answer["predictions"]] == [["red", "green", "blue"][i] for i in order]
    np.testing.assert_allclose([p["score"] for p in answer["predictions"]], probs[order], atol=1e-5)


def test_image_endpoint_takes_multipart_uploads(server):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="JPEG")
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + buf.getvalue() + b"\r\n--XyZ--\r\n"
    )
    req = urllib.request.Request(
        f"{server.http_url}/v1/models/tiny_image:classify",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read())
    assert len(answer["predictions"]) == 3 and abs(sum(p["score"] for p in answer["predictions"]) - 1) < 1e-4
    bad = urllib.request.Request(f"{server.http_url}/v1/models/tiny_image:classify", data=b"not an image")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad, timeout=30)
    assert e.value.code == 400 and "cannot decode" in json.loads(e.value.read())["error"]


def test_openapi_document_lists_the_endpoints(server):
    with urllib.request.urlopen(f"{server.http_url}/openapi.json", timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["openapi"].startswith("3.")
    assert "/v1/models/{model}:classify" in doc["paths"] and "/v2/models/{model}/infer" in doc["paths"]


def test_metrics_use_triton_names(server, http):
    inp = tritonhttp.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(X[:1])
    http.infer("classifier", [inp])
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    for name in (
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "process_resident_memory_bytes",
    ):
        assert f"\n{name}" in text, name
    line = next(x for x in text.splitlines() if x.startswith('nv_inference_request_success{model="classifier"'))
    assert float(line.split()[-1]) >= 1


def test_serving_never_imports_torch(repo):
    code = (
        "import sys, numpy as np, tritonclient.http as th\n"
        "from bushu.serve import start_server\n"
        f"with start_server({str(repo)!r}) as s:\n"
        "    c = th.InferenceServerClient(s.http_url[7:])\n"
        "    i = th.InferInput('x', [1, 4], 'FP32'); i.set_data_from_numpy(np.ones((1, 4), np.float32))\n"
        "    c.infer('classifier', [i])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
