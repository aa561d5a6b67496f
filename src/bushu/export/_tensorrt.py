"""TensorRT engine from the artifact's ONNX model, built on the GPU it will run on.

Skipped with a reason where there is no NVIDIA GPU or no ``tensorrt`` package. An engine is tied to
the GPU model and TensorRT version that built it. The optimization profile covers batch 1..8
(optimum 1); fp32 unless the format asks for fp16. Validation runs the engine here through
PyTorch's CUDA tensors.
"""

from __future__ import annotations

import numpy as np

from .core import ExportContext, Exported, Skip

MODEL = "model.engine"
MAX_BATCH = 8


def export_engine(ctx: ExportContext) -> Exported:
    import tensorrt as trt

    try:
        import torch
    except ImportError as e:
        raise Skip("validating a TensorRT engine here uses PyTorch's CUDA tensors: pip install torch") from e
    if not torch.cuda.is_available():
        raise Skip("needs an NVIDIA GPU visible to CUDA; none here")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ctx.step("parse ONNX")
    if not parser.parse(ctx.onnx.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser failed: {errs[:400]}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for s in ctx.art.inputs:
        one = s.concrete_shape(batch=1)
        profile.set_shape(s.name, one, one, s.concrete_shape(batch=MAX_BATCH))
    config.add_optimization_profile(profile)
    ctx.step("build the engine")
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT could not build an engine (see the log)")
    (ctx.work / MODEL).write_bytes(bytes(blob))
    ctx.step("load the engine")
    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(blob))
    context = engine.create_execution_context()
    ins, outs = [s.name for s in ctx.art.inputs], [s.name for s in ctx.art.outputs]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        result: dict[str, list[np.ndarray]] = {o: [] for o in outs}
        for start in range(0, n, MAX_BATCH):
            keep = []
            for name in ins:
                t = torch.from_numpy(np.ascontiguousarray(feeds[name][start:start + MAX_BATCH])).cuda()
                keep.append(t)
                context.set_input_shape(name, tuple(t.shape))
                context.set_tensor_address(name, t.data_ptr())
            bufs = {}
            for name in outs:
                shape = tuple(context.get_tensor_shape(name))
                bufs[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
                context.set_tensor_address(name, bufs[name].data_ptr())
            stream = torch.cuda.current_stream()
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
            for name in outs:
                result[name].append(bufs[name].cpu().numpy())
        return {k: np.concatenate(v) for k, v in result.items()}

    return Exported(MODEL, tool=f"tensorrt {trt.__version__}", runner=run,
                    details={"max_batch": MAX_BATCH, "gpu": torch.cuda.get_device_name(0)})
