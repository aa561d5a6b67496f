"""DBNet (PP-OCR v4 detector from rapidocr-onnxruntime) through `bushu optimize --quantize int8`, judged by its
decoded text boxes (bushu.detection.textmap), and fp32 vs int8 side by side: box F1 / IoU, size, latency.

    python bench/dbnet_int8.py --workdir /tmp/dbnet [--pages 8] [--photos 6] [--runs 30]
    python bench/dbnet_int8.py --workdir /tmp/dbnet --speed | --held-out      # again on the artifacts built above
    python bench/dbnet_int8.py --workdir /tmp/dbnet --variants minmax,entropy,sensitive   # each int8 variant's figures

Inputs (640x640, ImageNet mean/std, as tests/integration/test_anymodel.py): rendered text pages (Pillow's
bundled font, fixed seed: paragraphs in 4 sizes, some lines grey or on a tinted background), scikit-image's
``text`` and ``page`` images, and photos without text (astronaut, coffee, chelsea, rocket, camera, ...).
Calibration and validation use the same .npz (as the test does). Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TEXT = (
    "the quick brown fox jumps over a lazy dog while markets fell sharply on monday and the server answers "
    "in ten milliseconds a recipe for lemon cake with fresh berries invoice number 4471 total due 128.50 eur "
    "please reset your password before friday chapter seven the river crossing page 12 of 40"
)
WORDS = TEXT.split(" ")


def text_pages(n: int, size: int = 640, seed: int = 0) -> np.ndarray:
    """``n`` rendered text pages, uint8 ``[n, size, size, 3]``."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        bg = tuple(int(v) for v in (255 - rng.integers(0, 40, 3) if k % 3 == 2 else (255, 255, 255)))
        im = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(im)
        font = ImageFont.load_default(size=(14, 18, 24, 32)[k % 4])
        y = int(rng.integers(10, 40))
        while y < size - 40:
            x = int(rng.integers(10, 60))
            line = " ".join(rng.choice(WORDS, int(rng.integers(2, 8))))
            ink = (0, 0, 0) if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(40, 120, 3))
            draw.text((x, y), line, fill=ink, font=font)
            y += int(font.size * rng.uniform(1.6, 2.6))
        out.append(np.asarray(im))
    return np.stack(out)


def skimage_images(names: tuple[str, ...], size: int = 640) -> np.ndarray:
    from PIL import Image
    from skimage import data

    out = []
    for name in names:
        im = np.asarray(getattr(data, name)())
        im = (im * 255).astype(np.uint8) if im.dtype == bool else im
        im = np.stack([im] * 3, -1) if im.ndim == 2 else im[..., :3]
        out.append(np.asarray(Image.fromarray(im).resize((size, size))))
    return np.stack(out)


def normalize(u8: np.ndarray) -> np.ndarray:
    x = u8.astype(np.float32) / 255
    return ((x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)).transpose(0, 3, 1, 2).copy()


def dbnet_onnx() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None:
        sys.exit("pip install --no-deps rapidocr-onnxruntime==1.4.4 (requirements/anymodel-test.txt)")
    return Path(spec.origin).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"


def bushu(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "bushu", *args], capture_output=True, text=True)
    print(f"$ bushu {' '.join(args)}  -> rc {r.returncode}", file=sys.stderr)
    return r


def latency(path: Path, x: np.ndarray, runs: int, threads: int | None) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for _ in range(3):
        s.run(None, {name: x})
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, {name: x})
        t.append(time.perf_counter() - t0)
    return float(np.median(t)) * 1000


