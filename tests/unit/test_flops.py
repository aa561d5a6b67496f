"""FLOPs and parameters of a hand-built ONNX model, against numbers worked out by hand below."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bushu.bench.flops import count_flops, count_params
from bushu.errors import ModelLoadError


def _init(name: str, *shape: int, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


@pytest.fixture(scope="module")
def model():
    n = helper.make_node
    nodes = [
        # x [B,3,8,8] -> conv 3->4, k3, pad 1, bias -> [B,4,8,8]
        n("Conv", ["x", "W1", "B1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        # depthwise 4 groups, k3, stride 2, pad 1, no bias -> [B,4,4,4]
        n("Conv", ["c1", "W2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], group=4),
        n("Relu", ["c2"], ["r"]),
        # transposed conv 4->2, k2, stride 2 -> [B,2,8,8]
        n("ConvTranspose", ["r", "W3"], ["up"], kernel_shape=[2, 2], strides=[2, 2]),
        n("LRN", ["up"], ["lrn"], size=3),  # an op with compute that bushu does not count
        n("Flatten", ["r"], ["f"], axis=1),  # [B,64]
        n("Gemm", ["f", "W4", "B4"], ["logits"]),  # [B,10]
        # batched MatMul: y [B,2,5,6] x [6,7] -> [B,2,5,7], then a Reshape with an int64 shape tensor
        n("MatMul", ["y", "W5"], ["mm"]),
        n("Reshape", ["mm", "shape"], ["mm_flat"]),
        n("Gemm", ["f", "W4T"], ["logits2"], transB=1),  # [B,64] x [10,64]^T, no bias
    ]
    inits = [
        _init("W1", 4, 3, 3, 3),
        _init("B1", 4),
        _init("W2", 4, 1, 3, 3),
        _init("W3", 4, 2, 2, 2),
        _init("W4", 64, 10),
        _init("B4", 10),
        _init("W5", 6, 7),
        _init("W4T", 10, 64),
        numpy_helper.from_array(np.array([-1, 70], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "hand",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 5, 6]),
        ],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("logits", "lrn", "mm_flat", "logits2")],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# By hand, batch 1:
CONV1_MACS = 4 * 8 * 8 * (3 * 3 * 3)  # Cout * out pixels * (Cin * k * k) = 6912
CONV2_MACS = 4 * 4 * 4 * (1 * 3 * 3)  # depthwise: Cout * out pixels * (Cin/groups * k * k) = 576
CONVT_MACS = 4 * 4 * 4 * 2 * 2 * 2  # each input pixel of each of 4 channels meets 2 outputs * 2x2 kernel = 512
GEMM_MACS = 64 * 10  # 640
MATMUL_MACS = 2 * 5 * 7 * 6  # output elements * K = 420
GEMM2_MACS = 640
MACS = CONV1_MACS + CONV2_MACS + CONVT_MACS + GEMM_MACS + MATMUL_MACS + GEMM2_MACS
FLOPS = (
    2 * MACS
    + 4 * 8 * 8  # conv1 bias: one add per output
    + 10  # gemm bias
    + 4 * 4 * 4
)  # relu: one per element
PARAMS = 108 + 4 + 36 + 32 + 640 + 10 + 42 + 640  # the int64 shape tensor is not a parameter


def test_hand_counted_flops(model):
    rep = count_flops(model)
    assert rep.macs == MACS
    assert rep.flops == FLOPS
    assert rep.by_op["Conv"] == {
        "nodes": 2,
        "macs": CONV1_MACS + CONV2_MACS,
        "flops": 2 * (CONV1_MACS + CONV2_MACS) + 256,
    }
    assert rep.by_op["ConvTranspose"]["macs"] == CONVT_MACS
    assert rep.by_op["MatMul"]["macs"] == MATMUL_MACS
    assert rep.by_op["Gemm"] == {"nodes": 2, "macs": GEMM_MACS + GEMM2_MACS, "flops": 2 * 1280 + 10}
    assert rep.not_counted == {"LRN": 1}
    assert "Reshape" not in rep.by_op and "Flatten" not in rep.by_op  # free ops
    assert any("batch" in n for n in rep.notes)


def test_flops_scale_with_batch(model):
    assert count_flops(model, batch=3).macs == 3 * MACS


def test_params_exclude_int_shapes(model):
    assert count_params(model) == (PARAMS, 4 * PARAMS)
    assert count_flops(model).params == PARAMS


def test_flops_from_file_and_bad_files(model, tmp_path):
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert count_flops(path).flops == FLOPS
    (tmp_path / "trunc.onnx").write_bytes(path.read_bytes()[:50])
    with pytest.raises(ModelLoadError, match="trunc.onnx"):
        count_flops(tmp_path / "trunc.onnx")
    with pytest.raises(ModelLoadError, match="not found"):
        count_flops(tmp_path / "missing.onnx")
