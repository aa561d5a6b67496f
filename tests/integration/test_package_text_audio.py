"""`bushu package` for text (TF-IDF, MiniLM) and audio artifacts trained by `bushu train`: the SDK takes raw
strings / .txt files / .wav clips and its answers equal bushu's own Classifier and the server's :classify
on the repository the bundle's Dockerfile lays out."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from bushu.cli import main
from bushu.model.predict import Classifier

sys.path.insert(0, str(Path(__file__).parent))
from test_package import _import_sdk, _unzip  # noqa: E402

sys.path.pop(0)


def train_text(root: Path, backbone: str) -> tuple[Path, Path]:
    """A text artifact trained on real BBC News articles (4 per class); returns (artifact, val folder)."""
    from bushu.train.samples import write_news

    if backbone == "minilm":
        pytest.importorskip("sentence_transformers")
    pytest.importorskip("tokenizers")
    data = write_news(root / "news", n_train=4, n_val=2, seed=1)
    out = root / backbone
    assert main(["train", str(data), "-o", str(out), "--backbone", backbone, "--trials", "2", "--budget", "3m"]) == 0
    return out, data / "val"


def val_texts(val: Path) -> list[Path]:
    return sorted(val.rglob("*.txt"))


EDGE_TEXTS = ["", "Hi", "goal " * 400, "Shares fell after the bank cut its profit forecast"]


@pytest.fixture(scope="module", params=["tfidf", "minilm"])
def text_bundle(request, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp(request.param)
    art, val = train_text(root, request.param)
    out = root / f"{request.param}.zip"
    assert main(["package", str(art), "-o", str(out), "--check", "--name", f"news-{request.param}"]) == 0
    return {
        "kind": request.param,
        "art": art,
        "val": val,
        "root": _unzip(out, root / "unpacked"),
        "package": f"news_{request.param}_sdk",
        "tmp": root,
    }


def _serve_bundle(root: Path, package: str, model: str, tmp: Path):
    """The repository the bundle's Dockerfile builds: deploy/repository/ + src/<package>/model as version 1."""
    from bushu.serve import start_server

    repo = tmp / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(root / "deploy/repository", repo)
    shutil.copytree(root / "src" / package / "model", repo / model / "1")
    return start_server(repo, http_port=0, grpc_port=None, metrics_port=None)


