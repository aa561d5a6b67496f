"""`bushu optimize` with several steps: distill → prune → low-rank → fine-tune → quantize.

    optimize(artifact_in, out, OptimizeConfig(...)) -> Artifact

The PyTorch steps work on the artifact's ``nn.Module`` (see ``_torch.load_module``). After each
one the module is exported to ONNX again and checked against itself (fp32 parity), and measured:
parameters, FLOPs, size, latency, throughput, and accuracy on ``data`` (by the exported ONNX model,
the same way for every row). One short fine-tuning pass on ``train`` (or ``data``) follows the
structural steps; the original model is its teacher (soft targets) besides the labels. Quantization
comes last, by ONNX Runtime (``quantize``) or OpenVINO/NNCF (``quantize_openvino``); int8 that fails
its agreement gate tries the known remedies first (``int8_search``). Nothing is
written unless every step passed; the input artifact is never modified. The result carries the
before/after table in ``metrics.optimize.rows`` and an HTML report (``report.html``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import validate
from ..data.arrays import ArrayReader, labelled_arrays
from ..errors import UserInputError
from ..model.artifact import Artifact, write_artifact
from . import _torch as T
from .distill import DistillConfig, distill, make_student
from .int8_search import DEFAULT_MAX_ATTEMPTS, quantize_int8
from .lowrank import LowRankConfig, factorize_module
from .openvino_int8 import OpenVINOInt8Config
from .prune import PruneConfig, prune_module
from .quantize import AccuracyDropError, QuantConfig

__all__ = ["FinetuneConfig", "OptimizeConfig", "TorchStep", "optimize"]

TorchStep = DistillConfig | PruneConfig | LowRankConfig
ORDER = {"distill": 0, "prune": 1, "lowrank": 2}
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 3  # 0 = no fine-tuning after pruning / low-rank
    lr: float = 1e-4
    batch_size: int = 16
    temperature: float = 4.0


@dataclass(frozen=True)
class OptimizeConfig:
    steps: tuple[TorchStep, ...] = ()
    quantize: QuantConfig | OpenVINOInt8Config | None = None
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: str | Path | None = None  # images to fine-tune / distill / score Taylor importance on
    data: str | Path | None = None  # labelled images to measure accuracy on (and train on, if no ``train``)
    max_accuracy_drop: float | None = None
    max_int8_attempts: int = DEFAULT_MAX_ATTEMPTS  # static / OpenVINO int8: remedies tried when the gate fails
    measure: bool = True
    report: bool = True


def optimize(
    artifact_in: Artifact | str | Path,
    out: str | Path,
    config: OptimizeConfig,
    log: Callable[[str], None] | None = None,
) -> Artifact:
    log = log or (lambda _m: None)
    art = artifact_in if isinstance(artifact_in, Artifact) else Artifact.load(artifact_in)
    out = Path(out)
    if not config.steps and config.quantize is None:
        raise UserInputError(
            "nothing to do: choose at least one of --quantize, --prune, --lowrank, --distill",
            hint="e.g. bushu optimize ART -o OUT --prune 0.3 --data DIR",
        )
    if out.resolve() == art.path.resolve():
        raise UserInputError(
            "the output must be a new directory, not the input artifact",
            hint="pass another -o OUT; the input stays as it is",
        )
    if config.max_accuracy_drop is not None and (config.data is None or config.max_accuracy_drop < 0):
        raise UserInputError(
            "max_accuracy_drop needs labelled data (--data DIR, one folder per class) and a value ≥ 0",
            hint="add --data DIR, or drop --max-accuracy-drop",
        )
    kinds = [s.kind for s in config.steps]
    for k in set(kinds):
        if kinds.count(k) > 1:
            raise UserInputError(f"{k} is given twice; each step runs at most once")
    for s in config.steps:
        s.check()
    if config.finetune.epochs < 0 or config.finetune.lr <= 0:
        raise UserInputError(
            f"fine-tuning needs epochs ≥ 0 and lr > 0, got {config.finetune.epochs}, {config.finetune.lr}"
        )
    if not config.steps:
        result = _quantize(art, out, config, log)
        if config.report:
            _write_report(result, result.metrics["optimize"]["rows"], [])
        return result
    if art.format != "onnx":
        raise UserInputError(f"optimize reads ONNX artifacts; {art.path} is {art.format!r}")
    steps = sorted(config.steps, key=lambda s: ORDER[s.kind])
    with T.scratch_dir() as tmpd:
        tmp = Path(tmpd)
        return _run(art, out, config, steps, tmp, log)


def _run(
    art: Artifact, out: Path, config: OptimizeConfig, steps: list[TorchStep], tmp: Path, log: Callable[[str], None]
) -> Artifact:
    from ._torch import quiet_openmp

    quiet_openmp()
    import torch

    data = labelled_arrays(config.data, art, require="accuracy") if config.data is not None else None
    train = labelled_arrays(config.train, art) if config.train is not None else data
    if config.train is None and data is not None:
        log(
            f"fine-tuning on --data ({len(data)} images) as well: pass --train DIR to measure accuracy on "
            "images the model was not tuned on"
        )
    needs_module = any(not isinstance(s, DistillConfig) or s.student == "narrow" for s in steps)
    module, origin = T.load_module(art, log) if needs_module else (None, "")
    example = torch.from_numpy(np.random.default_rng(0).standard_normal(T.example_shape(art, 2)).astype(np.float32))
    teacher = T.teacher_targets(art.model_path, train.x) if train is not None else None
    eval_x = (
        data.x if data is not None else (train.x[:64] if train is not None else next(iter(_synthetic(art).values())))
    )
    in_name = art.inputs[0].name
    out_name = art.outputs[0].name
    ref_logits = validate.run_model(art.model_path, {in_name: eval_x})[out_name]
    rows = [_row("original", art.model_path, ref_logits, ref_logits, data, config.measure, log)]
    records: list[dict[str, Any]] = []
    structural = False
    for i, step in enumerate(steps):
        module, details, label = _apply_step(step, module, example, train, teacher, eval_x, ref_logits, log)
        structural = structural or not isinstance(step, DistillConfig)
        records.append({"step": step.kind, "config": asdict(step), **details})
        rows.append(
            _export_and_row(
                module,
                art,
                tmp / f"s{i}",
                label,
                in_name,
                out_name,
                eval_x,
                ref_logits,
                data,
                config.measure,
                log,
                details,
            )
        )
    ft = config.finetune
    if structural and ft.epochs > 0 and train is not None:
        sparse = any(r.get("mode") == "unstructured" for r in records)
        records.append({"step": "finetune", **_finetune(module, train, teacher, ft, sparse, log)})
        rows.append(
            _export_and_row(
                module,
                art,
                tmp / "ft",
                "+ fine-tune",
                in_name,
                out_name,
                eval_x,
                ref_logits,
                data,
                config.measure,
                log,
                {"keep_zeros": sparse},
            )
        )
    elif structural and ft.epochs > 0:
        records.append({"step": "finetune", "skipped": "no data (--train / --data)"})
        log("no --train/--data: skipping fine-tuning")
    if data is not None:
        _check_accuracy_drop(rows[0], rows[-1], config.max_accuracy_drop)
    exported = rows[-1].pop("_exported")
    for r in rows:
        r.pop("_exported", None)
    from ..import_ import onnx as conv

    example_np = [example.numpy()]
    exported["reference"] = conv.save_reference(module, example_np, tmp / "model.pt2", art.inputs, art.outputs)
    section: dict[str, Any] = {"rows": rows, "steps": records, "module_from": origin, "parity": exported["parity"]}
    new, files = _optimized_artifact(art, exported, section, records)
    return _write(art, out, config, new, files, section, records, tmp, log)


def _apply_step(
    step: TorchStep,
    module: Any,
    example: Any,
    train: ArrayReader | None,
    teacher: tuple[np.ndarray, np.ndarray] | None,
    eval_x: np.ndarray,
    ref_logits: np.ndarray,
    log: Callable[[str], None],
) -> tuple[Any, dict[str, Any], str]:
    """Run one distill / prune / low-rank step on ``module``: (the module after it, its details, its row label)."""
    if isinstance(step, DistillConfig):
        if train is None or teacher is None:
            raise UserInputError(
                "distillation needs images to train the student on",
                hint="pass --train DIR (labelled or not) or --data DIR",
            )
        n_out = int(ref_logits.shape[1])
        module, details = make_student(module, step, example, n_out, log)
        details.update(distill(module, train, teacher, step, log))
        return module, details, f"distill → {step.student}"
    if isinstance(step, PruneConfig):
        details = prune_module(module, step, example, train, teacher[0] if teacher else None, log)
        return module, details, f"prune {step.ratio:g} ({step.mode})"
    samples = (train.x if train is not None else eval_x)[:16]
    details = factorize_module(module, step, example, samples, log)
    return module, details, "low-rank " + (f"r={step.rank_ratio:g}" if step.rank_ratio else f"energy={step.energy:g}")


def _finetune(
    module: Any,
    train: ArrayReader,
    teacher: tuple[np.ndarray, np.ndarray] | None,
    ft: FinetuneConfig,
    sparse: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    log(
        f"fine-tuning for {ft.epochs} epoch(s) on {len(train)} image(s) "
        f"({'labels + ' if train.targets is not None else ''}the original model's soft targets)"
    )
    return T.finetune(
        module,
        train,
        teacher,
        epochs=ft.epochs,
        lr=ft.lr,
        batch_size=ft.batch_size,
        temperature=ft.temperature,
        keep_zeros=sparse,
        log=log,
    )


def _check_accuracy_drop(original: dict[str, Any], final: dict[str, Any], bound: float | None) -> None:
    if bound is None:
        return
    drop = original["accuracy"] - final["accuracy"]
    if drop > bound:
        raise AccuracyDropError(
            f"the compressed model loses {drop:.2f} points of accuracy ({original['accuracy']:.2f}%"
            f" → {final['accuracy']:.2f}%), more than the {bound:g} allowed",
            hint="prune less (a lower ratio), fine-tune longer (--epochs), or give more training images (--train DIR)",
        )


def _optimized_artifact(
    art: Artifact, exported: dict[str, Any], section: dict[str, Any], records: Sequence[dict[str, Any]]
) -> tuple[Artifact, dict[str, Any]]:
    """The compressed model's artifact (not written yet) and its files."""
    new = art.derived("model.onnx", "onnx", metrics={"optimize": section, "parity": exported["parity"]})
    files: dict[str, Any] = {"model.onnx": exported["onnx"], T.MODULE_FILE: exported["module"]}
    new.files = {"module": T.MODULE_FILE}
    if exported["reference"] is not None:
        files["model.pt2"] = exported["reference"]
        new.files["reference"] = "model.pt2"
    new.add_step("optimize", source=str(art.path), steps=[_brief(r) for r in records])
    return new, files


