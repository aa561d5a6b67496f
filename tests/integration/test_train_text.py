"""`bushu train` on real texts (BBC News, 4 per class) with MiniLM: the artifact is ONE ONNX graph from
token ids to logits plus tokenizer.json, and it takes raw strings without torch. Checked by code that did
not produce it: `TextClassifier` in a process where `import torch` fails must give training's validation
labels, `bushu eval` must reproduce the recorded accuracy, and the server's :classify endpoint (text/plain
and JSON bodies) must answer the same labels."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bushu.cli import main
from bushu.model.artifact import Artifact
from bushu.train.samples import write_news

pytest.importorskip("sentence_transformers")
pytest.importorskip("tokenizers")


def _val(data: Path) -> list[tuple[str, str]]:
    """(path relative to the data folder, true class) of every validation text, sorted."""
    return [
        (str(f.relative_to(data)), d.name) for d in sorted((data / "val").iterdir()) for f in sorted(d.glob("*.txt"))
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("text")
    data = write_news(root / "news", n_train=4, n_val=4)
    out = root / "art"
    assert (
        main(["train", str(data), "-o", str(out), "--backbone", "minilm", "--trials", "2", "--budget", "3m", "--json"])
        == 0
    )
    art = Artifact.load(out)
    t = art.metrics["train"]
    wrong = {m["path"]: m["pred"] for m in t["mistakes"]}
    expected = {p: wrong.get(p, c) for p, c in _val(data)}  # training's own ONNX predictions on the val split
    return {"root": root, "data": data, "out": out, "art": art, "expected": expected}


def test_artifact_is_one_onnx_graph_from_token_ids_with_its_tokenizer(trained) -> None:
    art = trained["art"]
    assert [s.name for s in art.inputs] == ["input_ids", "attention_mask"]
    assert [s.dtype for s in art.inputs] == ["int64", "int64"]
    assert art.inputs[0].shape == ("batch", "sequence") and art.outputs[0].shape == ("batch", 5)
    pp = art.preprocess
    assert pp.kind == "text" and pp.params["tokenizer"] == "tokenizer.json" and pp.params["max_length"] == 256
    assert (trained["out"] / "tokenizer.json").is_file() and not (trained["out"] / "text_features.json").exists()
    parity = art.metrics["parity"]
    # every validation text (BBC articles are longer than 256 tokens: truncation is exercised)
    assert parity["passed"] and parity["samples"] == 20 and parity["label_agreement"] == 1.0
    assert parity["outputs"][0]["max_abs"] < 1e-3
    assert art.metrics["train"]["val_accuracy"] >= 0.6  # 5 topics, chance 0.2 (ASSETS: ~0.87 at 5 per class)
    assert "no torch" in art.metrics["train"]["serving"]


def test_text_classifier_runs_without_torch(trained) -> None:
    paths = sorted(trained["expected"])
    script = f"""
import json, sys
for m in ("torch", "sentence_transformers", "transformers", "sklearn", "optuna"):
    sys.modules[m] = None  # any import of these now fails
from pathlib import Path
from bushu.model.predict import TextClassifier
data = Path({str(trained["data"])!r})
texts = [(data / p).read_text(encoding="utf-8").strip() for p in {paths!r}]
clf = TextClassifier({str(trained["out"])!r})
# the sequence axis is dynamic: short texts padded into one batch give what each gives alone
short = ["Hi", "", "Shares fell as the bank cut its profit forecast", "goal " * 400]
batch = clf.logits(short)
alone = [clf.logits([t])[0] for t in short]
assert max(abs(batch[i] - alone[i]).max() for i in range(len(short))) < 1e-4
print(json.dumps([r[0][1] for r in clf.predict(texts)]))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert dict(zip(paths, got)) == trained["expected"]


