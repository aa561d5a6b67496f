"""PyTorch formats from the artifact's ``torch.export`` reference (``files['reference']``, model.pt2).

- torchscript: ``torch.jit.trace`` of the reference module, for libtorch C++ (``torch::jit::load``);
- pt2: the ExportedProgram itself (dynamic batch), re-saved with the IO spec inside;
- aoti: an AOTInductor package (a compiled shared library inside a .pt2, loaded by libtorch's
  ``AOTIModelPackageLoader``); about a minute of C++ compilation per model here, so opt-in.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

from .core import ExportContext, Exported

TS, PT2, AOTI = "model.torchscript", "model.pt2", "model.aoti.pt2"


def _io_extra(ctx: ExportContext) -> dict[str, str]:
    from ..runtime.backends.torch import IO_EXTRA_FILE

    return {
        IO_EXTRA_FILE: json.dumps(
            {"inputs": [s.to_dict() for s in ctx.art.inputs], "outputs": [s.to_dict() for s in ctx.art.outputs]}
        )
    }


def _args(ctx: ExportContext, batch: int) -> tuple[Any, ...]:
    import torch

    feeds = ctx.example(batch)
    return tuple(torch.from_numpy(feeds[s.name]) for s in ctx.art.inputs)


def export_torchscript(ctx: ExportContext) -> Exported:
    import torch

    program = ctx.reference()
    module = program.module()
    ctx.step("torch.jit.trace the reference module")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, _args(ctx, 2), check_trace=False)
        traced = torch.jit.freeze(traced.eval()) if hasattr(traced, "graph") else traced
        ctx.step("save TorchScript")
        torch.jit.save(traced, str(ctx.work / TS), _extra_files=_io_extra(ctx))
    return Exported(TS, tool=f"torch {torch.__version__} jit.trace + freeze")


def export_pt2(ctx: ExportContext) -> Exported:
    import torch

    program = ctx.reference()
    ctx.step("save the ExportedProgram")
    torch.export.save(program, str(ctx.work / PT2), extra_files=_io_extra(ctx))
    return Exported(PT2, tool=f"torch {torch.__version__} torch.export")


def export_aoti(ctx: ExportContext) -> Exported:
    import torch

    program = ctx.reference()
    ctx.step("AOTInductor compile and package (C++ build, slow)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = torch._inductor.aoti_compile_and_package(program, package_path=str(ctx.work / AOTI))
    ctx.step("load the AOTInductor package")
    compiled = torch._inductor.aoti_load_package(path)
    names = [s.name for s in ctx.art.inputs]
    outs = [s.name for s in ctx.art.outputs]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            res = compiled(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names))
        res = [res] if isinstance(res, torch.Tensor) else list(res)
        return {n: r.detach().cpu().numpy() for n, r in zip(outs, res, strict=True)}

    return Exported(
        AOTI,
        tool=f"torch {torch.__version__} aoti_compile_and_package",
        runner=run,
        details={
            "load_with": "torch._inductor.aoti_load_package (Python) or torch::inductor::AOTIModelPackageLoader (C++)"
        },
    )
