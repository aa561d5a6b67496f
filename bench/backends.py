"""Compare PyTorch eager, ONNX Runtime and OpenVINO (fp32) on resnet18 and mobilenet_v2 in one run.

For each model: batch-1 p50 latency and batch-8 throughput per backend, as medians over ``--rounds``
rounds; in each round every backend runs in its own fresh process, one after the other, so drift on
a shared machine hits all of them alike. Ratios are against torch eager from the same run.

    .venv/bin/python bench/backends.py                       # imports the models with `bushu import`
    .venv/bin/python bench/backends.py --rounds 1 --duration 0.5 --models resnet18   # a smoke run
    .venv/bin/python bench/backends.py --artifact resnet18=path/to/ART               # an existing artifact

Writes bench/results/backends.json and bench/results/backends.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line, write_results  # noqa: E402

MODELS = ("resnet18", "mobilenet_v2")
BACKENDS = ("torch", "onnxruntime", "openvino")
REFERENCE = "torch"


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


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run(args: argparse.Namespace) -> dict:
    from bushu.bench.bench import benchmark
    from bushu.bench.flops import count_flops
    from bushu.envinfo import summary

    given = {k: Path(v) for k, _, v in (a.partition("=") for a in args.artifact)}
    models = list(dict.fromkeys([*filter(None, args.models.split(",")), *given]))
    backends = args.backends.split(",")
    raw, table = [], []
    for model in models:
        art = ensure_artifact(model, args.work, given)
        flops = count_flops(art / "model.onnx")
        per: dict[str, dict[str, list]] = {b: {"p50": [], "thr": [], "rss": [], "cpu": [], "why": []} for b in backends}
        for rnd in range(args.rounds):
            for backend in backends:
                print(f"{model}: round {rnd + 1}/{args.rounds}, {backend}", flush=True)
                rows = benchmark(
                    art,
                    backends=[backend],
                    batch_sizes=(1, 8),
                    threads=(args.threads,),
                    warmup=args.warmup,
                    repeats=args.repeats,
                    duration_s=args.duration,
                    progress=False,
                    record=False,
                )
                for r in rows:
                    raw.append({"model": model, "round": rnd, **{k: v for k, v in r.items() if k != "details"}})
                    acc = per[backend]
                    if r["status"] != "ok":
                        acc["why"].append(f"{r['status']}: {r['reason']}")
                    elif r["batch"] == 1:
                        acc["p50"].append(r["p50_ms"])
                        acc["cpu"].append(r["cpu_ms"])
                    else:
                        acc["thr"].append(r["throughput"])
                    if r.get("peak_rss_mb"):
                        acc["rss"].append(r["peak_rss_mb"])
        ref = per.get(REFERENCE, {})
        ref_p50, ref_thr = median(ref.get("p50", [])), median(ref.get("thr", []))
        for backend in backends:
            acc = per[backend]
            p50, thr = median(acc["p50"]), median(acc["thr"])
            table.append(
                {
                    "model": model,
                    "backend": backend,
                    "p50_ms_b1": p50,
                    "cpu_ms_b1": median(acc["cpu"]),
                    "throughput_b8": thr,
                    "speedup_p50_vs_torch": ref_p50 / p50 if ref_p50 and p50 else None,
                    "throughput_vs_torch": thr / ref_thr if ref_thr and thr else None,
                    "peak_rss_mb": max(acc["rss"]) if acc["rss"] else None,
                    "gflops": flops.flops / 1e9,
                    "params_m": flops.params / 1e6,
                    "status": "ok" if p50 or thr else (acc["why"] or ["no rows"])[0],
                }
            )
    return {
        "command": command_line(),
        "env": summary(),
        "settings": vars(args) | {"work": str(args.work)},
        "raw": raw,
        "table": table,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="zoo names for `bushu import` (comma-separated)")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--artifact", action="append", default=[], metavar="NAME=ART", help="use an existing artifact")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the table gives medians over them")
    p.add_argument("--duration", type=float, default=3.0, help="seconds of timed runs per row and round")
    p.add_argument("--repeats", type=int, default=10, help="and at least this many timed runs")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: each backend's own)")
    p.add_argument("--work", type=Path, default=RESULTS / ".work", help="where imported artifacts are kept")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    res = run(args)
    cols = [
        "model",
        "backend",
        "p50_ms_b1",
        "cpu_ms_b1",
        "throughput_b8",
        "speedup_p50_vs_torch",
        "throughput_vs_torch",
        "peak_rss_mb",
        "gflops",
        "status",
    ]
    env = res["env"]
    notes = [
        f"command: `{res['command']}`",
        f"machine: {env['cpu']}, {env['logical_cores']} logical cores, {env['memory_gb']} GiB, "
        f"ISA {' '.join(env['isa'])}; {env['os']}; versions {env['versions']}",
        f"medians over {args.rounds} round(s) of ≥{args.duration} s / ≥{args.repeats} runs per row; fp32; "
        "wall-clock; each backend in a fresh process; threads: "
        + (str(args.threads) if args.threads else "each backend's default"),
        "p50_ms_b1: batch-1 median latency; throughput_b8: items/s at batch 8; ratios vs torch eager (>1 = faster)",
    ]
    data = {k: v for k, v in res.items() if k != "table"}
    js, md = write_results(
        "backends",
        data,
        res["table"],
        cols,
        "Backends: torch eager vs onnxruntime vs openvino",
        notes,
        out_dir=args.out,
    )
    print(md.read_text())
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