def _classify(url: str, body: bytes, ctype: str) -> list[dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["predictions"]


def _imports(py: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.add(node.module.split(".")[0])
    return out - set(sys.stdlib_module_names)


def test_text_bundle_layout_and_requirements(text_bundle):
    root, pkg, kind = text_bundle["root"], text_bundle["package"], text_bundle["kind"]
    model_dir = root / "src" / pkg / "model"
    extra = "tokenizer.json" if kind == "minilm" else "text_features.json"
    assert (model_dir / extra).read_bytes() == (text_bundle["art"] / extra).read_bytes()
    assert extra in (model_dir / "SHA256SUMS").read_text()
    reqs = sorted(r.split(">")[0] for r in (root / "requirements.txt").read_text().split())
    assert reqs == (["numpy", "onnxruntime", "tokenizers"] if kind == "minilm" else ["numpy", "onnxruntime"])
    meta = json.loads((root / "sdk-build.json").read_text())
    assert sorted(d.split(">")[0] for d in meta["dependencies"]) == reqs and not meta["optional_dependencies"]
    # text.py is bushu's own code (copied), importing only numpy and, lazily, tokenizers
    text_py = (root / "src" / pkg / "text.py").read_text()
    from bushu.model import predict

    for fn in (predict.tfidf_transform, predict.load_tokenizer, predict._as_text):
        assert inspect.getsource(fn) in text_py
    assert not (root / "src" / pkg / "audio.py").exists()
    allowed = {"numpy", "onnxruntime", "tokenizers", "PIL"}  # PIL: image code paths only, imported lazily
    for py in (root / "src" / pkg).glob("*.py"):
        assert _imports(py) <= allowed, py.name
    if kind == "minilm":  # without tokenizers: one line saying what to install
        code = (
            f"import sys; sys.modules['tokenizers'] = None; sys.path.insert(0, {str(root / 'src')!r})\n"
            f"from {pkg}.cli import main; sys.exit(main(['some text']))"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "pip install tokenizers" in proc.stderr, proc.stderr


def test_text_sdk_predictions_equal_bushu_and_the_server(text_bundle, capsys):
    sdk = _import_sdk(text_bundle["root"], text_bundle["package"])
    predictor = sdk.Predictor()
    assert predictor.kind == "text"
    files = val_texts(text_bundle["val"])
    texts = [f.read_text(encoding="utf-8") for f in files] + EDGE_TEXTS
    with Classifier(text_bundle["art"]) as clf:
        want_logits = clf.logits(texts)
        want = clf.predict(texts, k=3)
    np.testing.assert_allclose(predictor.logits(texts), want_logits, rtol=0, atol=1e-6)
    got = predictor.predict_batch(texts, top_k=3)
    assert len({g[0][0] for g in got}) > 1, "the texts should not all get the same label"
    for g, w in zip(got, want):
        assert [lbl for lbl, _ in g] == [lbl for _, lbl, _ in w]
        np.testing.assert_allclose([s for _, s in g], [s for _, _, s in w], rtol=1e-6, atol=1e-7)
    # a Path and UTF-8 bytes are read as the text; the module-level helper gives the same (alone, a text is
    # padded to its own length, not the batch's: the scores move by ~1e-7)
    assert predictor.predict(files[0], 3) == predictor.predict(files[0].read_bytes(), 3)
    for one, g in ((predictor.predict(files[0], 3), got[0]), (sdk.predict(texts[1], top_k=3), got[1])):
        assert [lbl for lbl, _ in one] == [lbl for lbl, _ in g]
        np.testing.assert_allclose([s for _, s in one], [s for _, s in g], rtol=1e-5, atol=1e-6)

    # the CLI: a .txt file, the text itself, and standard input
    cli = importlib.import_module(f"{text_bundle['package']}.cli")
    assert cli.main([str(files[0]), EDGE_TEXTS[3], "--json", "-k", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [item["input"] for item in out] == [str(files[0]), EDGE_TEXTS[3]]
    assert [p["label"] for p in out[0]["predictions"]] == [lbl for lbl, _ in got[0][:2]]
    assert [p["label"] for p in out[1]["predictions"]] == [lbl for lbl, _ in got[-1][:2]]
    assert cli.main([str(text_bundle["tmp"] / "missing.txt")]) == 2
    assert "text file not found" in capsys.readouterr().err

    # bushu serve on the bundle's repository: the same labels and scores
    name = f"news_{text_bundle['kind']}"
    with _serve_bundle(text_bundle["root"], text_bundle["package"], name, text_bundle["tmp"]) as srv:
        for f, g in list(zip(files, got))[::3]:
            preds = _classify(f"{srv.http_url}/v1/models/{name}:classify?k=3", f.read_bytes(), "text/plain")
            assert [p["label"] for p in preds] == [lbl for lbl, _ in g], f.name
            np.testing.assert_allclose([p["score"] for p in preds], [s for _, s in g], rtol=1e-5, atol=1e-6)


# -- audio ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio_bundle(tmp_path_factory) -> dict:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no clips to train on")
    from bushu.train.samples import write_words

    root = tmp_path_factory.mktemp("audio")
    data = write_words(root / "words", n_train=6, n_val=4, words=("yes", "no", "up", "down"))
    art = root / "words_art"
    assert (
        main(
            [
                "train",
                str(data),
                "-o",
                str(art),
                "--backbone",
                "mobilenet_v2",
                "--image-size",
                "96",
                "--trials",
                "2",
                "--budget",
                "3m",
            ]
        )
        == 0
    )
    out = root / "words.tar.gz"
    assert main(["package", str(art), "-o", str(out), "--check", "--name", "words"]) == 0
    import tarfile

    with tarfile.open(out) as tf:
        tf.extractall(root / "unpacked", filter="data")
    return {"art": art, "val": data / "val", "root": root / "unpacked" / "words-sdk-1.0.0", "tmp": root}


def test_audio_bundle_layout_and_requirements(audio_bundle):
    root = audio_bundle["root"]
    reqs = sorted(r.split(">")[0] for r in (root / "requirements.txt").read_text().split())
    assert reqs == ["numpy", "onnxruntime", "pillow"]
    meta = json.loads((root / "sdk-build.json").read_text())
    assert meta["optional_dependencies"] == {"flac": ["soundfile>=0.12"]}
    assert '"flac" = ["soundfile>=0.12"]' in (root / "pyproject.toml").read_text()
    from bushu.model import audio

    copied = (root / "src/words_sdk/audio.py").read_text()
    assert copied.endswith(Path(audio.__file__).read_text().replace("from ..errors import", "from .errors import"))
    assert _imports(root / "src/words_sdk/audio.py") <= {"numpy", "PIL", "soundfile"}
    assert "audio/wav" in (root / "deploy/Dockerfile").read_text() and "yes.wav" in (root / "README.md").read_text()


def test_audio_sdk_predictions_equal_bushu_and_the_server(audio_bundle, capsys):
    sdk = _import_sdk(audio_bundle["root"], "words_sdk")
    predictor = sdk.Predictor()
    assert predictor.kind == "audio"
    clips = sorted(audio_bundle["val"].rglob("*.wav"))
    with Classifier(audio_bundle["art"]) as clf:
        want_logits = clf.logits(clips)
        want = clf.predict(clips, k=4)
    np.testing.assert_allclose(predictor.logits(clips), want_logits, rtol=0, atol=1e-6)
    got = predictor.predict_batch(clips, top_k=4)
    assert len({g[0][0] for g in got}) > 1
    for g, w in zip(got, want):
        assert [lbl for lbl, _ in g] == [lbl for _, lbl, _ in w]
        np.testing.assert_allclose([s for _, s in g], [s for _, _, s in w], rtol=1e-6, atol=1e-7)
    assert predictor.predict(clips[0].read_bytes(), 4) == got[0]

    cli = importlib.import_module("words_sdk.cli")
    assert cli.main([str(c) for c in clips[:2]] + ["--json", "-k", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [item["predictions"][0]["label"] for item in out] == [g[0][0] for g in got[:2]]
    bad = audio_bundle["tmp"] / "noise.wav"
    bad.write_bytes(b"RIFF....WAVEnot audio")
    assert cli.main([str(bad)]) == 2 and "cannot decode" in capsys.readouterr().err
    assert cli.main([str(audio_bundle["tmp"] / "missing.wav")]) == 2
    assert "clip not found" in capsys.readouterr().err

    with _serve_bundle(audio_bundle["root"], "words_sdk", "words", audio_bundle["tmp"]) as srv:
        for clip, g in list(zip(clips, got))[::4]:
            preds = _classify(f"{srv.http_url}/v1/models/words:classify?k=4", clip.read_bytes(), "audio/wav")
            assert [p["label"] for p in preds] == [lbl for lbl, _ in g], clip.name
            np.testing.assert_allclose([p["score"] for p in preds], [s for _, s in g], rtol=1e-5, atol=1e-6)


def test_a_copied_module_that_the_sdk_cannot_run_fails_at_package_time(monkeypatch):
    import bushu.package.bundle as bundle

    monkeypatch.setattr(bundle.inspect, "getsource", lambda obj: "from ..runtime import load_backend\n")
    with pytest.raises(RuntimeError, match="cannot run: from ..runtime import load_backend"):
        bundle.sdk_modules("audio")
    assert bundle.sdk_modules("image") == {}
