"""`bushu.bench.bench.benchmark` on a tiny real ONNX model with real backends (no timing assertions)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from bushu.bench.bench import ROW_KEYS, benchmark
from bushu.errors import UnknownNameError, UserInputError
from bushu.model.artifact import Artifact, write_artifact
from bushu.runtime.registry import is_installed
from bushu.spec import TensorSpec


def tiny_artifact(out, batch: int | str = "batch"):
    """x [batch,3,16,16] -> Conv 3->8 -> Relu -> GlobalAveragePool -> Flatten -> Gemm 8->5."""
    rng = np.random.default_rng(0)
    n = helper.make_node
    graph = helper.make_graph(
        [
            n("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            n("Relu", ["c"], ["r"]),
            n("GlobalAveragePool", ["r"], ["g"]),
            n("Flatten", ["g"], ["f"]),
            n("Gemm", ["f", "W2", "B2"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
        [
            numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), name)
            for name, s in (("W", (8, 3, 3, 3)), ("B", (8,)), ("W2", (8, 5)), ("B2", (5,)))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    art = Artifact(
        path=out,
        model_file="model.onnx",
        format="onnx",
        name="tiny",
        inputs=[TensorSpec("x", "float32", (batch, 3, 16, 16))],
        outputs=[TensorSpec("logits", "float32", (batch, 5))],
    )
    return write_artifact(out, {"model.onnx": model.SerializeToString()}, art, labels=list("abcde"))


BACKENDS = ["onnxruntime"] + (["openvino"] if is_installed("openvino") else [])


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return tiny_artifact(tmp_path_factory.mktemp("bench") / "tiny")


@pytest.fixture(scope="module")
def rows(art):
    return benchmark(
        art.path,
        backends=[*BACKENDS, "torch", "null"],
        batch_sizes=(1, 4),
        warmup=1,
        repeats=3,
        duration_s=0,
        progress=False,
    )


def test_rows_have_the_documented_keys_and_positive_numbers(rows):
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["backend"], r["batch"]) for r in ok} == {(b, n) for b in BACKENDS for n in (1, 4)}
    for r in rows:
        assert set(ROW_KEYS) <= set(r)
    for r in ok:
        assert r["runs"] >= 3 and r["reason"] is None and r["precision"]
        for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "throughput", "peak_rss_mb", "cpu_ms"):
            assert r[k] > 0, (k, r)
        assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["peak_rss_mb"] > r["base_rss_mb"] > 0  # measured in the backend's own process
        assert r["file"] == "model.onnx"


def test_backends_that_cannot_run_it_say_why(rows):
    torch_rows = [r for r in rows if r["backend"] == "torch"]
    assert len(torch_rows) == 2 and all(r["status"] == "skipped" for r in torch_rows)
    assert ".pt2" in torch_rows[0]["reason"]  # the artifact has no reference file the torch backend reads
    null_rows = [r for r in rows if r["backend"] == "null"]
    assert all(r["status"] == "skipped" and ".null" in r["reason"] for r in null_rows)


def test_recorded_into_the_artifact(art, rows):
    meta = yaml.safe_load((art.path / "bushu.yaml").read_text())
    bench = meta["metrics"]["bench"]
    assert {"time", "env", "rows"} <= set(bench)
    assert bench["env"]["logical_cores"] >= 1
    assert len([r for r in bench["rows"] if r["status"] == "ok"]) == 2 * len(BACKENDS)


def test_in_process_and_threads(art):
    out = benchmark(
        art,
        backends=["onnxruntime"],
        batch_sizes=(2,),
        threads=(1, 2),
        warmup=0,
        repeats=2,
        duration_s=0,
        isolate=False,
        progress=False,
        record=False,
    )
    assert [(r["threads"], r["status"]) for r in out] == [(1, "ok"), (2, "ok")]
    assert all(r["throughput"] > 0 for r in out)


def test_fixed_batch_model_skips_other_batches(tmp_path):
    fixed = tiny_artifact(tmp_path / "fixed", batch=1)
    out = benchmark(
        fixed,
        backends=["onnxruntime"],
        batch_sizes=(1, 4),
        warmup=0,
        repeats=1,
        duration_s=0,
        isolate=False,
        progress=False,
        record=False,
    )
    assert [r["status"] for r in out] == ["ok", "skipped"]
    assert "fixed batch of 1" in out[1]["reason"]


def test_corrupt_model_is_an_error_row_not_a_crash(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model at all")
    out = benchmark(bad, backends=["onnxruntime"], batch_sizes=(1,), progress=False, record=False)
    assert out[0]["status"] == "error" and "bad.onnx" in out[0]["reason"]


def test_bad_arguments(art):
    with pytest.raises(UnknownNameError, match="did you mean 'onnxruntime'"):
        benchmark(art, backends=["onnxrt"], progress=False)
    with pytest.raises(UserInputError, match="batch"):
        benchmark(art, batch_sizes=(0,), progress=False)
