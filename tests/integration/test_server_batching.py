"""Dynamic batching, bounded queues, timeouts and non-batching models, on the null backend."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

tritonhttp = pytest.importorskip("tritonclient.http")

from bushu.serve import start_server  # noqa: E402


def _null(root, name, inputs, config, delay_ms=0):
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.null").write_text(f"delay_ms: {delay_ms}\ninputs: {inputs}\n")
    if config is not None:
        (root / name / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    _null(
        root,
        "echo",
        "[{name: x, dtype: float32, shape: [batch, 2]}]",
        "max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 20000 }",
        delay_ms=30,
    )
    _null(
        root,
        "preferred",
        "[{name: x, dtype: float32, shape: [batch, 2]}]",
        "max_batch_size: 16\ndynamic_batching { preferred_batch_size: [4] max_queue_delay_microseconds: 20000 }",
        delay_ms=30,
    )
    _null(
        root,
        "ragged",
        "[{name: x, dtype: float32, shape: [batch, n]}]",
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 20000 }",
        delay_ms=10,
    )
    _null(
        root,
        "tiny_queue",
        "[{name: x, dtype: float32, shape: [batch, 2]}]",
        "max_batch_size: 1\ndynamic_batching { default_queue_policy { max_queue_size: 2 } }",
        delay_ms=150,
    )
    _null(
        root,
        "timeout",
        "[{name: x, dtype: float32, shape: [batch, 2]}]",
        "max_batch_size: 1\ndynamic_batching { default_queue_policy { default_timeout_microseconds: 50000 } }",
        delay_ms=300,
    )
    _null(root, "nobatch", "[{name: x, dtype: int64, shape: [3]}]", "max_batch_size: 0")
    _null(
        root,
        "two_instances",
        "[{name: x, dtype: float32, shape: [batch, 2]}]",
        "max_batch_size: 4\ndynamic_batching { }\ninstance_group { count: 2 }",
        delay_ms=5,
    )
    _gather_model(root / "lookup")
    with start_server(root) as srv:
        yield srv


def _gather_model(model_dir):
    """idx: int64[batch, 1] -> table[idx]; onnxruntime fails the whole run on an index out of range."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(10, dtype=np.float32) * 10, "table")
    g = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["out"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1])],
        initializer=[table],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    (model_dir / "1").mkdir(parents=True)
    onnx.save(m, str(model_dir / "1" / "model.onnx"))
    (model_dir / "config.pbtxt").write_text(
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 50000 }"
    )


def _send_all(server, model, arrays):
    """Send every array at once with the aio client; returns results or exceptions, in order."""
    import tritonclient.http.aio as aio

    async def run():
        c = aio.InferenceServerClient(server.http_url.removeprefix("http://"), conn_limit=len(arrays))
        try:

            async def one(a):
                i = aio.InferInput("x", list(a.shape), "FP32" if a.dtype == np.float32 else "INT64")
                i.set_data_from_numpy(a)
                return (await c.infer(model, [i])).as_numpy("x")

            return await asyncio.gather(*(one(a) for a in arrays), return_exceptions=True)
        finally:
            await c.close()

    return asyncio.run(run())


def _stats(server, model):
    c = tritonhttp.InferenceServerClient(server.http_url.removeprefix("http://"))
    return c.get_inference_statistics(model)["model_stats"][0]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server):
    before = _stats(server, "echo")
    arrays = [np.full((1 + i % 2, 2), i, np.float32) for i in range(16)]
    results = _send_all(server, "echo", arrays)
    for a, r in zip(arrays, results):
        assert not isinstance(r, BaseException), r
        np.testing.assert_array_equal(r, a)
    after = _stats(server, "echo")
    execs = after["execution_count"] - before["execution_count"]
    assert after["inference_count"] - before["inference_count"] == sum(a.shape[0] for a in arrays)
    assert execs < len(arrays), f"{execs} executions for {len(arrays)} requests: nothing was batched"
    assert any(b["batch_size"] > 2 for b in after["batch_stats"])


def test_batches_stop_at_the_largest_preferred_size(server):
    # Triton forms the largest preferred size it can, not max_batch_size: past the knee of a model's
    # throughput curve, bigger batches only run slower per row.
    arrays = [np.full((1, 2), i, np.float32) for i in range(16)]
    results = _send_all(server, "preferred", arrays)
    for a, r in zip(arrays, results):
        assert not isinstance(r, BaseException), r
        np.testing.assert_array_equal(r, a)
    sizes = {b["batch_size"] for b in _stats(server, "preferred")["batch_stats"]}
    assert max(sizes) == 4, sizes


