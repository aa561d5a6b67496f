"""The GPU path's decisions that can be checked without a GPU: provider choice, clear refusals on a CPU
machine (never a silent run on the CPU), GPU backends absent from the installed list, KIND_GPU models
that fail to load with the reason while the server keeps serving the others, and the gpu-check summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bushu.errors import BackendError, MissingDependencyError
from bushu.runtime import load_backend
from bushu.runtime.backends.onnxruntime import choose_providers
from bushu.runtime.registry import get_backend, installed_backends, list_backends
from bushu.serve.testing import classifier_onnx

CPU = ["CPUExecutionProvider"]
GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def _gpu_here() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def test_providers_follow_the_device_as_an_ordered_preference():
    assert choose_providers("cpu", GPU) == CPU
    assert choose_providers("cuda", GPU) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("tensorrt", GPU) == GPU
    assert choose_providers("gpu", GPU) == GPU
    assert choose_providers("gpu", CPU) == CPU  # "gpu" means the best there is
    assert choose_providers("cpu", GPU, ["CUDAExecutionProvider"]) == ["CUDAExecutionProvider"]


@pytest.mark.parametrize(
    "device, provider", [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")]
)
def test_a_gpu_device_without_its_provider_is_refused_with_the_fix(device, provider):
    with pytest.raises(BackendError, match=provider) as e:
        choose_providers(device, CPU)
    assert "onnxruntime-gpu" in (e.value.hint or "")
    with pytest.raises(BackendError, match="no CUDAExecutionProvider"):
        choose_providers("cpu", CPU, ["CUDAExecutionProvider"])


@pytest.mark.skipif(_gpu_here(), reason="this onnxruntime has a CUDA provider")
def test_gpu_backends_are_known_but_not_installed_on_a_cpu_machine(tmp_path):
    assert {"onnxruntime-cuda", "onnxruntime-trt", "tensorrt"} <= set(list_backends())
    assert not {"onnxruntime-cuda", "onnxruntime-trt", "tensorrt"} & set(installed_backends())
    model = classifier_onnx(tmp_path / "m.onnx")
    with pytest.raises(BackendError, match="CUDAExecutionProvider"):
        load_backend(model, "onnxruntime-cuda")
    with pytest.raises(BackendError, match="TensorrtExecutionProvider"):
        load_backend(model, "onnxruntime", device="tensorrt")
    with load_backend(model, "onnxruntime") as b:  # the CPU default is unchanged
        out = b.infer({"x": np.ones((1, 4), np.float32)})
    assert next(iter(out.values())).shape == (1, 3)


def test_tensorrt_backend_needs_its_packages_or_a_gpu():
    try:
        cls = get_backend("tensorrt")
    except MissingDependencyError as e:  # the usual case on a CPU machine: no tensorrt / cuda-python
        assert "tensorrt" in str(e)
        return
    reason = cls.unavailable()
    if reason is None:
        pytest.skip("a CUDA device is here")
    assert "CUDA" in reason


@pytest.mark.skipif(_gpu_here(), reason="a GPU is here: KIND_GPU loads")
def test_kind_gpu_model_fails_to_load_with_the_reason_and_others_serve(tmp_path):
    pytest.importorskip("tritonclient.http")
    import tritonclient.http as tritonhttp

    from bushu.serve import start_server

    classifier_onnx(tmp_path / "cpu" / "1" / "model.onnx")
    classifier_onnx(tmp_path / "gpu" / "1" / "model.onnx")
    (tmp_path / "gpu" / "config.pbtxt").write_text("instance_group [{ count: 1 kind: KIND_GPU }]\n")
    with start_server(tmp_path, model_control_mode="explicit") as srv:
        c = tritonhttp.InferenceServerClient(srv.http_url.removeprefix("http://"))
        c.load_model("cpu")
        with pytest.raises(tritonhttp.InferenceServerException) as e:
            c.load_model("gpu")
        assert "CUDAExecutionProvider" in e.value.message()
        assert c.is_model_ready("cpu") and not c.is_model_ready("gpu")


def test_tensorrt_export_is_skipped_with_the_reason_without_a_gpu(tmp_path):
    if _gpu_here():
        pytest.skip("a GPU is here")
    from bushu.export import export
    from bushu.model.artifact import Artifact
    from bushu.spec import TensorSpec

    model = classifier_onnx(tmp_path / "art" / "model.onnx")
    art = Artifact(
        path=tmp_path / "art",
        model_file="model.onnx",
        format="onnx",
        name="clf",
        inputs=[TensorSpec("x", "float32", ("batch", 4))],
        outputs=[TensorSpec("probs", "float32", ("batch", 3))],
    )
    art.save()
    assert model.is_file()
    rows = export(art.path, ["tensorrt", "tensorrt-fp16"], tmp_path / "out")
    for row in rows:
        assert row["status"] == "skipped", row
        assert "GPU" in row["reason"] or "tensorrt" in row["reason"]


def test_gpu_check_summary_reads_junit_and_bench(tmp_path):
    """scripts/gpu-check.sh's summary step, on a JUnit file and bench JSON of the shapes it writes."""
    (tmp_path / "gpu-tests.xml").write_text(
        '<testsuites><testsuite name="pytest" tests="3" failures="1" skipped="1">'
        '<testcase classname="tests.integration.test_gpu" name="test_a" time="1.5"/>'
        '<testcase classname="tests.integration.test_gpu" name="test_b" time="0.1"><failure message="boom"/></testcase>'
        '<testcase classname="tests.integration.test_gpu" name="test_c" time="0"><skipped message="no trt"/></testcase>'
        "</testsuite></testsuites>"
    )
    (tmp_path / "gpu-bench.json").write_text(
        json.dumps({"rows": [{"backend": "onnxruntime-cuda", "batch": 8, "p50_ms": 1.0, "throughput": 8000.0}]})
    )
    (tmp_path / "env.json").write_text(json.dumps({"gpu": {"devices": [{"name": "NVIDIA H100"}]}}))
    script = Path(__file__).parents[2] / "scripts" / "gpu_summary.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tests"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert summary["failures"] == [{"test": "test_b", "message": "boom"}]
    assert summary["device"] == "NVIDIA H100"
    md = (tmp_path / "summary.md").read_text()
    assert "| onnxruntime-cuda | 8 |" in md and "1 failed" in md
