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

import numpy as np
import pytest

from bushu.cli import main

RUNTIME = ["onnxruntime", "numpy", "pillow"]


def wheelhouse(tmp_root: Path, extra: tuple[str, ...] = ()) -> Path:
    """A folder of wheels for the SDK's requirements (+ ``extra`` packages; built once, then reused)."""
    given = os.environ.get("BUSHU_WHEELHOUSE")
    if given:
        return Path(given)
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "bushu-tests"
        / f"wheelhouse-py{sys.version_info.major}{sys.version_info.minor}"
    )
    missing = [p for p in (*RUNTIME, *extra) if not any(cache.glob(f"{p}-*.whl"))]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "-d", str(cache), *missing],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            pytest.skip(
                f"no wheelhouse: set BUSHU_WHEELHOUSE to a folder of {[*RUNTIME, *extra]} wheels "
                f"(pip download failed: {proc.stderr.strip()[-300:]})"
            )
    return cache


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return path / "bin" / "python"


def pip_install(python: Path, target: str | Path, wheels: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), str(target)],
        capture_output=True,
        text=True,
        timeout=600,
    )
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
    proc = subprocess.run(
        [str(tmp_path / "venv/bin/tiny-pets-predict"), *map(str, images), "--json", "-k", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    from bushu.model.processing import preprocess_images, top_k
    from bushu.validate import run_model

    logits = run_model(art.model_path, {"image": preprocess_images(images, art.preprocess)})["logits"]
    want = top_k(logits, art.labels, art.postprocess, k=3)
    for item, w in zip(got, want):
        assert [p["label"] for p in item["predictions"]] == [lbl for _, lbl, _ in w]
        assert [round(p["score"], 6) for p in item["predictions"]] == [round(s, 6) for _, _, s in w]
    code = (
        "import sys, json; from tiny_pets_sdk import Predictor, __version__; "
        "print(json.dumps([__version__, Predictor().predict(sys.argv[1], top_k=1)]))"
    )
    proc = subprocess.run([str(py), "-c", code, str(images[0])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    version, preds = json.loads(proc.stdout)
    assert version == "1.0.0" and preds[0][0] == got[0]["predictions"][0]["label"]

    # tampering with the installed model is caught at load
    site = Path(
        subprocess.run(
            [str(py), "-c", "import tiny_pets_sdk, os; print(os.path.dirname(tiny_pets_sdk.__file__))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "model" / "labels.txt").write_text("cat\ndog\nbird\nshark\n")
    proc = subprocess.run(
        [str(tmp_path / "venv/bin/tiny-pets-predict"), str(images[0])], capture_output=True, text=True, timeout=120
    )
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
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(root)!r}); import _sdk_build; "
            f"print(_sdk_build.build_wheel({str(out)!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
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
    proc = subprocess.run(
        [str(py), "-m", "tiny_pets_sdk", str(images[1]), "-k", "1"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(images[1])
    shutil.rmtree(tmp_path / "venv")


@pytest.mark.slow
def test_text_bundles_install_offline_without_torch_or_pillow(tmp_path):
    """A MiniLM and a TF-IDF text SDK in one fresh venv: onnxruntime, numpy and tokenizers only, and the
    answers of bushu's own Classifier on the same texts."""
    wheels = wheelhouse(tmp_path, extra=("tokenizers",))
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_package_text_audio import EDGE_TEXTS, train_text, val_texts
    finally:
        sys.path.remove(str(Path(__file__).parent))
    from bushu.model.predict import Classifier

    arts = {kind: train_text(tmp_path / kind, kind) for kind in ("minilm", "tfidf")}
    bundles = {kind: tmp_path / f"news-{kind}.zip" for kind in arts}
    for kind, (art, _) in arts.items():
        assert main(["package", str(art), "-o", str(bundles[kind]), "--name", f"news-{kind}"]) == 0
    py = fresh_venv(tmp_path / "venv")
    base = dir_size(tmp_path / "venv")
    install_s = pip_install(py, bundles["minilm"], wheels)
    minilm_venv = dir_size(tmp_path / "venv")
    pip_install(py, bundles["tfidf"], wheels)
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0].lower() for line in freeze.split()}
    assert {"news-minilm-sdk", "news-tfidf-sdk", "onnxruntime", "tokenizers"} <= names
    assert not names & {"torch", "bushu", "onnx", "pillow", "sentence-transformers", "transformers"}, names

    files = val_texts(arts["tfidf"][1])[::2]
    for kind, (art, _) in arts.items():
        with Classifier(art) as clf:
            texts = [f.read_text(encoding="utf-8") for f in files] + EDGE_TEXTS[3:]
            want = [clf.predict([t], k=3)[0] for t in texts]  # the CLI runs one text at a time, as here
        proc = subprocess.run(
            [str(tmp_path / f"venv/bin/news-{kind}-predict"), *map(str, files), EDGE_TEXTS[3], "--json", "-k", "3"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        assert [item["input"] for item in got] == [*map(str, files), EDGE_TEXTS[3]]
        for item, w in zip(got, want):
            assert [p["label"] for p in item["predictions"]] == [lbl for _, lbl, _ in w], (kind, item["input"])
            np.testing.assert_allclose([p["score"] for p in item["predictions"]], [s for _, _, s in w], atol=1e-6)
    sizes = {
        "minilm_bundle_mb": round(bundles["minilm"].stat().st_size / 1e6, 1),
        "tfidf_bundle_mb": round(bundles["tfidf"].stat().st_size / 1e6, 2),
        "minilm_venv_mb": round(minilm_venv / 1e6, 1),
        "empty_venv_mb": round(base / 1e6, 1),
        "pip_install_s": round(install_s, 1),
    }
    print("text package sizes:", json.dumps(sizes))
    assert sizes["minilm_venv_mb"] < 700, sizes  # no torch: a torch venv is ~5,500 MB
