"""TensorRT engines from the artifact's ONNX model, built on the GPU they will run on.

Skipped with a reason where there is no NVIDIA GPU or no ``tensorrt`` package. An engine is tied to
the GPU model and TensorRT version that built it. One optimization profile: the batch axis from 1
(optimum 1) to ``MAX_BATCH``, other symbolic axes at the IO spec's value (the ``--input`` sizes).

- ``tensorrt``: fp32 (TF32 off, so it is judged by the fp32 budget);
- ``tensorrt-fp16``: fp16 kernels where TensorRT finds them faster, fp32 IO;
- ``tensorrt-int8``: explicit quantization, as TensorRT 10 recommends over its deprecated
  calibrator API: the ONNX model is first quantized to Q/DQ form by ONNX Runtime, calibrated on
  ``--data``, with symmetric int8 activations and per-channel weights (the only scheme TensorRT
  takes), and TensorRT builds int8 kernels around the Q/DQ pairs.

The engine is validated by running it through bushu's ``tensorrt`` backend (CUDA runtime calls, no
PyTorch) against the ONNX model on the same inputs, like every other format.
"""

from __future__ import annotations

from pathlib import Path

from .core import ExportContext, Exported, Skip

MODEL = "model.engine"
MAX_BATCH = 8


def _profile_shapes(ctx: ExportContext) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """input name -> (min, opt, max) shapes: batch 1..MAX_BATCH, other dims as the IO spec resolves them."""
    out = {}
    for s in ctx.art.inputs:
        one = s.concrete_shape(batch=1)
        many = s.concrete_shape(batch=MAX_BATCH) if s.has_batch else one
        out[s.name] = (one, one, many)
    return out


def _qdq_model(ctx: ExportContext) -> Path:
    """The ONNX model in Q/DQ form (symmetric int8 activations, per-channel int8 weights), calibrated on --data."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = ctx.calibration()
    runs = list(iter(reader.get_next, None))

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(runs)

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.it, None)

    pre, out = ctx.work / "pre.onnx", ctx.work / "model.qdq.onnx"
    ctx.step(f"ONNX Runtime Q/DQ int8 quantization for TensorRT ({len(runs)} calibration samples)")
    quant_pre_process(str(ctx.onnx), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    pre.unlink(missing_ok=True)
    return out


def _build(ctx: ExportContext, precision: str) -> Exported:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise Skip("needs the tensorrt package (pip install tensorrt) on a machine with an NVIDIA GPU") from e
    from ..runtime.registry import get_backend

    reason = get_backend("tensorrt").unavailable()
    if reason:
        raise Skip(f"needs an NVIDIA GPU: {reason}")
    source = _qdq_model(ctx) if precision == "int8" else ctx.onnx
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    ctx.step("parse ONNX")
    if not parser.parse_from_file(str(source)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser failed: {errs[:400]}")
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: TF32 would blow the fp32 parity budget
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantized may take fp16 kernels
    profile = builder.create_optimization_profile()
    shapes = _profile_shapes(ctx)
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    ctx.step(f"build the {precision} engine")
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT could not build an engine (see the log)")
    (ctx.work / MODEL).write_bytes(bytes(blob))
    if source != ctx.onnx:
        source.unlink(missing_ok=True)
    return Exported(
        MODEL,
        tool=f"tensorrt {trt.__version__}",
        details={
            "precision": precision,
            "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
            "tf32": False,
        },
    )


def export_engine(ctx: ExportContext) -> Exported:
    return _build(ctx, "fp32")


def export_engine_fp16(ctx: ExportContext) -> Exported:
    return _build(ctx, "fp16")


def export_engine_int8(ctx: ExportContext) -> Exported:
    return _build(ctx, "int8")
