"""The int8 search's last remedies: the first 30%, then 60%, of the graph's nodes in float, after the ranked ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bushu.model.artifact import Artifact
from bushu.optimize import int8_search
from bushu.optimize.openvino_int8 import OpenVINOInt8Config
from bushu.optimize.quantize import StaticInt8Config
from bushu.spec import TensorSpec


def _chain(path: Path, n: int = 10) -> Artifact:
    """x -> (Conv -> Relu) x n/2 -> y, nodes named n0 .. n{n-1} in graph order."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path.mkdir()
    rng = np.random.default_rng(0)
    nodes, inits, cur = [], [], "x"
    for i in range(0, n, 2):
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [cur, f"w{i}"], [f"c{i}"], name=f"n{i}", pads=[1, 1, 1, 1]))
        cur = "y" if i + 2 >= n else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [cur], name=f"n{i + 1}"))
    g = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path / "model.onnx"))
    return Artifact(
        path=path,
        model_file="model.onnx",
        format="onnx",
        inputs=[TensorSpec("x", "float32", (1, 4, 8, 8))],
        outputs=[TensorSpec("y", "float32", (1, 4, 8, 8))],
        task="raw",
    )


@pytest.mark.parametrize("config", [StaticInt8Config(), OpenVINOInt8Config()], ids=["onnxruntime", "openvino"])
def test_leading_attempts_come_last_and_keep_a_growing_prefix_in_float(tmp_path, monkeypatch, config):
    art = _chain(tmp_path / "art")
    monkeypatch.setattr(int8_search, "_rank", lambda *a: ["n4"])  # the ranked remedy: one node
    best = {"record": {"attempt": "plain"}, "config": config}
    variants = list(int8_search._variants(art, config, best, None, tmp_path, lambda _m: None))
    field = "exclude_nodes" if isinstance(config, StaticInt8Config) else "ignored_nodes"
    tail = [(label, getattr(cfg, field)) for label, cfg in variants if "in float" in label]
    assert tail[0] == ("plain + 1 most sensitive of 1 nodes in float", ("n4",))
    # ceil(0.3 * 10) = 3 and ceil(0.6 * 10) = 6 of the graph's nodes, in graph order
    assert tail[-2:] == [
        ("plain + the first 3 of 10 nodes in float", ("n0", "n1", "n2")),
        ("plain + the first 6 of 10 nodes in float", ("n0", "n1", "n2", "n3", "n4", "n5")),
    ]
