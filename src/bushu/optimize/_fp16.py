"""fp16 conversion of exported graphs, float32 inputs/outputs kept.

    to_fp16(model) -> (ModelProto, details)

ONNX Runtime's converter (``onnxruntime.transformers.float16``, shipped with onnxruntime: it retargets
``Cast(to=float)`` nodes, keeps Resize's scales in fp32 and casts around the ops it blocks), with passes
before it for what real exported detectors still broke (YOLOv8n from Ultralytics, PP-OCR's DBNet):

- ``value_info`` listed several times (onnxslim 0.1.x writes YOLOv8n's 329 values 1,880 times; artifacts
  imported before ``import_.onnx.simplify`` dropped the copies still carry them): only the first is kept.
  onnxconverter-common, used before, retyped one copy and not the others, and the graph did not load.
- shape arithmetic stays fp32: a dynamic graph computes sizes and grids from ``Shape`` through float
  (``Shape -> Gather -> Cast(float) -> Div -> Cast(int64) -> Reshape``, or YOLO's anchor grid from
  ``Range``). fp16 holds integers exactly only up to 2048 (2049 rounds to 2048), so such a graph cut or
  reshaped inputs a little over 2k pixels wrong where fp16 is computed as fp16 (GPUs; ONNX Runtime's CPU
  kernels widen it to fp32, which hides it). Those nodes are kept in fp32 with no fp16 round trip
  between them; a Cast to fp16 is added where their result meets fp16 data.
- an initializer read both by an fp32 node (a blocked op, Resize's scales, the shape arithmetic) and
  by an fp16 node is copied, so the fp32 reader keeps the exact fp32 values.

The nodes come out topologically sorted (the converter appends its Casts at the end of the graph).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["shape_arithmetic", "to_fp16"]

FLOAT = 1  # onnx.TensorProto.FLOAT
FLOAT16 = 10  # onnx.TensorProto.FLOAT16
SHAPE_SOURCES = ("Shape", "Size")


def to_fp16(model: Any, keep_io_types: bool = True) -> tuple[Any, dict[str, Any]]:
    """An fp16 copy of ``model`` (an onnx.ModelProto; left unchanged) and what was done to it."""
    import onnx
    from onnxruntime.transformers import float16

    from ..import_.onnx import dedupe_value_info

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    details: dict[str, Any] = {"converter": "onnxruntime.transformers.float16"}
    dups = dedupe_value_info(g)
    if dups:
        details["duplicate_value_info_dropped"] = dups
    _name_nodes(g)
    try:
        m = onnx.shape_inference.infer_shapes(m)
        g = m.graph
    except Exception:  # noqa: BLE001 - the value_info already there is what the converter gets then
        pass
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13)
    blocked_ops = set(float16.DEFAULT_OP_BLOCK_LIST)
    always_float = dict(getattr(float16, "ALWAYS_FLOAT_INPUTS", {"Resize": [2]}))
    if opset <= 10:  # Resize(X, scales) before opset 11
        always_float["Resize"] = [1]

    keep = shape_arithmetic(m)
    copied = _copy_shared_initializers(g, keep, blocked_ops, always_float)
    casts = _seal_fp32_region(g, keep, blocked_ops, always_float)
    if keep:
        details["fp32_shape_nodes"] = len(keep)
    if copied:
        details["initializers_copied_for_fp32_readers"] = copied
    if casts:
        details["fp32_to_fp16_casts_added"] = casts
    out = float16.convert_float_to_float16(
        m,
        keep_io_types=keep_io_types,
        disable_shape_infer=True,  # inferred above; inferring again would re-add what the sealing removed
        op_block_list=sorted(blocked_ops),
        node_block_list=sorted(keep),
    )
    _sort_topologically(out.graph)
    return out, details


# -- passes ------------------------------------------------------------------------------------------
def _name_nodes(g: Any) -> None:
    """Every node named, uniquely: the converter blocks nodes by name."""
    used = {n.name for n in g.node if n.name}
    seen: set[str] = set()
    for i, n in enumerate(g.node):
        if not n.name or n.name in seen:
            base = f"{n.op_type}_{i}"
            name, k = base, 0
            while name in used:
                k += 1
                name = f"{base}_{k}"
            n.name = name
            used.add(name)
        seen.add(n.name)


def _elem_types(g: Any) -> dict[str, int]:
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        for a in n.attribute:
            if (n.op_type, a.name) == ("Constant", "value"):
                types.setdefault(n.output[0], a.t.data_type)
            elif (n.op_type, a.name) == ("Cast", "to"):
                types.setdefault(n.output[0], a.i)
    return types


def shape_arithmetic(model: Any) -> set[str]:
    """Names of the top-level nodes that compute in float on values derived only from tensor shapes
    (``Shape``/``Size``) and constants: sizes, scales and grids, which fp16 would round.

    Dtypes come from the graph's value_info (run shape inference first), initializers and Cast targets.
    A node whose output is a graph output is never included (it stays the converter's, so the output's
    dtype does not change). Float constants read only by such nodes are included with them."""
    g = model.graph
    types = _elem_types(g)
    consts = {t.name for t in g.initializer}
    graph_outputs = {o.name for o in g.output}
    meta: set[str] = set()
    derived = []
    for n in g.node:
        ins = [i for i in n.input if i]
        has_subgraph = any(a.type in (5, 10) for a in n.attribute)  # GRAPH, GRAPHS: If/Loop/Scan bodies
        if n.op_type in SHAPE_SOURCES:
            meta.update(n.output)
        elif n.op_type == "Constant" or (ins and all(i in consts for i in ins) and not has_subgraph):
            consts.update(n.output)
        elif ins and not has_subgraph and all(i in meta or i in consts for i in ins) and any(i in meta for i in ins):
            meta.update(n.output)
            derived.append(n)
    keep = {
        n.name
        for n in derived
        if not graph_outputs.intersection(n.output) and any(types.get(t) == FLOAT for t in (*n.input, *n.output) if t)
    }
    readers: dict[str, set[str]] = defaultdict(set)
    for n in g.node:
        for i in n.input:
            readers[i].add(n.name)
    for n in g.node:  # constants only the kept nodes read stay fp32 with them
        out = n.output[0] if n.output else ""
        if n.op_type == "Constant" and out not in graph_outputs and types.get(out) == FLOAT and readers[out] <= keep:
            keep.add(n.name)
    return keep


def _reads_fp32(n: Any, i: int, keep: set[str], blocked_ops: set[str], always_float: dict[str, list[int]]) -> bool:
    return n.name in keep or n.op_type in blocked_ops or i in always_float.get(n.op_type, ())


def _copy_shared_initializers(g: Any, keep: set[str], blocked_ops: set[str], always_float: dict[str, list[int]]) -> int:
    """A float initializer read both in fp32 and in fp16: the fp32 readers get their own copy."""
    inits = {t.name: t for t in g.initializer if t.data_type == FLOAT}
    fp32_uses: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    fp16_read: set[str] = set()
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in inits:
                if _reads_fp32(n, i, keep, blocked_ops, always_float):
                    fp32_uses[name].append((n, i))
                else:
                    fp16_read.add(name)
    names = {t.name for t in g.initializer} | {o for n in g.node for o in n.output} | {v.name for v in g.input}
    copied = 0
    for name, uses in fp32_uses.items():
        if name not in fp16_read:
            continue
        new = f"{name}_fp32"
        while new in names:
            new += "_"
        names.add(new)
        t = g.initializer.add()
        t.CopyFrom(inits[name])
        t.name = new
        for n, i in uses:
            n.input[i] = new
        copied += 1
    return copied


def _seal_fp32_region(g: Any, keep: set[str], blocked_ops: set[str], always_float: dict[str, list[int]]) -> int:
    """The float tensors the kept nodes produce lose their value_info, so the converter neither retypes them
    nor casts them to fp16 and back between two kept nodes; a fp16 reader gets them through one Cast."""
    from onnx import helper

    if not keep:
        return 0
    types = _elem_types(g)
    produced = {o for n in g.node if n.name in keep for o in n.output if types.get(o) == FLOAT}
    if not produced:
        return 0
    shapes = {v.name: v for v in g.value_info}
    remaining = [v for v in g.value_info if v.name not in produced]
    del g.value_info[:]
    g.value_info.extend(remaining)
    casts: dict[str, str] = {}
    new_nodes = []
    for n in list(g.node):
        for i, name in enumerate(n.input):
            if name not in produced or _reads_fp32(n, i, keep, blocked_ops, always_float):
                continue
            if name not in casts:
                casts[name] = f"{name}_to_fp16"
                new_nodes.append(helper.make_node("Cast", [name], [casts[name]], name=f"{name}_to_fp16", to=FLOAT16))
                vi = g.value_info.add()
                if name in shapes:
                    vi.CopyFrom(shapes[name])
                    vi.name = casts[name]
                else:
                    vi.name = casts[name]
                vi.type.tensor_type.elem_type = FLOAT16
            n.input[i] = casts[name]
    g.node.extend(new_nodes)
    return len(casts)


def _sort_topologically(g: Any) -> None:
    """Kahn's algorithm in the graph's own order (stable); nodes of a cycle, if any, are left at the end."""
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    ordered = []
    progress = True
    while pending and progress:
        progress = False
        rest = []
        for n in pending:
            if all(i in available for i in n.input) and _subgraph_inputs_ready(n, available):
                ordered.append(n)
                available.update(n.output)
                progress = True
            else:
                rest.append(n)
        pending = rest
    ordered.extend(pending)
    nodes = [type(n)() for n in ordered]
    for new, old in zip(nodes, ordered):
        new.CopyFrom(old)
    del g.node[:]
    g.node.extend(nodes)


def _subgraph_inputs_ready(n: Any, available: set[str]) -> bool:
    """A node with a body (If/Loop/Scan) also waits for the outer-scope values its body reads."""
    for a in n.attribute:
        for body in [a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []:
            local = {i.name for i in body.input} | {t.name for t in body.initializer}
            local |= {o for m in body.node for o in m.output}
            for m in body.node:
                for i in m.input:
                    if i and i not in local and i not in available:
                        return False
    return True