def variants(art: Path, sample: Path, which: list[str], names: list[str]) -> list[dict]:
    """Each int8 variant built and judged by the text-box gate (kept even when it fails): its figures."""
    import tempfile

    from bushu.model.artifact import Artifact
    from bushu.optimize.int8_search import SENSITIVE_SHARES, _rank
    from bushu.optimize.quantize import StaticInt8Config, quantize

    a = Artifact.load(art)
    base = StaticInt8Config(calibration=str(sample))
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        cfgs: list[tuple[str, StaticInt8Config]] = []
        for w in which:
            if w == "sensitive":
                ranked = _rank(a, base, tmp, lambda m: None)
                for share in SENSITIVE_SHARES:
                    k = max(1, int(np.ceil(share * len(ranked))))
                    cfgs.append(
                        (
                            f"minmax + {k} of {len(ranked)} most sensitive in float",
                            StaticInt8Config(calibration=str(sample), exclude_nodes=tuple(ranked[:k])),
                        )
                    )
            else:
                cfgs.append((f"{w} calibration", StaticInt8Config(calibration=str(sample), method=w)))
        for i, (label, cfg) in enumerate(cfgs):
            t0 = time.time()
            r = quantize(a, tmp / f"v{i}", cfg, measure=False, keep_failed=True)
            g = r.metrics["optimize"]["validation"]["gate"]
            tb = g["text_boxes"]
            rows.append({
                "variant": label, "gate": g["outcome"], "f1": tb["f1"], "mean_iou": tb["mean_iou"],
                "matched/fp32/int8": [tb["matched"], tb["fp32_boxes"], tb["boxes"]],
                "per_image": {n: [p["f1"], p["matched"], p["fp32_boxes"], p["boxes"]]
                              for n, p in zip(names, tb["per_image"])},
                "size_mb": round(r.model_path.stat().st_size / 1e6, 3), "build_s": round(time.time() - t0, 1),
            })  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def held_out(fp32: Path, int8: Path) -> dict:
    """Box agreement on inputs the int8 model was not calibrated on: 8 pages of another seed, and scikit-image's
    other images (photos, and ``text``/``page`` again for reference)."""
    import onnxruntime as ort

    from bushu.detection.textmap import text_box_agreement

    u8 = np.concatenate([text_pages(8, seed=1), skimage_images(("text", "page", "horse", "coins",
                         "hubble_deep_field", "retina", "logo", "clock"))])  # fmt: skip
    x = normalize(u8)
    maps = {}
    for k, p in (("fp32", fp32), ("int8", int8)):
        s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        maps[k] = np.concatenate([s.run(None, {"x": x[i : i + 1]})[0] for i in range(len(x))])
    return text_box_agreement(maps["fp32"], maps["int8"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-attempts", default="8")
    ap.add_argument("--speed", action="store_true", help="only size and latency of WORKDIR/art vs WORKDIR/int8")
    ap.add_argument("--held-out", action="store_true", help="only the held-out figures of WORKDIR/int8")
    ap.add_argument("--variants", default=None, help="comma-separated: minmax, entropy, percentile, sensitive")
    a = ap.parse_args()
    w = a.workdir
    w.mkdir(parents=True, exist_ok=True)
    photos = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")[: a.photos]
    u8 = np.concatenate([text_pages(a.pages), skimage_images(("text", "page")), skimage_images(photos)])
    names = [f"page{i}" for i in range(a.pages)] + ["skimage.text", "skimage.page"] + [f"photo.{p}" for p in photos]
    np.savez(w / "sample.npz", x=normalize(u8))
    art, q = w / "art", w / "int8"
    if not (art / "bushu.yaml").exists():
        r = bushu("import", str(dbnet_onnx()), "-o", str(art), "--input", "x:1x3x640x640")
        assert r.returncode == 0, r.stderr[-2000:]
    if a.speed:
        print(json.dumps(speed(art / "model.onnx", q / "model.onnx", normalize(u8[:1]), a.runs, a.threads)))
        return
    if a.held_out:
        print(json.dumps(held_out(art / "model.onnx", q / "model.onnx")))
        return
    if a.variants:
        print(json.dumps({"images": names, "variants": variants(art, w / "sample.npz", a.variants.split(","), names)}))
        return
    t0 = time.time()
    r = bushu(
        "optimize", str(art), "-o", str(q), "--quantize", "int8", "--sample", str(w / "sample.npz"),
        "--no-bench", "--no-report", "--max-attempts", a.max_attempts,
    )  # fmt: skip
    secs = time.time() - t0
    print(r.stdout[-6000:], r.stderr[-6000:], sep="\n", file=sys.stderr)
    line: dict = {"optimize_rc": r.returncode, "optimize_s": round(secs, 1), "images": names}
    if r.returncode == 0:
        import yaml

        meta = yaml.safe_load((q / "bushu.yaml").read_text())["metrics"]["optimize"]
        gate = meta["validation"]["gate"]
        line |= {
            "kept": meta.get("kept"),
            "attempts": [
                {k: t.get(k) for k in ("attempt", "gate", "detail", "error")} for t in meta.get("attempts", [])
            ],
            "text_boxes": dict(gate["text_boxes"]),
            "cosine_min": meta["validation"]["outputs"]["sigmoid_0.tmp_0"]["cosine_min"],
        }
        line["held_out"] = held_out(art / "model.onnx", q / "model.onnx")
        line |= speed(art / "model.onnx", q / "model.onnx", normalize(u8[:1]), a.runs, a.threads)
    print(json.dumps(line))


def speed(fp32: Path, int8: Path, x1: np.ndarray, runs: int, threads: int | None) -> dict:
    """Size and batch-1 latency, fp32 and int8 interleaved in one process (3 rounds of ``runs``): medians."""
    lat: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(3):
        for k, p in (("fp32", fp32), ("int8", int8)):
            lat[k].append(latency(p, x1, runs, threads))
    p50 = {k: float(np.median(v)) for k, v in lat.items()}
    return {
        "size_mb": {"fp32": round(fp32.stat().st_size / 1e6, 3), "int8": round(int8.stat().st_size / 1e6, 3)},
        "p50_ms_batch1": {k: round(v, 2) for k, v in p50.items()},
        "p50_ms_rounds": {k: [round(t, 1) for t in v] for k, v in lat.items()},
        "speedup": round(p50["fp32"] / p50["int8"], 3),
        "size_ratio": round(int8.stat().st_size / fp32.stat().st_size, 3),
    }


if __name__ == "__main__":
    main()