def _write(
    art: Artifact,
    out: Path,
    config: OptimizeConfig,
    new: Artifact,
    files: dict[str, Any],
    section: dict[str, Any],
    records: list[dict[str, Any]],
    tmp: Path,
    log: Callable[[str], None],
) -> Artifact:
    """Write the compressed artifact to ``out``, quantized first when the config asks for it."""
    rows = section["rows"]
    if config.quantize is None:
        result = write_artifact(out, files, new, art.labels)
        if config.report:
            _write_report(result, rows, records)
        return result
    stage = write_artifact(tmp / "stage", files, new, art.labels)
    result = _quantize(stage, out, config, log)
    qsection = result.metrics["optimize"]
    qrow = qsection["rows"][-1]
    section["rows"] = rows + [{**qrow, "model": f"+ {qrow['model']}"}]
    section["quantize"] = {k: v for k, v in qsection.items() if k != "rows"}
    result.metrics["optimize"] = section
    result.metrics["parity"] = new.metrics["parity"]
    for s in result.provenance.get("steps", []):
        if s.get("source") == str(stage.path):
            s["source"] = f"{art.path} (after {', '.join(r['step'] for r in records)})"
    result.save()
    if config.report:
        _write_report(result, section["rows"], records)
    return result


def _quantize(art: Artifact, out: Path, config: OptimizeConfig, log: Callable[[str], None]) -> Artifact:
    q = config.quantize
    return quantize_int8(
        art,
        out,
        q,
        data=config.data,
        max_accuracy_drop=config.max_accuracy_drop,
        measure=config.measure,
        max_attempts=config.max_int8_attempts,
        log=log,
    )


