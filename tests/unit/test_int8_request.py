"""Both int8 paths (ONNX Runtime and OpenVINO) refuse a bad request before any work, with the same words."""

from __future__ import annotations

from pathlib import Path

import pytest

from bushu.errors import UserInputError
from bushu.model.artifact import Artifact
from bushu.optimize.openvino_int8 import OpenVINOInt8Config, quantize_openvino
from bushu.optimize.quantize import StaticInt8Config, quantize
from bushu.spec import TensorSpec


def _art(path: Path) -> Artifact:
    path.mkdir()
    spec = TensorSpec("x", "float32", ("batch", 4))
    return Artifact(path=path, model_file="model.onnx", format="onnx", inputs=[spec], outputs=[spec])


@pytest.mark.parametrize("entry", ["onnxruntime", "openvino"])
def test_output_over_the_input_and_a_bound_without_data_are_refused(tmp_path, entry):
    art = _art(tmp_path / "art")

    def run(out: Path, **kw):
        if entry == "onnxruntime":
            return quantize(art, out, StaticInt8Config(), **kw)
        return quantize_openvino(art, out, OpenVINOInt8Config(), **kw)

    with pytest.raises(UserInputError, match="the output must be a new directory"):
        run(art.path)
    with pytest.raises(UserInputError, match="max_accuracy_drop needs labelled data"):
        run(tmp_path / "out", max_accuracy_drop=1.0)
    assert not (tmp_path / "out").exists()
