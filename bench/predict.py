"""`bushu predict` throughput against `bushu bench` (the raw backend: same backend and batch size), same run.

N images are made from the offline photos (bushu.testing.photos: random crops and mirror images of five
real photos, saved as JPEG), and EfficientNet-Lite0 (pretrained, offline) is imported with `bushu import`
unless --artifact is given (--enlarge K: the photos enlarged K times instead, make_large). Each repeat runs `bushu predict`
in each of --modes: 1 process, --workers 2, --ray (a local Ray started for the run), and, when named,
1 process with --fast-decode; each predict run is framed by two `bushu bench` runs (onnxruntime,
batch B, isolated process, 1 intra-op thread and one per core): its ratio is taken against their mean, because
the load of a shared machine drifts. `bench best` is the better of the two thread counts in each bench run (on
a 2-core machine shared with other jobs a 1-thread session often beats a 2-thread one); `bench all cores` is
the row with one thread per core (onnxruntime's default on a machine without SMT). Rows are medians over
the repeats. `predict items/s` is the rate `bushu predict` reports (from start to its last row: model load /
worker or Ray start, decode + pre-process + inference + writing); `steady` leaves out everything before the
first rows were written; `end to end` also counts the process start. `ratio` = predict items/s / bench best
items/s (and the same for steady); `ratio to all cores` = predict items/s / bench all cores items/s.

Then a kill-and-resume check: `bushu predict` is killed (SIGKILL) once half of the rows are written,
rerun with the same -o, and the output must hold exactly N rows, none repeated.

    .venv/bin/python bench/predict.py --n 2000 --repeats 2
    .venv/bin/python bench/predict.py --n 200 --repeats 1 --artifact /tmp/lite0   # a smoke run
    .venv/bin/python bench/predict.py --n 600 --repeats 2 --enlarge 6 --modes "local 1 process,local --fast-decode"

Writes bench/results/predict.json and bench/results/predict.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, write_results  # noqa: E402

COLUMNS = (
    "mode",
    "batch",
    "bench best items/s",
    "bench best threads",
    "bench all cores items/s",
    "predict items/s",
    "ratio",
    "ratio to all cores",
    "steady items/s",
    "steady ratio",
    "first rows s",
    "end to end s",
    "rows",
    "errors",
    "labels differing from 1 process",
)
MODES = {
    "local 1 process": [],
    "local --workers 2": ["--workers", "2"],
    "--ray (local Ray)": ["--ray"],
    "local --fast-decode": ["--fast-decode"],
}


def bushu(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=timeout)


def make_images(out: Path, n: int) -> Path:
    from bushu.testing.photos import PHOTO_CLASSES, write_imagenet_photos

    if not out.is_dir() or sum(1 for _ in out.rglob("*.jpg")) != n:
        write_imagenet_photos(out, per_class=-(-n // len(PHOTO_CLASSES)))
        for extra in sorted(out.rglob("*.jpg"))[n:]:  # exactly n
            extra.unlink()
    return out


def make_large(out: Path, n: int, factor: int = 3, seed: int = 0) -> Path:
    """N JPEGs: the five offline photos (451x300 to 640x427) enlarged ``factor`` times (Lanczos), then random
    crops (40-100% a side, every other one mirrored), saved at quality 92 (the check sets of --fast-decode).
    Enlarged photos have no detail above the original's: smoother than a camera's."""
    import numpy as np
    from PIL import Image

    from bushu.testing.photos import _photos

    if out.is_dir() and sum(1 for _ in out.glob("*.jpg")) == n:
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = list(_photos().items())
    for i in range(n):
        cls, arr = photos[i % len(photos)]
        img = Image.fromarray(arr)
        big = img.resize((img.width * factor, img.height * factor), Image.LANCZOS)
        s = rng.uniform(0.4, 1.0) if i >= len(photos) else 1.0
        cw, ch = int(big.width * s), int(big.height * s)
        x, y = int(rng.integers(0, big.width - cw + 1)), int(rng.integers(0, big.height - ch + 1))
        crop = big.crop((x, y, x + cw, y + ch))
        if i % 2:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crop.save(out / f"{cls}_{i}.jpg", quality=92)
    return out


CORES = os.cpu_count() or 1


def bench_throughput(art: Path, batch: int) -> dict[int, float]:
    """items/s by intra-op threads (1 and one per core), one `bushu bench` run."""
    threads = sorted({1, CORES})
    proc = bushu(
        "bench",
        str(art),
        "--backend",
        "onnxruntime",
        "--batch",
        str(batch),
        "--threads",
        ",".join(map(str, threads)),
        "--duration",
        "3",
        "--no-record",
        "--json",
    )
    if proc.returncode:
        sys.exit(f"bushu bench failed: {proc.stderr}")
    rows = [r for r in json.loads(proc.stdout)["results"] if r["status"] == "ok"]
    return {int(r["threads"]): float(r["throughput"]) for r in rows}


def framed(before: dict[int, float], after: dict[int, float]) -> dict:
    """The bench figures a predict run is compared with: the mean of the runs before and after it."""
    best = [max(b, key=b.__getitem__) for b in (before, after)]
    return {
        "best": (before[best[0]] + after[best[1]]) / 2,
        "best_threads": "/".join(str(t) for t in sorted(set(best))),
        "all_cores": (before[CORES] + after[CORES]) / 2,
    }


def run_predict(art: Path, images: Path, out: Path, batch: int, extra: list[str]) -> dict:
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = bushu("predict", str(art), str(images), "-o", str(out), "--batch-size", str(batch), "-q", *extra)
    wall = time.perf_counter() - t0
    m = re.search(r"\(([\d.]+) inputs/s(?:; ([\d.]+)/s after the first rows at ([\d.]+) s)?\)", proc.stdout)
    if proc.returncode not in (0, 1) or not m:
        sys.exit(f"bushu predict {' '.join(extra)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {
        "rate": float(m.group(1)),
        "steady": float(m.group(2) or m.group(1)),
        "first_rows_s": float(m.group(3) or 0),
        "wall": wall,
        "rows": rows,
    }


def kill_and_resume(art: Path, images: Path, out: Path, batch: int, n: int) -> dict:
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "bushu",
        "predict",
        str(art),
        str(images),
        "-o",
        str(out),
        "--batch-size",
        str(batch),
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and (not out.exists() or out.read_bytes().count(b"\n") < n // 2):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = out.read_bytes().count(b"\n")
    torn = not out.read_bytes().endswith(b"\n")
    again = bushu("predict", str(art), str(images), "-o", str(out), "--batch-size", str(batch), "-q")
    inputs = [json.loads(line)["input"] for line in out.read_text().splitlines()]
    return {
        "rows_at_kill": at_kill,
        "torn_last_line_at_kill": torn,
        "rerun_exit": again.returncode,
        "rerun_summary": again.stdout.strip(),
        "final_rows": len(inputs),
        "distinct_inputs": len(set(inputs)),
        "expected": n,
        "ok": len(inputs) == len(set(inputs)) == n,
    }


def arguments(doc: str, n: int, repeats: int) -> argparse.ArgumentParser:
    """The options bench/predict.py and bench/predict_profile.py share."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=n, help="images")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--artifact", type=Path, help="an image classifier artifact (default: import efficientnet_lite0)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bushu-bench-predict")
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap


