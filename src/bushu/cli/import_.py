"""`bushu import SRC -o ART`: a model file, a module:callable or a zoo name → a validated artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ._inputs import input_options
from ._output import console, print_json, table


def _shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        dims = tuple(int(d) for d in value.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a shape; expected e.g. 1,3,224,224") from None
    if len(dims) < 2 or min(dims) < 1:
        raise click.BadParameter(f"{value!r}: expected positive dims with a leading batch, e.g. 1,3,224,224")
    return dims


def _floats(value: str | None) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value.split(","))


@click.command("import")
@click.argument("src", required=False)
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Artifact directory to write (default: ./NAME).")
@click.option("--list", "list_zoo", is_flag=True, help="List the built-in zoo models and exit.")
@click.option(
    "--input-shape",
    callback=_shape,
    help="Example input shape, batch first (e.g. 1,3,224,224); "
    "needed for module:callable and TorchScript without a recorded spec.",
)
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A text file with one class name per line.",
)
@click.option("--size", type=int, help="Image pre-processing: centre-crop size (resize to size/0.875 first).")
@click.option("--mean", help="Image pre-processing: per-channel mean, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Image pre-processing: per-channel std, e.g. 0.229,0.224,0.225.")
@click.option("--atol", default=1e-4, show_default=True, help="Parity budget: absolute error per output.")
@click.option("--rtol", default=1e-4, show_default=True, help="Parity budget: error relative to the output's range.")
@click.option("--no-simplify", is_flag=True, help="Keep the exported graph as is (no onnxslim).")
@click.option(
    "--task",
    type=click.Choice(["classification", "detection", "raw"]),
    help="What the model does; detectors that say what they are (Ultralytics metadata, SSD anchors, "
    "boxes/scores outputs) are recognised without it.",
)
@click.option(
    "--decoder", type=click.Choice(["yolo", "ssd", "boxes"]), help="Detection decoder (implies --task detection)."
)
@click.option(
    "--decoder-option",
    "decoder_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Decoder / detection pre-processing setting, repeatable: layout=channels_first|anchors_first, "
    "objectness=true, boxes=NAME, scores=NAME, classes=NAME, box_format=xyxy|yxyx, normalized=true, "
    "background=0, score_fn=sigmoid|softmax, size=H,W, fit=letterbox|stretch, score=, iou=, max_det=.",
)
@click.option(
    "--to-onnx",
    is_flag=True,
    help="A .tflite source: convert it to ONNX (tflite2onnx) and check it "
    "against LiteRT, instead of keeping the .tflite for the litert backend.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@input_options
def command(
    src: str | None,
    out: Path | None,
    list_zoo: bool,
    input_shape,
    labels_file: Path | None,
    size: int | None,
    mean: str | None,
    std: str | None,
    atol: float,
    rtol: float,
    no_simplify: bool,
    task: str | None,
    decoder: str | None,
    decoder_options: tuple[str, ...],
    to_onnx: bool,
    as_json: bool,
    inputs,
) -> None:
    """Import SRC (an .onnx file, a torch.export .pt2, a TorchScript .pt, a module:callable returning an
    nn.Module, a Hugging Face Transformers model folder, or a zoo name) into an artifact: ONNX with a
    dynamic batch axis (and the source's other dynamic axes), simplified, and checked against the source.

    --input states each input (name, shape, dtype); its sizes are recorded as the typical sizes of
    the model's dynamic dims, which later commands use when given no --input."""
    from ..model import zoo

    if list_zoo:
        rows = [m.describe() for m in zoo.ZOO.values()]
        print_json(rows) if as_json else table(rows, ["name", "arch", "pretrained", "input", "params_m", "note"])
        return
    if not src:
        raise click.UsageError("missing SRC: a model file, module:callable or zoo name (see --list)")
    from ..import_.detection import parse_options
    from ..import_.importer import Tolerance, import_model
    from ..model.artifact import Preprocess

    pre = None
    if size or mean or std:
        base = zoo.ZOO[src].preprocess if src in zoo.ZOO else Preprocess()
        kw: dict[str, Any] = {}
        if size:
            kw.update(crop=size, resize=round(size / 0.875))
        if mean:
            kw["mean"] = _floats(mean)
        if std:
            kw["std"] = _floats(std)
        pre = Preprocess(**{**base.__dict__, **kw})
    elif src not in zoo.ZOO and input_shape and len(input_shape) == 4 and input_shape[1] in (1, 3):
        pre = Preprocess(resize=round(input_shape[2] / 0.875), crop=input_shape[2])
    labels = labels_file.read_text().splitlines() if labels_file else None
    out = out or Path(Path(src).stem if src not in zoo.ZOO else src)
    if out.resolve() == Path(src).resolve():
        raise click.UsageError(f"the artifact would overwrite its source {src}; pass -o DIR")
    with console.status(f"importing {src} …"):
        art = import_model(
            src,
            out,
            input_shape=input_shape,
            labels=labels,
            preprocess=pre,
            tolerance=Tolerance(atol, rtol),
            simplify=not no_simplify,
            inputs=inputs,
            task=task,
            decoder=decoder,
            decoder_options=parse_options(decoder_options),
            to_onnx=to_onnx,
        )
    parity = art.metrics.get("parity", {})
    if as_json:
        print_json({**art.summary(), "parity": parity})
        return
    io = ", ".join(str(s) for s in art.inputs) + " → " + ", ".join(str(s) for s in art.outputs)
    console.print(f"[green]✓[/] wrote {art.path} ({art.size_bytes / 1e6:.1f} MB): {escape(io)}")
    if parity.get("outputs"):
        console.print(f"parity vs {parity['reference']} on {parity['samples']} inputs (passed):")
        table(parity["outputs"], ["name", "max_abs", "max_rel", "top1_agreement", "atol", "rtol"])
    if art.task == "detection" and art.postprocess and art.preprocess:
        p, pp = art.postprocess.params, art.preprocess.params
        console.print(
            f"detector: decoder {p['decoder']} (matched by {p.get('matched_by')}), input "
            f"{'x'.join(map(str, pp['size']))} {pp['fit']}, "
            f"{len(art.labels or [])} classes"
        )
    console.print(f"next: bushu info {art.path}   bushu bench {art.path}")
