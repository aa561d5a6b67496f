"""The SDK bundle installs with pip into a fresh virtual environment, offline, without PyTorch or bushu.

The fresh venv gets its wheels (onnxruntime, numpy, pillow and their few dependencies) from a
wheelhouse: $BUSHU_WHEELHOUSE if set, else a cache that `pip download` fills once from the configured
index. pip then runs with --no-index, as on an air-gapped machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from bushu.cli import main

RUNTIME = ["onnxruntime", "numpy", "pillow"]


def wheelhouse(tmp_root: Path) -> Path:
    """A folder of wheels for the SDK's requirements (built once, then reused)."""
    given = os.environ.get("BUSHU_WHEELHOUSE")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bushu-tests" / \
        f"wheelhouse-py{sys.version_info.major}{sys.version_info.minor}"
    if not any(cache.glob("onnxruntime-*.whl")):
        cache.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(cache), *RUNTIME],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"no wheelhouse: set BUSHU_WHEELHOUSE to a folder of {RUNTIME} wheels "
                        f"(pip download failed: {proc.stderr.strip()[-300:]})")
    return cache


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return path / "bin" / "python"


def pip_install(python: Path, target: str | Path, wheels: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                           str(target)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return time.perf_counter() - t0


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _tiny_artifact(tmp: Path):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_package import _artifact, _images
    finally:
        sys.path.remove(str(Path(__file__).parent))
    return _artifact(tmp), _images(tmp)


def test_bundle_installs_offline_in_a_fresh_venv_without_torch(tmp_path):
    wheels = wheelhouse(tmp_path)
    art, images = _tiny_artifact(tmp_path)
    bundle = tmp_path / "pets.tar.gz"
    assert main(["package", str(art.path), "-o", str(bundle)]) == 0
    py = fresh_venv(tmp_path / "venv")
    pip_install(py, bundle, wheels)  # the archive itself is a pip-installable source bundle

    # no torch, no bushu: only the light runtime came in
    for mod in ("torch", "bushu", "torchvision"):
        proc = subprocess.run([str(py), "-c", f"import {mod}"], capture_output=True, text=True)
        assert proc.returncode != 0 and "No module named" in proc.stderr, mod
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0].lower() for line in freeze.split()}
    assert "tiny-pets-sdk" in names and "onnxruntime" in names
    assert not names & {"torch", "bushu", "torchvision", "onnx"}, names

    # the console script and the Python API in the venv agree with bushu in this process
    proc = subprocess.run([str(tmp_path / "venv/bin/tiny-pets-predict"), *map(str, images), "--json", "-k", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    from bushu.model.processing import preprocess_images, top_k
    from bushu.validate import run_model

    logits = run_model(art.model_path, {"image": preprocess_images(images, art.preprocess)})["logits"]
    want = top_k(logits, art.labels, art.postprocess, k=3)
    for item, w in zip(got, want):
        assert [p["label"] for p in item["predictions"]] == [lbl for _, lbl, _ in w]
        assert [round(p["score"], 6) for p in item["predictions"]] == [round(s, 6) for _, _, s in w]
    code = ("import sys, json; from tiny_pets_sdk import Predictor, __version__; "
            "print(json.dumps([__version__, Predictor().predict(sys.argv[1], top_k=1)]))")
    proc = subprocess.run([str(py), "-c", code, str(images[0])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    version, preds = json.loads(proc.stdout)
    assert version == "1.0.0" and preds[0][0] == got[0]["predictions"][0]["label"]

    # tampering with the installed model is caught at load
    site = Path(subprocess.run([str(py), "-c", "import tiny_pets_sdk, os; print(os.path.dirname(tiny_pets_sdk.__file__))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "model" / "labels.txt").write_text("cat\ndog\nbird\nshark\n")
    proc = subprocess.run([str(tmp_path / "venv/bin/tiny-pets-predict"), str(images[0])], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "labels.txt" in proc.stderr and "SHA-256" in proc.stderr


@pytest.mark.slow
def test_unpacked_bundle_directory_installs_and_builds_a_wheel(tmp_path):
    """pip install of the unpacked tree runs the bundle's stdlib build backend (no setuptools needed)."""
    wheels = wheelhouse(tmp_path)
    art, images = _tiny_artifact(tmp_path)
    bundle = tmp_path / "pets.tar.gz"
    assert main(["package", str(art.path), "-o", str(bundle), "--version", "3.0.1"]) == 0
    with tarfile.open(bundle) as tf:
        tf.extractall(tmp_path / "unpacked", filter="data")
    root = tmp_path / "unpacked" / "tiny-pets-sdk-3.0.1"
    # the backend alone: a wheel whose RECORD matches its contents
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(root)!r}); import _sdk_build; "
                           f"print(_sdk_build.build_wheel({str(out)!r}))"], capture_output=True, text=True, check=True)
    whl = out / proc.stdout.strip()
    assert whl.name == "tiny_pets_sdk-3.0.1-py3-none-any.whl"
    import base64
    import hashlib
    import zipfile

    with zipfile.ZipFile(whl) as zf:
        record = zf.read("tiny_pets_sdk-3.0.1.dist-info/RECORD").decode().splitlines()
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if not digest:
                continue
            data = zf.read(name)
            assert int(size) == len(data)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        names = zf.namelist()
        assert "tiny_pets_sdk/model/model.onnx" in names and not any("deploy" in n for n in names)
        headers = zf.read("tiny_pets_sdk-3.0.1.dist-info/METADATA").decode().split("\n\n")[0].splitlines()
        requires = sorted(h.split(": ")[1].split(">")[0] for h in headers if h.startswith("Requires-Dist"))
        assert requires == ["numpy", "onnxruntime", "pillow"]
    py = fresh_venv(tmp_path / "venv")
    pip_install(py, root, wheels)  # pip runs _sdk_build itself (PEP 517, backend-path)
    proc = subprocess.run([str(py), "-m", "tiny_pets_sdk", str(images[1]), "-k", "1"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(images[1])
    shutil.rmtree(tmp_path / "venv")
