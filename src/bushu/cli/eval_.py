"""`bushu eval ART --data DIR`: top-1/top-5, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import click

from ._inputs import input_options
from ._output import console, print_json, table


def _read_label_map(path: Path | None) -> dict | None:
    if path is None:
        return None
    import yaml

    from ..errors import UserInputError

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserInputError(f"cannot read label map {path}: {e}") from e
    if not isinstance(data, dict):
        raise UserInputError(
            f"label map {path} must map folder names to labels, e.g. 'cats: tabby'",
            hint="a YAML or JSON object: {folder: label name or output index}",
        )
    return {str(k): v for k, v in data.items()}


@click.command("eval")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data",
    type=click.Path(path_type=Path),
    help="Dataset folder: one sub-folder per class, named after the model's labels, of images "
    "(or .txt texts / .wav clips for text / audio models); for a detection model a COCO JSON, "
    "YOLO txt (data.yaml, images/, labels/) or Pascal VOC XML folder. Without it: parity mode (each "
    "output against --reference, or the artifact's own reference file).",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    help="Parity mode: the artifact or model file to compare with (e.g. the fp32 model an int8 came from).",
)
@click.option(
    "--samples",
    default=4,
    show_default=True,
    type=click.IntRange(1),
    help="Parity mode: how many derived inputs (a batch) to compare on, when no --sample is given.",
)
@click.option(
    "--backend",
    help="Backend to run the model on (default: the one that reads the model file: "
    "onnxruntime for .onnx, litert for .tflite, ncnn, mnn, openvino for an exported artifact).",
)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option(
    "--top-k",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="Also report top-k accuracy for this k (top-1 and top-5 always).",
)
@click.option(
    "--label-map",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/JSON file mapping folder names to label names (or output indices).",
)
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML report here.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the confusion matrix as a PNG here (default: REPORT.confusion.png with --report; "
    "classification only: a detection report holds its precision-recall curves).",
)
@click.option(
    "--score",
    type=click.FloatRange(0, 1),
    help="Detection: the lowest score kept (default 0.001: mAP needs the whole precision-recall curve).",
)
@click.option("--iou", type=click.FloatRange(0, 1), help="Detection: the NMS IoU threshold (default: the artifact's).")
@click.option("--no-record", is_flag=True, help="Do not record the metrics into the artifact.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@input_options
def command(
    model: Path,
    data: Path | None,
    reference: Path | None,
    samples: int,
    backend: str | None,
    batch_size: int,
    top_k: int,
    label_map: Path | None,
    report: Path | None,
    plot: Path | None,
    score: float | None,
    iou: float | None,
    no_record: bool,
    as_json: bool,
    inputs,
) -> None:
    """Accuracy of an artifact on a labelled folder (DIR/<class>/<image, .txt text or .wav clip>), or of a
    detection artifact on a COCO / YOLO / VOC folder; without --data, parity against a reference.

    JSON keys: accuracy (= top1), top5, top_k, top_k_accuracy, n_images, n_skipped, skipped, classes, per_class (class, label,
    precision, recall, f1, support), macro, confusion (rows, columns, matrix), mistakes, env. Detection: map50, map
    (mAP@0.5:0.95), map75, per_class (class, label, ap50, ap, n_gt, n_pred), pr_curves, bad_cases, problems,
    n_images, n_boxes, n_detections, env; --report also writes REPORT's .bad_cases.html page."""
    import warnings

    from ..eval_ import evaluate

    if data is None:
        from ..parity import parity

        res = parity(model, reference=reference, backend=backend, inputs=inputs, samples=samples, record=not no_record)
        if as_json:
            print_json(res)
            return
        console.print(
            f"[bold]parity[/] {res['backend']} {Path(res['model']).name} vs {res['reference_backend']} "
            f"{Path(res['reference']).name} on {res['samples']} inputs ({res['inputs']})"
        )
        table(
            res["outputs"],
            [
                k
                for k in ("name", "cosine_min", "max_abs", "max_rel", "top1_agreement")
                if any(k in r for r in res["outputs"])
            ],
        )
        return
    if report and not plot:
        plot = report.with_suffix(".confusion.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are listed below instead
        res = evaluate(
            model,
            data,
            backend=backend,
            batch_size=batch_size,
            top_k=top_k,
            label_map=_read_label_map(label_map),
            report=report,
            plot=plot,
            record=not no_record,
            progress=not as_json,
            score=score,
            iou=iou,
        )
    if as_json:
        print_json(res)
        return
    if "map50" in res:
        _print_detection(res)
        return
    topk = f"  top-{res['top_k']} {res['top_k_accuracy']:.4f}" if res["top_k"] != 5 else ""
    console.print(
        f"[bold]top-1 {res['accuracy']:.4f}[/]  top-5 {res['top5']:.4f}{topk}  on "
        f"{res['n_images']} {res.get('noun', 'image')}s ({res['n_skipped']} skipped), macro F1 {res['macro']['f1']:.4f}"
    )
    table(res["per_class"], ["class", "label", "precision", "recall", "f1", "support"], title="per class")
    cm = res["confusion"]
    table(
        [{"true \\ pred": r, **dict(zip(cm["columns"], row))} for r, row in zip(cm["rows"], cm["matrix"])],
        ["true \\ pred", *cm["columns"]],
        title="confusion matrix",
    )
    for s in res["skipped"]:
        console.print(f"[yellow]skipped {s['path']}: {s['reason']}[/]")
    for key in ("plot", "report"):
        if res.get(key):
            console.print(f"wrote {res[key]}")


def _print_detection(res: dict) -> None:
    console.print(
        f"[bold]mAP@0.5 {res['map50']:.4f}[/]  mAP@0.5:0.95 {res['map']:.4f}  on {res['n_images']} images, "
        f"{res['n_boxes']} boxes ({res['n_problems']} problems)"
    )
    rows = [
        {
            **p,
            "ap50": "n/a" if p["ap50"] is None else round(p["ap50"], 4),
            "ap": "n/a" if p["ap"] is None else round(p["ap"], 4),
        }
        for p in res["per_class"]
    ]
    table(rows, ["class", "label", "ap50", "ap", "n_gt", "n_pred"], title="per class")
    for p in res["problems"]:
        console.print(f"[yellow]{p['path']}: {p['reason']}[/]")
    for key in ("report", "bad_case_report"):
        if res.get(key):
            console.print(f"wrote {res[key]}")
