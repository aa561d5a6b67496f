"""`bushu export --format all` on resnet18 (random weights) and EfficientNet-Lite0 (pretrained, offline).

For each model: every format that can work here, with its size, parity against the artifact's ONNX
model (max abs, top-1 agreement on the same inputs) and batch-1 p50 latency on its own runtime.
p50 figures come from one pass on a shared machine: compare them within a model's rows only.

    .venv/bin/python bench/export.py                          # imports the models with `bushu import`
    .venv/bin/python bench/export.py --models resnet18 --formats onnx,ncnn   # a smoke run
    .venv/bin/python bench/export.py --artifact efficientnet_lite0=/tmp/exp/lite0
    .venv/bin/python bench/export.py --models efficientnet_lite0 --photos \
        --formats onnx,openvino,openvino-int8,tflite,tflite-int8,ncnn,ncnn-int8,mnn,mnn-int8   # int8 rows

``--photos`` calibrates and validates on real labelled photos (scikit-image/-learn's, a few crops
each; bushu.testing.photos), so int8 rows get top-1 agreement and accuracy; ``--data DIR`` uses
your own folder. Without either, int8 formats are skipped rows (they need calibration images).

Writes bench/results/export.json and bench/results/export.md (and the exports under --work).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, write_results  # noqa: E402

MODELS = ("resnet18", "efficientnet_lite0")
COLUMNS = (
    "model",
    "format",
    "size_mb",
    "precision",
    "backend",
    "max_abs",
    "top1_agreement",
    "accuracy",
    "accuracy_onnx",
    "p50_ms",
    "status",
    "reason",
)


def ensure_artifact(model: str, work: Path, given: dict[str, Path]) -> Path:
    if model in given:
        return given[model]
    art = work / model
    if (art / "bushu.yaml").is_file():
        return art
    print(f"bushu import {model} -o {art}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "bushu", "import", model, "-o", str(art)], text=True)
    if proc.returncode != 0:
        sys.exit(f"`bushu import {model}` failed (exit {proc.returncode}); pass --artifact {model}=ART instead")
    return art


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--formats", default="all")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="threads per runtime for validation and timing")
    ap.add_argument("--work", type=Path, default=None, help="where artifacts and exports go (default: a temp dir)")
    ap.add_argument("--artifact", action="append", default=[], metavar="MODEL=ART")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--data", type=Path, default=None, help="calibration/validation images (folder per class)")
    ap.add_argument("--photos", action="store_true", help="use the bundled real photos as --data (ImageNet models)")
    ap.add_argument("--per-class", type=int, default=8, help="views per photo with --photos")
    args = ap.parse_args()
    given = {k: Path(v) for k, _, v in (a.partition("=") for a in args.artifact)}

    from bushu.export import export

    work = args.work or Path(tempfile.mkdtemp(prefix="bushu-bench-export-"))
    data = args.data
    if args.photos and data is None:
        from bushu.testing.photos import write_imagenet_photos

        data = write_imagenet_photos(work / "photos", per_class=args.per_class)
    rows = []
    for model in [m for m in args.models.split(",") if m]:
        art = ensure_artifact(model, work, given)
        print(f"bushu export {art} --format {args.formats} -o {work / (model + '-export')}", flush=True)
        for r in export(
            art,
            args.formats,
            work / f"{model}-export",
            samples=args.samples,
            threads=args.threads,
            data=data,
            on_row=lambda r: print(f"  {r['format']}: {r['status']}", flush=True),
        ):
            rows.append({"model": model, **r})
    inputs = (
        f"{args.samples}+ images from {data} (32 at least when int8 formats run)"
        if data
        else f"{args.samples} random inputs"
    )
    notes = [
        f"command: `{command_line()}`",
        f"parity: {inputs}, same for the exported model (on its runtime) and the source "
        "ONNX model (ONNX Runtime); fp32 formats run in fp32 (OpenVINO f32 hint, ncnn fp16 off)",
        "int8 rows: calibrated on up to 100 images of --data; judged by top-1 agreement with the fp32 model "
        "(>= 0.9 where fp32 is confident) and accuracy (accuracy_onnx: the fp32 model's) on labelled data, "
        "not by max_abs",
        f"p50_ms: batch 1, median of 5-50 runs (about 1 s) after 2 warm-up runs, {args.threads} thread(s) per "
        "runtime; one pass on a shared 2-core machine: compare within one model only",
        "status: ok = validated; exported = written, no runtime here; skipped/error say why",
    ]
    js, md = write_results(
        "export", {"work": str(work)}, rows, COLUMNS, "bushu export: formats × size × parity × latency", notes, args.out
    )
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
