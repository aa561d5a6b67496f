"""`bushu.import_.onnx.simplify` keeps the plain export when onnxslim would change the outputs."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bushu.import_.onnx import _slim_changes_outputs  # noqa: E402


def _model(bias: float) -> onnx.ModelProto:
    """y = x + bias, x: [batch, 3] float."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.full((3,), bias, dtype=np.float32), "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_same_outputs_keep_the_slim_model(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model(1.0), str(path))
    assert _slim_changes_outputs(path, _model(1.0)) is None
    assert _slim_changes_outputs(path, _model(1.0 + 1e-6)) is None  # within the fp32 budget


def test_changed_outputs_are_caught(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model(1.0), str(path))
    assert _slim_changes_outputs(path, _model(1.5)) == pytest.approx(0.5)


def test_no_verdict_when_the_check_cannot_run(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not a model")
    assert _slim_changes_outputs(path, _model(1.0)) is None
