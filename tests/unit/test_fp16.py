"""fp16 conversion (bushu.optimize._fp16) on hand-built graphs with what broke on exported detectors:
shape arithmetic through float, an initializer read in fp32 and in fp16, value_info listed twice."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bushu.optimize._fp16 import shape_arithmetic, to_fp16

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.transformers.float16")


def _run(model, feeds):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


@pytest.fixture()
def halves():
    """y = x[:, : n // 2] * 2 + 0.1 for x [1, n]: the size goes Shape -> Cast(float) -> Div -> Cast(int64),
    and the initializer `two` is read both by that Div (shape arithmetic) and by the Mul on the data."""
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["shape"]),
        n("Gather", ["shape", "one_i"], ["len"], axis=0),
        n("Cast", ["len"], ["len_f"], to=TensorProto.FLOAT),
        n("Div", ["len_f", "two"], ["half_f"]),
        n("Cast", ["half_f"], ["half"], to=TensorProto.INT64),
        n("Unsqueeze", ["half", "zero_axes"], ["ends"]),
        n("Slice", ["x", "starts", "ends", "axes"], ["xs"]),
        n("Mul", ["xs", "two"], ["m"]),
        n("Add", ["m", "tenth"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(1, np.int64), "one_i"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array([0], np.int64), "zero_axes"),
        numpy_helper.from_array(np.array([0], np.int64), "starts"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(0.1, np.float32), "tenth"),
    ]
    g = helper.make_graph(
        nodes,
        "halves",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "m"])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_arithmetic_is_the_float_path_from_shape(halves):
    for i, n in enumerate(halves.graph.node):
        n.name = f"n{i}"
    by_output = {n.output[0]: n.name for n in halves.graph.node}
    # the Casts and the Div; not the integer-only Gather/Unsqueeze, not the data path (Slice, Mul, Add)
    typed = onnx.shape_inference.infer_shapes(halves)  # it reads dtypes from value_info
    assert shape_arithmetic(typed) == {by_output["len_f"], by_output["half_f"], by_output["half"]}


def test_sizes_above_2048_survive_fp16(halves):
    """4099 is 4100 in fp16: converted naively, the slice is one element too long. ONNX's reference
    evaluator computes in fp16 as a GPU would (ONNX Runtime's CPU kernels widen fp16 Div to fp32 and fuse
    the casts, which hides the rounding)."""
    from onnx.reference import ReferenceEvaluator

    x = np.linspace(-1, 1, 4099, dtype=np.float32)[None]
    (want,) = _run(halves, {"x": x})
    assert want.shape == (1, 2049)
    fp16, details = to_fp16(halves)
    for got in (_run(fp16, {"x": x})[0], ReferenceEvaluator(fp16).run(None, {"x": x})[0]):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=2e-3)
    assert details["fp32_shape_nodes"] == 3
    # the data path is fp16: its copy of `two` is half, the shape path's copy stays fp32
    inits = {t.name: t.data_type for t in fp16.graph.initializer}
    assert details["initializers_copied_for_fp32_readers"] == 1
    assert inits["two"] == TensorProto.FLOAT16 and inits["two_fp32"] == TensorProto.FLOAT
    # no fp16 round trip inside the shape path: the Div reads the fp32 Cast output directly
    div = next(n for n in fp16.graph.node if n.op_type == "Div")
    assert list(div.input) == ["len_f", "two_fp32"]


def test_the_caller_model_is_left_unchanged(halves):
    before = halves.SerializeToString()
    to_fp16(halves)
    assert halves.SerializeToString() == before


def _upsampler(dup: int):
    """x [1, 2, h, w] -> Mul -> Resize x2 (a blocked-input op) -> Add, with value_info listed ``dup`` times."""
    n = helper.make_node
    g = helper.make_graph(
        [
            n("Mul", ["x", "w"], ["a"]),
            n("Resize", ["a", "", "scales"], ["r"], mode="nearest"),
            n("Cast", ["r"], ["rc"], to=TensorProto.FLOAT),  # a float Cast on the data path
            n("Add", ["rc", "w"], ["y"]),
        ],
        "up",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "H", "W"])],
        [
            numpy_helper.from_array(np.array([1.5, -0.5], np.float32).reshape(1, 2, 1, 1), "w"),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        ],
    )
    for _ in range(dup):
        for name in ("a", "r", "rc"):
            g.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_duplicate_value_info_and_float_casts_convert_and_load():
    model = _upsampler(dup=3)
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 7)).astype(np.float32)
    (want,) = _run(model, {"x": x})
    fp16, details = to_fp16(model)
    assert details["duplicate_value_info_dropped"] == 6
    (got,) = _run(fp16, {"x": x})
    assert got.shape == (1, 2, 10, 14) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-2)
    types = {t.name: t.data_type for t in fp16.graph.initializer}
    assert types["scales"] == TensorProto.FLOAT and types["w"] == TensorProto.FLOAT16
    # topologically sorted: the checker accepts it (the converter appends its Casts at the end)
    onnx.checker.check_model(fp16)


@pytest.mark.parametrize(("err", "scale"), [(0.195, 1.0), (0.05, 0.01), (41.0, 500.0)])
def test_the_refusal_names_an_atol_that_accepts_what_was_measured(err, scale):
    """bushu optimize --quantize fp16 refuses a model outside --atol/--rtol; its hint names the --atol that passes."""
    import re

    from bushu.errors import ToleranceError, as_flags
    from bushu.optimize.quantize import _fp16_hint
    from bushu.validate import agreement, check_tolerance

    ref = {"map": np.array([[scale, 0.0, scale / 2]])}
    got = {"map": ref["map"] + np.array([[0.0, err, 0.0]])}
    with pytest.raises(ToleranceError) as e:
        check_tolerance("fp16 model", ref, got, 1e-2, 2e-2)
    hint = as_flags(_fp16_hint(e.value.mismatches, agreement(ref, got), 1e-2))
    atol = float(re.search(r"with --atol ([0-9.e-]+);", hint).group(1))
    assert check_tolerance("fp16 model", ref, got, atol, 2e-2)  # accepted at the hinted value
    assert atol <= 1.1 * (err - 2e-2 * scale) + 1e-12  # and not much looser than needed
    assert "--sample FILE.npz" in hint


def test_an_overflowing_fp16_model_is_not_offered_a_tolerance():
    from bushu.errors import ToleranceError
    from bushu.optimize.quantize import _fp16_hint
    from bushu.validate import agreement, check_tolerance

    ref, got = {"y": np.ones((1, 3))}, {"y": np.array([[1.0, np.inf, 1.0]])}
    with pytest.raises(ToleranceError) as e:
        check_tolerance("fp16 model", ref, got, 1e-2, 2e-2)
    with np.errstate(invalid="ignore"):
        hint = _fp16_hint(e.value.mismatches, agreement(ref, got), 1e-2)
    assert "overflow" in hint and "atol" not in hint
