"""ONNX: the artifact's model at another opset, in fp16, or as a profile for converters that take ONNX.

SNPE, MACE and Paddle-Lite convert from ONNX with their own tools, none of which installs here; bushu
writes the ONNX model at an opset those tools read and lists the op types in it, so the next step
is the vendor converter on the vendor's machine. The profiles are still run with ONNX Runtime here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .core import ExportContext, Exported

MODEL = "model.onnx"

#: opset written for each converter, and what is known about what it reads
PROFILES: dict[str, tuple[int, str]] = {
    "snpe": (
        13,
        "Qualcomm's snpe-onnx-to-dlc; its 'Supported ONNX Ops' table lists per-op opsets, opset 13 "
        "forms are listed for the common ops",
    ),
    "mace": (
        11,
        "Xiaomi MACE's converter (ONNX frontend); opset 11 chosen conservatively, not checked against the tool here",
    ),
    "paddle": (13, "Paddle-Lite through X2Paddle, which maps ONNX opsets 7-15"),
}


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _convert_opset(ctx: ExportContext, model: Any, target: int | None) -> tuple[Any, dict[str, Any]]:
    """The model at opset ``target``: re-exported from the PyTorch reference when going down (onnx's
    version converter has no down-adapters for common ops, e.g. Relu-14 → 13), else converted."""
    import onnx
    from onnx import version_converter

    have = _opset(model)
    if not target or target == have:
        return model, {"opset": have}
    target = int(target)
    if target < have and ctx.art.file("reference") is not None:
        import warnings

        import torch

        from ..import_.onnx import export_onnx, simplify

        program = ctx.reference()
        feeds = ctx.example(batch=2)
        example = [feeds[s.name] for s in ctx.art.inputs]
        ctx.step("torch.jit.trace the reference (the ONNX exporter cannot take an exported module)")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(program.module(), tuple(torch.from_numpy(a) for a in example), check_trace=False)
        ctx.step(f"torch.onnx.export at opset {target}")
        path = ctx.work / f"opset{target}.onnx"
        export_onnx(
            traced, example, path, [s.name for s in ctx.art.inputs], [s.name for s in ctx.art.outputs], opset=target
        )
        ctx.step("simplify with onnxslim")
        simplify(path)
        converted = onnx.load(str(path))
        path.unlink()
        return converted, {"opset": target, "opset_from": have, "how": "re-exported from the PyTorch reference"}
    ctx.step(f"convert opset {have} -> {target}")
    try:
        converted = version_converter.convert_version(model, target)
    except Exception as e:  # onnx raises a bare RuntimeError naming the op it has no adapter for
        import re

        op = re.search(r"for (\w+)", str(e))
        raise RuntimeError(
            f"onnx cannot convert this model from opset {have} to {target}"
            + (f" (no adapter for {op.group(1)})" if op else "")
            + "; a model imported from PyTorch is re-exported instead"
        ) from e
    return converted, {"opset": target, "opset_from": have, "how": "onnx.version_converter"}


def _save(ctx: ExportContext, model: Any, name: str = MODEL) -> None:
    import onnx

    ctx.step("check and save the ONNX model")
    onnx.checker.check_model(model)
    onnx.save(model, str(ctx.work / name))


def export_onnx(ctx: ExportContext) -> Exported:
    import onnx

    ctx.step("load the ONNX model")
    model, details = _convert_opset(ctx, onnx.load(str(ctx.onnx)), ctx.options.get("opset"))
    _save(ctx, model)
    return Exported(MODEL, tool=f"onnx {onnx.__version__}", details=details)


def export_onnx_fp16(ctx: ExportContext) -> Exported:
    import onnx
    from onnxconverter_common import float16

    ctx.step("load the ONNX model")
    model, details = _convert_opset(ctx, onnx.load(str(ctx.onnx)), ctx.options.get("opset"))
    ctx.step("convert weights and math to fp16 (float32 inputs/outputs kept)")
    model = float16.convert_float_to_float16(model, keep_io_types=True)
    _save(ctx, model)
    return Exported(MODEL, tool="onnxconverter-common float16 (keep_io_types=True)", details=details)


def _profile(ctx: ExportContext, key: str) -> Exported:
    import onnx

    target, about = PROFILES[key]
    ctx.step("load the ONNX model")
    model = onnx.load(str(ctx.onnx))
    model, details = _convert_opset(ctx, model, min(target, _opset(model)))  # the profile's opset, not --opset
    _save(ctx, model)
    ops = Counter(n.op_type for n in model.graph.node)
    return Exported(
        MODEL,
        tool=f"onnx {onnx.__version__} version_converter",
        details={**details, "for": about, "op_types": dict(sorted(ops.items()))},
    )


def export_profile_snpe(ctx: ExportContext) -> Exported:
    return _profile(ctx, "snpe")


def export_profile_mace(ctx: ExportContext) -> Exported:
    return _profile(ctx, "mace")


def export_profile_paddle(ctx: ExportContext) -> Exported:
    return _profile(ctx, "paddle")
