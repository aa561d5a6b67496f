"""`bushu optimize ART -o OUT --quantize int8|fp16|dynamic`: compress, validate, compare before/after."""

from __future__ import annotations

from pathlib import Path

import click

from ._output import console, print_json, table

COLUMNS = ("model", "params", "size_mb", "p50_ms", "throughput_b8", "top1_agreement", "accuracy")


@click.command("optimize")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="New artifact directory.")
@click.option("--quantize", "quant", type=click.Choice(["int8", "fp16", "dynamic"]), required=True,
              help="int8: static (conv nets, needs --calib) or dynamic (MatMul-heavy), chosen by model type; "
                   "dynamic: dynamic int8 only; fp16: half precision.")
@click.option("--calib", type=click.Path(path_type=Path),
              help="Calibration data: a folder of images (flat or one folder per class) or a .npy/.npz file.")
@click.option("--calib-size", default=100, show_default=True, help="Use at most this many calibration samples.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="How static int8 picks activation ranges.")
@click.option("--data", type=click.Path(path_type=Path),
              help="Labelled images (one folder per class) to measure accuracy before and after.")
@click.option("--max-accuracy-drop", type=float,
              help="Points of top-1 accuracy int8 may lose on --data; sensitive layers stay in float until it holds.")
@click.option("--exclude", "exclude", multiple=True, help="Keep this node in float (repeatable).")
@click.option("--backend", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime",
              show_default=True, help="Runtime to quantize for.")
@click.option("--prune", hidden=True, help="Not implemented yet.")
@click.option("--lowrank", hidden=True, help="Not implemented yet.")
@click.option("--distill", hidden=True, is_flag=True, help="Not implemented yet.")
@click.option("--no-bench", is_flag=True, help="Skip the latency/throughput measurement.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(artifact: Path, out: Path, quant: str, calib: Path | None, calib_size: int, method: str,
            data: Path | None, max_accuracy_drop: float | None, exclude: tuple[str, ...], backend: str,
            prune: str | None, lowrank: str | None, distill: bool, no_bench: bool, as_json: bool) -> None:
    """Quantize artifact ART into a new artifact OUT, validated against ART, with a before/after table.

    \b
    bushu optimize ART -o ART-int8 --quantize int8 --calib images/
    bushu optimize ART -o ART-int8 --quantize int8 --calib images/ --data labelled/ --max-accuracy-drop 1
    bushu optimize ART -o ART-fp16 --quantize fp16
    """
    from ..compress import DynamicInt8Config, Fp16Config, StaticInt8Config, quantize
    from ..compress._analysis import profile_model
    from ..compress.quantize import choose_int8
    from ..errors import UserInputError
    from ..model.artifact import Artifact

    for flag, value in (("--prune", prune), ("--lowrank", lowrank), ("--distill", distill or None)):
        if value is not None:
            raise UserInputError(f"{flag} is not implemented yet; this version of bushu optimize quantizes only",
                                 hint="use --quantize int8|fp16|dynamic")
    if calib_size < 1:
        raise UserInputError(f"--calib-size must be at least 1, got {calib_size}")
    if backend == "openvino":
        raise UserInputError("--backend openvino (NNCF int8) is not implemented yet",
                             hint="quantize for onnxruntime; OpenVINO runs the QDQ model too")
    art = Artifact.load(artifact)
    if quant == "int8":
        kind, _ = choose_int8(profile_model(art.model_path), calib is not None)
        quant = "static" if kind == "static" else "dynamic"
    if quant == "static":
        config = StaticInt8Config(calibration=calib, method=method, calib_size=calib_size, exclude_nodes=exclude)
    elif quant == "dynamic":
        config = DynamicInt8Config(exclude_nodes=exclude, validation=calib)
    else:
        config = Fp16Config(validation=calib)
    log = (lambda _m: None) if as_json else (lambda m: console.print(f"[dim]{m}[/]"))
    result = quantize(art, out, config, data=data, max_accuracy_drop=max_accuracy_drop, measure=not no_bench,
                      log=log)
    section = result.metrics["optimize"]
    if as_json:
        print_json({"artifact": str(result.path), **section})
        return
    cols = [c for c in COLUMNS if any(r.get(c) is not None for r in section["rows"])]
    table(section["rows"], cols, title=f"{art.name}: before → after")
    console.print(f"why: {section['reason']}")
    if section.get("accuracy", {}).get("excluded_nodes"):
        console.print(f"kept in float: {', '.join(section['accuracy']['excluded_nodes'])}")
    if section.get("validation_warning"):
        console.print(f"[yellow]note: {section['validation_warning']}[/]")
    console.print(f"wrote {result.path}\nnext: [bold]bushu bench {result.path}[/]")