def test_eval_on_a_folder_of_texts_reproduces_the_recorded_accuracy(trained, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", str(trained["out"]), "--data", str(trained["data"] / "val"), "--json", "--no-record"]) == 0
    res = json.loads(capsys.readouterr().out)
    t = trained["art"].metrics["train"]
    assert res["n_images"] == 20 and res["noun"] == "text" and res["n_skipped"] == 0
    assert res["accuracy"] == pytest.approx(t["val_accuracy"], abs=5e-5)
    assert {Path(m["path"]).name: m["pred"] for m in res["mistakes"]} == {
        Path(p).name: lbl for p, lbl in trained["expected"].items() if lbl != Path(p).parent.name
    }
    assert [r["class"] for r in res["per_class"]] == trained["art"].labels


def _post(url: str, body: bytes, ctype: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_classifies_raw_text_with_the_same_labels(trained) -> None:
    from bushu.serve import start_server
    from bushu.serve.repository import add_to_repository

    repo = trained["root"] / "repo"
    add_to_repository(repo, trained["art"], name="news")
    assert (repo / "news" / "1" / "tokenizer.json").is_file()
    data, expected = trained["data"], trained["expected"]
    with start_server(repo, http_port=0, grpc_port=None, metrics_port=None) as server:
        url = f"{server.http_url}/v1/models/news:classify?k=3"
        for rel, label in sorted(expected.items())[::2]:
            status, ans = _post(url, (data / rel).read_bytes(), "text/plain; charset=utf-8")
            assert status == 200, ans
            assert ans["predictions"][0]["label"] == label, rel
            assert len(ans["predictions"]) == 3 and ans["predictions"][0]["score"] >= ans["predictions"][1]["score"]
        some = sorted(expected.items())[1::5]
        texts = [(data / rel).read_text(encoding="utf-8").strip() for rel, _ in some]
        status, ans = _post(url, json.dumps({"text": texts[0]}).encode(), "application/json")
        assert status == 200 and ans["predictions"][0]["label"] == some[0][1]
        status, ans = _post(url, json.dumps({"text": texts}).encode(), "application/json")
        assert status == 200 and [b[0]["label"] for b in ans["batch"]] == [lbl for _, lbl in some]
        status, ans = _post(url, b"", "text/plain")
        assert status == 400 and "send a text" in ans["error"]
        status, ans = _post(url, json.dumps({"txt": "x"}).encode(), "application/json")
        assert status == 400 and '{"text": "..."}' in ans["error"]


def test_parity_off_is_a_typed_error_and_keeps_the_artifact(trained, capsys, monkeypatch) -> None:
    from bushu.train import text

    monkeypatch.setattr(text, "PARITY_ATOL", 0.0)  # any difference at all now counts as off
    monkeypatch.setattr(text, "PARITY_RTOL", 0.0)
    before = (trained["out"] / "bushu.yaml").read_text()
    capsys.readouterr()
    # same data and search: features from cache, the 2 trials resumed, then the export check fails
    assert (
        main(
            [
                "train",
                str(trained["data"]),
                "-o",
                str(trained["out"]),
                "--backbone",
                "minilm",
                "--trials",
                "2",
                "--budget",
                "3m",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "exported ONNX (MiniLM + head) vs sentence-transformers + torch head" in err
    assert "label agreement 1.0000" in err and "Traceback" not in err
    assert (trained["out"] / "bushu.yaml").read_text() == before


def test_tfidf_artifact_serves_text_and_evaluates(tmp_path) -> None:
    from bushu.serve import start_server
    from bushu.serve.repository import add_to_repository

    data = write_news(tmp_path / "news", n_train=4, n_val=2, seed=1)
    out = tmp_path / "tfidf"
    assert main(["train", str(data), "-o", str(out), "--backbone", "tfidf", "--trials", "2", "--budget", "2m"]) == 0
    art = Artifact.load(out)
    assert art.preprocess.kind == "text" and art.preprocess.params["features"] == "text_features.json"
    assert main(["eval", str(out), "--data", str(data / "val"), "--no-record"]) == 0
    add_to_repository(tmp_path / "repo", art, name="tfidf")
    wrong = {m["path"]: m["pred"] for m in art.metrics["train"]["mistakes"]}
    with start_server(tmp_path / "repo", http_port=0, grpc_port=None, metrics_port=None) as server:
        for rel, label in _val(data):
            status, ans = _post(f"{server.http_url}/v1/models/tfidf:classify", (data / rel).read_bytes(), "text/plain")
            assert status == 200 and ans["predictions"][0]["label"] == wrong.get(rel, label)
