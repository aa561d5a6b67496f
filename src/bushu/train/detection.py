"""`bushu train` on detection data (COCO JSON, YOLO txt + data.yaml, Pascal VOC XML): a few dozen boxed images
-> a detector artifact that eval, optimize, export, serve (``:detect``) and package use like any other.

    read + check    -> bushu.data.detection reads any of the three layouts; the data check lists every
                       problem with its file, drops what is safe (boxes clipped to the image, boxes of no area)
                       and refuses what is not (see ``check_detection_data``), before any training
    split           -> a held-back test split (``val_fraction``) that the search never sees, for the report;
                       a validation split of the rest that the search optimises (mAP@0.5)
    features        -> the frozen backbone's stride-16 map of each training image, plain and in ``VIEWS - 1``
                       box-aware augmented views (scale/crop jitter, flip, colour, and ``PASTE`` box crops of
                       other training images pasted on: copy-paste), cached per (backbone, input size) under
                       WORK/detfeatures
    search          -> Optuna over backbone x input size x learning rate (resumable SQLite study, ``--jobs``),
                       each trial trains the head and fine-tunes the backbone's stride-32 blocks (batch norm
                       frozen, ``TOP_LR`` of the head's learning rate; bushu.train.detect_model) on the cached maps
    export          -> backbone + head + decode as one ONNX graph in the Ultralytics YOLOv8 layout, names and
                       imgsz in its metadata: the import path (bushu.import_.detection) records the YOLO decoder
    report          -> mAP@0.5, mAP@0.5:0.95, per-class AP, PR curves and bad cases on the held-back split
                       (bushu.detection.evaluation / report, the same code as `bushu eval`)
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.detection import DetectionDataset, DetectionSample, read_detection_dataset
from ..errors import UserInputError
from . import TrainConfig
from .detect_model import TOP_LR
from .runner import Clock, progress_bar

__all__ = ["DetectionCheck", "check_detection_data", "is_detection_data", "split_detection", "train_detection"]

MODEL_FILE = "model.onnx"
REPORT_FILE = "report.html"
BAD_CASES_FILE = "report.bad_cases.html"
DEFAULT_SIZES = (256, 320)  # input sizes searched (multiples of 32)
VIEWS = 3  # per training image: the plain letterboxed view + this many - 1 augmented ones
PASTE = (1, 3)  # copy-paste: each augmented view gets this many (min, max) objects of other training images
MIN_SIDE = 16  # an image whose shorter side is below this is refused
HEAD_WIDTH = 64
EPOCHS = 60
EVAL_EVERY = 5
BATCH = 16
ATOL = 1e-3  # export parity on boxes (pixels) and scores


def is_detection_data(path: Path) -> bool:
    """True for a folder (or .json / data.yaml) in one of the detection layouts bushu reads."""
    from ..data.detection import detect_format

    try:
        detect_format(path)
        return True
    except UserInputError:
        return False


# -- data check ---------------------------------------------------------------------------------------------
@dataclass
class DetectionCheck:
    format: str
    classes: list[str]
    boxes: dict[str, int]  # per class
    images: int
    negatives: int  # images without boxes (kept: they teach the background)
    problems: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason", "action"}
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "classes": self.classes,
            "boxes": self.boxes,
            "images": self.images,
            "negatives": self.negatives,
            "n_problems": len(self.problems),
            "problems": self.problems,
            "warnings": self.warnings,
        }


def check_detection_data(ds: DetectionDataset, input_size: int) -> DetectionCheck:
    """List every problem with its file; raise a UserInputError listing the ones training cannot go past.

    Fixed (listed, training goes on): a box outside the image (clipped by the reader), a box of no area (left
    out), an image that does not decode (left out), an image without boxes (a negative, counted). Refused: a
    class name that differs between files (unknown to the class list, or the same name in another case), a
    class with fewer than two boxes (one to train on, one to validate), an image too small for the input size.
    """
    problems, refuse = [], []
    for p in ds.problems:
        r = p.reason
        unsafe = "is not in" in r or "is not one of" in r or "is not among" in r
        action = "refused" if unsafe else ("clipped" if "clipped" in r else "left out")
        problems.append({"path": p.path, "reason": r, "action": action})
        if unsafe:
            refuse.append(f"{p.path}: {r}")
    folded: dict[str, list[str]] = {}
    for c in ds.classes:
        folded.setdefault(c.strip().lower().replace("-", "_").replace(" ", "_"), []).append(c)
    for names in folded.values():
        if len(names) > 1:
            msg = f"class names {', '.join(map(repr, names))} differ only in case or spelling between files"
            problems.append({"path": str(ds.root), "reason": msg, "action": "refused"})
            refuse.append(f"{ds.root}: {msg}; use one name")
    counts = ds.counts()
    for c, n in counts.items():
        if n < 2:
            msg = f"class {c!r} has {n} box{'es' if n != 1 else ''}: at least 2 are needed (one to train, one to validate)"
            problems.append({"path": str(ds.root), "reason": msg, "action": "refused"})
            refuse.append(msg)
    warnings = []
    small = 0
    for s in ds.samples:
        if min(s.width, s.height) < MIN_SIDE or max(s.width, s.height) * 4 < input_size:
            msg = (
                f"the {s.width}x{s.height} image is too small for the {input_size} px input (it would be scaled "
                f"up more than 4x; the shorter side must be {MIN_SIDE} px at least)"
            )
            problems.append({"path": str(s.image), "reason": msg, "action": "refused"})
            refuse.append(f"{s.image}: {msg}")
        elif max(s.width, s.height) < input_size:
            small += 1
    if small:
        warnings.append(f"{small} image(s) are smaller than the {input_size} px input and are scaled up")
    negatives = sum(1 for s in ds.samples if len(s.boxes) == 0)
    if negatives == len(ds.samples):
        refuse.append(f"no image of {ds.root} has a box")
    if refuse:
        raise UserInputError(
            f"the detection data cannot train a detector ({len(refuse)} problem(s)):\n  "
            + "\n  ".join(refuse[:20])
            + (f"\n  ... and {len(refuse) - 20} more" if len(refuse) > 20 else ""),
            hint="fix the annotations (one class list for all files, two boxes per class at least, "
            "images larger than a quarter of --image-size) and run again",
        )
    return DetectionCheck(ds.format, list(ds.classes), counts, len(ds.samples), negatives, problems, warnings)


def split_detection(
    samples: list[DetectionSample], n_classes: int, test_fraction: float, val_fraction: float, seed: int
) -> tuple[list, list, list]:
    """(train, val, test) images, shuffled with ``seed``; every class keeps a box in train where it can."""
    rng = np.random.default_rng(seed)
    order = [samples[i] for i in rng.permutation(len(samples))]
    n_test = max(1, round(test_fraction * len(order)))
    n_val = max(1, round(val_fraction * (len(order) - n_test)))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    for c in range(n_classes):
        if any(c in s.classes for s in train):
            continue
        for pool in (val, test):
            donor = next((s for s in pool if c in s.classes), None)
            if donor is not None and len(pool) > 1:
                pool.remove(donor)
                train.append(donor)
                break
    if not train:
        raise UserInputError(
            f"{len(samples)} images are too few to split into train, validation and test",
            hint="add images (20 per class is a good start)",
        )
    return train, val, test


# -- cached feature maps --------------------------------------------------------------------------------------
def _fingerprint(samples: list[DetectionSample]) -> str:
    h = hashlib.sha1()
    for s in samples:
        st = s.image.stat()
        h.update(f"{s.image}|{st.st_size}|{st.st_mtime_ns}|{s.boxes.tobytes().hex()}|{s.classes.tolist()}".encode())
    return h.hexdigest()[:16]


def _views(samples, size: int, views: int, seed: int):
    """(images [N, 3, size, size] in [0, 1], targets (cls [N, A], box [N, A, 4])) of every view."""
    from PIL import Image

    from ..model.processing import fit_image, preprocess_image
    from .detect_model import assign, augment_view, cell_centers, letterbox_boxes, object_pool, paste_objects

    pp = input_preprocess(size)
    flat = replace(pp, params={})
    centers, strides = cell_centers(size)
    rng = np.random.default_rng(seed)

    def decoded():  # one training image at a time: the pool keeps only its crops
        for s in samples:
            with Image.open(s.image) as im:
                yield im.convert("RGB")

    pool = []
    if views > 1 and PASTE:
        pool = object_pool(decoded(), [s.boxes for s in samples], [s.classes for s in samples], size)
    for s in samples:
        with Image.open(s.image) as im:
            img = im.convert("RGB")
        for v in range(views):
            if v == 0:
                canvas, t = fit_image(img, pp)
                boxes, classes = letterbox_boxes(s.boxes, t), s.classes
            else:
                canvas, boxes, classes = augment_view(img, s.boxes, s.classes, size, rng)
                n = int(rng.integers(PASTE[0], PASTE[1] + 1)) if PASTE else 0
                canvas, boxes, classes = paste_objects(canvas, boxes, classes, pool, rng, n)
            yield preprocess_image(canvas, flat), assign(boxes, classes, centers, strides)


def feature_maps(name: str, size: int, samples, views: int, cache: Path, seed: int, progress=None) -> dict[str, Any]:
    """{"f4" (the frozen stride-16 map, float16), "cls", "box", "seconds", "cached"} for every view of ``samples``
    (the stride-32 blocks are fine-tuned, so they run in training, on these maps)."""
    import torch

    from .detect_model import backbone_levels

    key = hashlib.sha1(json.dumps([name, size, views, seed, _fingerprint(samples), 3, PASTE]).encode()).hexdigest()[:16]
    path = cache / f"{name}-{size}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {**{k: z[k] for k in z.files}, "cached": True, "seconds": float(z["seconds"])}
    t0 = time.perf_counter()
    c4, _, _, _ = backbone_levels(name)
    from .detect_model import MEAN, STD

    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    f4s, clss, boxes = [], [], []
    batch: list[np.ndarray] = []

    def flush():
        with torch.no_grad():
            f4s.append(c4((torch.from_numpy(np.stack(batch)) - mean) / std).half().numpy())
        if progress:
            progress(len(batch))
        batch.clear()

    for x, (cls, box) in _views(samples, size, views, seed):
        batch.append(x)
        clss.append(cls)
        boxes.append(box)
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    out = {
        "f4": np.concatenate(f4s),
        "cls": np.stack(clss),
        "box": np.stack(boxes),
        "seconds": np.float64(time.perf_counter() - t0),
    }
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return {**out, "cached": False}


def letterbox_transform(width: int, height: int, size: int) -> tuple[float, float, float, float, int, int]:
    """fit_image's letterbox transform of a width x height image (+ its size): what the decoder maps boxes back with."""
    s = min(size / width, size / height)
    nw, nh = max(1, round(width * s)), max(1, round(height * s))
    return nw / width, nh / height, float((size - nw) // 2), float((size - nh) // 2), width, height


def input_preprocess(size: int):
    """What the exported model takes: the whole image letterboxed (grey 114) to size x size, RGB in [0, 1]."""
    from ..model.artifact import Preprocess
    from .detect_model import PAD

    return Preprocess(
        resize=None,
        crop=None,
        scale=1 / 255,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        layout="NCHW",
        params={"size": [size, size], "fit": "letterbox", "pad": PAD},
    )


# -- training one head ------------------------------------------------------------------------------------------
def fit_detection_head(
    name: str,
    size: int,
    n_classes: int,
    train: dict,
    val: dict,
    val_samples,
    lr: float,
    seed: int,
    epochs: int = EPOCHS,
    report=None,
    deadline: float | None = None,
):
    """Train the head and the backbone's stride-32 blocks (at ``lr * TOP_LR``, batch norm frozen) on the cached
    stride-16 maps; returns (best head, best val mAP@0.5, mAP@0.5:0.95, best epoch)."""
    import copy

    import torch

    from .detect_model import cell_centers, detection_head, detection_loss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = detection_head(name, n_classes, HEAD_WIDTH)
    centers = torch.from_numpy(cell_centers(size)[0])[None]
    opt = torch.optim.AdamW(head.param_groups(lr), lr=lr, weight_decay=1e-4)
    trained = [p for p in head.parameters() if p.requires_grad]
    n = len(train["cls"])
    per_epoch = max(1, n // BATCH)
    plan = {"steps": epochs * per_epoch}  # shrinks when the first epoch shows the deadline allows fewer

    def lr_at(step: int) -> float:  # linear warm-up over 5 %, then cosine to 0
        warm = max(1, plan["steps"] // 20)
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, plan["steps"] - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    best = (-1.0, 0.0, 0, None)

    def t(a, i):
        return torch.from_numpy(a[i])

    epoch, t0 = 0, time.monotonic()
    while epoch < epochs:
        epoch += 1
        head.train()
        t_epoch = time.monotonic()
        for i in np.array_split(rng.permutation(n), per_epoch):
            logits, dists = head(t(train["f4"], i).float())
            loss = detection_loss(logits, dists, centers, t(train["cls"], i), t(train["box"], i))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 10.0)
            opt.step()
            sched.step()
        dt = time.monotonic() - t_epoch
        if deadline is not None and epoch > 1 and time.monotonic() + 2 * dt > deadline:
            epochs = epoch  # the machine slowed down: no room for another epoch and an evaluation; stop here
        if epoch == 1 and deadline is not None:  # an evaluation costs about an epoch: count them in
            epoch_s = (time.monotonic() - t0) * (1 + 1 / EVAL_EVERY)
            affordable = int((deadline - time.monotonic()) / max(epoch_s, 1e-6))
            if affordable < epochs - 1:
                epochs = max(2, affordable + 1)
                plan["steps"] = epochs * per_epoch
        if epoch % EVAL_EVERY and epoch != epochs:
            continue
        m50, m = val_map(head, size, val, val_samples, n_classes)
        if (m50, m) > best[:2]:
            best = (m50, m, epoch, copy.deepcopy(head.state_dict()))
        if report:
            report(epoch, m50)
    head.load_state_dict(best[3])
    return head.eval(), best[0], best[1], best[2]


def val_map(head, size: int, val: dict, samples, n_classes: int) -> tuple[float, float]:
    """mAP@0.5 and @0.5:0.95 of the head on the validation maps, through bushu's own YOLO decode + NMS."""
    import torch

    from ..detection.decode import DetectionHead
    from ..detection.metrics import coco_map
    from .detect_model import cell_centers, decode

    centers = torch.from_numpy(cell_centers(size)[0])[None]
    names = [str(i) for i in range(n_classes)]
    dh = DetectionHead({"decoder": "yolo", "output": "y", "layout": "channels_first"}, names, (size, size))
    head.eval()
    gts, preds = [], []
    with torch.no_grad():
        for i in range(0, len(samples), 32):
            logits, dists = head(torch.from_numpy(val["f4"][i : i + 32]).float())
            y = decode(logits, dists, centers).numpy()
            part = samples[i : i + 32]
            dets = dh(
                {"y": y},
                [letterbox_transform(s.width, s.height, size) for s in part],
                score=0.001,
                iou=0.6,
                max_det=100,
            )
            for s, d in zip(part, dets):
                gts.append((s.boxes, s.classes))
                preds.append(
                    (
                        np.asarray([x.box for x in d], np.float64).reshape(-1, 4),
                        np.asarray([x.score for x in d]),
                        np.asarray([x.index for x in d], np.int64),
                    )
                )
    m = coco_map(gts, preds, names)
    return float(m["map50"]), float(m["map"])


# -- the pipeline -------------------------------------------------------------------------------------------------
def train_detection(cfg: TrainConfig, echo) -> dict[str, Any]:
    from ..errors import UnknownNameError
    from . import DEFAULT_BACKBONES
    from .features import IMAGE_BACKBONES

    clock = Clock(cfg.budget_s)
    backbones = tuple(cfg.sources or DEFAULT_BACKBONES)
    for b in backbones:
        if b not in IMAGE_BACKBONES[:2]:
            raise UnknownNameError("detection backbone", b, IMAGE_BACKBONES[:2])
    if cfg.image_size is not None and (cfg.image_size % 32 or not 64 <= cfg.image_size <= 640):
        raise UserInputError(
            f"--image-size for detection must be a multiple of 32 between 64 and 640, got {cfg.image_size}"
        )
    sizes = (cfg.image_size,) if cfg.image_size else DEFAULT_SIZES
    ds = read_detection_dataset(cfg.data)
    check = check_detection_data(ds, min(sizes))
    _echo_check(ds, check, echo)
    train, val, test = split_detection(ds.samples, len(ds.classes), cfg.val_fraction, cfg.val_fraction, cfg.seed)
    echo(f"split: {len(train)} train / {len(val)} validation (the search) / {len(test)} held back (the report)")

    views = VIEWS if cfg.augment else 1
    cache = cfg.work / "detfeatures"
    maps: dict[tuple[str, int], tuple[dict, dict]] = {}
    timing: dict[str, float] = {}

    def get_maps(name: str, size: int):
        if (name, size) not in maps:
            n = len(train) * views + len(val)
            with progress_bar(cfg.progress, f"features {name} @{size}px", n) as advance:
                tr = feature_maps(name, size, train, views, cache, cfg.seed, advance)
                va = feature_maps(name, size, val, 1, cache, cfg.seed, advance)
            maps[(name, size)] = (tr, va)
            timing[f"{name}@{size}"] = round(float(tr["seconds"]) + float(va["seconds"]), 1)
            echo(
                f"features {name} @{size}px: "
                + ("from cache" if tr["cached"] and va["cached"] else f"{timing[f'{name}@{size}']:.0f} s for {n} views")
            )
        return maps[(name, size)]

    reserve = 30.0 + 0.5 * len(test)  # the export, its parity check and the held-back evaluation (seconds)
    outcome = _search(cfg, ds, train, val, backbones, sizes, get_maps, timing, clock.reserved(reserve), echo)
    name, size = outcome["params"]["backbone"], outcome["params"]["size"]
    import torch

    from .detect_model import ExportedDetector, detection_head

    head = detection_head(name, len(ds.classes), HEAD_WIDTH)
    head.load_state_dict(torch.load(outcome["head_file"], weights_only=True))
    full = ExportedDetector(name, head.eval(), size)
    t_export = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bushu-train-det-") as tmpd:
        tmp = Path(tmpd)
        onnx_path, parity = _export(full, ds.classes, size, test or val, tmp)
        art = _artifact(cfg, onnx_path, ds, name, size, outcome, parity)
        summary = {
            "kind": "detection",
            "format": ds.format,
            "classes": list(ds.classes),
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test),
            "views": views,
            **_search_summary(outcome),
            "features": timing,
            "data_check": check.to_dict(),
            "budget_s": cfg.budget_s,
            "study": outcome["study"],
        }
        from ..detection.report import write_detection_report
        from ..model.artifact import write_artifact

        files = {MODEL_FILE: onnx_path}
        write_artifact(tmp / "artifact", files, art, labels=list(ds.classes))  # evaluated as `bushu eval` runs it
        res = _evaluate_held_back(cfg, art, ds, test)
        report_path, bad_path = write_detection_report(res, tmp / REPORT_FILE)
        _add_training_section(Path(report_path), summary)
        summary.update(
            {
                "test_map50": res["map50"],
                "test_map": res["map"],
                "per_class": res["per_class"],
                "seconds": round(clock.elapsed(), 1),
                "export_s": round(time.perf_counter() - t_export, 1),
                "parity_max_abs": parity["max_abs"],
            }
        )
        art.metrics = {"train": summary, "parity": parity}
        art.files = {"report": REPORT_FILE, "bad_cases": BAD_CASES_FILE}
        files.update({REPORT_FILE: Path(report_path), BAD_CASES_FILE: Path(bad_path)})
        write_artifact(cfg.out, files, art, labels=list(ds.classes))
    summary["artifact"] = str(cfg.out)
    summary["report"] = str(cfg.out / REPORT_FILE)
    return summary


def _echo_check(ds: DetectionDataset, check: DetectionCheck, echo) -> None:
    """The data check in a few lines: counts, the first 10 problems, the warnings."""
    echo(
        f"data ({ds.format}): {check.images} images, {sum(check.boxes.values())} boxes in {len(ds.classes)} classes "
        f"({', '.join(f'{k} {v}' for k, v in check.boxes.items())}), {check.negatives} without boxes (negatives)"
    )
    for p in check.problems[:10]:
        echo(f"  {p['action']}: {p['path']}: {p['reason']}")
    if len(check.problems) > 10:
        echo(f"  ... and {len(check.problems) - 10} more (all listed in the report)")
    for w in check.warnings:
        echo(f"warning: {w}")


def _search_summary(outcome: dict[str, Any]) -> dict[str, Any]:
    """The search's part of the training summary: the best trial, the trial counts, the leaderboard."""
    return {
        "best": {
            **outcome["params"],
            "trial": outcome["trial"],
            "val_map50": outcome["val_map50"],
            "val_map": outcome["val_map"],
            "best_epoch": outcome["best_epoch"],
        },
        "trials": outcome["n_trials"],
        "trials_this_run": outcome["ran"],
        "leaderboard": outcome["leaderboard"],
    }


def _evaluate_held_back(cfg: TrainConfig, art: Any, ds: DetectionDataset, test: list[DetectionSample]) -> dict:
    """The written artifact's mAP on the held-back split, run as `bushu eval` runs it."""
    from ..detection import Detector
    from ..detection.evaluation import evaluate_detector

    held = DetectionDataset(ds.root, ds.format, list(ds.classes), test)
    with Detector(art) as det:
        res = evaluate_detector(det, held, ds.classes, progress=False)
    return {
        "model": str(cfg.out),
        "data": f"{cfg.data} (held-back split, {len(test)} images)",
        "backend": "onnxruntime",
        **res,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "env": _env(),
    }


def _env() -> dict[str, Any]:
    from ..envinfo import summary

    return summary()


def _search(cfg: TrainConfig, ds, train, val, backbones, sizes, get_maps, timing, clock: Clock, echo) -> dict:
    """Optuna over backbone x input size x learning rate on the validation mAP@0.5; the study is resumable."""
    import torch

    from .search import open_study

    space = {
        "backbones": list(backbones),
        "sizes": list(sizes),
        "lr": [1e-3, 2e-2],
        "views": VIEWS if cfg.augment else 1,
        "epochs": EPOCHS,
        "width": HEAD_WIDTH,
        "finetune": {"blocks": "stride 32", "lr": TOP_LR},
        "seed": cfg.seed,
    }
    key = hashlib.sha1(json.dumps(space, sort_keys=True).encode()).hexdigest()[:8]
    name = f"bushu-train-detection-{_fingerprint(train + val)}-{key}"
    cfg.work.mkdir(parents=True, exist_ok=True)
    storage = cfg.storage or f"sqlite:///{(cfg.work / 'study.db').resolve()}"
    study = open_study(storage, name, cfg.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small head on cached maps: one thread is ~3x faster than two here (measured)
    try:
        return _run_study(cfg, ds, val, study, name, storage, backbones, sizes, get_maps, timing, clock, echo)
    finally:
        torch.set_num_threads(threads)


def _run_study(cfg, ds, val, study, name, storage, backbones, sizes, get_maps, timing, clock, echo) -> dict:
    import torch

    from .search import GRACE_S, _optuna

    optuna = _optuna()
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED)
    resumed = len(study.get_trials(deepcopy=False, states=done))
    if resumed:
        echo(f"resuming the search: {resumed} finished trial(s) kept from an earlier run ({storage})")
    if not study.get_trials(deepcopy=False):  # the first backbone (EfficientNet-Lite0) at the largest size first
        study.enqueue_trial({"backbone": backbones[0], "size": max(sizes), "lr": 5e-3})
    heads_dir = cfg.work / "detheads"
    heads_dir.mkdir(parents=True, exist_ok=True)
    deadline = clock.deadline

    def objective(trial) -> float:
        b = trial.suggest_categorical("backbone", list(backbones))
        size = trial.suggest_categorical("size", list(sizes))
        lr = trial.suggest_float("lr", 1e-3, 2e-2, log=True)
        if deadline is not None and f"{b}@{size}" not in timing and timing:
            est = max(timing.values()) * (size / 256) ** 2
            if time.monotonic() + est > deadline:
                raise optuna.TrialPruned(f"extracting {b}@{size} (~{est:.0f} s) does not fit the budget left")
        tr, va = get_maps(b, size)
        t0 = time.perf_counter()

        def report(epoch: int, m50: float) -> None:
            trial.report(m50, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        head, m50, m, epoch = fit_detection_head(
            b, size, len(ds.classes), tr, va, val, lr, cfg.seed, report=report, deadline=deadline
        )
        torch.save(head.state_dict(), heads_dir / f"trial{trial.number}.pt")
        trial.set_user_attr("map", m)
        trial.set_user_attr("best_epoch", epoch)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
        return m50

    total = cfg.trials
    finished = resumed
    ran = 0
    left_trials = None if total is None else total - finished
    timeout = None if deadline is None else deadline - time.monotonic()
    with progress_bar(cfg.progress, "search", total) as advance:
        if (left_trials is None or left_trials > 0) and (timeout is None or timeout > 0):
            before = len(study.get_trials(deepcopy=False, states=done))
            study.optimize(
                objective,
                n_trials=left_trials,
                timeout=timeout,
                n_jobs=cfg.jobs,
                catch=(RuntimeError, ValueError),
                gc_after_trial=False,
                callbacks=[lambda s, t: advance(1, description=f"search: trial {t.number} {t.state.name.lower()}")],
            )
            ran = len(study.get_trials(deepcopy=False, states=done)) - before
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if (heads_dir / f"trial{t.number}.pt").is_file()
    ]
    if not complete:
        raise UserInputError(
            f"no trial finished within the budget ({cfg.budget_s:.0f} s)" if cfg.budget_s else "no trial finished",
            hint=f"give a larger --budget; the feature maps are cached in {cfg.work}, so a rerun starts training at "
            f"once (stale workers are noticed after {GRACE_S} s)",
        )
    bt = max(complete, key=lambda t: (t.value, t.user_attrs.get("map", 0.0), -t.number))
    board = _leaderboard(study)
    echo(
        f"search: {len(complete)} trial(s) finished ({ran} this run); best trial {bt.number}: "
        f"{bt.params['backbone']} @{bt.params['size']}px, lr {bt.params['lr']:.3g}: val mAP@0.5 {bt.value:.3f}"
    )
    return {
        "params": dict(bt.params),
        "trial": bt.number,
        "val_map50": round(bt.value, 4),
        "val_map": round(bt.user_attrs.get("map", 0.0), 4),
        "best_epoch": bt.user_attrs.get("best_epoch"),
        "head_file": heads_dir / f"trial{bt.number}.pt",
        "n_trials": len(study.get_trials(deepcopy=False, states=done)),
        "ran": ran,
        "leaderboard": board[:50],
        "study": {"name": name, "storage": storage},
    }


def _leaderboard(study: Any) -> list[dict[str, Any]]:
    """Every finished trial, complete ones first, best validation mAP@0.5 first."""
    return sorted(
        (
            {
                "trial": t.number,
                "backbone": t.params.get("backbone"),
                "size": t.params.get("size"),
                "lr": float(f"{t.params.get('lr', 0):.3g}"),
                "val_map50": None if t.value is None else round(t.value, 4),
                "val_map": t.user_attrs.get("map") and round(t.user_attrs["map"], 4),
                "epochs": t.user_attrs.get("best_epoch"),
                "state": t.state.name.lower(),
                "seconds": t.user_attrs.get("seconds"),
            }
            for t in study.get_trials(deepcopy=False)
            if t.state.is_finished()
        ),
        key=lambda r: (r["state"] != "complete", -(r["val_map50"] or 0), r["trial"]),
    )


def _export(full, classes, size: int, samples, tmp: Path) -> tuple[Path, dict]:
    """One ONNX graph with Ultralytics' metadata (names, imgsz, task, stride), checked against PyTorch."""
    import onnx
    import torch

    from ..import_ import onnx as conv
    from ..model.processing import preprocess_image
    from ..validate import run_model
    from .detect_model import cell_centers

    example = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    path = conv.export_onnx(full, [example], tmp / MODEL_FILE, ["images"], ["output0"])
    conv.simplify(path)
    model = onnx.load(str(path))
    meta = {
        "names": str(dict(enumerate(classes))),
        "imgsz": str([size, size]),
        "task": "detect",
        "stride": "32",
        "description": "bushu train: frozen backbone + anchor-free head (YOLOv8 output layout)",
    }
    dims = model.graph.output[0].type.tensor_type.shape.dim  # static [batch, 4 + classes, cells]: the YOLO match
    dims[1].dim_value, dims[2].dim_value = 4 + len(classes), len(cell_centers(size)[0])
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(model, str(path))
    from PIL import Image

    pp = input_preprocess(size)
    images = []
    for s in samples[:4]:
        with Image.open(s.image) as im:
            images.append(preprocess_image(im.convert("RGB"), pp))
    x = np.stack(images)
    with torch.no_grad():
        ref = full(torch.from_numpy(x)).numpy()
    got = run_model(path, {"images": x})["output0"]
    diff = float(np.abs(ref - got).max())
    if diff > ATOL * max(1.0, float(np.abs(ref).max()) / 100):
        raise RuntimeError(f"the exported detector differs from PyTorch by {diff:.3g} (budget {ATOL})")
    return path, {
        "reference": "torch eager (backbone + head + decode)",
        "passed": True,
        "samples": len(x),
        "max_abs": diff,
    }


def _artifact(cfg: TrainConfig, onnx_path: Path, ds, backbone: str, size: int, outcome: dict, parity: dict):
    """The artifact as `bushu import` would record this ONNX model: the YOLO decoder from its metadata."""
    from ..import_.detection import detection_setup, onnx_metadata
    from ..model.artifact import Artifact, library_versions
    from ..runtime import load_backend

    with load_backend(onnx_path, "onnxruntime") as be:
        inputs, outputs = list(be.inputs), list(be.outputs)
    setup = detection_setup(
        inputs, outputs, onnx_metadata(onnx_path), task="detection", labels=list(ds.classes), preprocess=None
    )
    if setup is None:  # with task="detection" it raises instead; this narrows the type
        raise RuntimeError(f"{onnx_path} was not recognised as a detector")
    pp, post, _ = setup
    art = Artifact(
        path=cfg.out,
        model_file=MODEL_FILE,
        format="onnx",
        inputs=inputs,
        outputs=outputs,
        name=cfg.out.name,
        task="detection",
        preprocess=pp,
        postprocess=post,
        provenance={
            "source": str(cfg.data),
            "source_kind": "train",
            "backbone": backbone,
            "head": "anchor-free FCOS-style, strides 16 and 32",
            "input_size": size,
            "versions": library_versions(),
        },
        metrics={"parity": parity},
    )
    art.add_step(
        "train",
        data=str(cfg.data),
        kind="detection",
        params=outcome["params"],
        trial=outcome["trial"],
        study=outcome["study"]["name"],
        storage=outcome["study"]["storage"],
    )
    return art


def _add_training_section(report: Path, s: dict) -> None:
    """The search and data check, above the held-back evaluation in the same page."""
    import html

    e = html.escape
    rows = "".join(
        f"<tr><td>{r['trial']}</td><td>{e(str(r['backbone']))}</td><td>{r['size']}</td><td>{r['lr']}</td>"
        f"<td>{r['val_map50']}</td><td>{r['val_map']}</td><td>{r['epochs']}</td><td>{r['state']}</td>"
        f"<td>{r['seconds']}</td></tr>"
        for r in s["leaderboard"]
    )
    dc = s["data_check"]
    probs = (
        "".join(f"<li>{e(p['action'])}: {e(p['path'])}: {e(p['reason'])}</li>" for p in dc["problems"])
        or "<li>none</li>"
    )
    b = s["best"]
    section = f"""<h1>bushu train (detection)</h1>
<p>Data ({e(s["format"])}): {dc["images"]} images, boxes per class {e(json.dumps(dc["boxes"]))}, {dc["negatives"]} images
without boxes (negatives). Split: {s["n_train"]} train ({s["views"]} views each) / {s["n_val"]} validation (the search)
/ {s["n_test"]} held back (below; never seen by the search). Chosen: trial {b["trial"]}, <b>{e(b["backbone"])}</b>
@{b["size"]} px, lr {b["lr"]:.3g}: validation mAP@0.5 {b["val_map50"]:.4f}, mAP@0.5:0.95 {b["val_map"]:.4f}.</p>
<h2>Data check</h2><ul>{probs}</ul>
<h2>Search</h2><table><tr><th>trial</th><th>backbone</th><th>size</th><th>lr</th><th>val mAP@0.5</th>
<th>val mAP@0.5:0.95</th><th>epochs</th><th>state</th><th>seconds</th></tr>{rows}</table>
<h1>Held-back split</h1>"""
    text = report.read_text(encoding="utf-8")
    report.write_text(text.replace("<h1>bushu eval (detection)</h1>", section, 1), encoding="utf-8")
