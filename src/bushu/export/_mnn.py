"""MNN via MNN's converter (``mnnconvert -f ONNX``) from the artifact's ONNX model (dynamic batch kept).

fp32 runs at MNN's "high" precision; ``mnn-fp16`` stores Conv weights in fp16 (``--fp16``).
``mnn-int8`` is MNN's offline (full) quantization of the fp32 model: ``mnnquant`` with
``input_type: sequence`` reads the calibration samples already pre-processed by bushu (one folder
per sample, ``<input>.txt``), so they match the artifact's pre-processing exactly (its image mode
would only resize and normalise). Feature ranges: KL (MNN switches to EMA for graphs that keep a
BatchNorm); weights: per-channel max-abs int8.
"""

from __future__ import annotations

import json
import os

import numpy as np

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


def mnnquant_command() -> list[str]:
    """MNN's quantizer, as ``mnnconvert_command``. The wrapper takes an argv list: MNN's own
    ``mnnquant.py`` passes three strings, which the extension reads as a list of size -1 and aborts."""
    import sys

    return [sys.executable, "-c", "import sys, _tools; _tools.mnnquant(sys.argv)"]


def _export(ctx: ExportContext, fp16: bool) -> Exported:
    from ..runtime.backends._io import write_io

    bad = [s for s in [*ctx.art.inputs, *ctx.art.outputs] if s.dtype not in ("float32", "int32")]
    if bad:
        raise Skip(f"the mnn backend takes float32/int32 tensors; {bad[0].name!r} is {bad[0].dtype}")
    cmd: list[str | os.PathLike[str]] = [
        *mnnconvert_command(),
        "-f",
        "ONNX",
        "--modelFile",
        ctx.onnx,
        "--MNNModel",
        ctx.work / MODEL,
        "--bizCode",
        "bushu",
    ]
    if fp16:
        cmd.append("--fp16")
    ctx.run(cmd, step="mnnconvert: ONNX -> MNN")
    if not (ctx.work / MODEL).is_file():
        raise RuntimeError(f"mnnconvert exited 0 but wrote no {MODEL}")
    io = write_io(ctx.work / MODEL, ctx.art.inputs, ctx.art.outputs)
    import importlib.metadata as md

    return Exported(
        MODEL,
        files={"io": io.name},
        backend_options={"precision": "fp16" if fp16 else "fp32"},
        tool=f"mnnconvert (MNN {md.version('MNN')}){' --fp16' if fp16 else ''}",
    )


def _write_samples(ctx: ExportContext, folder) -> int:
    """One folder per calibration sample: ``<input name>.txt`` (values) and ``input.json`` (shapes)."""
    reader = ctx.calibration()
    n = 0
    while (batch := reader.get_next()) is not None:
        d = folder / f"{n:05d}"
        d.mkdir(parents=True)
        for name, a in batch.items():
            np.savetxt(d / f"{name}.txt", a.reshape(-1), fmt="%.7g")
        (d / "input.json").write_text(
            json.dumps(
                {
                    "inputs": [{"name": k, "shape": list(v.shape)} for k, v in batch.items()],
                    "outputs": [s.name for s in ctx.art.outputs],
                }
            )
        )
        n += 1
    return n


def export_mnn_int8(ctx: ExportContext) -> Exported:
    import importlib.metadata as md

    fp32 = _export(ctx, fp16=False)
    (ctx.work / MODEL).rename(ctx.work / "fp32.mnn")
    ctx.step("write the calibration samples for mnnquant")
    n = _write_samples(ctx, ctx.work / "calib")
    config = {
        "input_type": "sequence",
        "path": str(ctx.work / "calib"),
        "used_sample_num": n,
        "feature_quantize_method": "KL",
        "weight_quantize_method": "MAX_ABS",
    }
    (ctx.work / "quant.json").write_text(json.dumps(config, indent=1))
    ctx.run(
        [*mnnquant_command(), ctx.work / "fp32.mnn", ctx.work / MODEL, ctx.work / "quant.json"],
        step=f"mnnquant: int8 calibration on {n} sample(s)",
    )
    if not (ctx.work / MODEL).is_file():
        raise RuntimeError(f"mnnquant exited 0 but wrote no {MODEL}")
    return Exported(
        MODEL,
        files=fp32.files,
        backend_options={"precision": "fp32"},
        tool=f"mnnconvert + mnnquant (MNN {md.version('MNN')})",
        details={"quantization": "full int8: KL feature ranges, per-channel max-abs weights", "calibration_samples": n},
    )


def export_mnn(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=False)


def export_mnn_fp16(ctx: ExportContext) -> Exported:
    return _export(ctx, fp16=True)
