"""LiteRT (TFLite) via litert-torch, from the artifact's ``torch.export`` reference; no TensorFlow needed.

litert-torch keeps PyTorch's NCHW layout (onnx2tf would make it NHWC), and converts for a fixed batch
of 1: the litert backend runs a batch sample by sample. Names: litert-torch calls the signature's
tensors ``args_0``/``output_0``; the ``.io.json`` sidecar maps them to the artifact's IO names.
"""

from __future__ import annotations

import warnings

from .core import ExportContext, Exported

MODEL = "model.tflite"


def export_tflite(ctx: ExportContext) -> Exported:
    import torch

    program = ctx.reference()
    module = program.module()
    ctx.step("import litert_torch")
    import litert_torch

    from ..runtime.backends._io import write_io

    ctx.step("litert_torch.convert (batch 1)")
    feeds = ctx.example(batch=1)
    args = tuple(torch.from_numpy(feeds[s.name]) for s in ctx.art.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edge = litert_torch.convert(module, args)
    ctx.step("write the flatbuffer")
    edge.export(str(ctx.work / MODEL))
    ctx.step("read the signature")
    from ai_edge_litert import interpreter as tfl

    runner = tfl.Interpreter(model_path=str(ctx.work / MODEL)).get_signature_runner()
    ins, outs = list(runner.get_input_details()), list(runner.get_output_details())
    if len(ins) != len(ctx.art.inputs) or len(outs) != len(ctx.art.outputs):
        raise RuntimeError(f"the .tflite signature has {len(ins)} inputs / {len(outs)} outputs; the model has "
                           f"{len(ctx.art.inputs)} / {len(ctx.art.outputs)}")
    io = write_io(ctx.work / MODEL, ctx.art.inputs, ctx.art.outputs, ins, outs, batch="loop")
    import importlib.metadata as md

    return Exported(MODEL, files={"io": io.name}, layout="NCHW", tool=f"litert-torch {md.version('litert-torch')}",
                    details={"batch": "fixed 1 (the backend loops over a batch)", "layout": "NCHW"})
