"""`bushu optimize ART -o OUT`: distill, prune, factorize, quantize; validate; compare before/after."""

from __future__ import annotations

from pathlib import Path

import click

from ._output import console, print_json, table

COLUMNS = ("model", "params", "mflops", "size_mb", "zip_mb", "sparsity", "p50_ms", "throughput_b8",
           "top1_agreement", "accuracy")


@click.command("optimize")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="New artifact directory.")
@click.option("--quantize", "quant", type=click.Choice(["int8", "fp16", "dynamic"]),
              help="int8: static (conv nets, needs --calib) or dynamic (MatMul-heavy), chosen by model type; "
                   "dynamic: dynamic int8 only; fp16: half precision. Runs after the other steps.")
@click.option("--calib", type=click.Path(path_type=Path),
              help="Calibration data: a folder of images (flat or one folder per class) or a .npy/.npz file.")
@click.option("--calib-size", default=None, type=int, help="Use at most this many calibration samples "
              "[default: 100; 300 for --backend openvino].")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="How static int8 picks activation ranges (onnxruntime).")
@click.option("--preset", type=click.Choice(["performance", "mixed"]), default="performance", show_default=True,
              help="NNCF preset for --backend openvino: symmetric (performance) or asymmetric (mixed) activations.")
@click.option("--data", type=click.Path(path_type=Path),
              help="Labelled images (one folder per class) to measure accuracy before and after "
                   "(and to fine-tune on when --train is not given).")
@click.option("--train", type=click.Path(path_type=Path),
              help="Images to fine-tune, distill and rank channels on (one folder per class, or flat: then the "
                   "original model's outputs are the targets).")
@click.option("--max-accuracy-drop", type=float,
              help="Points of top-1 accuracy the result may lose on --data; int8 keeps sensitive layers in float "
                   "until it holds, other steps fail if it does not.")
@click.option("--exclude", "exclude", multiple=True, help="Keep this node in float (repeatable).")
@click.option("--backend", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime",
              show_default=True, help="Runtime to quantize for (openvino: NNCF int8, writes an OpenVINO IR).")
@click.option("--prune", type=float, metavar="RATIO", help="Prune this share of channels (structured) or weights "
              "(unstructured), 0 < RATIO < 1.")
@click.option("--prune-mode", type=click.Choice(["structured", "unstructured"]), default="structured",
              show_default=True)
@click.option("--importance", type=click.Choice(["auto", "magnitude", "taylor"]), default="auto", show_default=True,
              help="Structured pruning criterion; auto = Taylor (weight × gradient) when data is given, else L1.")
@click.option("--global-pruning", is_flag=True, help="Rank channels across all layers instead of per layer.")
@click.option("--lowrank", type=float, metavar="RANK_RATIO",
              help="SVD-factorize Linear/Conv layers keeping this share of each layer's rank.")
@click.option("--lowrank-energy", type=float, metavar="E",
              help="Instead of a rank ratio: keep the smallest rank holding this share of Σσ².")
@click.option("--lowrank-max-error", type=float, default=0.1, show_default=True,
              help="Sensitivity bound: factorize a layer only if alone it changes the outputs by at most this "
                   "(relative L2).")
@click.option("--distill", metavar="STUDENT", help="Distill into STUDENT: 'narrow' (the same network with "
              "--width of its channels) or a zoo model name.")
@click.option("--width", type=float, default=0.5, show_default=True, help="Channel share of a 'narrow' student.")
@click.option("--temperature", type=float, default=4.0, show_default=True, help="Distillation temperature.")
@click.option("--alpha", type=float, help="Weight of the soft-target loss (default 0.5 with labels, 1 without).")
@click.option("--epochs", type=int, default=3, show_default=True,
              help="Fine-tuning epochs after pruning/low-rank (0: none); distillation uses max(--epochs, 5).")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Fine-tuning / distillation learning rate.")
