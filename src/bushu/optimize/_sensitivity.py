"""Which quantized nodes hurt most? Rank them by the quantization noise each one adds.

Both the float model and its QDQ version are run on a few samples with every quantizable node's
input and output exposed as graph outputs (QDQ keeps the float tensor names). For each node the
noise-to-signal ratio (as ORT's qdq_loss_debug SQNR, in linear power) is measured on its input and
its output; the node's sensitivity is the noise it adds: ``nsr(output) - nsr(input)``.
One run of each model, instead of re-quantizing once per node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..validate import run_model

__all__ = ["rank_nodes"]


def _expose(src: Path, dst: Path, tensors: Sequence[str]) -> None:
    import onnx

    model = onnx.load(str(src))
    have = {o.name for o in model.graph.output}
    for t in tensors:
        if t not in have:
            model.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
            have.add(t)
    onnx.save(model, str(dst))


def _nsr(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    return float(np.sum((ref - got) ** 2) / max(np.sum(ref**2), 1e-30))


def rank_nodes(
    float_model: Path, qdq_model: Path, feeds: Mapping[str, np.ndarray], workdir: Path
) -> list[tuple[str, float]]:
    """(node name, added noise) for every quantized Conv/MatMul/Gemm, most sensitive first."""
    import onnx

    from ._analysis import CONV_OPS, MATMUL_OPS

    graph = onnx.load(str(float_model), load_external_data=False).graph
    qgraph = onnx.load(str(qdq_model), load_external_data=False).graph
    in_both = {o for n in qgraph.node for o in n.output} & {o for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def visible(t: str) -> str | None:
        # The quantizer folds a Relu/Clip after a Conv into it: follow to the tensor that survives.
        while t not in in_both:
            nxt = consumers.get(t, [])
            if len(nxt) != 1 or nxt[0].op_type not in ("Relu", "Clip", "LeakyRelu"):
                return None
            t = nxt[0].output[0]
        return t

    nodes = [
        (n.name, visible(n.input[0]), visible(n.output[0])) for n in graph.node if n.op_type in CONV_OPS + MATMUL_OPS
    ]
    tensors = sorted({t for _, i, o in nodes for t in (i, o) if t})
    fa, qa = workdir / "float_exposed.onnx", workdir / "qdq_exposed.onnx"
    _expose(float_model, fa, tensors)
    _expose(qdq_model, qa, tensors)
    ref, got = run_model(fa, feeds, chunk=8), run_model(qa, feeds, chunk=8)
    scores = []
    for name, i, o in nodes:
        if o is None or o not in ref or o not in got:
            continue
        before = _nsr(ref[i], got[i]) if i and i in ref and i in got else 0.0
        scores.append((name, _nsr(ref[o], got[o]) - before))
    return sorted(scores, key=lambda s: -s[1])
