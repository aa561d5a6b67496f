"""The torch backend against ``model(x)`` timed directly in PyTorch, and against ONNX Runtime, in one process.

Per batch size: median latency of the source module called directly (inference_mode), the torch backend
(default: the rebuilt module run eagerly), the torch backend on the exported program (``mode="exported"``),
and onnxruntime on the artifact's ONNX model. Rounds interleave the four so drift hits all alike.

    .venv/bin/python bench/torch_backend.py                          # efficientnet_lite0, batches 1 and 8
    .venv/bin/python bench/torch_backend.py --model mobilenet_v2 --rounds 3 --iters 5   # a quicker run

Writes bench/results/torch_backend.json and bench/results/torch_backend.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results

from bushu.import_.importer import import_model
from bushu.model import zoo
from bushu.runtime import load_backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10, help="timed calls per runner per round")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-torch-"))
    art = import_model(args.model, work / args.model)
    module, _ = zoo.build(args.model)
    module.eval()
    eager = load_backend(art.file("reference"), "torch")
    exported = load_backend(art.file("reference"), "torch", mode="exported")
    ort = load_backend(art.path / art.model_file, "onnxruntime")
    name = art.inputs[0].name

    def direct(x):
        with torch.inference_mode():
            module(torch.from_numpy(x))

    runners = {
        "model(x)": direct,
        "torch backend (eager)": lambda x: eager.infer({name: x}),
        "torch backend (exported program)": lambda x: exported.infer({name: x}),
        "onnxruntime": lambda x: ort.infer({name: x}),
    }
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        x = np.random.default_rng(0).standard_normal((batch, *art.inputs[0].shape[1:])).astype(np.float32)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for f in runners.values():  # warm up
            f(x)
        for _ in range(args.rounds):
            for k, f in runners.items():
                for _ in range(args.iters):
                    t = time.perf_counter()
                    f(x)
                    times[k].append((time.perf_counter() - t) * 1000)
        base = statistics.median(times["model(x)"])
        for k, ts in times.items():
            med = statistics.median(ts)
            rows.append({"batch": batch, "runner": k, "median_ms": round(med, 2), "vs_model(x)": round(med / base, 2)})
            print(rows[-1], flush=True)
    notes = [
        (
            f"model {args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{args.rounds} rounds x {args.iters} calls per runner, medians; one process, rounds interleaved"
        ),
        f"torch backend describe(): eager {eager.describe()['runs']!r}, exported {exported.describe()['runs']!r}",
        "machine shared with other jobs: absolute times are noisy, compare ratios within a batch",
        f"command: {command_line()}",
    ]
    print(
        "\n".join(
            f"md/json: {p}"
            for p in write_results(
                "torch_backend",
                {"model": args.model, "torch": torch.__version__, "threads": torch.get_num_threads()},
                rows,
                ["batch", "runner", "median_ms", "vs_model(x)"],
                "torch backend vs model(x) and onnxruntime",
                notes,
            )
        )
    )


if __name__ == "__main__":
    main()
