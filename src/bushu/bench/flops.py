"""Parameters and FLOPs counted from an ONNX graph (batch 1), with the op types left uncounted.

Conventions (stated in every report): MACs are multiply-accumulates of Conv, ConvTranspose, Gemm and
MatMul (and their integer/QLinear forms); their FLOPs are 2 × MACs, plus one per output element
for a bias. Cheap elementwise ops, pooling and normalisation add a small fixed number of FLOPs per
element (``_PER_ELEMENT``). Shape-only ops (Reshape, Transpose, Concat, ...) cost nothing. Every
other op type is listed in ``not_counted`` rather than guessed. Symbolic dims are set to 1 first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError

__all__ = ["FlopsReport", "count_flops", "count_params"]

# FLOPs per output element.
_PER_ELEMENT = {
    **dict.fromkeys(
        (
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Relu",
            "LeakyRelu",
            "PRelu",
            "Max",
            "Min",
            "Neg",
            "Abs",
            "Clip",
            "Sqrt",
            "Reciprocal",
            "Pow",
            "Exp",
            "Log",
            "Floor",
            "Ceil",
            "Round",
            "Sign",
            "Where",
            "Equal",
            "Less",
            "Greater",
            "LessOrEqual",
            "GreaterOrEqual",
            "Not",
            "And",
            "Or",
            "Tanh",
            "Erf",
            "Sin",
            "Cos",
            "Sum",
            "Mean",
            "Elu",
            "Selu",
            "Celu",
            "ThresholdedRelu",
            "QuantizeLinear",
            "DequantizeLinear",
        ),
        1,
    ),
    **dict.fromkeys(("Sigmoid", "HardSigmoid", "Softplus", "Softsign"), 3),
    **dict.fromkeys(("HardSwish", "Mish"), 4),
    "Gelu": 8,
    "BatchNormalization": 2,
    "InstanceNormalization": 5,
    "LayerNormalization": 5,
    "Softmax": 5,
    "LogSoftmax": 5,
}
# FLOPs per *input* element (reductions).
_PER_INPUT_ELEMENT = dict.fromkeys(
    (
        "GlobalAveragePool",
        "GlobalMaxPool",
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        "ReduceL2",
        "ReduceSumSquare",
        "ArgMax",
        "ArgMin",
    ),
    1,
)
_FREE = frozenset(
    (
        "Reshape",
        "Flatten",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "Shape",
        "Size",
        "Constant",
        "ConstantOfShape",
        "Identity",
        "Cast",
        "CastLike",
        "Expand",
        "Pad",
        "Tile",
        "Range",
        "Dropout",
        "DepthToSpace",
        "SpaceToDepth",
        "GatherElements",
        "GatherND",
        "ScatterND",
        "NonZero",
        "TopK",
    )
)


@dataclass
class FlopsReport:
    flops: int = 0
    macs: int = 0
    params: int = 0
    param_bytes: int = 0
    by_op: dict[str, dict[str, int]] = field(default_factory=dict)  # op type -> {nodes, flops, macs}
    not_counted: dict[str, int] = field(default_factory=dict)  # op type -> number of nodes
    batch: int = 1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "macs": self.macs,
            "params": self.params,
            "param_bytes": self.param_bytes,
            "batch": self.batch,
            "flops_by_op": self.by_op,
            "not_counted": self.not_counted,
            "notes": self.notes,
        }


def _load(model: Any):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"ONNX file not found: {path}")
    try:  # weights' values are not needed, only their shapes
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelLoadError(
            f"{path.name} is not a readable ONNX model: {str(e)[:300]}",
            hint="check the file is complete (not truncated), or re-export it",
        ) from e


def _fix_symbolic_dims(model, batch: int, shapes: dict[str, tuple[int, ...]] | None = None) -> list[str]:
    """Set every symbolic or unknown input dim to a number (``shapes`` first); return the names changed."""
    inits = {i.name for i in model.graph.initializer}
    changed = []
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            name = d.dim_param or "?"
            d.Clear()
            given = (shapes or {}).get(inp.name)
            d.dim_value = int(given[i]) if given and i < len(given) else (batch if i == 0 else 1)
            changed.append(f"{inp.name}[{i}]={name}")
    return changed


def count_params(model: Any) -> tuple[int, int]:
    """(elements, bytes) of all weights: initializers (once per name) and Constant tensors, not int64/int32
    (those are shapes and indices)."""
    import onnx
    from onnx import helper

    model = _load(model)
    skip = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}
    seen: set[str] = set()
    n = nbytes = 0

    def add(t) -> None:
        nonlocal n, nbytes
        if t.data_type in skip:
            return
        k = int(np.prod(t.dims)) if len(t.dims) else 1
        n += k
        nbytes += k * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize

    for g in _graphs(model.graph):
        for t in g.initializer:
            if t.name not in seen:
                seen.add(t.name)
                add(t)
        for node in g.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value" and a.t.dims:
                        add(a.t)
    return n, nbytes


def _graphs(graph):
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.g.node:
                yield from _graphs(a.g)
            for sub in a.graphs:
                yield from _graphs(sub)


def typical_shapes(model, batch: int = 1) -> dict[str, tuple[int, ...]] | None:
    """Input shapes with dynamic dims at the sizes bushu derives (a sequence of 1 would leave a transformer's
    MatMul shapes unknown to shape inference); None when a dim has no derivable size."""
    from ..errors import BushuError
    from ..import_.signature import annotate
    from ..spec import resolve_shapes
    from .info import onnx_io

    try:
        return resolve_shapes(annotate(model, onnx_io(model)[0]), batch=batch)
    except BushuError:
        return None


def count_flops(model: Any, batch: int = 1, shapes: dict[str, tuple[int, ...]] | None = None) -> FlopsReport:
    """Count FLOPs/MACs of an ONNX model (path or ModelProto) at the given batch size, or at the given
    input ``shapes`` (name -> concrete shape, batch first) where the graph leaves dims symbolic."""
    import onnx

    model = _load(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    notes = []
    if shapes is None:
        shapes = typical_shapes(model, batch)
    if shapes:
        batch = next(iter(shapes.values()))[0] if next(iter(shapes.values()), ()) else batch
    changed = _fix_symbolic_dims(m, batch, shapes)
    if changed:
        notes.append(f"symbolic dims set: {', '.join(changed)}")
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception as e:  # a graph ONNX cannot fully infer still counts where shapes are known
        notes.append(f"shape inference failed ({str(e)[:120]}); ops without shapes are not counted")
    value_shapes = _shapes(m.graph)
    report = FlopsReport(batch=batch, notes=notes)
    report.params, report.param_bytes = count_params(model)
    by_op: dict[str, dict[str, int]] = defaultdict(lambda: {"nodes": 0, "flops": 0, "macs": 0})
    missing: Counter[str] = Counter()
    for node in m.graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        if op in _FREE:
            continue
        res = _count_node(node, value_shapes) if node.domain in ("", "ai.onnx") else None
        if res is None:
            missing[op] += 1
            continue
        macs, flops = res
        entry = by_op[op]
        entry["nodes"] += 1
        entry["macs"] += macs
        entry["flops"] += flops
        report.macs += macs
        report.flops += flops
    report.by_op = dict(sorted(by_op.items(), key=lambda kv: -kv[1]["flops"]))
    report.not_counted = dict(missing.most_common())
    return report


def _shapes(graph) -> dict[str, tuple[int, ...] | None]:
    out: dict[str, tuple[int, ...] | None] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        out[vi.name] = tuple(dims) if all(d >= 0 for d in dims) else None
    for t in graph.initializer:
        out[t.name] = tuple(t.dims)
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = tuple(a.t.dims)
    return out


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _count_node(node, shapes) -> tuple[int, int] | None:
    """(macs, flops) of one node, or None when its op type or shapes are unknown."""
    op = node.op_type

    def shape(i: int, outputs: bool = False) -> tuple[int, ...] | None:
        names = node.output if outputs else node.input
        return shapes.get(names[i]) if i < len(names) and names[i] else None

    out = shape(0, outputs=True)
    if op in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
        w = shape(3 if op == "QLinearConv" else 1)
        ref = shape(0) if op == "ConvTranspose" else out  # ConvTranspose: each input pixel meets the kernel
        if w is None or ref is None or len(ref) < 2:
            return None
        macs = ref[0] * _numel(ref[2:]) * _numel(w)
        bias = {"Conv": 2, "ConvTranspose": 2, "QLinearConv": 8}.get(op)
        has_bias = bias is not None and len(node.input) > bias and node.input[bias]
        return macs, 2 * macs + (_numel(out) if has_bias and out else 0)
    if op in ("Gemm",):
        a, b = shape(0), shape(1)
        if a is None or b is None:
            return None
        m, k = (a[1], a[0]) if _attr(node, "transA", 0) else a
        n = b[0] if _attr(node, "transB", 0) else b[1]
        macs = m * n * k
        has_c = len(node.input) > 2 and node.input[2] and _attr(node, "beta", 1.0) != 0
        return macs, 2 * macs + (m * n if has_c else 0)
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shape(0)
        if a is None or out is None:
            return None
        macs = _numel(out) * a[-1]
        return macs, 2 * macs
    if op in _PER_ELEMENT:
        return None if out is None else (0, _PER_ELEMENT[op] * _numel(out))
    if op in _PER_INPUT_ELEMENT:
        x = shape(0)
        return None if x is None else (0, _numel(x))
    if op in ("MaxPool", "AveragePool", "LpPool"):
        k = _attr(node, "kernel_shape")
        return None if out is None or not k else (0, _numel(out) * _numel(tuple(k)))
    return None
