"""Tiny real models and a model repository for the server's tests and benchmark (built with onnx.helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["LABELS", "add_sub_onnx", "classifier_onnx", "make_test_repository"]

LABELS = ["cat", "dog", "bird"]


def classifier_onnx(path: Path, features: int = 4, classes: int = 3, seed: int = 0) -> Path:
    """x: float32[batch, features] -> probs: float32[batch, classes] (Gemm + Softmax)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((features, classes)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        initializer=[w, b],
    )
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def add_sub_onnx(path: Path, dtype: str = "int32", width: int = 16) -> Path:
    """Triton's add_sub: INPUT0, INPUT1 [batch, width] -> OUTPUT0 = sum, OUTPUT1 = difference."""
    from onnx import TensorProto, helper

    t = {"int32": TensorProto.INT32, "float32": TensorProto.FLOAT}[dtype]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "add_sub",
        [helper.make_tensor_value_info(n, t, ["batch", width]) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, t, ["batch", width]) for n in ("OUTPUT0", "OUTPUT1")],
    )
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _save(model, path: Path) -> None:
    import onnx

    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def make_test_repository(root: Path, echo_delay_ms: float = 30) -> Path:
    """classifier (no config, labels), add_sub (config.pbtxt), echo (null backend with a delay and
    batching), text (null backend echoing BYTES)."""
    root = Path(root)
    classifier_onnx(root / "classifier" / "1" / "model.onnx")
    (root / "classifier" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    add_sub_onnx(root / "add_sub" / "1" / "model.onnx")
    (root / "add_sub" / "config.pbtxt").write_text(
        'name: "add_sub"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        "dynamic_batching { max_queue_delay_microseconds: 1000 }\n"
        'instance_group { count: 1 kind: KIND_CPU }\nparameters { key: "threads" value { string_value: "1" } }\n'
    )
    (root / "echo" / "1").mkdir(parents=True)
    (root / "echo" / "1" / "model.null").write_text(
        f"delay_ms: {echo_delay_ms}\ninputs: [{{name: x, dtype: float32, shape: [batch, 2]}}]\n"
        "outputs: [{name: y, dtype: float32, shape: [batch, 2]}]\n"
    )
    (root / "echo" / "config.pbtxt").write_text(
        "max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 20000 }\ninstance_group { count: 1 }\n"
    )
    (root / "text" / "1").mkdir(parents=True)
    (root / "text" / "1" / "model.null").write_text(
        "inputs: [{name: TEXT, dtype: bytes, shape: [batch, 1]}]\noutputs: [{name: OUT, dtype: bytes, shape: [batch, 1]}]\n"
    )
    return root
