"""`bushu package` as a user runs it: a real pretrained model (MobileNetV2, ImageNet) → an SDK zip →
pip install in a fresh venv → `mobilenet-v2-predict cat.jpg` gives the same labels and scores as
`bushu serve` and as bushu's own ONNX Runtime run, with no PyTorch in that venv."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from test_package_venv import dir_size, fresh_venv, pip_install, wheelhouse  # noqa: E402

sys.path.pop(0)


def bushu(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bushu", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_errors_are_one_line_with_a_hint(tmp_path):
    proc = bushu("package", str(tmp_path / "nope"), "-o", str(tmp_path / "x.zip"))
    assert proc.returncode == 2 and "error: artifact not found" in proc.stderr and "Hint:" in proc.stderr
    proc = bushu("package", str(tmp_path), "--replicas", "5:2")
    assert proc.returncode == 2 and "MIN <= MAX" in proc.stderr
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.slow
def test_mobilenet_sdk_from_import_to_fresh_venv(tmp_path):
    pytest.importorskip("torch")
    wheels = wheelhouse(tmp_path)
    from PIL import Image
    from skimage import data

    cat = tmp_path / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(cat, quality=95)
    coffee = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(coffee)

    proc = bushu("import", "mobilenet_v2", "-o", str(tmp_path / "art"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = bushu("package", str(tmp_path / "art"), "-o", str(tmp_path / "mobilenet.zip"), "--check", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["script"] == "mobilenet-v2-predict" and summary["checked"] is True
    bundle = tmp_path / "mobilenet.zip"

    py = fresh_venv(tmp_path / "venv")
    install_s = pip_install(py, bundle, wheels)
    proc = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True)
    assert "No module named 'torch'" in proc.stderr
    proc = subprocess.run(
        [str(tmp_path / "venv/bin/mobilenet-v2-predict"), str(cat), str(coffee), "--json", "-k", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    sdk = {Path(item["image"]).stem: item["predictions"] for item in json.loads(proc.stdout)}
    assert sdk["chelsea"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}, sdk["chelsea"]
    assert sdk["coffee"][0]["label"] == "espresso", sdk["coffee"]

    # bushu's own ONNX Runtime run on the artifact
    from bushu.model.artifact import Artifact
    from bushu.model.processing import preprocess_images, top_k
    from bushu.validate import run_model

    art = Artifact.load(tmp_path / "art")
    x = preprocess_images([cat, coffee], art.preprocess)
    logits = next(iter(run_model(art.model_path, {art.inputs[0].name: x}).values()))
    for stem, row in zip(["chelsea", "coffee"], top_k(logits, art.labels, art.postprocess, k=5)):
        assert [p["label"] for p in sdk[stem]] == [lbl for _, lbl, _ in row]
        np.testing.assert_allclose([p["score"] for p in sdk[stem]], [s for _, _, s in row], rtol=1e-4, atol=1e-6)

    # `bushu serve` on the repository the bundle's Dockerfile lays out
    root = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root)
    (top,) = list(root.iterdir())
    repo = tmp_path / "repo"
    shutil.copytree(top / "deploy/repository", repo)
    shutil.copytree(top / "src/mobilenet_v2_sdk/model", repo / "mobilenet_v2" / "1")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bushu",
            "serve",
            str(repo),
            "--http-port",
            str(port),
            "--grpc-port",
            "-1",
            "--metrics-port",
            "-1",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(server.stdout.read())
                time.sleep(0.5)
        for image in (cat, coffee):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/models/mobilenet_v2:classify?k=5", data=image.read_bytes(), method="POST"
            )
            with urllib.request.urlopen(req, timeout=60) as r:
                served = json.loads(r.read())["predictions"]
            mine = sdk[image.stem]
            assert [p["label"] for p in served] == [p["label"] for p in mine]
            np.testing.assert_allclose([p["score"] for p in served], [p["score"] for p in mine], rtol=1e-4, atol=1e-6)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        server.stdout.close()

    sizes = {
        "bundle_mb": round(bundle.stat().st_size / 1e6, 2),
        "venv_mb": round(dir_size(tmp_path / "venv") / 1e6, 1),
        "pip_install_s": round(install_s, 1),
    }
    print("package sizes:", json.dumps(sizes))
    assert sizes["venv_mb"] < 500, sizes  # the light runtime only: a torch venv is ~5,500 MB
