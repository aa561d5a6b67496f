"""ncnn via the pnnx CLI, from the artifact's ONNX model.

fp32: ``fp16=0`` (the pnnx Python ``convert()`` ignores ``fp16=False``; the CLI honours it, docs/notes.md)
and the ncnn backend runs with ``use_fp16_*`` off. ncnn has no batch axis: the model is converted
for one sample and the backend runs a batch sample by sample. Blob names (``in0``, ``out0``...)
are mapped to the artifact's IO names in the ``.io.json`` sidecar.

int8: ncnn quantizes with its ``ncnn2table`` (calibration table) and ``ncnn2int8`` tools, which the
ncnn and pnnx wheels do not ship; ``ncnn-int8`` is a skipped row until they are built from source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UnsupportedOpError
from .core import ExportContext, Exported, Skip

PARAM, BIN = "model.ncnn.param", "model.ncnn.bin"


def _unknown_layers(param: Path, ncnn: Any) -> list[str]:
    """Layer types in a .param that this ncnn does not implement (pnnx passes unknown ops through by name)."""
    types = [line.split()[0] for line in param.read_text().splitlines()[2:] if line.strip()]
    return sorted({t for t in types if ncnn.layer_to_index(t) < 0})


def _shape_arg(ctx: ExportContext) -> str:
    parts = []
    for s in ctx.art.inputs:
        if s.dtype != "float32":
            raise Skip(f"ncnn takes float32 tensors only; input {s.name!r} is {s.dtype}")
        parts.append("[" + ",".join(str(d) for d in s.concrete_shape(batch=1)) + "]f32")
    return ",".join(parts)


def _export(ctx: ExportContext, fp16: bool) -> Exported:
    from ..runtime.backends._io import write_io

    pnnx = ctx.tool("pnnx")
    shapes = _shape_arg(ctx)
    scratch = ctx.work / "pnnx"
    scratch.mkdir()
    ctx.run(
        [
            pnnx,
            ctx.onnx,
            f"inputshape={shapes}",
            f"fp16={int(fp16)}",
            "device=cpu",
            f"ncnnparam={ctx.work / PARAM}",
            f"ncnnbin={ctx.work / BIN}",
            f"pnnxparam={scratch / 'model.pnnx.param'}",
            f"pnnxbin={scratch / 'model.pnnx.bin'}",
            f"pnnxpy={scratch / 'model_pnnx.py'}",
            f"pnnxonnx={scratch / 'model.pnnx.onnx'}",
            f"ncnnpy={scratch / 'model_ncnn.py'}",
        ],
        step="pnnx: ONNX -> ncnn",
    )
    if not (ctx.work / PARAM).is_file():
        raise RuntimeError(f"pnnx exited 0 but wrote no {PARAM}")
    ctx.step("check ncnn has a layer for every op")
    import ncnn

    unknown = _unknown_layers(ctx.work / PARAM, ncnn)
    if unknown:
        raise UnsupportedOpError(unknown[0], "ncnn", f"pnnx kept {', '.join(unknown)} as-is and ncnn has no such layer")
    ctx.step("map ncnn blob names to the artifact's IO")
    net = ncnn.Net()
    if net.load_param(str(ctx.work / PARAM)) != 0:
        raise RuntimeError(f"ncnn cannot parse the {PARAM} pnnx wrote")
    ins, outs = list(net.input_names()), list(net.output_names())
    if len(ins) != len(ctx.art.inputs) or len(outs) != len(ctx.art.outputs):
        raise RuntimeError(
            f"pnnx wrote {len(ins)} input / {len(outs)} output blobs; the model has "
            f"{len(ctx.art.inputs)} / {len(ctx.art.outputs)}"
        )
    key = lambda n: int("".join(c for c in n if c.isdigit()) or 0)  # noqa: E731 - in0, in1, ... in order
    io = write_io(
        ctx.work / PARAM, ctx.art.inputs, ctx.art.outputs, sorted(ins, key=key), sorted(outs, key=key), batch="loop"
    )
    import importlib.metadata as md

    return Exported(
        PARAM,
        files={"weights": BIN, "io": io.name},
        backend_options={"precision": "fp16" if fp16 else "fp32"},
        tool=f"pnnx {md.version('pnnx')} (CLI, fp16={int(fp16)})",
        details={"inputshape": shapes, "batch": "one sample per run"},
    )


def export_ncnn(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=False)


def export_ncnn_fp16(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=True)


def export_ncnn_int8(ctx: ExportContext) -> Exported:
    import shutil
    import sys

    found = [t for t in ("ncnn2table", "ncnn2int8") if (Path(sys.executable).parent / t).is_file() or shutil.which(t)]
    if len(found) < 2:
        raise Skip(
            "ncnn int8 needs ncnn2table and ncnn2int8, which the ncnn/pnnx pip packages do not ship: "
            "build ncnn from source (tools/quantize) for them"
        )
    # The tools exist but calibrate on raw image files with their own resize/normalise: not wired to the
    # artifact's pre-processing (and not testable here), so say so rather than export something unchecked.
    raise Skip(
        f"found {', '.join(found)}, but bushu does not drive them yet; run ncnn2table/ncnn2int8 on "
        "the fp32 export (bushu export --format ncnn)"
    )
