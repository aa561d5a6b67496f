"""`bushu optimize ART -o OUT`: distill, prune, factorize, quantize; validate; compare before/after."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..runtime.registry import with_flag
from ._inputs import input_options
from ._output import console, print_json, table

if TYPE_CHECKING:
    from ..inputs import InputRequest
    from ..model.artifact import Artifact


@click.command("optimize")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="New artifact directory.")
@click.option(
    "--quantize",
    "quant",
    type=click.Choice(["int8", "fp16", "dynamic"]),
    help="int8: static (conv nets, needs --calib) or dynamic (MatMul-heavy), chosen by model type; "
    "dynamic: dynamic int8 only; fp16: half precision. Runs after the other steps.",
)
@click.option(
    "--calib",
    type=click.Path(path_type=Path),
    help="Calibration data: a folder of images (flat or one folder per class) or a .npy/.npz file.",
)
@click.option(
    "--calib-size",
    default=None,
    type=int,
    help="Use at most this many calibration samples [default: 100; 300 for --backend openvino].",
)
@click.option(
    "--method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="minmax",
    show_default=True,
    help="How static int8 picks activation ranges (onnxruntime).",
)
@click.option(
    "--preset",
    type=click.Choice(["performance", "mixed"]),
    default="performance",
    show_default=True,
    help="NNCF preset for --backend openvino: symmetric (performance) or asymmetric (mixed) activations.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Labelled images (one folder per class) to measure accuracy before and after "
    "(and to fine-tune on when --train is not given). For a detector: a COCO/YOLO/VOC dataset "
    "(judged by mAP@0.5, --max-accuracy-drop in its points), or images (box agreement with fp32).",
)
@click.option(
    "--train",
    type=click.Path(path_type=Path),
    help="Images to fine-tune, distill and rank channels on (one folder per class, or flat: then the "
    "original model's outputs are the targets).",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    help="Points of top-1 accuracy the result may lose on --data; int8 keeps sensitive layers in float "
    "until it holds, other steps fail if it does not.",
)
@click.option("--exclude", "exclude", multiple=True, help="Keep this node in float (repeatable).")
@click.option(
    "--atol",
    type=float,
    help="fp16's budget per output: |fp16 - fp32| <= atol + rtol * max|fp32| on the validation inputs [default: 0.01].",
)
@click.option("--rtol", type=float, help="fp16's budget relative to each output's range (see --atol) [default: 0.02].")
@click.option(
    "--min-cosine",
    type=float,
    help="int8's bar for models without classes (embeddings, raw tensors, a DB text map on each image with "
    "text): the lowest cosine to fp32 per output and validation input [default: 0.98].",
)
@click.option(
    "--max-attempts",
    type=int,
    default=None,
    metavar="N",
    help="int8 that fails its agreement gate tries other calibration methods / NNCF options, then "
    "keeps the most sensitive nodes, then the first 30% / 60% of the graph, in float: at most N attempts "
    "in all [default: 8].",
)
@click.option("--no-fallback", is_flag=True, help="One int8 attempt: refuse when it fails the gate (--max-attempts 1).")
@click.option(
    "--backend",
    type=click.Choice(with_flag("quantizable")),
    default="onnxruntime",
    show_default=True,
    help="Runtime to quantize for (openvino: NNCF int8, writes an OpenVINO IR).",
)
@click.option(
    "--prune",
    type=float,
    metavar="RATIO",
    help="Prune this share of channels (structured) or weights (unstructured), 0 < RATIO < 1.",
)
@click.option(
    "--prune-mode", type=click.Choice(["structured", "unstructured"]), default="structured", show_default=True
)
@click.option(
    "--importance",
    type=click.Choice(["auto", "magnitude", "taylor"]),
    default="auto",
    show_default=True,
    help="Structured pruning criterion; auto = Taylor (weight × gradient) when data is given, else L1.",
)
@click.option("--global-pruning", is_flag=True, help="Rank channels across all layers instead of per layer.")
@click.option(
    "--lowrank",
    type=float,
    metavar="RANK_RATIO",
    help="SVD-factorize Linear/Conv layers keeping this share of each layer's rank.",
)
@click.option(
    "--lowrank-energy",
    type=float,
    metavar="E",
    help="Instead of a rank ratio: keep the smallest rank holding this share of Σσ².",
)
@click.option(
    "--lowrank-max-error",
    type=float,
    default=0.1,
    show_default=True,
    help="Sensitivity bound: factorize a layer only if alone it changes the outputs by at most this (relative L2).",
)
@click.option(
    "--distill",
    metavar="STUDENT",
    help="Distill into STUDENT: 'narrow' (the same network with --width of its channels) or a zoo model name.",
)
@click.option("--width", type=float, default=0.5, show_default=True, help="Channel share of a 'narrow' student.")
@click.option("--temperature", type=float, default=4.0, show_default=True, help="Distillation temperature.")
@click.option("--alpha", type=float, help="Weight of the soft-target loss (default 0.5 with labels, 1 without).")
@click.option(
    "--epochs",
    type=int,
    default=3,
    show_default=True,
    help="Fine-tuning epochs after pruning/low-rank (0: none); distillation uses max(--epochs, 5).",
)
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Fine-tuning / distillation learning rate.")
@click.option("--no-bench", is_flag=True, help="Skip the latency/throughput measurement.")
@click.option("--no-report", is_flag=True, help="Do not write OUT/report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@input_options
def command(
    artifact: Path,
    out: Path,
    quant: str | None,
    calib: Path | None,
    calib_size: int | None,
    method: str,
    preset: str,
    data: Path | None,
    train: Path | None,
    max_accuracy_drop: float | None,
    exclude: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    min_cosine: float | None,
    max_attempts: int | None,
    no_fallback: bool,
    backend: str,
    prune: float | None,
    prune_mode: str,
    importance: str,
    global_pruning: bool,
    lowrank: float | None,
    lowrank_energy: float | None,
    lowrank_max_error: float,
    distill: str | None,
    width: float,
    temperature: float,
    alpha: float | None,
    epochs: int,
    lr: float,
    no_bench: bool,
    no_report: bool,
    as_json: bool,
    inputs,
) -> None:
    """Compress artifact ART into a new artifact OUT, validated against ART, with a before/after table.

    Steps run in this order: --distill, --prune, --lowrank, fine-tuning, --quantize.

    \b
    bushu optimize ART -o ART-int8 --quantize int8 --calib images/
    bushu optimize ART -o ART-int8 --quantize int8 --calib images/ --data labelled/ --max-accuracy-drop 1
    bushu optimize ART -o ART-ov --quantize int8 --backend openvino --calib images/
    bushu optimize ART -o ART-p50 --prune 0.5 --train train/ --data heldout/
    bushu optimize ART -o ART-lr --lowrank 0.25 --data heldout/
    bushu optimize ART -o ART-kd --distill narrow --train train/ --data heldout/
    bushu optimize ART -o ART-fp16 --quantize fp16
    bushu optimize ART -o ART-fp16 --quantize fp16 --sample inputs.npz --atol 0.2
    """
    from ..model.artifact import Artifact
    from ..optimize import optimize
    from ..optimize.options import optimize_config

    art = Artifact.load(artifact)
    calib, validation, explicit_calib = _calibration(art, calib, inputs)
    opt = optimize_config(
        art,
        quantize=quant,
        backend=backend,
        calib=calib,
        calib_size=calib_size,
        method=method,
        preset=preset,
        data=data,
        train=train,
        max_accuracy_drop=max_accuracy_drop,
        exclude=exclude,
        prune=prune,
        prune_mode=prune_mode,
        importance=importance,
        global_pruning=global_pruning,
        lowrank=lowrank,
        lowrank_energy=lowrank_energy,
        lowrank_max_error=lowrank_max_error,
        distill=distill,
        width=width,
        temperature=temperature,
        alpha=alpha,
        epochs=epochs,
        lr=lr,
        bench=not no_bench,
        report=not no_report,
        max_attempts=max_attempts,
        no_fallback=no_fallback,
        validation=validation,
        explicit_calib=explicit_calib,
        atol=atol,
        rtol=rtol,
        min_cosine=min_cosine,
    )
    log = (lambda _m: None) if as_json else (lambda m: console.print(f"[dim]{m}[/]"))
    result = optimize(art, out, opt, log=log)
    section = result.metrics["optimize"]
    if as_json:
        print_json({"artifact": str(result.path), **section})
        return
    _print_result(art.name, result.path, section)


def _calibration(art: Artifact, calib: Path | None, inputs: InputRequest) -> tuple[Path | None, Any, bool]:
    """(calibration data, validation inputs, whether --calib was given) from --calib and the input options."""
    if inputs:
        inputs.check(art.inputs)  # a bad --sample fails before anything is written
    explicit_calib = calib is not None
    calib = calib or (Path(inputs.sample_path) if inputs.sample_path else None)  # --sample calibrates static int8
    # --input sizes: validate dynamic int8 / fp16 on safe inputs of those sizes (8 of them)
    validation = calib if calib is not None or not inputs.shapes else inputs.feeds(art.inputs, batch=8, seed=1)
    return calib, validation, explicit_calib


def _print_result(name: str, path: Path, section: dict[str, Any]) -> None:
    """The before/after table, the validation and accuracy figures, and what was written."""
    from ..optimize.report import COLUMNS  # the same columns as OUT/report.html

    cols = [c for c in COLUMNS if any(r.get(c) is not None for r in section["rows"])]
    table(section["rows"], cols, title=f"{name}: before → after")
    val = section.get("validation") or (section.get("quantize") or {}).get("validation") or {}
    for output, v in (val.get("outputs") or {}).items():
        console.print(
            f"{output}: cosine to the source ≥ {v['cosine_min']:.4f}, max error {v.get('max_rel', 0):.3g} of "
            f"its range"
            + (f", top-1 agreement {v['top1_agreement']:.1%}" if "top1_agreement" in v else "")
            + f" ({(val.get('inputs') or {}).get('samples', '?')} {(val.get('inputs') or {}).get('from', '')}"
            " inputs)"
        )
    gate = val.get("gate") or {}
    if gate.get("text_boxes"):  # a DB text detector: judged by its decoded boxes, not by the map's cosine
        tb = gate["text_boxes"]
        console.print(
            f"judged by the DB decoder's text boxes: {tb['matched']} of {tb['fp32_boxes']} fp32 / {tb['boxes']} "
            f"int8 boxes matched, F1 {tb['f1']:.3f}, mean IoU {tb['mean_iou'] or 0:.3f} ({gate['outcome']})"
        )
    reason = section.get("reason") or section.get("quantize", {}).get("reason")
    if reason:
        console.print(f"why: {reason}")
    acc = section.get("accuracy") or section.get("quantize", {}).get("accuracy") or {}
    quantized = section.get("quantize")
    q = quantized if isinstance(quantized, dict) and "kept" in quantized else section
    if q.get("attempts"):
        console.print(f"int8: kept '{q['kept']}' after {len(q['attempts'])} attempt(s)")
    if acc.get("excluded_nodes"):
        console.print(f"kept in float: {', '.join(acc['excluded_nodes'])}")
    warning = section.get("validation_warning") or section.get("quantize", {}).get("validation_warning")
    if warning:
        console.print(f"[yellow]note: {warning}[/]")
    if (path / "report.html").is_file():
        console.print(f"report: {path / 'report.html'}")
    console.print(f"wrote {path}\nnext: [bold]bushu bench {path}[/]")
