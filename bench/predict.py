"""`bushu predict` throughput against `bushu bench` (raw backend, same backend, batch size and threads), same run.

N images are made from the offline photos (bushu.testing.photos: random crops and mirror images of five
real photos, saved as JPEG), and EfficientNet-Lite0 (pretrained, offline) is imported with `bushu import`
unless --artifact is given. Each repeat runs `bushu predict` in 1 process, with --workers 2, and with --ray
(a local Ray started for the run), and each predict run is framed by two `bushu bench` runs (onnxruntime,
batch B, default threads, isolated process): its ratio is taken against their mean, because the load of a
shared machine drifts. Rows are medians over the repeats. `predict items/s` is the rate `bushu predict` reports (from
start to its last row: model load / worker or Ray start, decode + pre-process + inference + writing);
`steady` leaves out everything before the first rows were written; `end to end` also counts the process
start. `ratio` = predict items/s / bench items/s (and the same for steady).

Then a kill-and-resume check: `bushu predict` is killed (SIGKILL) once half of the rows are written,
rerun with the same -o, and the output must hold exactly N rows, none repeated.

    .venv/bin/python bench/predict.py --n 2000 --repeats 2
    .venv/bin/python bench/predict.py --n 200 --repeats 1 --artifact /tmp/lite0   # a smoke run

Writes bench/results/predict.json and bench/results/predict.md.
"""

from __future__ import annotations

import argparse
import json
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
    "bench items/s",
    "predict items/s",
    "ratio",
    "steady items/s",
    "steady ratio",
    "first rows s",
    "end to end s",
    "rows",
    "errors",
    "labels differing from 1 process",
)
MODES = {"local 1 process": [], "local --workers 2": ["--workers", "2"], "--ray (local Ray)": ["--ray"]}


def bushu(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=timeout)


def make_images(out: Path, n: int) -> Path:
    from bushu.testing.photos import PHOTO_CLASSES, write_imagenet_photos

    if not out.is_dir() or sum(1 for _ in out.rglob("*.jpg")) != n:
        write_imagenet_photos(out, per_class=-(-n // len(PHOTO_CLASSES)))
        for extra in sorted(out.rglob("*.jpg"))[n:]:  # exactly n
            extra.unlink()
    return out


def bench_throughput(art: Path, batch: int) -> float:
    proc = bushu(
        "bench", str(art), "--backend", "onnxruntime", "--batch", str(batch), "--duration", "3", "--no-record", "--json"
    )
    if proc.returncode:
        sys.exit(f"bushu bench failed: {proc.stderr}")
    row = next(r for r in json.loads(proc.stdout)["results"] if r["status"] == "ok")
    return float(row["throughput"])


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--artifact", type=Path, help="an image classifier artifact (default: import efficientnet_lite0)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bushu-bench-predict")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated, from: " + ", ".join(MODES))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    art = args.artifact or args.work / "efficientnet_lite0"
    if not (art / "bushu.yaml").is_file() and bushu("import", "efficientnet_lite0", "-o", str(art)).returncode:
        sys.exit("bushu import efficientnet_lite0 failed; pass --artifact ART")
    images = make_images(args.work / f"images_{args.n}", args.n)
    modes = [m.strip() for m in args.modes.split(",")]
    bench, runs = [bench_throughput(art, args.batch)], {m: [] for m in modes}
    print(f"bushu bench {bench[-1]:.1f} items/s", flush=True)
    for rep in range(args.repeats):
        for mode in modes:  # the load of a shared machine drifts: each run is framed by two bench runs
            run = run_predict(art, images, args.work / "out.jsonl", args.batch, MODES[mode])
            bench.append(bench_throughput(art, args.batch))
            run["bench"] = (bench[-2] + bench[-1]) / 2
            runs[mode].append(run)
            print(
                f"repeat {rep + 1}: {mode}: {run['rate']:.1f} items/s ({run['steady']:.1f} steady), "
                f"{run['wall']:.1f} s end to end; bushu bench {bench[-1]:.1f} items/s",
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
                "bench items/s": med(r["bench"] for r in runs[mode]),
                "predict items/s": med(r["rate"] for r in runs[mode]),
                "ratio": med(r["rate"] / r["bench"] for r in runs[mode]),
                "steady items/s": med(r["steady"] for r in runs[mode]),
                "steady ratio": med(r["steady"] / r["bench"] for r in runs[mode]),
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
        f"{args.n} JPEG images (crops and mirror images of 5 offline photos), "
        f"EfficientNet-Lite0 fp32 ONNX on onnxruntime, batch {args.batch}, default threads; "
        f"medians of {args.repeats} repeats; bushu bench items/s, in order: {', '.join(f'{b:.1f}' for b in bench)}",
        "the machine was shared with other jobs (2 cores): compare rows of this table only",
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
