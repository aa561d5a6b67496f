"""Where `bushu predict`'s time goes in one process: decoding + pre-processing against inference, and how the
two overlap, in this process, variants interleaved (the load of a shared machine drifts).

Each variant runs N images (made as in bench/predict.py) through EfficientNet-Lite0 (onnxruntime, batch B) and
reports images/s (wall clock: moves with the machine's load) and process CPU ms per image, all threads
together (moves much less; on a machine whose cores are all busy, throughput follows it):

- `bench ...`: the raw backend on one ready batch, over and over (what `bushu bench` times), with a 2-thread
  spinning pool (onnxruntime's default here), without spinning, and with 1 thread;
- `decode + pre-process ...`: reading the files alone, through the two-step path every other command uses
  (resize the whole image, crop, float conversion) and through bushu predict's (processing.preprocess_image_fused);
- the pipelines: the earlier bushu predict (two-step pre-processing, the next batch decoded in a thread while a
  spinning 2-thread backend runs this one), the same with the fused pre-processing, then without spinning,
  and the current one (runner.local_plan: two batches at a time, each on its own thread, through one 1-thread
  onnxruntime session).

    .venv/bin/python bench/predict_profile.py --n 320 --repeats 3

Writes bench/results/predict_profile.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402
from predict import arguments, model_and_images  # noqa: E402

from bushu.model.predict import Classifier, prepare_one  # noqa: E402
from bushu.predict.inputs import Item  # noqa: E402
from bushu.predict.runner import Predictor, batches  # noqa: E402

COLUMNS = ("variant", "images/s", "CPU ms per image", "CPU vs bushu bench")


def main() -> None:
    args = arguments(__doc__ or "", n=320, repeats=3).parse_args()
    art, images = model_and_images(args)
    items = [Item(str(p), str(p)) for p in sorted(images.rglob("*.jpg"))]
    res = measure(variants(art, items, args.batch), len(items), args.repeats)
    report(res, len(items), args)


def variants(art: Path, items: list[Item], batch: int) -> dict[str, Callable[[], None]]:
    """The variants by name, each a callable that runs every item once."""
    pred = Predictor(art, threads=2)  # bushu predict's Predictor: fused pre-processing, spinning off
    spinning = Classifier(art, None, threads=2).backend  # onnxruntime's defaults, as bushu bench runs it
    quiet, one = pred.backend, Classifier(art, None, threads=1).backend
    fused = pred.prepare

    def two_step(it: Item) -> np.ndarray:
        return prepare_one(pred.preprocess, it.value)

    x = np.stack([fused(it) for it in items[:batch]])

    def bench(be) -> Callable[[], None]:
        def run() -> None:
            for _ in range(len(items) // batch):
                be.infer({pred.input_name: x})

        return run

    def decode(prepare) -> Callable[[], None]:
        def run() -> None:
            for it in items:
                prepare(it)

        return run

    def prefetch(be, prepare) -> Callable[[], None]:  # the next batch decoded in a thread meanwhile
        def run() -> None:
            pred.backend, pred.prepare = be, prepare
            with ThreadPoolExecutor(1) as pool:
                it = batches(items, batch)
                nxt = pool.submit(pred.prepare_all, next(it))
                while nxt is not None:
                    ready = nxt.result()
                    b = next(it, None)
                    nxt = pool.submit(pred.prepare_all, b) if b else None
                    pred.finish(*ready)

        return run

    def streams(be, prepare, k: int = 2) -> Callable[[], None]:  # k batches at a time, one thread each
        def run() -> None:
            pred.backend, pred.prepare = be, prepare
            with ThreadPoolExecutor(k) as pool:
                list(pool.map(pred.run, list(batches(items, batch))))

        return run

    out = {
        "bench: 2 threads, spinning (bushu bench's default here)": bench(spinning),
        "bench: 2 threads, no spinning": bench(quiet),
        "bench: 1 thread": bench(one),
        "decode + pre-process, two-step": decode(two_step),
        "decode + pre-process, fused": decode(fused),
        "earlier predict: two-step, prefetch thread, spinning 2 threads": prefetch(spinning, two_step),
        "fused, prefetch thread, spinning 2 threads": prefetch(spinning, fused),
        "fused, prefetch thread, 2 threads without spinning": prefetch(quiet, fused),
        "fused, 1 stream x 1 thread (in turn)": streams(one, fused, 1),
        "current predict: fused, 2 streams x 1 thread": streams(one, fused),
    }
    bench(spinning)()  # warm up
    streams(one, fused)()
    return out


def measure(variants: dict[str, Callable[[], None]], n: int, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(images/s, CPU ms per image) of each variant in each repeat, variants interleaved."""
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for rep in range(repeats):
        for name, run in variants.items():
            w0, c0 = time.perf_counter(), time.process_time()
            run()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            res[name].append((n / wall, cpu / n * 1e3))
            print(
                f"repeat {rep + 1}: {name}: {res[name][-1][0]:.1f} images/s, {res[name][-1][1]:.1f} CPU ms/image "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    return res


def report(res: dict[str, list[tuple[float, float]]], n: int, args: argparse.Namespace) -> None:
    med = statistics.median
    ref = med(c for _, c in res["bench: 2 threads, spinning (bushu bench's default here)"])
    rows = [
        {
            "variant": name,
            "images/s": med(r for r, _ in v),
            "CPU ms per image": med(c for _, c in v),
            "CPU vs bushu bench": med(c for _, c in v) / ref,
        }
        for name, v in res.items()
    ]
    js, md = write_results(
        "predict_profile",
        {"n": n, "batch": args.batch, "runs": res},
        rows,
        COLUMNS,
        "bushu predict in one process: where the time goes",
        [
            f"command: `{command_line()}`",
            f"{n} JPEGs per variant and repeat, EfficientNet-Lite0 fp32 ONNX on onnxruntime, batch "
            f"{args.batch}, {os.cpu_count()} cores shared with other jobs; medians of {args.repeats} repeats, "
            "variants interleaved",
        ],
        args.out,
    )
    print(md.read_text())
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
