"""`bushu package`: bundle contents, checksums, SDK predictions vs bushu and the server, manifests."""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib
import json
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from bushu.cli import main

LABELS = ["cat", "dog", "bird", "fish"]


def _artifact(tmp: Path, name: str = "tiny_pets"):
    """A 4-class 3x16x16 image classifier with non-trivial pre-processing (resize 18, crop 16, ImageNet norm)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bushu.model.artifact import Artifact, Preprocess, write_artifact
    from bushu.spec import TensorSpec

    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((768, 4)).astype(np.float32) * 0.05, "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
    g = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["logits"]),
        ],
        "pets",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        initializer=[w, b],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    src = tmp / "pets.onnx"
    onnx.save(m, str(src))
    art = Artifact(
        path=tmp,
        model_file="model.onnx",
        format="onnx",
        inputs=[TensorSpec("image", "float32", ("batch", 3, 16, 16))],
        outputs=[TensorSpec("logits", "float32", ("batch", 4))],
        name=name,
        preprocess=Preprocess(resize=18, crop=16),
    )
    return write_artifact(tmp / "art", {"model.onnx": src}, art, labels=LABELS)


def _images(tmp: Path) -> list[Path]:
    """Real photos (scikit-image) in several sizes and encodings, plus a grey and an RGBA image."""
    from PIL import Image
    from skimage import data

    out = []
    for i, (name, arr) in enumerate(
        [("chelsea", data.chelsea()), ("coffee", data.coffee()), ("rocket", data.rocket()), ("camera", data.camera())]
    ):
        img = Image.fromarray(arr)
        p = tmp / f"{name}.{'jpg' if i % 2 else 'png'}"
        img.save(p)
        out.append(p)
    rgba = Image.fromarray(data.astronaut()).convert("RGBA").resize((37, 23))
    rgba.save(tmp / "astronaut_rgba.png")
    return out + [tmp / "astronaut_rgba.png"]


def _unzip(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert all(not n.startswith("/") and ".." not in Path(n).parts for n in names)
        zf.extractall(dest)
    (top,) = {n.split("/")[0] for n in names}
    return dest / top


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    art = _artifact(tmp)
    out = tmp / "pets.zip"
    assert main(["package", str(art.path), "-o", str(out), "--check", "--version", "2.1.0"]) == 0
    root = _unzip(out, tmp / "unpacked")
    return {"art": art, "zip": out, "root": root, "images": _images(tmp), "tmp": tmp}


def _import_sdk(root: Path, package: str):
    sys.path.insert(0, str(root / "src"))
    try:
        for mod in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[mod]
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(root / "src"))


def test_bundle_layout_checksums_and_light_requirements(built):
    root = built["root"]
    assert root.name == "tiny-pets-sdk-2.1.0"
    for rel in [
        "pyproject.toml",
        "_sdk_build.py",
        "README.md",
        "requirements.txt",
        "MANIFEST.sha256",
        "src/tiny_pets_sdk/predictor.py",
        "src/tiny_pets_sdk/model/model.onnx",
        "src/tiny_pets_sdk/model/labels.txt",
        "src/tiny_pets_sdk/model/SHA256SUMS",
        "deploy/Dockerfile",
        "deploy/repository/tiny_pets/config.pbtxt",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/service.yaml",
        "deploy/kubernetes/hpa.yaml",
        "deploy/kserve/servingruntime.yaml",
        "deploy/kserve/inferenceservice.yaml",
    ]:
        assert (root / rel).is_file(), rel
    # every file but the manifest itself is listed, and every hash is right
    listed = {}
    for line in (root / "MANIFEST.sha256").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"MANIFEST.sha256"}
    assert set(listed) == on_disk
    for rel, digest in listed.items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel
    # the model file is the artifact's, byte for byte
    assert (root / "src/tiny_pets_sdk/model/model.onnx").read_bytes() == built["art"].model_path.read_bytes()
    # only the light runtime, in requirements and in the package metadata
    reqs = [r.split(">")[0].split("=")[0] for r in (root / "requirements.txt").read_text().split()]
    assert sorted(reqs) == ["numpy", "onnxruntime", "pillow"]
    meta = json.loads((root / "sdk-build.json").read_text())
    assert sorted(d.split(">")[0] for d in meta["dependencies"]) == ["numpy", "onnxruntime", "pillow"]
    assert meta["scripts"] == {"tiny-pets-predict": "tiny_pets_sdk.cli:main"}


def test_sdk_code_imports_only_stdlib_numpy_pillow_onnxruntime(built):
    allowed = {"numpy", "PIL", "onnxruntime"} | set(sys.stdlib_module_names)
    for py in list((built["root"] / "src/tiny_pets_sdk").glob("*.py")) + [built["root"] / "_sdk_build.py"]:
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module]
            else:
                continue
            for m in mods:
                assert m.split(".")[0] in allowed, f"{py.name} imports {m}"


def test_sdk_predictions_match_bushu_and_the_server(built):
    from bushu.model.processing import preprocess_images, top_k
    from bushu.serve import start_server
    from bushu.validate import run_model

    sdk = _import_sdk(built["root"], "tiny_pets_sdk")
    predictor = sdk.Predictor()
    images = built["images"]
    got = predictor.predict_batch(images, top_k=4)

    # bushu's own path: bushu pre-processing + ONNX Runtime + top_k on the original artifact
    art = built["art"]
    x = preprocess_images(images, art.preprocess)
    np.testing.assert_allclose(np.stack([predictor.preprocess(p) for p in images]), x, rtol=0, atol=0)
    logits = run_model(art.model_path, {"image": x}, backend="onnxruntime")["logits"]
    want = top_k(logits, art.labels, art.postprocess, k=4)
    assert len({g[0][0] for g in got}) > 1, "the test images should not all get the same label"
    for g, w in zip(got, want):
        assert [lbl for lbl, _ in g] == [lbl for _, lbl, _ in w]
        np.testing.assert_allclose([s for _, s in g], [s for _, _, s in w], rtol=1e-6, atol=1e-7)

    # the server, on the repository the Dockerfile builds: deploy/repository/ + src/<pkg>/model as version 1
    repo = built["tmp"] / "repo"
    shutil.copytree(built["root"] / "deploy/repository", repo)
    shutil.copytree(built["root"] / "src/tiny_pets_sdk/model", repo / "tiny_pets" / "1")
    with start_server(repo, grpc_port=None, metrics_port=None) as srv:
        for image, g in zip(images, got):
            req = urllib.request.Request(
                f"{srv.http_url}/v1/models/tiny_pets:classify?k=4", data=image.read_bytes(), method="POST"
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                preds = json.loads(r.read())["predictions"]
            assert [p["label"] for p in preds] == [lbl for lbl, _ in g], image.name
            np.testing.assert_allclose([p["score"] for p in preds], [s for _, s in g], rtol=1e-5, atol=1e-6)

    # one image through the module-level helper and the bytes / PIL / array inputs
    from PIL import Image

    one = predictor.predict(images[0], top_k=2)
    assert sdk.predict(images[0], top_k=2) == one
    assert predictor.predict(images[0].read_bytes(), top_k=2) == one
    assert predictor.predict(Image.open(images[0]), top_k=2) == one
    assert predictor.predict(np.asarray(Image.open(images[0]).convert("RGB")), top_k=2) == one
    assert len(predictor.predict(images[0])) == 4  # top_k defaults to the artifact's (5), capped at 4 classes


def test_sdk_cli_prints_labels_and_fails_clearly(built, capsys):
    sdk = _import_sdk(built["root"], "tiny_pets_sdk")
    cli = importlib.import_module("tiny_pets_sdk.cli")
    images = built["images"][:2]
    assert cli.main([str(p) for p in images] + ["--json", "-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = sdk.Predictor().predict_batch(images, top_k=2)
    assert [[p["label"] for p in item["predictions"]] for item in out] == [[lbl for lbl, _ in w] for w in want]
    bad = built["tmp"] / "not_an_image.jpg"
    bad.write_bytes(b"this is not a jpeg")
    assert cli.main([str(bad)]) == 2
    assert "cannot decode" in capsys.readouterr().err
    assert cli.main([str(built["tmp"] / "missing.png")]) == 2
    assert "image not found" in capsys.readouterr().err


def test_tampered_model_is_refused(built, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(built["root"], root)
    sdk = _import_sdk(root, "tiny_pets_sdk")
    import onnx
    from onnx import numpy_helper

    model = root / "src/tiny_pets_sdk/model/model.onnx"
    before = sdk.Predictor().predict_batch(built["images"], top_k=4)
    m = onnx.load(str(model))  # swap in other weights: a valid model that gives other answers
    bias = m.graph.initializer[1]
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias)[::-1].copy() * 3, bias.name))
    onnx.save(m, str(model))
    with pytest.raises(sdk.ChecksumError, match=r"model.onnx.*failed its SHA-256 check"):
        sdk.Predictor()
    assert sdk.Predictor(verify=False).predict_batch(built["images"], top_k=4) != before  # what it guards against
    cli = importlib.import_module("tiny_pets_sdk.cli")
    assert cli.main([str(built["images"][0])]) == 2
    assert "failed its SHA-256 check" in capsys.readouterr().err
    (root / "src/tiny_pets_sdk/model/labels.txt").unlink()
    with pytest.raises(sdk.ChecksumError, match="labels.txt.*missing"):
        sdk.Predictor(root)  # a bundle root works as the path too


def test_manifests_validate_and_a_broken_one_does_not(built, tmp_path):
    from bushu.package import ManifestError, validate_manifests

    files = sorted((built["root"] / "deploy").glob("*/*.yaml"))
    rows = validate_manifests(files)
    assert sorted(r["kind"] for r in rows) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "InferenceService",
        "Service",
        "ServingRuntime",
    ]
    docs = {r["kind"]: yaml.safe_load(Path(r["file"]).read_text()) for r in rows}
    dep, hpa, isvc, rt = (
        docs["Deployment"],
        docs["HorizontalPodAutoscaler"],
        docs["InferenceService"],
        docs["ServingRuntime"],
    )
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] == "tiny-pets"
    assert isvc["spec"]["predictor"]["model"]["runtime"] == rt["metadata"]["name"]
    assert set(rt["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][0] == "/models"
    # each kind of mistake is caught: a misspelt field, a wrong type, a bad name
    for kind, mutate, msg in [
        ("InferenceService", lambda d: d["spec"]["predictor"]["model"].update(storageUrl="s3://x"), "storageUrl"),
        ("ServingRuntime", lambda d: d["spec"]["containers"][0].pop("name"), "'name' is a required property"),
        ("Deployment", lambda d: d["spec"].update(replicas="two"), "not of type 'integer'"),
        ("HorizontalPodAutoscaler", lambda d: d["spec"]["metrics"][0]["resource"].update(targett={}), "targett"),
        ("Service", lambda d: d["metadata"].update(name="Tiny_Pets"), "DNS-1123"),
    ]:
        bad = copy.deepcopy(docs[kind])
        mutate(bad)
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ManifestError, match=msg):
            validate_manifests([path])


def test_storage_uri_tar_gz_and_directory_outputs(built, tmp_path):
    art = built["art"]
    tgz = tmp_path / "pets.tar.gz"
    assert (
        main(
            [
                "package",
                str(art.path),
                "-o",
                str(tgz),
                "--storage-uri",
                "pvc://models/tiny",
                "--name",
                "pets",
                "--replicas",
                "2:6",
                "--check",
            ]
        )
        == 0
    )
    import tarfile

    with tarfile.open(tgz) as tf:
        names = tf.getnames()
        tf.extractall(tmp_path / "t", filter="data")
    root = tmp_path / "t" / "pets-sdk-1.0.0"
    assert all(n.startswith("pets-sdk-1.0.0/") for n in names)
    isvc = yaml.safe_load((root / "deploy/kserve/inferenceservice.yaml").read_text())
    rt = yaml.safe_load((root / "deploy/kserve/servingruntime.yaml").read_text())
    hpa = yaml.safe_load((root / "deploy/kubernetes/hpa.yaml").read_text())
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://models/tiny"
    assert rt["spec"]["containers"][0]["args"][0] == "/mnt/models"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert (root / "src/pets_sdk/model/model.onnx").read_bytes() == art.model_path.read_bytes()
    # a directory output: the same tree, unpacked
    d = tmp_path / "dir"
    assert main(["package", str(art.path), "-o", str(d)]) == 0
    assert (d / "src/tiny_pets_sdk/model/SHA256SUMS").is_file()
    assert main(["package", str(art.path), "-o", str(d)]) == 0  # rewriting a bundle directory is fine
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["package", str(art.path), "-o", str(other)]) == 2  # never overwrites an unrelated directory
    assert (other / "keep.txt").read_text() == "mine"
