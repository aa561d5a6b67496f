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
    c, s = complete_config(
        None, "m", "onnxruntime", [TensorSpec("x", "float32", (4,))], [TensorSpec("y", "float32", (3,))]
    )
    assert c.max_batch_size == 0 and not s.dynamic


def test_honoured_fields_become_settings():
    c, s = complete_config(
        cfg(
            "max_batch_size: 16\ndynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 300 "
            "default_queue_policy { max_queue_size: 7 default_timeout_microseconds: 5000 } }\n"
            'instance_group [{ count: 2 }, { count: 1 }]\nparameters { key: "threads" value { string_value: "3" } }'
        ),
        "m",
        "onnxruntime",
        IN,
        OUT,
    )
    assert (s.max_batch_size, s.preferred_batch_sizes, s.max_queue_delay_s, s.max_queue_size) == (16, (4, 8), 0.0003, 7)
    assert s.default_timeout_s == 0.005 and s.instances == 3 and s.options == {"threads": 3} and s.warnings == ()


def test_unsupported_fields_are_reported_not_ignored():
    _, s = complete_config(
        cfg("max_batch_size: 4\nresponse_cache { enable: true }\ndynamic_batching { priority_levels: 2 }"),
        "m",
        "onnxruntime",
        IN,
        OUT,
    )
    assert "response_cache" in s.warnings and "dynamic_batching.priority_levels" in s.warnings


def test_gpu_instances_ask_the_backend_for_its_gpu_device():
    from bushu.serve.config import instance_device

    assert instance_device(cfg("instance_group { count: 2 kind: KIND_CPU }"), "onnxruntime") == {}
    assert instance_device(cfg("instance_group { count: 1 kind: KIND_GPU gpus: [1] }"), "onnxruntime") == {
        "device": "cuda",
        "device_id": 1,
    }
    assert instance_device(cfg("instance_group { kind: KIND_GPU }"), "tensorrt") == {"device": "cuda", "device_id": 0}
    with pytest.raises(ModelLoadError, match="KIND_GPU.*'ncnn'"):
        instance_device(cfg("instance_group { kind: KIND_GPU }"), "ncnn")


@pytest.mark.parametrize(
    "text,needle",
    [
        ('input { name: "xx" data_type: TYPE_FP32 dims: [4] }\nmax_batch_size: 2', "did you mean 'x'"),
        ('input { name: "x" data_type: TYPE_INT8 dims: [4] }\nmax_batch_size: 2', "TYPE_INT8"),
        ('input { name: "x" data_type: TYPE_FP32 dims: [1, 4] }\nmax_batch_size: 2', "batch dim"),
        ('input { name: "x" data_type: TYPE_FP32 dims: [5] }\nmax_batch_size: 2', "dims [5]"),
        ('name: "other"', "'other'"),
    ],
)
def test_configs_that_contradict_the_model(text, needle):
    with pytest.raises(ModelLoadError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        complete_config(cfg(text), "m", "onnxruntime", IN, OUT)


def test_max_batch_needs_a_batch_dim():
    with pytest.raises(ModelLoadError, match="max_batch_size: 0"):
        complete_config(
            cfg("max_batch_size: 4"),
            "m",
            "onnxruntime",
            [TensorSpec("x", "float32", (4,))],
            [TensorSpec("y", "float32", (3,))],
        )


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
    art = write_artifact(
        tmp_path / "art",
        {"model.onnx": src, "model.pt2": b"reference"},
        Artifact(
            path=tmp_path,
            model_file="model.onnx",
            format="onnx",
            inputs=IN,
            outputs=OUT,
            name="clf",
            files={"reference": "model.pt2"},
        ),
        labels=["a", "b", "c"],
    )
    model_dir = add_to_repository(
        tmp_path / "repo", art, max_batch_size=4, max_queue_delay_us=100, instances=2, threads=1
    )
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["bushu.yaml", "model.onnx"]
    assert (model_dir / "labels.txt").read_text().split() == ["a", "b", "c"]
    c = read_config(model_dir)
    assert (c.name, c.platform, c.max_batch_size, c.instance_group[0].count) == ("clf", "onnxruntime_onnx", 4, 2)
    assert c.dynamic_batching.max_queue_delay_microseconds == 100 and c.parameters["threads"].string_value == "1"
    with load_backend(model_dir / "1" / "model.onnx") as be:
        assert be.infer({"x": np.ones((1, 4), np.float32)})["probs"].shape == (1, 3)
    with pytest.raises(UserInputError, match="invalid model name"):
        add_to_repository(tmp_path / "repo", art, name="../evil")


# -- Triton's model_warmup ---------------------------------------------------------------------------
def _warmup_model(tmp_path, warmup: str, data: bytes | None = None):
    import numpy as np

    from bushu.serve.core import LoadedModel
    from bushu.serve.testing import classifier_onnx

    mdir = tmp_path / "clf"
    (mdir / "1").mkdir(parents=True)
    classifier_onnx(mdir / "1" / "model.onnx")
    (mdir / "config.pbtxt").write_text(f'name: "clf"\nmax_batch_size: 4\n{warmup}\n')
    if data is not None:
        (mdir / "warmup").mkdir()
        (mdir / "warmup" / "x.bin").write_bytes(data)
    return LoadedModel("clf", 1, mdir, read_config(mdir)), np


@pytest.mark.parametrize("source", ["zero_data: true", "random_data: true", 'input_data_file: "x.bin"'])
def test_model_warmup_samples_are_honoured(tmp_path, source):
    import numpy as np

    data = np.arange(4, dtype=np.float32).tobytes()
    m, _ = _warmup_model(
        tmp_path,
        'model_warmup [{ name: "s1" batch_size: 3 count: 2 inputs { key: "x" value: '
        f"{{ data_type: TYPE_FP32 dims: [4] {source} }} }} }}]",
        data,
    )
    try:
        assert "model_warmup" not in m.warnings
        from bushu.serve.config import warmup_samples

        ((name, feeds, runs),) = warmup_samples(read_config(tmp_path / "clf"), tmp_path / "clf", True)
        assert (name, feeds["x"].shape, runs) == ("s1", (3, 4), 2)
        if "file" in source:
            np.testing.assert_array_equal(feeds["x"][2], [0, 1, 2, 3])
    finally:
        m.close()


@pytest.mark.parametrize(
    "warmup,data,needle",
    [
        (
            'model_warmup [{ name: "short" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [4] '
            'input_data_file: "x.bin" } } }]',
            b"\0" * 12,
            "'short'.*12 bytes",
        ),
        (
            'model_warmup [{ name: "missing" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [4] '
            'input_data_file: "../config.pbtxt" } } }]',
            b"",
            "'missing'.*no file",
        ),
        (
            'model_warmup [{ name: "wrongdims" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [5] '
            "zero_data: true } } }]",
            None,
            "warm-up sample 'wrongdims'",
        ),
        (
            'model_warmup [{ name: "toobig" batch_size: 9 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [4] '
            "zero_data: true } } }]",
            None,
            "warm-up sample 'toobig'.*batch size 9",
        ),
    ],
)
def test_bad_model_warmup_fails_the_load_naming_the_sample(tmp_path, warmup, data, needle):
    with pytest.raises(ModelLoadError, match=needle):
        _warmup_model(tmp_path, warmup, data)
