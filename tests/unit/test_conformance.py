"""Every registered backend passes the same checks on the same golden models (bushu.testing)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from bushu.errors import UnsupportedOpError, UserInputError
from bushu.runtime import load_backend, registry
from bushu.runtime.backends.onnxruntime import OnnxRuntimeBackend
from bushu.spec import TensorSpec
from bushu.testing.conformance import CHECKS, ConformanceError, backend_params, check_backend, run_check
from bushu.testing.golden import golden_cases


@pytest.fixture(scope="module")
def cases(golden_dir):
    return golden_cases(golden_dir)


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("backend", backend_params())
def test_conformance(backend, check, cases):
    assert run_check(backend, check, cases) >= 1


# -- the golden models themselves, against a third implementation (the ONNX reference evaluator) ---
def test_golden_onnx_matches_numpy_reference(cases):
    from onnx.reference import ReferenceEvaluator

    for case in cases:
        if ".onnx" not in case.files:
            continue
        feeds = case.feeds(batch=2)
        got = ReferenceEvaluator(str(case.files[".onnx"])).run(None, feeds)
        for out, want in zip(case.outputs, got, strict=True):
            np.testing.assert_allclose(want, case.expected(feeds)[out.name], rtol=1e-5, atol=1e-6, err_msg=case.name)


def test_golden_covers_dtypes_and_multi_io(cases):
    dtypes = {s.dtype for c in cases for s in c.inputs}
    assert {"float32", "float16", "int32", "int64"} <= dtypes
    assert any(len(c.inputs) > 1 and len(c.outputs) > 1 for c in cases)
    assert all(s.shape[0] == "batch" for c in cases for s in c.inputs)


# -- the suite can fail: broken backends, registered the way a plugin would be ------------------------
class Shifted(OnnxRuntimeBackend):
    """Off by 1e-3 on every float output."""

    name = "shifted"

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = super().infer(feeds)
        return {k: v + v.dtype.type(1e-3) if v.dtype.kind == "f" else v for k, v in out.items()}


class Leaky(OnnxRuntimeBackend):
    """Lets the runtime's own exceptions out instead of InferenceInputError."""

    name = "leaky"

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._output_names, self.session.run(self._output_names, dict(feeds)), strict=True))


class StaticBatch(OnnxRuntimeBackend):
    """Reports batch as a fixed 1."""

    name = "static_batch"

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(s.name, s.dtype, (1, *s.shape[1:])) for s in self._inputs]


@pytest.fixture
def broken(monkeypatch):
    for cls in (Shifted, Leaky, StaticBatch):
        spec = registry.BackendSpec(cls.name, f"{__name__}:{cls.__name__}", "core", (".onnx",))
        monkeypatch.setitem(registry.BUILTIN, cls.name, spec)


@pytest.mark.parametrize(
    ("backend", "check", "message"),
    [
        ("shifted", "infer", "OUTPUT0: max abs diff 0.001"),
        ("leaky", "bad_inputs", "expected InferenceInputError"),
        ("static_batch", "io", "a symbolic str leading dim"),
    ],
)
def test_suite_catches_broken_backends(broken, cases, backend, check, message):
    with pytest.raises(ConformanceError, match=message) as err:
        run_check(backend, check, cases)
    assert "add_sub_float32.onnx" in str(err.value)


def test_check_backend_writes_its_own_golden_models():
    check_backend("onnxruntime", checks=["io", "infer"])


def test_check_backend_reports_every_failing_check(broken, cases):
    with pytest.raises(ConformanceError) as err:
        check_backend("shifted", cases)
    assert "'infer'" in str(err.value) and "'io'" not in str(err.value)


# -- OpenVINO specifics ------------------------------------------------------------------------------
needs_openvino = pytest.mark.skipif(not registry.is_installed("openvino"), reason="pip install 'bushu[openvino]'")


@pytest.fixture(scope="module")
def gemm(cases):
    return next(c for c in cases if c.name == "gemm_softmax")


@needs_openvino
def test_openvino_is_fp32_by_default_and_bf16_on_request(gemm):
    with load_backend(gemm.files[".onnx"], "openvino") as b:
        assert b.describe()["precision"] == "f32"
    with load_backend(gemm.files[".onnx"], "openvino", precision="bf16", hint="throughput", threads=1) as b:
        d = b.describe()
        assert (d["precision"], d["hint"], d["threads"]) == ("bf16", "throughput", 1)
        feeds = gemm.feeds(batch=4)
        np.testing.assert_allclose(b.infer(feeds)["OUTPUT0"], gemm.expected(feeds)["OUTPUT0"], atol=5e-2)


