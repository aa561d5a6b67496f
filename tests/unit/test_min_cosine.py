"""`--min-cosine`: int8's bar for models without classes, on both int8 paths; refused where nothing reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bushu import validate
from bushu.errors import UserInputError
from bushu.model.artifact import Artifact
from bushu.optimize import openvino_int8
from bushu.optimize._gate import FAIL, PASS
from bushu.optimize.options import optimize_config
from bushu.optimize.quantize import AccuracyDropError
from bushu.spec import TensorSpec


def _art(path: Path, task: str = "raw") -> Artifact:
    path.mkdir()
    spec = TensorSpec("x", "float32", ("batch", 4))
    return Artifact(path=path, model_file="model.onnx", format="onnx", inputs=[spec], outputs=[spec], task=task)


def test_the_floor_reaches_the_int8_config_and_is_refused_where_nothing_reads_it(tmp_path):
    art = _art(tmp_path / "art")
    cfg = optimize_config(art, quantize="int8", backend="openvino", min_cosine=0.9)
    assert cfg.quantize.min_cosine == 0.9
    assert optimize_config(art, quantize="int8", backend="openvino").quantize.min_cosine == 0.98
    with pytest.raises(UserInputError, match="fp16 is judged by `atol` / `rtol`"):
        optimize_config(art, quantize="fp16", min_cosine=0.9)
    with pytest.raises(UserInputError, match=r"must be in \(0, 1\], got 1.5"):
        optimize_config(art, quantize="int8", backend="openvino", min_cosine=1.5)


def test_openvino_int8_judges_a_model_without_classes_by_cosine_not_top1(tmp_path):
    """Top-1 of an embedding is meaningless: the OpenVINO path uses the same cosine floor as ONNX Runtime's."""
    art = _art(tmp_path / "art")
    rng = np.random.default_rng(0)
    ref = {"x": rng.standard_normal((8, 4)).astype(np.float32)}
    got = {"x": ref["x"] + rng.normal(0, 0.3, ref["x"].shape).astype(np.float32)}
    per_output = validate.agreement(ref, got)
    low = per_output["x"]["cosine_min"]
    assert low < 0.98

    def gate(floor: float, keep_failed: bool) -> dict:
        cfg = openvino_int8.OpenVINOInt8Config(min_cosine=floor)
        figures = {k: dict(v) for k, v in per_output.items()}
        return openvino_int8._gate(art, Path("m.xml"), None, ref, got, figures, cfg, None, keep_failed, {})

    verdict = gate(0.98, keep_failed=True)
    assert verdict["outcome"] == FAIL and f"x: cosine {low:.4f}" in verdict["detail"]
    with pytest.raises(AccuracyDropError, match=r"OpenVINO int8 model drifts from fp32 on x: cosine 0\.\d+"):
        gate(0.98, keep_failed=False)
    assert gate(low - 0.01, keep_failed=False)["outcome"] == PASS
