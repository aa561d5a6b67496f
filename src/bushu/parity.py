"""`bushu eval ART` without labels: each output of the model against a reference on the same inputs.

The reference is ``--reference`` (another artifact or model file: the fp32 model an int8 one came
from, for instance), else the artifact's own ``reference`` file (the PyTorch program import saved).
Inputs are ``--sample`` arrays, else safe inputs derived from the IO spec at ``--input`` sizes.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserInputError
from .inputs import InputRequest
from .model.artifact import Artifact

__all__ = ["compare_outputs", "parity"]


def compare_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], classification: bool = False) -> list[dict]:
    """Per output: cosine (min over samples), max abs error, max error relative to max|ref|; top-1 agreement
    only for a classifier's [batch, classes] output."""
    from .validate import agreement

    rows = []
    for name, a in agreement(ref, {k: got[k] for k in ref}).items():
        scale = max(float(np.abs(ref[name]).max(initial=0.0)), 1e-12)
        row = {"name": name, "cosine_min": a["cosine_min"], "max_abs": a["max_abs"], "max_rel": a["max_abs"] / scale}
        if classification and "top1_agreement" in a:
            row["top1_agreement"] = a["top1_agreement"]
        rows.append(row)
    return rows


def _runner(target: str | Path | Artifact, backend: str | None) -> tuple[Artifact | None, Path, str]:
    from .bench.bench import files_for_backends, resolve_model
    from .runtime.registry import backend_for_path

    art, main = resolve_model(target)
    backend = backend or backend_for_path(main).name
    path = files_for_backends(art, main, [backend])[backend]
    if isinstance(path, str):
        raise UserInputError(f"backend {backend!r} cannot run {main.name}: {path}")
    return art, Path(path), backend


def parity(
    model: str | Path | Artifact,
    reference: str | Path | None = None,
    backend: str | None = None,
    inputs: InputRequest | None = None,
    samples: int = 4,
    record: bool = True,
) -> dict[str, Any]:
    """Run ``model`` and its reference on the same inputs; return per-output agreement (see module docstring)."""
    from .validate import mask_padding, run_model

    art, path, backend = _runner(model, backend)
    ref_path: Path | None
    if reference is not None:
        _, ref_path, ref_backend = _runner(reference, None)
    elif art is not None and art.file("reference") is not None:
        ref_path, ref_backend = art.file("reference"), "torch"
    else:
        raise UserInputError(
            f"{path.name} has no reference model to compare with, and no --data to score",
            hint="pass --reference FP32_ARTIFACT (e.g. the model it was optimized from), or "
            "--data DIR with one folder of examples per class",
        )
    assert ref_path is not None  # art.file("reference") was checked above
    req = inputs or InputRequest()
    specs = art.inputs if art is not None else _runner_specs(path)
    req.check(specs)
    batch = None if req.sample is not None or req.shapes else samples  # stated shapes carry their batch
    feeds = req.feeds(specs, batch=batch, seed=2)
    ref = mask_padding(specs, feeds, run_model(ref_path, feeds, backend=ref_backend))
    got = mask_padding(specs, feeds, run_model(path, feeds, backend=backend))
    cls = art is not None and art.task == "classification"
    res = {
        "mode": "parity",
        "model": str(path),
        "backend": backend,
        "reference": str(ref_path),
        "reference_backend": ref_backend,
        "inputs": req.sample_path or req.describe(specs, batch=batch),
        "samples": len(next(iter(feeds.values()))),
        "outputs": compare_outputs(ref, got, cls),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if art is not None and record:
        art.record("eval_parity", res)
    return res


def _runner_specs(path: Path):
    from .runtime import load_backend

    with load_backend(path, "onnxruntime") as be:
        return list(be.inputs)