def test_requests_with_different_dims_go_in_separate_batches(server):
    arrays = [np.full((1, 2 + i % 2), i, np.float32) for i in range(8)]
    results = _send_all(server, "ragged", arrays)
    for a, r in zip(arrays, results):
        assert not isinstance(r, BaseException), r
        np.testing.assert_array_equal(r, a)
    assert _stats(server, "ragged")["execution_count"] >= 2


def test_full_queue_answers_503_busy(server):
    results = _send_all(server, "tiny_queue", [np.zeros((1, 2), np.float32)] * 8)
    busy = [r for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert ok and busy
    assert all(e.status() == "503" and "queued" in e.message() for e in busy), busy


def test_queue_timeout_answers_503(server):
    results = _send_all(server, "timeout", [np.zeros((1, 2), np.float32)] * 3)
    timed_out = [r for r in results if isinstance(r, BaseException)]
    assert timed_out and all(e.status() == "503" and "timed out" in e.message() for e in timed_out)


def test_model_without_batching_runs_requests_as_sent(server):
    c = tritonhttp.InferenceServerClient(server.http_url.removeprefix("http://"))
    i = tritonhttp.InferInput("x", [3], "INT64")
    i.set_data_from_numpy(np.array([1, 2, 3], np.int64))
    np.testing.assert_array_equal(c.infer("nobatch", [i]).as_numpy("x"), [1, 2, 3])
    assert c.get_model_config("nobatch").get("max_batch_size", 0) == 0
    i = tritonhttp.InferInput("x", [1, 3], "INT64")
    i.set_data_from_numpy(np.array([[1, 2, 3]], np.int64))
    with pytest.raises(tritonhttp.InferenceServerException) as e:
        c.infer("nobatch", [i])
    assert e.value.status() == "400" and "rank" in e.value.message()


def test_several_instances_serve_one_model(server):
    arrays = [np.full((1, 2), i, np.float32) for i in range(12)]
    results = _send_all(server, "two_instances", arrays)
    for a, r in zip(arrays, results):
        np.testing.assert_array_equal(r, a)
    cfg = tritonhttp.InferenceServerClient(server.http_url.removeprefix("http://")).get_model_config("two_instances")
    assert cfg["instance_group"][0]["count"] == 2
    assert len(server.manager.get("two_instances").backends) == 2


def test_a_request_whose_client_left_is_not_run(server):
    import json
    import socket
    import threading
    import time

    host, port = server.http_url.removeprefix("http://").split(":")
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}).encode()
    raw = (
        f"POST /v2/models/tiny_queue/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    before = _stats(server, "tiny_queue")["execution_count"]
    first = threading.Thread(target=_send_all, args=(server, "tiny_queue", [np.zeros((1, 2), np.float32)]))
    first.start()  # occupies the only instance for 150 ms
    time.sleep(0.03)
    with socket.create_connection((host, int(port))) as s:
        s.sendall(raw)
        time.sleep(0.03)  # queued behind the first request; now the client goes away
    first.join()
    time.sleep(0.4)
    assert _stats(server, "tiny_queue")["execution_count"] - before == 1


def test_a_request_that_fails_inside_the_model_does_not_fail_its_batch(server):
    import tritonclient.http.aio as aio

    idx = [3, 99, 5, 7, -50, 1]  # 99 and -50 are out of range: onnxruntime rejects the whole run

    async def run():
        c = aio.InferenceServerClient(server.http_url.removeprefix("http://"), conn_limit=len(idx))
        try:

            async def one(i):
                inp = aio.InferInput("idx", [1, 1], "INT64")
                inp.set_data_from_numpy(np.array([[i]], np.int64))
                return (await c.infer("lookup", [inp])).as_numpy("out")

            return await asyncio.gather(*(one(i) for i in idx), return_exceptions=True)
        finally:
            await c.close()

    before = _stats(server, "lookup")["execution_count"]
    results = asyncio.run(run())
    for i, r in zip(idx, results):
        if 0 <= i < 10:
            assert not isinstance(r, BaseException), r
            assert r.tolist() == [[i * 10.0]]
        else:
            assert isinstance(r, BaseException) and r.status() == "400" and "onnxruntime" in r.message(), r
    assert _stats(server, "lookup")["execution_count"] > before
