"""int8 with its fallback search (bushu.optimize.quantize_int8, what `bushu optimize --quantize int8` runs) on
real ImageNet models and offline photos: which attempt is kept, with its agreement, size and speed.

Models: EfficientNet-Lite0 and MobileNetV2 from the zoo (real ImageNet weights, shipped offline).
Calibration (also the validation inputs the gate judges on, as `bushu optimize --calib` does):
- ``imagenet``: crops of the five ImageNet-class photos of bushu.testing.photos (40 images);
- ``mixed``: the same plus photos of no ImageNet class: skimage's camera, text, checkerboard, brick,
  grass (and two crops of each) and 8 lfw faces.
Labelled check: other crops of the same five photos (seed 1, 20 images), top-1 against their ImageNet
label, fp32 vs the kept int8, run by the backend the artifact is for.
``--strict`` adds runs with the gate at 100% agreement, to show the search walking its attempts.

    .venv/bin/python bench/int8_fallback.py                      # 2 models x 2 backends x 2 calibration sets
    .venv/bin/python bench/int8_fallback.py --models mobilenet_v2 --backends onnxruntime --no-speed

Writes bench/results/int8_fallback.json and bench/results/int8_fallback.md (one row per attempt).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results

COLUMNS = (
    "model",
    "backend",
    "calib",
    "gate_floor",
    "attempt",
    "gate",
    "agreement_confident",
    "confident_n",
    "top5_overlap",
    "cosine_mean",
    "size_mb",
    "p50_ms",
    "throughput_b8",
    "kept",
    "labelled_top1_fp32",
    "labelled_top1_int8",
    "labelled_n",
)


def calibration_sets(root: Path) -> dict[str, Path]:
    import shutil

    from PIL import Image
    from skimage import data
    from skimage.data import lfw_subset

    from bushu.testing.photos import write_imagenet_photos

    imagenet = write_imagenet_photos(root / "imagenet", per_class=8, seed=0)
    mixed = root / "mixed"
    shutil.copytree(imagenet, mixed)
    other = mixed / "other"
    other.mkdir()
    for name in ("camera", "text", "checkerboard", "brick", "grass"):
        im = Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")
        im.save(other / f"{name}.png")
        w, h = im.size
        for j, (fx, fy) in enumerate([(0.0, 0.0), (1.0, 1.0)]):
            c = int(min(w, h) * 0.6)
            x, y = int(fx * (w - c)), int(fy * (h - c))
            im.crop((x, y, x + c, y + c)).save(other / f"{name}_{j}.png")
    faces = lfw_subset()[:8]
    for i, f in enumerate(faces):
        Image.fromarray((f * 255).round().astype(np.uint8)).convert("RGB").save(other / f"face_{i}.png")
    return {"imagenet": imagenet, "mixed": mixed}


def labelled_top1(src, kept, labelled: Path, backend: str) -> tuple[float, float, int]:
    from bushu import validate
    from bushu.data.arrays import labelled_arrays

    ds = labelled_arrays(labelled, src, require="accuracy")
    out = src.outputs[0].name
    before = validate.accuracy(validate.run_model(src.model_path, ds.feeds)[out], ds.targets)
    after = validate.accuracy(validate.run_model(kept.model_path, ds.feeds, backend=backend)[out], ds.targets)
    return before, after, len(ds)


def run_one(
    art, calib: Path, backend: str, floor: float, labelled: Path, work: Path, speed: bool, max_attempts: int
) -> list[dict]:
    from bushu.optimize import (
        AccuracyDropError,
        OpenVINOInt8Config,
        StaticInt8Config,
        quantize_int8,
    )

    cfg = (
        OpenVINOInt8Config(calibration=calib, min_top1_agreement=floor)
        if backend == "openvino"
        else StaticInt8Config(calibration=calib, min_top1_agreement=floor)
    )
    base = {"model": art.name, "backend": backend, "calib": calib.name, "gate_floor": floor}
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # NNCF / ORT progress
            kept = quantize_int8(
                art,
                work / f"{art.name}-{backend}-{calib.name}-{floor}",
                cfg,
                measure=speed,
                max_attempts=max_attempts,
                log=lambda m: print(f"  {m}", file=sys.stderr),
            )
    except AccuracyDropError as e:
        print(f"  refused: {e.message}", file=sys.stderr)
        return [
            {
                **base,
                **{k: a.get(k) for k in COLUMNS if k in a},
                "kept": "refused",
                "error": a.get("error"),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            for a in e.best.get("attempts", [])
        ]
    sec = kept.metrics["optimize"]
    fp32, q, n = labelled_top1(art, kept, labelled, backend)
    rows = []
    for a in sec["attempts"]:
        row = {**base, **{k: a.get(k) for k in COLUMNS if k in a}, "error": a.get("error")}
        if a["attempt"] == sec["kept"]:
            row.update(kept="yes", labelled_top1_fp32=fp32, labelled_top1_int8=q, labelled_n=n)
        rows.append(row)
    fp32_row = next(r for r in sec["rows"] if r["model"].startswith("fp32"))
    rows.insert(
        0,
        {
            **base,
            "attempt": "fp32",
            "size_mb": fp32_row.get("size_mb"),
            "p50_ms": fp32_row.get("p50_ms"),
            "throughput_b8": fp32_row.get("throughput_b8"),
            "labelled_top1_fp32": fp32,
            "labelled_n": n,
        },
    )
    rows[-1]["seconds"] = round(time.perf_counter() - t0, 1)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="efficientnet_lite0,mobilenet_v2")
    ap.add_argument("--backends", default="onnxruntime,openvino")
    ap.add_argument("--calib", default="imagenet,mixed")
    ap.add_argument("--floor", type=float, default=0.95, help="gate: top-1 agreement on confident inputs")
    ap.add_argument("--strict", action="store_true", help="also run mobilenet_v2 / mixed with the gate at 1.0")
    ap.add_argument("--max-attempts", type=int, default=8)
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()

    from bushu.import_.importer import import_model
    from bushu.testing.photos import write_imagenet_photos

    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmpd:
        root = Path(tmpd)
        sets = calibration_sets(root / "calib")
        labelled = write_imagenet_photos(root / "labelled", per_class=4, seed=1)
        runs = [
            (m, b, c, args.floor)
            for m in args.models.split(",")
            for b in args.backends.split(",")
            for c in args.calib.split(",")
        ]
        if args.strict:
            runs += [("mobilenet_v2", b, "mixed", 1.0) for b in args.backends.split(",")]
        arts, rows = {}, []
        for m, b, c, floor in runs:
            if m not in arts:
                arts[m] = import_model(m, root / "models" / m)
            print(f"{m} / {b} / {c} / gate {floor}", flush=True)
            got = run_one(arts[m], sets[c], b, floor, labelled, root / "out", not args.no_speed, args.max_attempts)
            for r in got:
                print(
                    "   ",
                    {
                        k: r.get(k)
                        for k in (
                            "attempt",
                            "gate",
                            "agreement_confident",
                            "confident_n",
                            "kept",
                            "labelled_top1_fp32",
                            "labelled_top1_int8",
                        )
                    },
                    flush=True,
                )
            rows += got
    notes = [
        f"command: `{command_line()}`",
        (
            "gate: top-1 agreement with fp32 on the validation inputs where fp32's top-1 probability is >= 0.5 "
            "(confident_n of them), at least gate_floor; fewer than 10 confident inputs: 'cannot tell'"
        ),
        (
            "validation inputs = the calibration images (as `bushu optimize --calib` without --data); "
            "labelled_top1: other crops of the five ImageNet-class photos, % top-1 against their label"
        ),
        (
            "machine shared by ~8 engineers on 2 CPU cores: p50_ms / throughput_b8 are noisy, compare rows of "
            "one run only"
        ),
    ]
    js, md = write_results(
        "int8_fallback", {"command": command_line()}, rows, COLUMNS, "int8 fallback search on real models", notes
    )
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
