"""JPEG DCT-domain downscaling (`bushu predict --fast-decode`, processing.jpeg_draft) against the exact decode.

Two image sets, each run through bushu predict's pre-processing both ways (the fused resize + crop after a full
decode, and after `Image.draft`), then through the model (batch B):

- `bench images`: the --n JPEGs bench/predict.py makes (crops of the 300-640 px offline photos);
- `enlarged Kx`: for each K of --enlarge, --large JPEGs (bench/predict.py make_large: the five offline photos
  enlarged K times, then crops of 40-100% a side; 360-1,920 px a side for 3x, 720-3,840 for 6x). Enlarged
  photos have no detail above the original's, so they are smoother than a camera's: a check set, not a proof.

Variants: the exact decode (bushu predict's default), draft with gap 2 (processing.DRAFT_GAP: the decoded
image stays at least twice the size the resize needs; what --fast-decode does), and draft with gap 1 (down
to the resize's size itself: the most CPU saved). Reports, per set and variant: how many images draft
scaled (and by how much), top-1 agreement with the exact decode, the largest difference of any softmax score
from the exact decode's, and decode + pre-process CPU ms per image (thread CPU time, medians of --repeats
interleaved passes).

    .venv/bin/python bench/predict_draft.py --n 320 --large 240 --enlarge 3,6 --repeats 3

Writes bench/results/predict_draft.json and .md.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402
from predict import arguments, make_large, model_and_images  # noqa: E402

from bushu.model.predict import Classifier, prepare_one  # noqa: E402
from bushu.model.processing import jpeg_draft, preprocess_image_fused, softmax  # noqa: E402

COLUMNS = (
    "images",
    "variant",
    "n",
    "draft scales",
    "top-1 agreement",
    "max score difference",
    "CPU ms per image",
    "CPU saved",
)
GAPS = (2, 1)  # processing.DRAFT_GAP (what --fast-decode does), then drafting down to the resize's size itself


def cpu_ms(fn, paths: list[Path]) -> float:
    t0 = time.thread_time()
    for p in paths:
        fn(p)
    return (time.thread_time() - t0) * 1000 / len(paths)


def compare(clf: Classifier, paths: list[Path], batch: int, repeats: int) -> list[dict]:
    """The exact path, then each gap of GAPS: one row each."""
    from PIL import Image

    pp = clf.pipeline.pp

    def exact(p: Path) -> np.ndarray:
        return prepare_one(pp, str(p), fused=True)

    def drafted(gap: int):
        def run(p: Path) -> np.ndarray:
            with Image.open(p) as im:
                jpeg_draft(im, pp, gap)
                im.load()
                return preprocess_image_fused(im, pp)

        return run

    variants = {"exact decode": exact, **{f"draft, gap {g}": drafted(g) for g in GAPS}}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):  # interleaved: the load of a shared machine drifts
        for v, fn in variants.items():
            times[v].append(cpu_ms(fn, paths))
    name, out = clf.pipeline.input_name, clf.backend.outputs[0].name

    def probs(fn, chunk: list[Path]) -> np.ndarray:
        return softmax(np.asarray(clf.backend.infer({name: np.stack([fn(p) for p in chunk])})[out], np.float64))

    base = np.concatenate([probs(exact, paths[i : i + batch]) for i in range(0, len(paths), batch)])
    rows = []
    for v, fn in variants.items():
        probs_v = (
            base
            if fn is exact
            else np.concatenate([probs(fn, paths[i : i + batch]) for i in range(0, len(paths), batch)])
        )
        scales: Counter = Counter()
        for p in paths:
            with Image.open(p) as im:
                scales[1 if fn is exact else jpeg_draft(im, pp, GAPS[list(variants).index(v) - 1])] += 1
        t = statistics.median(times[v])
        rows.append(
            {
                "variant": v,
                "n": len(paths),
                "draft scales": ", ".join(f"1/{s}: {c}" for s, c in sorted(scales.items())),
                "top-1 agreement": f"{int((probs_v.argmax(-1) == base.argmax(-1)).sum())}/{len(paths)}",
                "max score difference": round(float(np.abs(probs_v - base).max()), 4),
                "CPU ms per image": round(t, 2),
                "CPU saved": f"{1 - t / statistics.median(times['exact decode']):.0%}",
                "times": times[v],
            }
        )
    return rows


def main() -> None:
    ap = arguments(__doc__ or "", n=320, repeats=3)
    ap.add_argument("--large", type=int, default=240, help="JPEGs in each enlarged check set")
    ap.add_argument("--enlarge", default="3,6", help="comma-separated enlargement factors, one check set each")
    args = ap.parse_args()
    art, images = model_and_images(args)
    clf = Classifier(art, None, threads=1)
    rows = []
    sets = [("bench images (300-640 px)", images)] + [
        (f"enlarged {k}x", make_large(args.work / f"large{k}x_{args.large}", args.large, k))
        for k in map(int, args.enlarge.split(","))
    ]
    for label, folder in sets:
        for res in compare(clf, sorted(folder.rglob("*.jpg")), args.batch, args.repeats):
            print(label, {k: v for k, v in res.items() if k != "times"}, flush=True)
            rows.append({"images": label, **res})
    notes = [
        f"command: `{command_line()}`",
        f"EfficientNet-Lite0 fp32 on onnxruntime (1 thread), batch {args.batch}; CPU ms: thread CPU time of "
        f"decode + pre-process (bushu predict's fused path), medians of {args.repeats} interleaved passes",
        "max score difference: the largest |softmax score difference| over all images and classes",
    ]
    js, md = write_results(
        "predict_draft",
        {"rows": rows},
        [{k: v for k, v in r.items() if k != "times"} for r in rows],
        COLUMNS,
        "JPEG draft decoding (--fast-decode) against the exact decode",
        notes,
        args.out,
    )
    print(md.read_text())
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
