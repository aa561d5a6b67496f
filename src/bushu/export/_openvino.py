"""OpenVINO IR (.xml + .bin) from the artifact's ONNX model.

fp32 keeps fp32 weights (``compress_to_fp16=False``: ``save_model`` compresses to fp16 by default)
and is validated with ``INFERENCE_PRECISION_HINT=f32`` (the bushu openvino backend's default; the
CPU's bf16 default misses fp32 parity, NOTES.md). fp16 compresses the weights and is judged with
the fp16 budget.
"""

from __future__ import annotations

import re

from ..errors import UnsupportedOpError
from .core import ExportContext, Exported

XML, BIN = "model.xml", "model.bin"


def _export(ctx: ExportContext, fp16: bool) -> Exported:
    import openvino as ov

    ctx.step("convert ONNX with openvino.convert_model")
    try:
        model = ov.convert_model(str(ctx.onnx))
    except Exception as e:
        found = re.search(r"No conversion rule found for operations: (.+)", str(e))
        if found:
            ops = [re.sub(r"-\d+$", "", op.strip()) for op in found.group(1).split(",")]  # "Det-17" -> "Det"
            raise UnsupportedOpError(ops[0], "openvino", f"no conversion rule for {', '.join(ops)}") from e
        raise
    ctx.step(f"save IR (compress_to_fp16={fp16})")
    ov.save_model(model, str(ctx.work / XML), compress_to_fp16=fp16)
    return Exported(XML, files={"weights": BIN}, backend_options={"precision": "f32"},
                    tool=f"openvino {ov.get_version().split('-')[0]}",
                    details={"compress_to_fp16": fp16, "inference_precision": "f32"})


def export_ir(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=False)


def export_ir_fp16(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=True)
