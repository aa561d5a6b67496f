"""Core ML ML Program (.mlpackage) via coremltools from the artifact's ``torch.export`` reference.

Convert-only on Linux: coremltools converts here, but running the model needs macOS/iOS (its
``libcoremlpython`` does not exist on Linux), so the table says "exported" and no parity figure.
Computed in fp32 (``compute_precision=FLOAT32``).
"""

from __future__ import annotations

import warnings

from .core import ExportContext, Exported

MODEL = "model.mlpackage"


def export_coreml(ctx: ExportContext) -> Exported:
    program = ctx.reference()
    ctx.step("import coremltools")
    import coremltools as ct

    ctx.step("run_decompositions (core ATen ops)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = program.run_decompositions({})
        ctx.step("coremltools.convert to mlprogram (fp32)")
        ml = ct.convert(
            program,
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.iOS16,
        )
    ctx.step("save the .mlpackage")
    ml.save(str(ctx.work / MODEL))
    return Exported(
        MODEL,
        tool=f"coremltools {ct.__version__}",
        details={"compute_precision": "FLOAT32", "minimum_deployment_target": "iOS16", "runs_on": "macOS/iOS only"},
    )
