"""TensorRT engines from the artifact's ONNX model, built on the GPU they will run on.

Skipped with a reason where there is no NVIDIA GPU or no ``tensorrt`` package. An engine is tied to
the GPU model and TensorRT version that built it. One optimization profile from the IO spec's dim ranges
(``profile_shapes``): the batch axis from 1 (optimum 1) to ``MAX_BATCH``, other symbolic axes optimal at
their typical size (the ``--input`` sizes) and spanning their recorded min..max.

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

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core import ExportContext, Exported, Skip

if TYPE_CHECKING:
    from ..spec import TensorSpec

MODEL = "model.engine"
MAX_BATCH = 8


Shape = tuple[int, ...]


def profile_shapes(specs: Sequence[TensorSpec], max_batch: int = MAX_BATCH) -> dict[str, tuple[Shape, Shape, Shape]]:
    """Input name -> the (min, opt, max) shapes of one TensorRT optimization profile, from the IO spec.

    The batch dim (a symbolic dim 0) spans its recorded range, else 1..``max_batch``, optimum 1. Every other
    symbolic dim is optimal at its typical size (the ``--input`` given at import) and spans the recorded
    min..max (a MiniLM ``sequence_length`` 1..512), or only the typical size when no range is recorded.
    A symbol shared by several inputs gets the same sizes in each. A dim with no typical size is the
    UnresolvedDimError naming the ``--input`` to pass."""
    from ..spec import resolve_shapes

    opt = resolve_shapes(specs, batch=1)
    ranges: dict[str, dict[str, int]] = {}
    for s in specs:
        for k, v in s.ranges.items():
            ranges.setdefault(k, {}).update({a: int(b) for a, b in v.items() if b is not None})
    out = {}
    for s in specs:
        dims = [_dim_range(s.symbol(i), i, opt[s.name][i], ranges, max_batch) for i in range(len(s.shape))]
        out[s.name] = (tuple(d[0] for d in dims), tuple(d[1] for d in dims), tuple(d[2] for d in dims))
    return out


def _dim_range(
    sym: str | None, i: int, typical: int, ranges: dict[str, dict[str, int]], max_batch: int
) -> tuple[int, int, int]:
    if sym is None:  # a fixed dim
        return typical, typical, typical
    r = ranges.get(sym, {})
    if i == 0:  # the batch
        lo = int(r.get("min") or 1)
        best = min(max(int(r.get("typical") or 1), lo), max_batch)
        return lo, best, max(int(r.get("max") or max_batch), best)
    return min(int(r.get("min") or typical), typical), typical, max(int(r.get("max") or typical), typical)


def _qdq_model(ctx: ExportContext) -> Path:
    """The ONNX model in Q/DQ form (symmetric int8 activations, per-channel int8 weights), calibrated on --data."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = ctx.calibration()
    runs = list(iter(reader.get_next, None))

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(runs)

        def get_next(self) -> dict[str, Any] | None:
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
    shapes = profile_shapes(ctx.art.inputs)
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
