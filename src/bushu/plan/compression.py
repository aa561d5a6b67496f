"""Compression in the plan's search space: ``prune0.3`` (structured pruning, 30% of the channels),
``lowrank0.9`` (low-rank factorization keeping 90% of each layer's energy, Σσ²).

Each SPEC is built once with bushu optimize's own pipeline (``bushu.optimize.optimize``), optionally
fine-tuned on ``train`` as ``bushu optimize --train DIR --epochs N`` does, and journaled like int8.
The compressed artifact then becomes variants like the original: fp32 on every backend, plus an int8
variant of it when int8 is searched. Its accuracy is measured by the plan, the same way as every
other variant's (against the original fp32 model), so a compression that loses too much shows up as
a failed accuracy bound, not as a silent choice.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BushuError, MissingDependencyError, UserInputError
from ..model.artifact import Artifact

__all__ = ["KINDS", "build_compressed", "no_module_reason", "parse_specs", "summary"]

KINDS = {
    "prune": "structured pruning: this share of each layer's channels removed",
    "lowrank": "low-rank factorization: the smallest rank keeping this share of Σσ² per layer",
}
_SPEC = re.compile(r"(prune|lowrank)(\d*\.?\d+)")


def parse_specs(specs: list[str] | str | None) -> list[str]:
    """'prune0.3,lowrank0.9' (or a list of such) -> normalized, de-duplicated specs, checked."""
    if specs is None:
        return []
    items = specs.split(",") if isinstance(specs, str) else [p for s in specs for p in str(s).split(",")]
    out: list[str] = []
    for raw in (s.strip() for s in items):
        if not raw:
            continue
        m = _SPEC.fullmatch(raw.lower())
        if not m:
            raise UserInputError(
                f"--compress {raw!r} is not a compression spec",
                hint="use prune<ratio> or lowrank<energy>, e.g. --compress prune0.3,lowrank0.9",
            )
        value = float(m[2])
        if not 0 < value < 1:
            raise UserInputError(
                f"--compress {raw}: the {m[1]} value must be between 0 and 1 (exclusive), got {value:g}",
                hint="e.g. prune0.3 removes 30% of the channels; lowrank0.9 keeps 90% of the energy",
            )
        spec = f"{m[1]}{value:g}"
        if spec not in out:
            out.append(spec)
    return out


def _kind_value(spec: str) -> tuple[str, float]:
    """("prune" | "lowrank", value) of a spec as parse_specs returns it."""
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise UserInputError(
            f"{spec!r} is not a compression spec", hint="use prune<ratio> or lowrank<energy>, e.g. prune0.3"
        )
    return m[1], float(m[2])


def _step(spec: str):
    from ..optimize import LowRankConfig, PruneConfig

    kind, value = _kind_value(spec)
    return PruneConfig(ratio=value) if kind == "prune" else LowRankConfig(energy=value)


def no_module_reason(art: Artifact) -> str | None:
    """Why ``art`` cannot be compressed (no PyTorch module to change), or None. The same sources as
    bushu.optimize._torch.load_module: a saved module, or a zoo / module:callable import."""
    if "module" in art.files or art.provenance.get("source_kind") in ("zoo", "callable"):
        return None
    what = {"onnx": "an ONNX file", "pt2": "a torch.export program", "torchscript": "a TorchScript file"}.get(
        art.provenance.get("source_kind") or "", "a source without a PyTorch module"
    )
    return (
        f"{art.name} was imported from {what}: no PyTorch module for pruning or low-rank factorization to "
        "change (import it from a module:callable or a zoo name to search compression)"
    )


def build_compressed(
    art: Artifact,
    spec: str,
    work: Path,
    train: Path | None,
    epochs: int,
    log: Callable[[str], None],
    cache: dict[str, Any] | None,
) -> tuple[Artifact | None, str, str]:
    """(compressed artifact or None, status "ok" | "skipped" | "failed", reason). Built once in
    WORK/compress-SPEC and reused while the spec, the training folder and the epochs stay the same."""
    out = work / f"compress-{spec}"
    epochs = epochs if train is not None else 0
    want = f"ok:{train}:{epochs}"
    if cache is not None and cache.get(f"compress:{spec}") == want and (out / "bushu.yaml").is_file():
        log(f"{spec}: reusing {out}")
        return Artifact.load(out), "ok", ""
    reason = no_module_reason(art)
    if reason:
        return None, "skipped", reason
    from ..optimize import FinetuneConfig, OptimizeConfig, optimize

    log(
        f"{spec}: {KINDS[_kind_value(spec)[0]]} (bushu optimize)"
        + (f", then {epochs} epoch(s) of fine-tuning on {train}" if epochs else ", no fine-tuning (no --train)")
    )
    cfg = OptimizeConfig(
        steps=(_step(spec),), finetune=FinetuneConfig(epochs=epochs), train=train, measure=False, report=True
    )
    try:
        # torch.onnx.export and the pruning library may print on stdout; keep stdout for --json
        with contextlib.redirect_stdout(sys.stderr):
            result = optimize(art, out, cfg, log=lambda m: log(f"{spec}: {m}"))
    except MissingDependencyError as e:
        return None, "skipped", f"{spec} needs {e.message.splitlines()[0]}"
    except BushuError as e:
        return None, "failed", f"{spec} failed: {e.message.splitlines()[0]}"
    except Exception as e:  # noqa: BLE001 - a framework's own error: this compression is out, the plan goes on
        return None, "failed", f"{spec} failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    if cache is not None:
        cache[f"compress:{spec}"] = want
    return result, "ok", ""


def summary(art: Artifact, spec: str) -> dict[str, Any]:
    """What the compression did, from the compressed artifact's optimize section."""
    section = art.metrics.get("optimize") or {}
    rows = section.get("rows") or []
    steps = [s for s in section.get("steps") or [] if s.get("step") in ("prune", "lowrank", "finetune")]
    out: dict[str, Any] = {"spec": spec}
    if rows and rows[0].get("params") and rows[-1].get("params"):
        out["params"] = rows[-1]["params"]
        out["params_ratio"] = round(rows[-1]["params"] / rows[0]["params"], 4)
    tuned = next((s for s in steps if s["step"] == "finetune"), None)
    out["finetune_epochs"] = tuned.get("epochs", 0) if tuned and "skipped" not in tuned else 0
    return out
