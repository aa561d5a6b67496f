"""OpenVINO IR (.xml + .bin) from the artifact's ONNX model.

fp32 keeps fp32 weights (``compress_to_fp16=False``: ``save_model`` compresses to fp16 by default)
and is validated with ``INFERENCE_PRECISION_HINT=f32`` (the bushu openvino backend's default; the
CPU's bf16 default misses fp32 parity, docs/notes.md). fp16 compresses the weights and is judged with
the fp16 budget. int8 reuses bushu optimize's NNCF post-training quantization
(``optimize/openvino_int8.py``) on the ``--data`` calibration images; the export is then judged by
top-1 agreement, like the other int8 formats.
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
    return Exported(
        XML,
        files={"weights": BIN},
        backend_options={"precision": "f32"},
        tool=f"openvino {ov.get_version().split('-')[0]}",
        details={"compress_to_fp16": fp16, "inference_precision": "f32"},
    )


def export_ir(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=False)


def export_ir_fp16(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=True)


def export_ir_int8(ctx: ExportContext) -> Exported:
    from ..optimize.int8_search import quantize_int8
    from ..optimize.openvino_int8 import OpenVINOInt8Config

    reader = ctx.calibration()
    ctx.step(f"NNCF post-training int8 quantization ({len(reader)} calibration samples)")
    # bushu optimize's gate and fallback search on the calibration images (mixed preset, bias correction,
    # sensitive layers in float); the export's own validation judges the result on the validation images
    config = OpenVINOInt8Config(calibration=reader, calib_size=len(reader))
    q = quantize_int8(ctx.art, ctx.work / "nncf", config, measure=False, log=ctx.note)
    (q.path / XML).rename(ctx.work / XML)
    (q.path / BIN).rename(ctx.work / BIN)
    import openvino as ov

    return Exported(
        XML,
        files={"weights": BIN},
        backend_options={"precision": "f32"},
        tool=f"nncf {_version('nncf')} + openvino {ov.get_version().split('-')[0]}",
        details={
            "quantization": q.metrics["optimize"]["reason"],
            "int8_attempts": [a["attempt"] for a in q.metrics["optimize"].get("attempts", [])],
            "calibration_samples": len(reader),
            "calibration": reader.source,
            "inference_precision": "f32 (non-quantized ops)",
        },
    )


def _version(dist: str) -> str:
    import importlib.metadata as md

    return md.version(dist)
