"""config.pbtxt parsing and completion, version policies, model names, and the repository writer."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from bushu.errors import ModelLoadError, UserInputError
from bushu.serve.config import complete_config, read_config
from bushu.serve.core import _select_versions
from bushu.serve.repository import check_name
from bushu.spec import TensorSpec

IN = [TensorSpec("x", "float32", ("batch", 4))]
OUT = [TensorSpec("y", "float32", ("batch", 3))]


def cfg(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def test_left_out_config_is_completed_from_the_model():
    c, s = complete_config(None, "m", "onnxruntime", IN, OUT)
    assert c.platform == "onnxruntime_onnx" and c.max_batch_size == 8 and c.HasField("dynamic_batching")
    assert [(i.name, list(i.dims), i.data_type) for i in c.input] == [("x", [4], mc.TYPE_FP32)]
    assert s.dynamic and s.max_batch_size == 8 and s.instances == 1 and s.max_queue_size > 0
    c, s = complete_config(None, "m", "onnxruntime", [TensorSpec("x", "float32", (4,))], [TensorSpec("y", "float32", (3,))])
    assert c.max_batch_size == 0 and not s.dynamic


def test_honoured_fields_become_settings():
    c, s = complete_config(cfg(
        "max_batch_size: 16\ndynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 300 "
        "default_queue_policy { max_queue_size: 7 default_timeout_microseconds: 5000 } }\n"
        'instance_group [{ count: 2 }, { count: 1 }]\nparameters { key: "threads" value { string_value: "3" } }'),
        "m", "onnxruntime", IN, OUT)
    assert (s.max_batch_size, s.preferred_batch_sizes, s.max_queue_delay_s, s.max_queue_size) == (16, (4, 8), 0.0003, 7)
    assert s.default_timeout_s == 0.005 and s.instances == 3 and s.options == {"threads": 3} and s.warnings == ()


def test_unsupported_fields_are_reported_not_ignored():
    _, s = complete_config(cfg("max_batch_size: 4\nresponse_cache { enable: true }\n"
                               "dynamic_batching { priority_levels: 2 }\ninstance_group { count: 1 kind: KIND_GPU }"),
                           "m", "onnxruntime", IN, OUT)
    assert "response_cache" in s.warnings and "dynamic_batching.priority_levels" in s.warnings
    assert any("KIND_GPU" in w for w in s.warnings)


@pytest.mark.parametrize("text,needle", [
    ('input { name: "xx" data_type: TYPE_FP32 dims: [4] }\nmax_batch_size: 2', "did you mean 'x'"),
    ('input { name: "x" data_type: TYPE_INT8 dims: [4] }\nmax_batch_size: 2', "TYPE_INT8"),
    ('input { name: "x" data_type: TYPE_FP32 dims: [1, 4] }\nmax_batch_size: 2', "batch dim"),
    ('input { name: "x" data_type: TYPE_FP32 dims: [5] }\nmax_batch_size: 2', "dims [5]"),
    ('name: "other"', "'other'"),
])
def test_configs_that_contradict_the_model(text, needle):
    with pytest.raises(ModelLoadError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        complete_config(cfg(text), "m", "onnxruntime", IN, OUT)


def test_max_batch_needs_a_batch_dim():
    with pytest.raises(ModelLoadError, match="max_batch_size: 0"):
        complete_config(cfg("max_batch_size: 4"), "m", "onnxruntime", [TensorSpec("x", "float32", (4,))],
                        [TensorSpec("y", "float32", (3,))])


def test_unparsable_config_names_the_problem(tmp_path):
    (tmp_path / "config.pbtxt").write_text("max_batch: 4\n")
    with pytest.raises(ModelLoadError, match="max_batch"):
        read_config(tmp_path)


def test_version_policies():
    assert _select_versions(None, [1, 3, 2]) == [3]
    assert _select_versions(cfg("version_policy { latest { num_versions: 2 } }"), [1, 2, 3]) == [2, 3]
    assert _select_versions(cfg("version_policy { all { } }"), [3, 1]) == [1, 3]
    assert _select_versions(cfg("version_policy { specific { versions: [1] } }"), [1, 2]) == [1]
    with pytest.raises(ModelLoadError, match=r"\[4\]"):
        _select_versions(cfg("version_policy { specific { versions: [4] } }"), [1, 2])


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "..", "x" * 200, "a\\b"])
def test_model_names_are_never_paths(name):
    with pytest.raises(UserInputError, match="invalid model name"):
        check_name(name)


def test_add_to_repository_writes_a_triton_layout(tmp_path):
    import numpy as np

    from bushu.model.artifact import Artifact, write_artifact
    from bushu.runtime import load_backend
    from bushu.serve import add_to_repository
    from bushu.serve.testing import classifier_onnx

    src = classifier_onnx(tmp_path / "src.onnx")
    art = write_artifact(tmp_path / "art", {"model.onnx": src, "model.pt2": b"reference"},
                         Artifact(path=tmp_path, model_file="model.onnx", format="onnx", inputs=IN, outputs=OUT,
                                  name="clf", files={"reference": "model.pt2"}), labels=["a", "b", "c"])
    model_dir = add_to_repository(tmp_path / "repo", art, max_batch_size=4, max_queue_delay_us=100, instances=2,
                                  threads=1)
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["bushu.yaml", "model.onnx"]
    assert (model_dir / "labels.txt").read_text().split() == ["a", "b", "c"]
    c = read_config(model_dir)
    assert (c.name, c.platform, c.max_batch_size, c.instance_group[0].count) == ("clf", "onnxruntime_onnx", 4, 2)
    assert c.dynamic_batching.max_queue_delay_microseconds == 100 and c.parameters["threads"].string_value == "1"
    with load_backend(model_dir / "1" / "model.onnx") as be:
        assert be.infer({"x": np.ones((1, 4), np.float32)})["probs"].shape == (1, 3)
    with pytest.raises(UserInputError, match="invalid model name"):
        add_to_repository(tmp_path / "repo", art, name="../evil")
