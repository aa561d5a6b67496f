"""The GPU path on a real NVIDIA GPU: onnxruntime's CUDA and TensorRT providers and bushu's TensorRT
engines against CPU onnxruntime on the same inputs, fp16/int8 engines within their budgets, and a
KIND_GPU model served through tritonclient. Every test skips, saying why, on a machine without a GPU
(CI has none); scripts/gpu-check.sh runs them where one is lent."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bushu.runtime import load_backend
from bushu.runtime.registry import is_installed

pytestmark = pytest.mark.gpu

if not is_installed("onnxruntime-cuda"):
    pytest.skip(
        "no GPU path here: onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu on an NVIDIA GPU)",
        allow_module_level=True,
    )

RESNET = textwrap.dedent("""
    import torch, torchvision

    def build():
        torch.manual_seed(0)
        return torchvision.models.resnet18(num_classes=1000).eval()
""")


def _import(root: Path, src: str, *extra: str) -> Path:
    from bushu.cli import main

    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["import", src, "-o", str(root / "art"), *extra]) == 0
    finally:
        os.chdir(cwd)
    return root / "art"


@pytest.fixture(scope="module", params=["efficientnet_lite0", "resnet18"])
def art(request, tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "resnet18":
        (root / "gpu_resnet18.py").write_text(RESNET)
        sys.modules.pop("gpu_resnet18", None)
        return _import(root, "gpu_resnet18:build", "--input-shape", "1,3,224,224")
    return _import(root, "efficientnet_lite0")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from bushu.testing.photos import write_imagenet_photos

    return write_imagenet_photos(tmp_path_factory.mktemp("photos"), per_class=6)


def _feeds(art: Path, n: int = 4) -> dict[str, np.ndarray]:
    from bushu.model.artifact import Artifact

    a = Artifact.load(art)
    x = np.random.default_rng(0).standard_normal(a.inputs[0].concrete_shape(batch=n)).astype(np.float32)
    return {a.inputs[0].name: x}


def _cpu(art: Path, feeds):
    with load_backend(art / "model.onnx", "onnxruntime") as b:
        return b.infer(feeds)


@pytest.mark.parametrize("backend, atol", [("onnxruntime-cuda", 2e-3), ("onnxruntime-trt", 2e-3)])
def test_gpu_providers_match_cpu_onnxruntime(art, backend, atol):
    if not is_installed(backend):
        pytest.skip(f"{backend} is not usable here")
    feeds = _feeds(art)
    ref = _cpu(art, feeds)
    with load_backend(art / "model.onnx", backend, trt_cache=str(art / ".trt-cache")) as b:
        assert b.describe()["providers"][0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        got = b.infer(feeds)
    for k, v in ref.items():
        np.testing.assert_allclose(got[k], v, atol=atol, rtol=1e-3)


@pytest.mark.parametrize("fmt", ["tensorrt", "tensorrt-fp16", "tensorrt-int8"])
def test_tensorrt_engines_stay_within_their_budgets(art, photos, fmt, tmp_path):
    if not is_installed("tensorrt"):
        pytest.skip("the tensorrt backend is not usable here (pip install tensorrt cuda-python)")
    from bushu.export import export

    rows = export(art, [fmt], tmp_path, data=photos, calib_size=30)
    assert rows[0]["status"] == "ok", rows[0]
    feeds = _feeds(art)
    ref = next(iter(_cpu(art, feeds).values()))
    with load_backend(tmp_path / fmt / "model.engine", "tensorrt") as b:
        got = next(iter(b.infer(feeds).values()))
    assert (got.argmax(1) == ref.argmax(1)).mean() >= (1.0 if fmt == "tensorrt" else 0.75)
    if fmt == "tensorrt":
        np.testing.assert_allclose(got, ref, atol=1e-3, rtol=1e-3)


def test_kind_gpu_model_served_through_tritonclient(art, tmp_path):
    tritonhttp = pytest.importorskip("tritonclient.http")
    from bushu.serve import start_server

    model_dir = tmp_path / "repo" / "m" / "1"
    model_dir.mkdir(parents=True)
    (model_dir / "model.onnx").symlink_to((art / "model.onnx").resolve())
    (tmp_path / "repo" / "m" / "config.pbtxt").write_text(
        "max_batch_size: 8\ndynamic_batching {}\ninstance_group [{ count: 1 kind: KIND_GPU gpus: [0] }]\n"
    )
    feeds = _feeds(art, 2)
    ((name, x),) = feeds.items()
    ref = next(iter(_cpu(art, feeds).values()))
    with start_server(tmp_path / "repo") as srv:
        c = tritonhttp.InferenceServerClient(srv.http_url.removeprefix("http://"))
        i = tritonhttp.InferInput(name, list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        out = c.infer("m", [i])
        got = out.as_numpy(out.get_response()["outputs"][0]["name"])
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)
