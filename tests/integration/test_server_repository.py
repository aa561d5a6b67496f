"""Repository control: explicit load/unload, versions by policy, hot reload with zero failed requests,
failed loads that keep the old version serving, unsupported config fields, API keys."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

tritonhttp = pytest.importorskip("tritonclient.http")
tritongrpc = pytest.importorskip("tritonclient.grpc")

from bushu.serve import start_server  # noqa: E402
from bushu.serve.testing import classifier_onnx  # noqa: E402

X = np.random.default_rng(5).standard_normal((2, 4)).astype(np.float32)


def _ort(path, x=X):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _infer(client, model, version="", x=X):
    i = tritonhttp.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    return client.infer(model, [i], model_version=version).as_numpy("probs")


def _client(srv, **kw):
    return tritonhttp.InferenceServerClient(srv.http_url.removeprefix("http://"), **kw)


@pytest.fixture(scope="module")
def explicit(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    classifier_onnx(root / "clf" / "1" / "model.onnx", seed=1)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    with start_server(root, model_control_mode="explicit") as srv:
        yield srv, root


def test_explicit_load_unload(explicit):
    srv, root = explicit
    c = _client(srv)
    rows = {r["name"]: r for r in c.get_model_repository_index()}
    assert rows["clf"]["state"] == "UNAVAILABLE" and not c.is_model_ready("clf")
    c.load_model("clf")
    assert c.is_model_ready("clf")
    np.testing.assert_allclose(_infer(c, "clf"), _ort(root / "clf" / "1" / "model.onnx"), rtol=1e-6, atol=1e-6)
    c.unload_model("clf")
    assert not c.is_model_ready("clf") and srv.manager.loaded_versions("clf") == []
    with pytest.raises(tritonhttp.InferenceServerException) as e:
        _infer(c, "clf")
    assert e.value.status() == "404" and "not ready" in e.value.message()
    g = tritongrpc.InferenceServerClient(srv.grpc_url)
    g.load_model("clf")
    assert g.is_model_ready("clf")


def test_bad_loads_are_precise(explicit):
    srv, _ = explicit
    c = _client(srv)
    with pytest.raises(tritonhttp.InferenceServerException) as e:
        c.load_model("clff")
    assert e.value.status() == "404" and "did you mean 'clf'" in e.value.message()
    with pytest.raises(tritonhttp.InferenceServerException) as e:
        c.load_model("broken")
    assert e.value.status() == "400" and "not a loadable ONNX model" in e.value.message()
    row = next(r for r in c.get_model_repository_index() if r["name"] == "broken")
    assert row["state"] == "UNAVAILABLE" and "ONNX" in row["reason"]
    import http.client

    host, port = srv.http_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/v2/repository/models/..%2F..%2Ftmp/load", body=b"")
    r = conn.getresponse()
    assert r.status in (400, 404) and b"error" in r.read()


def test_new_version_swaps_in_and_a_failed_reload_keeps_it(explicit):
    srv, root = explicit
    c = _client(srv)
    c.load_model("clf")
    classifier_onnx(root / "clf" / "2" / "model.onnx", seed=2)
    c.load_model("clf")
    assert c.get_model_metadata("clf")["versions"] == ["2"]
    np.testing.assert_allclose(_infer(c, "clf"), _ort(root / "clf" / "2" / "model.onnx"), rtol=1e-6, atol=1e-6)
    (root / "clf" / "3").mkdir()
    (root / "clf" / "3" / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(tritonhttp.InferenceServerException):
        c.load_model("clf")
    assert c.get_model_metadata("clf")["versions"] == ["2"]  # the previous version keeps serving
    np.testing.assert_allclose(_infer(c, "clf"), _ort(root / "clf" / "2" / "model.onnx"), rtol=1e-6, atol=1e-6)
    row = next(r for r in c.get_model_repository_index() if r["name"] == "clf")
    assert "ONNX" in row["reason"]
    shutil.rmtree(root / "clf" / "3")


def test_version_policy_all_and_unsupported_fields_reported(tmp_path):
    for v in (1, 2):
        classifier_onnx(tmp_path / "clf" / str(v) / "model.onnx", seed=v)
    (tmp_path / "clf" / "config.pbtxt").write_text(
        "max_batch_size: 4\nversion_policy { all { } }\nresponse_cache { enable: true }\n"
    )
    with start_server(tmp_path) as srv:
        c = _client(srv)
        assert c.get_model_metadata("clf")["versions"] == ["1", "2"]
        assert [m.version for m in srv.manager.loaded_versions("clf")] == ["1", "2"]
        assert srv.manager.loaded_versions("nope") == []
        for v in ("1", "2"):
            np.testing.assert_allclose(
                _infer(c, "clf", v), _ort(tmp_path / "clf" / v / "model.onnx"), rtol=1e-6, atol=1e-6
            )
        rows = [r for r in c.get_model_repository_index() if r["name"] == "clf"]
        assert all("response_cache" in r.get("warnings", []) for r in rows)
        with pytest.raises(tritonhttp.InferenceServerException) as e:
            _infer(c, "clf", x=np.ones((5, 4), np.float32))
        assert "1..4" in e.value.message()


def test_config_that_contradicts_the_model_is_reported(tmp_path):
    classifier_onnx(tmp_path / "clf" / "1" / "model.onnx")
    (tmp_path / "clf" / "config.pbtxt").write_text(
        'max_batch_size: 4\ninput { name: "x" data_type: TYPE_INT32 dims: [ 4 ] }\n'
    )
    (tmp_path / "typo").mkdir()
    (tmp_path / "typo" / "config.pbtxt").write_text("max_batch_sise: 4\n")
    with start_server(tmp_path) as srv:
        rows = {r["name"]: r for r in _client(srv).get_model_repository_index()}
        assert "TYPE_INT32" in rows["clf"]["reason"] and "float32" in rows["clf"]["reason"]
        assert "max_batch_sise" in rows["typo"]["reason"]
        assert not _client(srv).is_server_ready()


def test_poll_mode_hot_swap_with_zero_failed_requests(tmp_path):
    classifier_onnx(tmp_path / "clf" / "1" / "model.onnx", seed=1)
    with start_server(tmp_path, model_control_mode="poll", repository_poll_secs=0.2) as srv:
        c = _client(srv, concurrency=1)
        failures, done = [], threading.Event()

        def hammer():
            cc = _client(srv)
            while not done.is_set():
                try:
                    _infer(cc, "clf")
                except Exception as e:  # noqa: BLE001 - every failure is the finding
                    failures.append(e)

        t = threading.Thread(target=hammer)
        t.start()
        try:
            classifier_onnx(tmp_path / ".staging.onnx", seed=2)
            (tmp_path / "clf" / "2").mkdir()
            shutil.move(tmp_path / ".staging.onnx", tmp_path / "clf" / "2" / "model.onnx")
            classifier_onnx(tmp_path / "new" / "1" / "model.onnx", seed=3)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                c.is_model_ready("new") and c.get_model_metadata("clf")["versions"] == ["2"]
            ):
                time.sleep(0.1)
        finally:
            done.set()
            t.join()
        assert failures == []
        assert c.get_model_metadata("clf")["versions"] == ["2"] and c.is_model_ready("new")
        np.testing.assert_allclose(_infer(c, "clf"), _ort(tmp_path / "clf" / "2" / "model.onnx"), rtol=1e-6, atol=1e-6)
        shutil.rmtree(tmp_path / "new")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and c.is_model_ready("new"):
            time.sleep(0.1)
        assert not c.is_model_ready("new")


def test_api_keys(tmp_path):
    classifier_onnx(tmp_path / "clf" / "1" / "model.onnx")
    with start_server(tmp_path, api_key="infer-key", admin_key="admin-key", model_control_mode="explicit") as srv:
        c = _client(srv)
        assert c.is_server_live()  # health stays open for orchestrators
        with pytest.raises(tritonhttp.InferenceServerException) as e:
            c.get_model_repository_index()
        assert e.value.status() == "401"
        c.load_model("clf", headers={"X-API-Key": "admin-key"})
        with pytest.raises(tritonhttp.InferenceServerException) as e:
            _infer(c, "clf")
        assert e.value.status() == "401" and "API key" in e.value.message()
        i = tritonhttp.InferInput("x", [2, 4], "FP32")
        i.set_data_from_numpy(X)
        out = c.infer("clf", [i], headers={"Authorization": "Bearer infer-key"}).as_numpy("probs")
        assert out.shape == (2, 3)
        with pytest.raises(tritonhttp.InferenceServerException):
            c.unload_model("clf", headers={"Authorization": "Bearer infer-key"})
        g = tritongrpc.InferenceServerClient(srv.grpc_url)
        gi = tritongrpc.InferInput("x", [2, 4], "FP32")
        gi.set_data_from_numpy(X)
        with pytest.raises(tritongrpc.InferenceServerException) as e:
            g.infer("clf", [gi])
        assert e.value.status() == "StatusCode.UNAUTHENTICATED"
        assert g.infer("clf", [gi], headers={"authorization": "Bearer infer-key"}).as_numpy("probs").shape == (2, 3)
