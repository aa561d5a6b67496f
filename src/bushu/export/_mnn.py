"""MNN via MNN's converter (``mnnconvert -f ONNX``) from the artifact's ONNX model (dynamic batch kept).

fp32 runs at MNN's "high" precision; ``mnn-fp16`` stores Conv weights in fp16 (``--fp16``).
"""

from __future__ import annotations

from .core import ExportContext, Exported, Skip

MODEL = "model.mnn"


def mnnconvert_command() -> list[str]:
    """MNN's converter without the ``mnnconvert`` console script.

    That script imports ``MNN.tools.utils.log``, which runs ``pip install -U aliyun-log-python-sdk``
    when the package is missing (upgrading protobuf in whatever environment ``pip`` names) and then
    sends usage telemetry. The converter itself is the ``_tools.mnnconvert(argv)`` extension call.
    """
    import sys

    return [sys.executable, "-c", "import sys, _tools; _tools.mnnconvert(sys.argv)"]


def _export(ctx: ExportContext, fp16: bool) -> Exported:
    from ..runtime.backends._io import write_io

    bad = [s for s in [*ctx.art.inputs, *ctx.art.outputs] if s.dtype not in ("float32", "int32")]
    if bad:
        raise Skip(f"the mnn backend takes float32/int32 tensors; {bad[0].name!r} is {bad[0].dtype}")
    cmd = [*mnnconvert_command(), "-f", "ONNX", "--modelFile", ctx.onnx, "--MNNModel", ctx.work / MODEL,
           "--bizCode", "bushu"]
    if fp16:
        cmd.append("--fp16")
    ctx.run(cmd, step="mnnconvert: ONNX -> MNN")
    if not (ctx.work / MODEL).is_file():
        raise RuntimeError(f"mnnconvert exited 0 but wrote no {MODEL}")
    io = write_io(ctx.work / MODEL, ctx.art.inputs, ctx.art.outputs)
    import importlib.metadata as md

    return Exported(MODEL, files={"io": io.name}, backend_options={"precision": "fp16" if fp16 else "fp32"},
                    tool=f"mnnconvert (MNN {md.version('MNN')}){' --fp16' if fp16 else ''}")


def export_mnn(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=False)


def export_mnn_fp16(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=True)
