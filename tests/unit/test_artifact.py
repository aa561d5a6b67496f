"""The artifact directory: round trip, atomic writes, crash recovery, corrupt metadata."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from bushu.errors import ArtifactError, NotFoundError
from bushu.model import artifact as artifact_mod
from bushu.model.artifact import META_FILE, Artifact, Postprocess, Preprocess, write_artifact
from bushu.spec import TensorSpec


def make(name: str = "m") -> Artifact:
    return Artifact(
        path=Path("."),
        model_file="model.onnx",
        format="onnx",
        name=name,
        inputs=[TensorSpec("input", "float32", ("batch", 3, 8, 8))],
        outputs=[TensorSpec("logits", "float32", ("batch", 4))],
        preprocess=Preprocess(resize=10, crop=8),
        postprocess=Postprocess(top_k=2),
        files={"reference": "model.pt2"},
        provenance={"source": "test"},
    )


@pytest.fixture
def written(tmp_path) -> Path:
    out = tmp_path / "art"
    write_artifact(out, {"model.onnx": b"v1-onnx", "model.pt2": b"v1-pt2"}, make("v1"), labels=["a", "b", "c", "d"])
    return out


def test_round_trip(written):
    art = Artifact.load(written)
    assert (art.name, art.format, art.model_file) == ("v1", "onnx", "model.onnx")
    assert art.inputs == make().inputs and art.outputs == make().outputs
    assert art.inputs[0].shape == ("batch", 3, 8, 8)
    assert art.preprocess == Preprocess(resize=10, crop=8) and art.postprocess == Postprocess(top_k=2)
    assert art.labels == ["a", "b", "c", "d"]
    assert art.file("reference").read_bytes() == b"v1-pt2" and art.file("nope") is None
    assert art.model_path.read_bytes() == b"v1-onnx"
    assert art.provenance["source"] == "test" and "created" in art.provenance
    assert art.size_bytes == len(b"v1-onnx")


def test_derived_keeps_the_model_and_starts_files_and_metrics_fresh():
    src = make()
    src.metrics["bench"] = {"p50_ms": 1.0}
    new = src.derived("model.xml", "openvino", files={"weights": "model.bin"}, metrics={"optimize": {}})
    assert (new.model_file, new.format, new.files, new.metrics) == (
        "model.xml",
        "openvino",
        {"weights": "model.bin"},
        {"optimize": {}},
    )
    assert (new.name, new.inputs, new.preprocess, new.postprocess) == (
        src.name,
        src.inputs,
        src.preprocess,
        src.postprocess,
    )
    new.add_step("optimize")
    new.inputs.append(TensorSpec("extra", "float32", (1,)))
    assert "steps" not in src.provenance and len(src.inputs) == 1  # copies, not shared with the source
    assert src.derived("model.onnx", "onnx").metrics == {} and src.metrics == {"bench": {"p50_ms": 1.0}}


def test_record_and_steps_persist(written):
    art = Artifact.load(written)
    art.add_step("bench", backend="onnxruntime")
    art.record("bench", {"p50_ms": 1.5})
    again = Artifact.load(written)
    assert again.metrics["bench"] == {"p50_ms": 1.5}
    step = again.provenance["steps"][0]
    assert step["command"] == "bench" and step["backend"] == "onnxruntime" and "numpy" in step["versions"]


def test_copy_failure_mid_write_leaves_old_artifact(written):
    with pytest.raises(FileNotFoundError):
        write_artifact(written, {"model.onnx": b"v2-onnx", "model.pt2": written / "no-such-file.pt2"}, make("v2"))
    art = Artifact.load(written)
    assert art.name == "v1" and art.model_path.read_bytes() == b"v1-onnx"
    assert sorted(p.name for p in written.parent.iterdir()) == ["art"]  # no temp dirs left behind


def test_crash_between_renames_is_recovered_on_load(written, monkeypatch):
    real, calls = os.replace, []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # art -> .art.old done; .tmp -> art dies
            raise KeyboardInterrupt("power cut")
        real(src, dst)

    monkeypatch.setattr(artifact_mod.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        write_artifact(written, {"model.onnx": b"v2-onnx"}, make("v2"))
    monkeypatch.setattr(artifact_mod.os, "replace", real)
    assert not written.exists() and (written.parent / ".art.old").is_dir()
    art = Artifact.load(written)  # _recover puts the old one back
    assert art.name == "v1" and written.is_dir() and not (written.parent / ".art.old").exists()


def test_overwrite_replaces_whole_artifact(written):
    write_artifact(written, {"model.onnx": b"v2-onnx"}, make("v2"))
    art = Artifact.load(written)
    assert art.name == "v2" and not (written / "model.pt2").exists() and art.labels is None


def test_failed_metadata_save_keeps_old_yaml(written, monkeypatch):
    before = (written / META_FILE).read_text()
    art = Artifact.load(written)

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(artifact_mod.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        art.record("eval", {"top1": 0.9})
    assert (written / META_FILE).read_text() == before
    assert [p.name for p in written.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "content",
    ["{: [", "", "just a string", "- a\n- list\n", "name: x\n", "model: {file: model.onnx}\ninputs: []\noutputs: []\n"],
)
def test_corrupt_metadata_is_artifact_error(written, content):
    (written / META_FILE).write_text(content)
    with pytest.raises(ArtifactError, match="bushu.yaml"):
        Artifact.load(written)


def test_not_an_artifact(tmp_path, written):
    with pytest.raises(NotFoundError, match="artifact not found"):
        Artifact.load(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    with pytest.raises(ArtifactError, match="no bushu.yaml") as err:
        Artifact.load(tmp_path / "plain")
    assert "bushu import" in err.value.hint
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        write_artifact(tmp_path / "plain", {"model.onnx": b"x"}, make())
    (written / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="'model.onnx', which is missing"):
        Artifact.load(written)


def test_metadata_is_plain_yaml(written):
    meta = yaml.safe_load((written / META_FILE).read_text())
    assert meta["inputs"][0] == {"name": "input", "dtype": "float32", "shape": ["batch", 3, 8, 8]}
    assert meta["labels"] == "labels.txt" and meta["format_version"] == 1
