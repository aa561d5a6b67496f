"""`bushu export ART --format F[,F...] -o DIR`: many formats, each checked against the artifact's ONNX model."""

from __future__ import annotations

from pathlib import Path

import click

from ._inputs import input_options
from ._output import console, print_json, table

COLUMNS = (
    "format",
    "file",
    "size_mb",
    "max_abs",
    "top1_agreement",
    "accuracy",
    "map50",
    "box_agreement",
    "p50_ms",
    "shapes",
    "status",
    "reason",
)


@click.command("export")
@click.argument("artifact", type=click.Path(path_type=Path), required=False)
@click.option(
    "-f",
    "--format",
    "formats",
    multiple=True,
    metavar="F[,F...]",
    help="Formats to write (comma-separated, repeatable), or 'all'. See --list.",
)
@click.option(
    "-o", "--out", type=click.Path(path_type=Path), help="Directory for DIR/<format>/ artifacts and the report."
)
@click.option("--opset", type=int, help="ONNX opset for the onnx formats (default: the artifact's).")
@click.option("--samples", default=8, show_default=True, help="Inputs each export is validated on.")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Validate on these images (a folder, or one sub-folder per class for accuracy) "
    "instead of random inputs; the int8 formats also calibrate on them. A detector is judged by "
    "its boxes: mAP@0.5 on a COCO/YOLO/VOC dataset, else box agreement with fp32.",
)
@click.option(
    "--calib-size",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="Images from --data the int8 formats calibrate on.",
)
@click.option("--no-bench", is_flag=True, help="Skip the batch-1 latency measurement.")
@click.option(
    "--threads",
    default="1",
    show_default=True,
    help="Threads for every runtime while validating and timing; 'auto' = each runtime's default.",
)
@click.option("--timeout", default=900.0, show_default=True, help="Seconds allowed per format.")
@click.option("--list", "list_", is_flag=True, help="List the formats, what they need and whether they run here.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@input_options
def command(
    artifact: Path | None,
    formats: tuple[str, ...],
    out: Path | None,
    opset: int | None,
    samples: int,
    data: Path | None,
    calib_size: int,
    no_bench: bool,
    threads: str,
    timeout: float,
    list_: bool,
    as_json: bool,
    inputs,
) -> None:
    """Export artifact ART to deployment formats under DIR, validate each, and print one table.

    \b
    bushu export ART --format onnx,openvino,ncnn,mnn,tflite -o exported/
    bushu export ART --format all -o exported/       # every format that can work here; skipped ones say why
    bushu export --list

    Each format is written as a bushu artifact DIR/<format>/, run with its runtime on the same inputs
    as ONNX Runtime runs ART (fp32 formats forced to fp32), and timed at batch 1. The table is saved
    as DIR/export.json and DIR/export.md; converter output goes to DIR/logs/<format>.log.
    """
    from ..errors import BushuError, UserInputError
    from ..export import FORMATS, export

    if list_:
        listing = [f.row() for f in FORMATS.values()]
        if as_json:
            print_json(listing)
        else:
            table(
                listing,
                ["format", "suffix", "precision", "runs_here", "in_all", "needs", "description"],
                title="bushu export formats",
            )
        return
    if artifact is None or not formats or out is None:
        raise UserInputError(
            "bushu export needs ART, --format and -o",
            hint="bushu export ART --format onnx,ncnn -o DIR   (or: bushu export --list)",
        )
    quiet = as_json

    def started(name: str) -> None:
        if not quiet:
            console.print(f"[dim]exporting {name}...[/]")

    def done(row: dict) -> None:
        if not quiet:
            colour = {"ok": "green", "exported": "cyan", "skipped": "yellow"}.get(row["status"], "red")
            console.print(
                f"  [{colour}]{row['status']}[/] {row['format']}"
                + (f": {row['reason']}" if row.get("reason") and row["status"] != "ok" else "")
            )

    if threads != "auto" and not threads.isdigit():
        raise UserInputError(f"--threads {threads!r} is not a positive integer or 'auto'")
    rows = export(
        artifact,
        list(formats),
        out,
        samples=samples,
        data=data,
        bench=not no_bench,
        opset=opset,
        inputs=inputs,
        threads=None if threads == "auto" else int(threads),
        timeout=timeout,
        calib_size=calib_size,
        on_start=started,
        on_row=done,
    )
    if as_json:
        print_json({"out": str(out), "rows": rows})
    else:
        cols = [c for c in COLUMNS if c in ("format", "status") or any(r.get(c) is not None for r in rows)]
        cols = [c for c in cols if c not in ("file", "reason")]  # long: printed under the table
        table(rows, cols, title=f"bushu export → {out}")
        for r in rows:
            where = _short(r.get("file"), out)
            if where or r.get("reason"):
                console.print(f"  {r['format']}: " + "; ".join(x for x in (where, r.get("reason")) if x))
        console.print(f"saved {out / 'export.json'} and {out / 'export.md'}")
        ok = next((r for r in rows if r["status"] == "ok" and r.get("backend")), None)
        if ok:
            console.print(f"next: bushu bench {out / ok['format']} --backend {ok['backend']}")
    bad = [r for r in rows if r["status"] in ("error", "mismatch")]
    if bad:
        raise BushuError(
            f"{len(bad)} of {len(rows)} format(s) failed: " + ", ".join(f"{r['format']} ({r['status']})" for r in bad),
            hint=f"see the reason column and the logs in {out / 'logs'}",
        )


def _short(path: str | None, out: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return path