def _synthetic(art: Artifact) -> dict[str, np.ndarray]:
    from ..spec import synthetic_feeds

    return synthetic_feeds(art.inputs, batch=16, seed=1)


def _export_and_row(
    module: Any,
    art: Artifact,
    workdir: Path,
    label: str,
    in_name: str,
    out_name: str,
    eval_x: np.ndarray,
    ref_logits: np.ndarray,
    data: ArrayReader | None,
    measure: bool,
    log: Callable[[str], None],
    details: dict[str, Any],
) -> dict[str, Any]:
    exported = T.export_module(module, art, workdir, reference=False)  # the final one gets it at the end
    logits = validate.run_model(exported["onnx"], {in_name: eval_x})[out_name]
    row = _row(label, exported["onnx"], logits, ref_logits, data, measure, log)
    if details.get("mode") == "unstructured" or details.get("keep_zeros"):
        import onnx
        from onnx import numpy_helper

        ws = [
            numpy_helper.to_array(t)
            for t in onnx.load(str(exported["onnx"])).graph.initializer
            if t.data_type == onnx.TensorProto.FLOAT
        ]
        row["sparsity"] = round(sum(int((w == 0).sum()) for w in ws) / max(1, sum(w.size for w in ws)), 4)
        row["zip_mb"] = round(len(zlib.compress(Path(exported["onnx"]).read_bytes(), 6)) / 1e6, 3)
    row["_exported"] = exported
    return row


def _row(
    label: str,
    path: Path,
    logits: np.ndarray,
    ref_logits: np.ndarray,
    data: ArrayReader | None,
    measure: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from ._measure import measure as _measure

    row: dict[str, Any] = {"model": label, **_measure(path, speed=measure)}
    if logits.ndim == 2 and logits.shape[1] > 1:
        row["top1_agreement"] = round(float(np.mean(logits.argmax(1) == ref_logits.argmax(1))), 4)
    if data is not None and data.targets is not None:
        row["accuracy"] = round(100.0 * float(np.mean(logits.argmax(1) == data.targets)), 3)
    log(f"{label}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "model" and v is not None))
    return row


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "step",
        "config",
        "mode",
        "ratio",
        "importance",
        "params_before",
        "params_after",
        "sparsity_all",
        "layers_factorized",
        "student",
        "epochs",
        "samples",
    )
    return {k: v for k, v in record.items() if k in keep}


def _write_report(result: Artifact, rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> None:
    from .report import render_html

    (result.path / REPORT_FILE).write_text(render_html(result, rows, records))
