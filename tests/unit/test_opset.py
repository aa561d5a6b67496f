"""Taking ONNX models down to the opsets of the vendor profiles (bushu.export._opset), where onnx's version
converter has no down-adapters: each rewritten op is run by ONNX Runtime before and after."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bushu.export._opset import DowngradeError, downgrade

ort = pytest.importorskip("onnxruntime")
n = helper.make_node


def _model(nodes, inits=(), opset=18, x_shape=(1, 6, 5, 7)):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        list(inits),
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _f32(name, values):
    return numpy_helper.from_array(np.array(values, np.float32), name)


def _run(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def detector_ops():
    """The op forms a YOLOv8 export at opset 18 uses, and a few more, in one graph whose output mixes them."""
    nodes = [
        # Split-18 by count on an uneven dim (5 rows into 2: 3 + 2), then put back together
        n("Split", ["x"], ["top", "bottom"], axis=2, num_outputs=2),
        n("Concat", ["bottom", "top"], ["rows"], axis=2),
        # Softmax-13 over axis 1 of a 4-D tensor (before 13 it would normalise over dims 1..3)
        n("Softmax", ["rows"], ["soft"], axis=1),
        # Resize with sizes only (roi and scales left out: optional from opset 13)
        n("Resize", ["soft", "", "", "sizes"], ["big"], mode="nearest"),
        # ReduceMean-18 with axes as an input; Unsqueeze-13 with axes as an input
        n("ReduceMean", ["big", "mean_axes"], ["mean"], keepdims=0),
        n("Unsqueeze", ["mean", "unsq_axes"], ["mean4"]),
        n("Add", ["big", "mean4"], ["shifted"]),
        n("HardSwish", ["shifted"], ["hs"]),
        n("Constant", [], ["scale"], value_floats=[2.0]),
        n("Mul", ["hs", "scale"], ["scaled"]),
        n("Reshape", ["scaled", "flat"], ["y"], allowzero=0),
    ]
    inits = [
        _i64("sizes", [1, 6, 10, 14]),
        _i64("mean_axes", [1]),
        _i64("unsq_axes", [1]),
        _i64("flat", [1, -1]),
    ]
    return _model(nodes, inits)


def test_onnx_version_converter_cannot_do_it(detector_ops):
    from onnx import version_converter

    with pytest.raises(Exception, match="Split"):
        version_converter.convert_version(detector_ops, 13)


@pytest.mark.parametrize("target", [17, 13, 12, 11])
def test_downgraded_model_runs_with_equal_outputs(detector_ops, target):
    x = np.random.default_rng(0).normal(size=(1, 6, 5, 7)).astype(np.float32)
    want = _run(detector_ops, x)
    model, rewritten = downgrade(detector_ops, target)
    assert [o.version for o in model.opset_import if o.domain == ""] == [target]
    np.testing.assert_array_equal(_run(model, x), want)  # exact: the same kernels on the same values
    if target < 13:
        assert {"Split", "Softmax", "Resize", "ReduceMean", "Unsqueeze", "HardSwish"} <= set(rewritten)
        assert ("Constant" in rewritten) == (target < 12)  # value_floats came in opset 12
        # Softmax normalises axis 1 through a Transpose pair; sizes moved into attributes
        ops = [m.op_type for m in model.graph.node]
        assert ops.count("Transpose") == 2 and "HardSigmoid" in ops
        split = next(m for m in model.graph.node if m.op_type == "Split")
        assert [a.ints for a in split.attribute if a.name == "split"] == [[3, 2]]


@pytest.mark.parametrize("axis", [-1, 2])
def test_layer_normalization_is_decomposed_below_17(axis):
    """A transformer's LayerNormalization (MiniLM at opset 17 has 13) in the ops opset 11 has: equal up to
    float rounding, not bit-exact."""
    rng = np.random.default_rng(1)
    model = _model(
        [n("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=axis, epsilon=1e-3, name="ln")],
        [_f32("scale", rng.normal(size=(5, 7) if axis == 2 else (7,))), _f32("bias", rng.normal(size=7))],
        opset=17,
    )
    x = (rng.normal(size=(1, 6, 5, 7)) * 3 + 1).astype(np.float32)
    out, rewritten = downgrade(model, 11)
    assert rewritten == {"LayerNormalization": 1}
    assert "LayerNormalization" not in {m.op_type for m in out.graph.node}
    np.testing.assert_allclose(_run(out, x), _run(model, x), rtol=1e-5, atol=1e-5)


def test_the_input_model_is_left_unchanged(detector_ops):
    before = detector_ops.SerializeToString()
    downgrade(detector_ops, 11)
    assert detector_ops.SerializeToString() == before


def test_split_13_sizes_become_an_attribute():
    model = _model(
        [n("Split", ["x", "s"], ["a", "b"], axis=1), n("Sub", ["a", "b"], ["y"])], [_i64("s", [3, 3])], opset=13
    )
    x = np.arange(6 * 35, dtype=np.float32).reshape(1, 6, 5, 7)
    out, rewritten = downgrade(model, 11)
    assert rewritten == {"Split": 1} and not out.graph.initializer  # the sizes tensor is gone with its reader
    np.testing.assert_array_equal(_run(out, x), _run(model, x))


@pytest.mark.parametrize(
    ("node", "inits", "message"),
    [
        (n("Trilu", ["x"], ["y"], name="tri"), [], "does not exist at opset 13"),
        (n("Reshape", ["x", "s"], ["y"], allowzero=1, name="rz"), [_i64("s", [0, -1])], "allowzero=1"),
        (n("Resize", ["x", "", "sc"], ["y"], antialias=1, name="aa"), [_f32("sc", [1, 1, 2, 2])], "antialias=1"),
    ],
)
def test_what_older_opsets_cannot_say_is_an_error_naming_the_node(node, inits, message):
    with pytest.raises(DowngradeError, match=message) as e:
        downgrade(_model([node], inits), 13)
    assert f"'{node.name}'" in str(e.value)


def test_computed_axes_cannot_become_an_attribute():
    model = _model(
        [n("Shape", ["x"], ["s"]), n("Slice", ["s", "z", "one"], ["ax"]), n("ReduceMean", ["x", "ax"], ["y"])],
        [_i64("z", [0]), _i64("one", [1])],
    )
    with pytest.raises(DowngradeError, match="must be a constant"):
        downgrade(model, 13)


def test_up_is_not_its_job():
    with pytest.raises(ValueError, match="goes down"):
        downgrade(_model([n("Relu", ["x"], ["y"])], opset=13), 17)
    assert onnx.checker.check_model(downgrade(_model([n("Relu", ["x"], ["y"])]), 11)[0]) is None