def model_and_images(args: argparse.Namespace) -> tuple[Path, Path]:
    """The artifact (EfficientNet-Lite0 imported once into --work unless --artifact) and the --n images."""
    args.work.mkdir(parents=True, exist_ok=True)
    art = args.artifact or args.work / "efficientnet_lite0"
    if not (art / "bushu.yaml").is_file() and bushu("import", "efficientnet_lite0", "-o", str(art)).returncode:
        sys.exit("bushu import efficientnet_lite0 failed; pass --artifact ART")
    return art, make_images(args.work / f"images_{args.n}", args.n)


def main() -> None:
    ap = arguments(__doc__ or "", n=2000, repeats=2)
    ap.add_argument("--modes", default=",".join(list(MODES)[:3]), help="comma-separated, from: " + ", ".join(MODES))
    ap.add_argument("--enlarge", type=int, default=0, help="K: --n photos enlarged K times (make_large) instead")
    args = ap.parse_args()
    art, images = model_and_images(args)
    if args.enlarge:
        images = make_large(args.work / f"large{args.enlarge}x_{args.n}", args.n, args.enlarge)
    modes = [m.strip() for m in args.modes.split(",")]

    def show(b: dict[int, float]) -> str:
        return ", ".join(f"{v:.1f} ({t} thread{'s' if t > 1 else ''})" for t, v in sorted(b.items()))

    bench, runs = [bench_throughput(art, args.batch)], {m: [] for m in modes}
    print(f"bushu bench items/s: {show(bench[-1])}", flush=True)
    for rep in range(args.repeats):
        for mode in modes:  # the load of a shared machine drifts: each run is framed by two bench runs
            run = run_predict(art, images, args.work / "out.jsonl", args.batch, MODES[mode])
            bench.append(bench_throughput(art, args.batch))
            run["bench"] = framed(bench[-2], bench[-1])
            runs[mode].append(run)
            print(
                f"repeat {rep + 1}: {mode}: {run['rate']:.1f} items/s ({run['steady']:.1f} steady), "
                f"{run['wall']:.1f} s end to end; bushu bench items/s: {show(bench[-1])}",
                flush=True,
            )
    base_labels = {r["input"]: r.get("label") for r in runs[modes[0]][-1]["rows"]}
    rows = []
    for mode in modes:
        last, med = runs[mode][-1]["rows"], statistics.median
        rows.append(
            {
                "mode": mode,
                "batch": args.batch,
                "bench best items/s": med(r["bench"]["best"] for r in runs[mode]),
                "bench best threads": ", ".join(r["bench"]["best_threads"] for r in runs[mode]),
                "bench all cores items/s": med(r["bench"]["all_cores"] for r in runs[mode]),
                "predict items/s": med(r["rate"] for r in runs[mode]),
                "ratio": med(r["rate"] / r["bench"]["best"] for r in runs[mode]),
                "ratio to all cores": med(r["rate"] / r["bench"]["all_cores"] for r in runs[mode]),
                "steady items/s": med(r["steady"] for r in runs[mode]),
                "steady ratio": med(r["steady"] / r["bench"]["best"] for r in runs[mode]),
                "first rows s": med(r["first_rows_s"] for r in runs[mode]),
                "end to end s": med(r["wall"] for r in runs[mode]),
                "rows": len(last),
                "errors": sum("error" in r for r in last),
                "labels differing from 1 process": sum(base_labels.get(r["input"]) != r.get("label") for r in last),
            }
        )
    resume = kill_and_resume(art, images, args.work / "resume.jsonl", args.batch, args.n)
    print(f"kill at half way and resume: {resume}", flush=True)
    notes = [
        f"command: `{command_line()}`",
        f"{args.n} JPEG images ("
        + (
            f"5 offline photos enlarged {args.enlarge}x, crops of 40-100% a side"
            if args.enlarge
            else "crops and mirror images of 5 offline photos"
        )
        + "), "
        f"EfficientNet-Lite0 fp32 ONNX on onnxruntime, batch {args.batch}, `bushu predict` with its default "
        f"threads; medians of {args.repeats} repeats; bushu bench items/s, in order: "
        + "; ".join(show(b) for b in bench),
        f"the machine was shared with other jobs ({CORES} cores): compare rows of this table only",
        f"kill at half way + rerun: {resume['rows_at_kill']} rows at the kill, {resume['final_rows']} rows after "
        f"the rerun, {resume['distinct_inputs']} distinct inputs (expected {resume['expected']}): "
        f"{'OK' if resume['ok'] else 'FAILED'}",
    ]
    js, md = write_results(
        "predict",
        {
            "n": args.n,
            "batch": args.batch,
            "bench": bench,
            "runs": {m: [{k: v for k, v in r.items() if k != "rows"} for r in rs] for m, rs in runs.items()},
            "resume": resume,
        },
        rows,
        COLUMNS,
        "bushu predict throughput vs bushu bench (same run)",
        notes,
        args.out,
    )
    print(md.read_text())
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