@click.option("--no-bench", is_flag=True, help="Skip the latency/throughput measurement.")
@click.option("--no-report", is_flag=True, help="Do not write OUT/report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(artifact: Path, out: Path, quant: str | None, calib: Path | None, calib_size: int | None, method: str,
            preset: str, data: Path | None, train: Path | None, max_accuracy_drop: float | None,
            exclude: tuple[str, ...], backend: str, prune: float | None, prune_mode: str, importance: str,
            global_pruning: bool, lowrank: float | None, lowrank_energy: float | None, lowrank_max_error: float,
            distill: str | None, width: float, temperature: float, alpha: float | None, epochs: int, lr: float,
            no_bench: bool, no_report: bool, as_json: bool) -> None:
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
    """
    from ..compress import (
        DistillConfig,
        DynamicInt8Config,
        FinetuneConfig,
        Fp16Config,
        LowRankConfig,
        OpenVINOInt8Config,
        OptimizeConfig,
        PruneConfig,
        StaticInt8Config,
        optimize,
    )
    from ..compress._analysis import profile_model
    from ..compress.quantize import choose_int8
    from ..errors import UserInputError
    from ..model.artifact import Artifact

    if calib_size is not None and calib_size < 1:
        raise UserInputError(f"--calib-size must be at least 1, got {calib_size}")
    if lowrank is not None and lowrank_energy is not None:
        raise UserInputError("give either --lowrank RANK_RATIO or --lowrank-energy E, not both")
    art = Artifact.load(artifact)
    steps: list = []
    if distill is not None:
        steps.append(DistillConfig(student=distill, width=width, temperature=temperature, alpha=alpha,
                                   epochs=max(epochs, 5), lr=lr))
    if prune is not None:
        steps.append(PruneConfig(ratio=prune, mode=prune_mode, importance=importance, global_pruning=global_pruning))
    if lowrank is not None or lowrank_energy is not None:
        steps.append(LowRankConfig(rank_ratio=lowrank, energy=lowrank_energy, max_layer_error=lowrank_max_error))
    config = None
    if backend == "openvino":
        if quant not in (None, "int8"):
            raise UserInputError(f"--backend openvino quantizes to int8 (NNCF); --quantize {quant} is for onnxruntime",
                                 hint="use --quantize int8 --backend openvino, or drop --backend")
        if quant is None:
            raise UserInputError("--backend openvino needs --quantize int8", hint="add --quantize int8 --calib DIR")
        config = OpenVINOInt8Config(calibration=calib, calib_size=calib_size or 300, preset=preset)
    elif quant is not None:
        if quant == "int8":
            kind, _ = choose_int8(profile_model(art.model_path), calib is not None)
            quant = "static" if kind == "static" else "dynamic"
        if quant == "static":
            config = StaticInt8Config(calibration=calib, method=method, calib_size=calib_size or 100,
                                      exclude_nodes=exclude)
        elif quant == "dynamic":
            config = DynamicInt8Config(exclude_nodes=exclude, validation=calib)
        else:
            config = Fp16Config(validation=calib)
    opt = OptimizeConfig(steps=tuple(steps), quantize=config, finetune=FinetuneConfig(epochs=epochs, lr=lr),
                         train=train, data=data, max_accuracy_drop=max_accuracy_drop, measure=not no_bench,
                         report=not no_report)
    log = (lambda _m: None) if as_json else (lambda m: console.print(f"[dim]{m}[/]"))
    result = optimize(art, out, opt, log=log)
    section = result.metrics["optimize"]
    if as_json:
        print_json({"artifact": str(result.path), **section})
        return
    cols = [c for c in COLUMNS if any(r.get(c) is not None for r in section["rows"])]
    table(section["rows"], cols, title=f"{art.name}: before → after")
    reason = section.get("reason") or section.get("quantize", {}).get("reason")
    if reason:
        console.print(f"why: {reason}")
    acc = section.get("accuracy") or section.get("quantize", {}).get("accuracy") or {}
    if acc.get("excluded_nodes"):
        console.print(f"kept in float: {', '.join(acc['excluded_nodes'])}")
    warning = section.get("validation_warning") or section.get("quantize", {}).get("validation_warning")
    if warning:
        console.print(f"[yellow]note: {warning}[/]")
    if (result.path / "report.html").is_file():
        console.print(f"report: {result.path / 'report.html'}")
    console.print(f"wrote {result.path}\nnext: [bold]bushu bench {result.path}[/]")
