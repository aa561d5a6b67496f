"""Write an ONNX model at a lower opset, for converters that read old opsets (SNPE, MACE, Paddle-Lite).

    downgrade(model, target) -> (ModelProto, {"Split": 8, ...})

onnx's version converter has no down-adapters for many common ops (Split-18, Resize-13, ReduceMean-18,
even Add-13 → 12), so an ONNX source that was not imported from PyTorch could not be written at the
profiles' opsets. Here each node is taken down from the version its op has at the model's opset to the
version at ``target``, one changelog step at a time:

- steps that only added tensor types (most of 13, 14, 16, 19, 21-25) keep the node as it is;
- steps that added an attribute or input keep the node when it uses the old default (Reshape's
  ``allowzero=0``, Cast's ``saturate=1``, BatchNormalization's ``training_mode=0``, ...), else the node
  cannot be expressed and the error names it;
- steps that moved an operand are rewritten: Split (``num_outputs`` → sizes; ``split`` input → attribute),
  Squeeze/Unsqueeze and the Reduce ops (``axes`` input → attribute), Softmax/LogSoftmax/Hardmax (opset 13
  normalises one axis, older opsets everything after it: a Transpose pair puts the axis last when it is
  not), Resize (the 18/19 attributes at their defaults; roi and scales present before 13), HardSwish
  (before 14: ``x * HardSigmoid(x)``), Constant's ``value_float(s)``/``value_int(s)`` (before 12);
- ops newer than ``target`` with a decomposition: LayerNormalization (17: ReduceMean, Sub, Mul, Sqrt,
  Div: equal up to float rounding, not bit-exact), GreaterOrEqual / LessOrEqual (12: Not(Less) /
  Not(Greater), equal except on NaN).

Another op with no version at ``target`` (Trilu below 14) or a change not listed here is a
``DowngradeError`` naming the node. The result is checked with ``onnx.checker`` (full check at the
target opset); the exporter then runs it against the source with ONNX Runtime.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["DowngradeError", "downgrade"]


class DowngradeError(RuntimeError):
    pass


# op -> the versions (>= 12) whose change from the version before only added tensor types
_TYPES_ONLY: dict[str, set[int]] = {
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Relu"), {13, 14}),
    **dict.fromkeys(
        [
            "Sigmoid",
            "Tanh",
            "Exp",
            "Log",
            "Sqrt",
            "Neg",
            "Abs",
            "Floor",
            "Ceil",
            "Reciprocal",
            "Erf",
            "Concat",
            "Gather",
            "GatherElements",
            "Tile",
            "Expand",
            "MatMul",
            "Gemm",
            "Less",
            "Greater",
            "Mean",
            "Sum",
            "Slice",
            "NonZero",
            "DepthToSpace",
            "SpaceToDepth",
            "Sign",
            "Mod",
        ],
        {13},
    ),
    "Pow": {12, 13, 15},
    "IsNaN": {13, 20},
    "Clip": {12, 13},
    "Max": {12, 13},
    "Min": {12, 13},
    "Equal": {13, 19},
    "LessOrEqual": {16},
    "GreaterOrEqual": {16},
    "Where": {16},
    "LeakyRelu": {16},
    "PRelu": {16},
    "CumSum": {14},
    "MaxPool": {12, 22},
    "AveragePool": {22},
    "ArgMax": {13},
    "ArgMin": {13},
    "GatherND": {13},
    "ScatterND": {13},
    "BatchNormalization": {15},
    "Dropout": {13, 22},
    "ReduceMax": {12, 13, 20},
    "ReduceMin": {12, 13, 20},
    **dict.fromkeys(("ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"), {13}),
    "ReduceSumSquare": {13},
    **dict.fromkeys(
        [
            "Conv",
            "ConvTranspose",
            "GlobalAveragePool",
            "GlobalMaxPool",
            "HardSigmoid",
            "HardSwish",
            "Elu",
            "Selu",
            "Softplus",
            "Softsign",
            "InstanceNormalization",
            "Round",
            "Sin",
            "Cos",
        ],
        {22},
    ),
    **dict.fromkeys(("Transpose", "Flatten"), {13, 21, 23, 24, 25}),
    **dict.fromkeys(("Squeeze", "Unsqueeze"), {21, 23, 24, 25}),
    "Identity": {13, 14, 16, 19, 21, 23, 24, 25},
    "Size": {13, 19, 21, 23, 24, 25},
    "Shape": {13, 19, 21, 23, 24, 25},
    "Reshape": {13, 19, 21, 23, 24, 25},
    "Cast": {13, 21, 23, 24, 25},
    "Constant": {13, 19, 21, 23, 24, 25},
    "ConstantOfShape": {20, 21, 23, 24, 25},
    "Pad": {13, 21, 23, 24, 25},
}
_REDUCE_18 = (
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
)


def downgrade(model: Any, target: int) -> tuple[Any, dict[str, int]]:
    """``model`` (left unchanged) at default-domain opset ``target``; the count of nodes changed per op type."""
    import onnx
    from onnx import helper

    have = _opset(model)
    if target >= have:
        raise ValueError(f"downgrade goes down: the model is at opset {have}, target {target}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise DowngradeError(f"node {n.name or n.op_type} ({n.op_type}) has a subgraph; only flat graphs go down")
    try:
        m = onnx.shape_inference.infer_shapes(m)  # ranks, for Softmax's axis
    except Exception:  # noqa: BLE001 - ranks stay unknown; a Softmax that needs one says so
        pass
    g = _Graph(m.graph)
    changed: Counter[str] = Counter()
    nodes = []
    for n in m.graph.node:
        if n.domain not in ("", "ai.onnx"):
            nodes.append(n)
            continue
        before = n.SerializeToString()
        out = _node_down(g, n, _since(n.op_type, have), target)
        if len(out) != 1 or out[0].SerializeToString() != before:
            changed[n.op_type] += 1
        nodes.extend(out)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    g.drop_unused_initializers()
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    m.ir_version = min(m.ir_version, helper.find_min_ir_version_for([helper.make_opsetid("", target)]))
    del m.graph.value_info[:]  # inferred above at the old opset; tools re-infer
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # noqa: BLE001 - ValidationError or InferenceError, both name the node
        raise DowngradeError(f"the model at opset {target} does not check: {str(e).splitlines()[0][:300]}") from e
    return m, dict(changed)


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _since(op: str, opset: int) -> int:
    import onnx.defs

    try:
        return onnx.defs.get_schema(op, opset, "").since_version
    except Exception:  # noqa: BLE001 - SchemaError: no such op at this opset
        return 0


class _Graph:
    """Constants and ranks of a graph, and fresh names for what rewrites add."""

    def __init__(self, graph: Any):
        from onnx import numpy_helper

        self.graph = graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for n in graph.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.ranks = {
            v.name: len(v.type.tensor_type.shape.dim)
            for v in (*graph.input, *graph.value_info, *graph.output)
            if v.type.tensor_type.HasField("shape")
        }
        self.dims = {
            v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in (*graph.input, *graph.value_info, *graph.output)
            if v.type.tensor_type.HasField("shape")
        }
        self.names = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
        self.names |= {i.name for i in graph.input} | {n.name for n in graph.node}

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def const(self, name: str, node: Any, what: str) -> np.ndarray:
        if name not in self.consts:
            raise DowngradeError(f"{_who(node)}: {what} '{name}' is computed in the graph; it must be a constant")
        return self.consts[name]

    def add_initializer(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.consts[name] = value
        return name

    def drop_unused_initializers(self) -> None:
        used = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
        keep = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)


def _who(n: Any) -> str:
    return f"{n.op_type} node '{n.name}'" if n.name else f"a {n.op_type} node"


def _attr(n: Any, name: str) -> Any:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in n.attribute if a.name == name), None)


def _drop_attr(n: Any, name: str) -> None:
    keep = [a for a in n.attribute if a.name != name]
    del n.attribute[:]
    n.attribute.extend(keep)


def _set_attr(n: Any, name: str, value: Any) -> None:
    from onnx import helper

    _drop_attr(n, name)
    n.attribute.append(helper.make_attribute(name, value))


def _default_only(n: Any, name: str, default: Any) -> None:
    """An attribute added at a later version: fine at its default (then dropped), else not expressible."""
    v = _attr(n, name)
    if v is None:
        return
    if isinstance(v, bytes):
        v = v.decode()
    if v != default and not (isinstance(v, list) and all(x == default for x in v)):
        raise DowngradeError(f"{_who(n)} uses {name}={v!r}, which older opsets do not have")
    _drop_attr(n, name)


def _no_input(n: Any, index: int, what: str) -> None:
    if len(n.input) > index and n.input[index]:
        raise DowngradeError(f"{_who(n)} has the {what} input, which older opsets do not have")
    del n.input[index:]


# -- one changelog step: (op, version) -> rewrite of a node written at that version into the one before ----
def _split_18(g: _Graph, n: Any) -> list[Any]:
    parts = _attr(n, "num_outputs")
    _drop_attr(n, "num_outputs")
    if parts is not None and len(n.input) < 2:  # sizes when the split is uneven and the dim is known
        axis = _attr(n, "axis") or 0
        dims = g.dims.get(n.input[0])
        d = dims[axis] if dims and -len(dims) <= axis < len(dims) else None
        if d is not None and d % parts:
            chunk = -(-d // parts)
            sizes = [chunk] * (parts - 1) + [d - chunk * (parts - 1)]
            n.input.append(g.add_initializer(f"{n.name or 'split'}_sizes", np.array(sizes, np.int64)))
    return [n]


def _split_13(g: _Graph, n: Any) -> list[Any]:
    if len(n.input) > 1 and n.input[1]:
        _set_attr(n, "split", [int(v) for v in g.const(n.input[1], n, "split sizes")])
    del n.input[1:]
    return [n]


def _axes_to_attribute(g: _Graph, n: Any) -> list[Any]:
    if len(n.input) > 1 and n.input[1]:
        _set_attr(n, "axes", [int(v) for v in g.const(n.input[1], n, "axes")])
    elif _attr(n, "noop_with_empty_axes"):
        raise DowngradeError(f"{_who(n)} has no axes and noop_with_empty_axes=1, which older opsets do not have")
    _drop_attr(n, "noop_with_empty_axes")
    del n.input[1:]
    return [n]


def _softmax_13(g: _Graph, n: Any) -> list[Any]:
    """Opset 13 normalises along ``axis``; before, over all dims from ``axis`` on. The same on the last axis."""
    from onnx import helper

    axis = _attr(n, "axis")
    axis = -1 if axis is None else axis
    rank = g.ranks.get(n.input[0])
    if axis == -1 or (rank is not None and axis == rank - 1):
        _set_attr(n, "axis", -1)
        return [n]
    if rank is None:
        raise DowngradeError(f"{_who(n)} normalises axis {axis} of a tensor of unknown rank")
    axis %= rank
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]  # a swap: its own inverse
    moved, normed = g.fresh(f"{n.input[0]}_axis_last"), g.fresh(f"{n.output[0]}_axis_last")
    base = n.name or n.op_type
    return [
        helper.make_node("Transpose", [n.input[0]], [moved], name=g.fresh(f"{base}_to_last"), perm=perm),
        helper.make_node(n.op_type, [moved], [normed], name=base, axis=-1),
        helper.make_node("Transpose", [normed], [n.output[0]], name=g.fresh(f"{base}_back"), perm=perm),
    ]


def _resize_19(g: _Graph, n: Any) -> list[Any]:
    if (_attr(n, "coordinate_transformation_mode") or b"") == b"half_pixel_symmetric":
        raise DowngradeError(f"{_who(n)} uses half_pixel_symmetric, which older opsets do not have")
    return [n]


def _resize_18(g: _Graph, n: Any) -> list[Any]:
    _default_only(n, "antialias", 0)
    _default_only(n, "keep_aspect_ratio_policy", "stretch")
    if _attr(n, "axes") is not None:
        raise DowngradeError(f"{_who(n)} resizes only some axes (axes=...), which older opsets do not have")
    return [n]


def _resize_13(g: _Graph, n: Any) -> list[Any]:
    """Resize-11 takes roi and scales as tensors (empty when unused); from 13 they may be left out."""
    inputs = list(n.input) + [""] * (4 - len(n.input))
    for i, what in ((1, "roi"), (2, "scales")):
        if not inputs[i]:
            inputs[i] = g.add_initializer(f"{n.name or 'resize'}_{what}", np.zeros(0, np.float32))
    if not inputs[3]:
        inputs = inputs[:3]
    del n.input[:]
    n.input.extend(inputs)
    return [n]


def _hardswish_14(g: _Graph, n: Any) -> list[Any]:
    from onnx import helper

    base = n.name or "HardSwish"
    gate = g.fresh(f"{n.output[0]}_gate")
    return [
        helper.make_node("HardSigmoid", [n.input[0]], [gate], name=g.fresh(f"{base}_gate"), alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", [n.input[0], gate], [n.output[0]], name=base),
    ]


def _layernorm_17(g: _Graph, n: Any) -> list[Any]:
    """(x - mean) / sqrt(var + epsilon) * scale + bias over the dims from ``axis`` on, in the ops opset 11 has:
    equal to LayerNormalization up to float rounding (not bit-exact)."""
    from onnx import helper

    if len([o for o in n.output if o]) > 1:
        raise DowngradeError(f"{_who(n)} returns its mean / inverse deviation, which the decomposition does not")
    axis = _attr(n, "axis")
    axis = -1 if axis is None else axis
    if axis >= 0:
        rank = g.ranks.get(n.input[0])
        if rank is None:
            raise DowngradeError(f"{_who(n)} normalises from axis {axis} of a tensor of unknown rank")
        axis -= rank
    axes = list(range(axis, 0))
    eps = _attr(n, "epsilon")
    base, x = n.name or "LayerNormalization", n.input[0]

    def t(what: str) -> str:
        return g.fresh(f"{base}/{what}")

    mean, centred, sq, var, var_eps, std, normed = (
        t(w) for w in ("mean", "centred", "sq", "var", "var_eps", "std", "normed")
    )
    eps_name = g.add_initializer(f"{base}/epsilon", np.array(1e-5 if eps is None else eps, np.float32))
    scaled = n.output[0] if len(n.input) < 3 or not n.input[2] else t("scaled")
    nodes = [
        helper.make_node("ReduceMean", [x], [mean], name=t("ReduceMean"), axes=axes, keepdims=1),
        helper.make_node("Sub", [x, mean], [centred], name=t("Sub")),
        helper.make_node("Mul", [centred, centred], [sq], name=t("Square")),
        helper.make_node("ReduceMean", [sq], [var], name=t("ReduceMeanSq"), axes=axes, keepdims=1),
        helper.make_node("Add", [var, eps_name], [var_eps], name=t("AddEps")),
        helper.make_node("Sqrt", [var_eps], [std], name=t("Sqrt")),
        helper.make_node("Div", [centred, std], [normed], name=t("Div")),
        helper.make_node("Mul", [normed, n.input[1]], [scaled], name=t("Scale")),
    ]
    if scaled != n.output[0]:
        nodes.append(helper.make_node("Add", [scaled, n.input[2]], [n.output[0]], name=t("Bias")))
    return nodes


def _compare_12(opposite: str) -> Callable[[_Graph, Any], list[Any]]:
    """GreaterOrEqual / LessOrEqual (opset 12) as Not(Less) / Not(Greater): equal except on NaN."""

    def step(g: _Graph, n: Any) -> list[Any]:
        from onnx import helper

        base = n.name or n.op_type
        strict = g.fresh(f"{n.output[0]}_strict")
        return [
            helper.make_node(opposite, list(n.input), [strict], name=g.fresh(f"{base}_{opposite}")),
            helper.make_node("Not", [strict], [n.output[0]], name=base),
        ]

    return step


def _constant_12(g: _Graph, n: Any) -> list[Any]:
    from onnx import helper, numpy_helper

    a = n.attribute[0] if len(n.attribute) == 1 else None
    if a is None or a.name in ("value", "sparse_value"):
        return [n]
    values = {
        "value_float": np.float32,
        "value_floats": np.float32,
        "value_int": np.int64,
        "value_ints": np.int64,
    }
    if a.name not in values:
        raise DowngradeError(f"{_who(n)} holds a {a.name}, which older opsets do not have")
    t = numpy_helper.from_array(np.array(helper.get_attribute_value(a), values[a.name]))
    del n.attribute[:]
    n.attribute.append(helper.make_attribute("value", t))
    return [n]


def _check(*conditions: Callable[[Any], None]) -> Callable[[_Graph, Any], list[Any]]:
    """A step that keeps the node as it is once ``conditions`` hold (each raises DowngradeError if not)."""

    def step(g: _Graph, n: Any) -> list[Any]:
        for condition in conditions:
            condition(n)
        return [n]

    return step


def _default(name: str, value: Any) -> Callable[[Any], None]:
    return lambda n: _default_only(n, name, value)


def _no_end(n: Any) -> None:
    if _attr(n, "end") is not None:
        raise DowngradeError(f"{_who(n)} takes part of the shape (end=...), which older opsets do not have")


def _one_output(n: Any) -> None:
    if len([o for o in n.output if o]) > 1:
        raise DowngradeError(f"{_who(n)} returns its running statistics, which older opsets do not")
    del n.output[1:]


def _pad_mode(n: Any) -> None:
    if (_attr(n, "mode") or b"constant") == b"wrap":
        raise DowngradeError(f"{_who(n)} pads with mode 'wrap', which older opsets do not have")


_STEPS: dict[tuple[str, int], Callable[[_Graph, Any], list[Any]]] = {
    ("Split", 18): _split_18,
    ("Split", 13): _split_13,
    ("Squeeze", 13): _axes_to_attribute,
    ("Unsqueeze", 13): _axes_to_attribute,
    ("ReduceSum", 13): _axes_to_attribute,
    **{(op, 18): _axes_to_attribute for op in _REDUCE_18},
    ("Softmax", 13): _softmax_13,
    ("LogSoftmax", 13): _softmax_13,
    ("Hardmax", 13): _softmax_13,
    ("Resize", 19): _resize_19,
    ("Resize", 18): _resize_18,
    ("Resize", 13): _resize_13,
    ("HardSwish", 14): _hardswish_14,
    ("LayerNormalization", 17): _layernorm_17,
    ("GreaterOrEqual", 12): _compare_12("Less"),
    ("LessOrEqual", 12): _compare_12("Greater"),
    ("Constant", 12): _constant_12,
    ("Reshape", 14): _check(_default("allowzero", 0)),
    ("Cast", 19): _check(_default("saturate", 1)),
    ("Shape", 15): _check(_default("start", 0), _no_end),
    ("BatchNormalization", 14): _check(_default("training_mode", 0), _one_output),
    ("ArgMax", 12): _check(_default("select_last_index", 0)),
    ("ArgMin", 12): _check(_default("select_last_index", 0)),
    ("GatherND", 12): _check(_default("batch_dims", 0)),
    ("AveragePool", 19): _check(_default("dilations", 1)),
    ("Pad", 18): _check(lambda n: _no_input(n, 3, "axes")),
    ("Pad", 19): _check(_pad_mode),
    ("ScatterND", 16): _check(_default("reduction", "none")),
    ("ScatterND", 18): _check(_default("reduction", "none")),
    ("Dropout", 12): _check(lambda n: _no_input(n, 1, "ratio")),
}


def _node_down(g: _Graph, n: Any, version: int, target: int) -> list[Any]:
    """``n`` (written at its op's ``version``) as the version at ``target`` reads it, step by step."""
    import onnx.defs

    history = sorted(
        {s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.name == n.op_type and s.domain == ""}
    )
    nodes = [n]
    for v in reversed([v for v in history if target < v <= version]):
        step = _STEPS.get((n.op_type, v))
        if step is not None:
            out = []
            for m in nodes:
                out.extend(step(g, m) if m.op_type == n.op_type else [m])
            nodes = out
        elif v == history[0]:
            raise DowngradeError(f"{_who(n)}: {n.op_type} does not exist at opset {target} (it came in opset {v})")
        elif v not in _TYPES_ONLY.get(n.op_type, ()):
            raise DowngradeError(f"{_who(n)}: bushu does not know how to take {n.op_type}-{v} below opset {v}")
    return nodes