@needs_openvino
@pytest.mark.parametrize(
    "options", [{"precision": "int3"}, {"hint": "fast"}, {"device": "npu9"}, {"threads": "two"}, {"streams": -1}]
)
def test_openvino_rejects_bad_options(gemm, options):
    with pytest.raises(UserInputError, match="openvino"):
        load_backend(gemm.files[".onnx"], "openvino", **options)


@needs_openvino
def test_openvino_gpu_only_when_listed(gemm):
    import openvino as ov

    if any(d.startswith("GPU") for d in ov.Core().available_devices):
        with load_backend(gemm.files[".onnx"], "openvino", device="gpu") as b:
            assert b.describe()["device"] == "GPU"
    else:
        with pytest.raises(UserInputError, match="no device 'gpu'"):
            load_backend(gemm.files[".onnx"], "openvino", device="gpu")


@needs_openvino
def test_unsupported_op_names_the_op(cases, tmp_path):
    from bushu.testing.golden import write_unsupported_onnx

    path = write_unsupported_onnx(cases[0], tmp_path / "u.onnx")
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(UnsupportedOpError, match="BushuNoSuchOp") as err:
            load_backend(path, backend)
        assert err.value.backend == backend


def test_golden_onnx_needs_no_torch(tmp_path):
    """Plugins without PyTorch can still build the golden ONNX models."""
    import subprocess
    import sys

    code = (
        "import sys; from bushu.testing.golden import write_golden; "
        f"cs = write_golden({str(tmp_path)!r}, torch=False); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert all('.pt2' not in c.files for c in cs); print(len(cs))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) >= 7


# -- edge backends (ncnn, MNN, LiteRT, OpenCV DNN): the formats `bushu export` writes ------------------
EDGE = {"ncnn": ".param", "mnn": ".mnn", "litert": ".tflite", "opencv": ".onnx"}


@pytest.mark.parametrize("backend", [b for b in EDGE if registry.is_installed(b)])
def test_edge_golden_models_written(cases, backend):
    from bushu.testing.golden import EDGE_FORMATS

    with_file = [c.name for c in cases if EDGE[backend] in c.files]
    assert {"add_sub_float32", "gemm_softmax", "conv_relu"} <= set(with_file)
    if EDGE[backend] in EDGE_FORMATS:  # float32 only: these runtimes take no int64/fp16 tensors
        assert not any(n.startswith(("add_sub_int", "add_sub_float16")) for n in with_file)


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        pytest.param(b, o, id=f"{b}-{next(iter(o))}")
        for b in ("ncnn", "mnn")
        if registry.is_installed(b)
        for o in ({"precision": "int3"}, {"threads": "two"}, {"device": "gpu"})
    ]
    + [
        pytest.param(b, {"threads": "two"}, id=f"{b}-threads") for b in ("litert", "opencv") if registry.is_installed(b)
    ],
)
def test_edge_backends_reject_bad_options(cases, backend, options):
    conv = next(c for c in cases if c.name == "conv_relu")
    with pytest.raises(UserInputError, match=backend):
        load_backend(conv.files[EDGE[backend]], backend, **options)


@pytest.mark.skipif(not registry.is_installed("ncnn"), reason="pip install 'bushu[ncnn]'")
def test_ncnn_is_fp32_by_default_and_fp16_on_request(cases):
    conv = next(c for c in cases if c.name == "conv_relu")
    feeds = conv.feeds(batch=2)
    with load_backend(conv.files[".param"], "ncnn") as b:
        assert b.describe()["precision"] == "fp32"
    with load_backend(conv.files[".param"], "ncnn", precision="fp16", threads=1) as b:
        assert b.describe()["precision"] == "fp16"
        np.testing.assert_allclose(b.infer(feeds)["OUTPUT0"], conv.expected(feeds)["OUTPUT0"], atol=2e-2)


def test_edge_model_without_io_sidecar_is_a_clear_error(cases, tmp_path):
    import shutil

    from bushu.errors import ModelLoadError

    for backend in ("ncnn", "mnn"):
        if not registry.is_installed(backend):
            continue
        src = next(c for c in cases if c.name == "conv_relu").files[EDGE[backend]]
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        if backend == "ncnn":
            shutil.copy(src.with_suffix(".bin"), dst.with_suffix(".bin"))
        with pytest.raises(ModelLoadError, match="no IO description") as err:
            load_backend(dst, backend)
        assert "bushu export" in err.value.hint
