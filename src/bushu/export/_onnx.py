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
    """The model at opset ``target``. Going down: node by node (``_opset``; exact for every op it rewrites
    but LayerNormalization, and onnx's version converter has no down-adapters for common ops, e.g. Split-18,
    Add-13 → 12); for an op it cannot take down, re-exported from the PyTorch reference when there is one,
    else onnx's converter. Going up: onnx's converter."""
    have = _opset(model)
    if not target or target == have:
        return model, {"opset": have}
    target = int(target)
    if target > have:
        ctx.step(f"convert opset {have} -> {target}")
        return _version_converter(model, have, target), {
            "opset": target,
            "opset_from": have,
            "how": "onnx.version_converter",
        }
    from ._opset import DowngradeError, downgrade

    ctx.step(f"take opset {have} down to {target}, node by node")
    try:
        converted, rewritten = downgrade(model, target)
        return converted, {"opset": target, "opset_from": have, "how": "node by node", "rewritten": rewritten}
    except DowngradeError as e:
        why = str(e)
    ctx.note(why)
    if ctx.art.file("reference") is not None:
        return _reexport(ctx, target), {
            "opset": target,
            "opset_from": have,
            "how": "re-exported from the PyTorch reference",
            "why": why,
        }
    ctx.step(f"convert opset {have} -> {target} with onnx's version converter")
    converted = _version_converter(model, have, target, why)
    return converted, {"opset": target, "opset_from": have, "how": "onnx.version_converter", "why": why}


def _reexport(ctx: ExportContext, target: int) -> Any:
    import warnings

    import onnx
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
    return converted


def _version_converter(model: Any, have: int, target: int, why: str = "") -> Any:
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, target)
    except Exception as e:  # onnx raises a bare RuntimeError naming the op it has no adapter for
        import re

        op = re.search(r"for (\w+)", str(e))
        raise RuntimeError(
            f"onnx cannot convert this model from opset {have} to {target}"
            + (f" (no adapter for {op.group(1)})" if op else "")
            + (f"; {why}" if why else "")
        ) from e


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

    from ..optimize._fp16 import to_fp16

    ctx.step("load the ONNX model")
    model, details = _convert_opset(ctx, onnx.load(str(ctx.onnx)), ctx.options.get("opset"))
    ctx.step("convert weights and math to fp16 (float32 inputs/outputs kept, shape arithmetic in fp32)")
    model, conversion = to_fp16(model, keep_io_types=True)
    _save(ctx, model)
    return Exported(
        MODEL, tool="onnxruntime.transformers.float16 (keep_io_types=True)", details={**details, "fp16": conversion}
    )


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
        tool=f"onnx {onnx.__version__}"
        + (f", opset {details['opset_from']} -> {target} {details['how']}" if "how" in details else ""),
        details={**details, "for": about, "op_types": dict(sorted(ops.items()))},
    )


def export_profile_snpe(ctx: ExportContext) -> Exported:
    return _profile(ctx, "snpe")


def export_profile_mace(ctx: ExportContext) -> Exported:
    return _profile(ctx, "mace")


def export_profile_paddle(ctx: ExportContext) -> Exported:
    return _profile(ctx, "paddle")
