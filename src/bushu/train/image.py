"""Image classification: frozen pretrained backbone features -> searched head -> (fine-tuned top blocks
+ head, when the budget allows and it is better on validation) -> one ONNX model."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..model.artifact import Artifact, Postprocess, library_versions, write_artifact
from . import DEFAULT_BACKBONES, TrainConfig
from .data import Dataset
from .features import IMAGE_BACKBONES, backbone_module, backbone_preprocess, image_features, load_pixels
from .finetune import estimate_seconds
from .runner import Clock, prediction_metrics, progress_bar, relpath, search_and_fit, test_metrics
from .search import SearchSpace

__all__ = ["train_images"]

MODEL_FILE = "model.onnx"
REFERENCE_FILE = "model.pt2"  # the torch.export program: what the PyTorch-based exports (tflite, coreml...) start from
REPORT_FILE = "report.html"
ATOL, RTOL = 1e-4, 1e-4  # fp32 export budget on logits (docs/notes.md: ~1e-5 seen)


def train_images(cfg: TrainConfig, ds: Dataset, echo, preprocess_for=backbone_preprocess) -> dict[str, Any]:
    """``preprocess_for(backbone, image_size)``: how examples become the backbone's input (audio: spectrograms)."""
    from ..errors import UnknownNameError

    clock = Clock(cfg.budget_s)
    _print_check(ds, echo)
    backbones = tuple(cfg.sources or DEFAULT_BACKBONES)
    for b in backbones:
        if b not in IMAGE_BACKBONES:
            raise UnknownNameError("backbone", b, IMAGE_BACKBONES)
    if cfg.image_size is not None and not 32 <= cfg.image_size <= 512:
        raise UserInputError(f"`image_size` must be between 32 and 512, got {cfg.image_size}")
    if cfg.finetune and not 1 <= cfg.finetune_blocks <= 10:
        raise UserInputError(f"`finetune_blocks` must be between 1 and 10, got {cfg.finetune_blocks}")

    # 1. features, cached; later backbones only while the budget allows
    features, feature_info, n_imgs = _backbone_features(cfg, ds, backbones, clock, echo, preprocess_for)

    # 2. search heads on the cache, leaving part of the budget for fine-tuning when the search would use it all
    per_image = max(v["seconds"] for v in feature_info.values()) / max(n_imgs, 1)  # a frozen forward, seconds
    search_clock = clock
    left = clock.left()
    if cfg.finetune and left is not None:
        want = estimate_seconds(per_image, len(ds.train), len(ds.val), cfg.finetune_epochs)
        search_clock = clock.reserved(min(want, 0.4 * max(left, 0.0)))
    space = SearchSpace(sources=tuple(features), heads=tuple(cfg.heads), augment=cfg.augment)
    outcome = search_and_fit(
        cfg, ds, space, features, search_clock, echo, {"image_size": cfg.image_size, "augment": cfg.augment}
    )
    name = outcome.params["source"]
    pp = preprocess_for(name, cfg.image_size)

    # 3. fine-tune the top blocks + head when the budget allows; kept only if better on validation
    ft_info, tuned = _finetune(cfg, ds, name, outcome.fit.module, pp, per_image, clock, echo)
    full = tuned
    # 4. one ONNX graph, checked against PyTorch, evaluated with ONNX Runtime on the validation split
    t_export = time.perf_counter()
    if full is None:
        import torch

        full = torch.nn.Sequential(backbone_module(name), outcome.fit.module).eval()
    with tempfile.TemporaryDirectory(prefix="bushu-train-") as tmpd:
        onnx_path, parity, logits = _export(full, ds, pp, Path(tmpd), cfg.progress)
        y_val = np.asarray([it.label for it in ds.val])
        metrics = prediction_metrics(ds.classes, y_val, logits, [relpath(it.source, Path(cfg.data)) for it in ds.val])
        test_logits = onnx_logits(onnx_path, ds.test, pp, cfg.progress, "test") if ds.test else None
        test = test_metrics(ds.classes, ds.test, test_logits, Path(cfg.data), ds.test_split)
        summary = _summary(cfg, ds, outcome, feature_info, metrics, parity, clock, time.perf_counter() - t_export, test)
        summary["finetune"] = ft_info
        from ..runtime import load_backend
        from .report import html_report

        with load_backend(onnx_path, "onnxruntime") as be:
            inputs, outputs = list(be.inputs), list(be.outputs)
        files, roles = {MODEL_FILE: onnx_path}, {"report": REPORT_FILE}
        if _save_reference(full, pp, inputs, outputs, Path(tmpd) / REFERENCE_FILE):
            files[REFERENCE_FILE], roles["reference"] = Path(tmpd) / REFERENCE_FILE, REFERENCE_FILE
        art = Artifact(
            path=cfg.out,
            model_file=MODEL_FILE,
            format="onnx",
            inputs=inputs,
            outputs=outputs,
            name=cfg.out.name,
            task="classification",
            preprocess=pp,
            postprocess=Postprocess(),
            files=roles,
            provenance={
                "source": str(cfg.data),
                "source_kind": "train",
                "backbone": name,
                "head": outcome.params["head"],
                "finetuned_blocks": cfg.finetune_blocks if tuned is not None else 0,
                "versions": library_versions(),
            },
            metrics={"train": summary, "parity": parity},
        )
        art.add_step(
            "train",
            data=str(cfg.data),
            backbone=name,
            params=outcome.params,
            trial=outcome.trial,
            study=outcome.study_name,
            storage=outcome.storage,
        )
        report = html_report(summary, title=f"bushu train: {cfg.out.name}", data_root=Path(cfg.data))
        write_artifact(cfg.out, {**files, REPORT_FILE: report.encode()}, art, labels=ds.classes)
    summary["artifact"] = str(cfg.out)
    summary["report"] = str(cfg.out / REPORT_FILE)
    return summary


def _backbone_features(
    cfg: TrainConfig, ds: Dataset, backbones: tuple[str, ...], clock: Clock, echo, preprocess_for
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], int]:
    """(each backbone's features of the examples, cached in WORK/features; what each took; the images per
    backbone). A later backbone is skipped when extracting its features would leave too little of the budget
    for the search; a budget spent on the first one is an error (its features stay cached for a rerun)."""
    features: dict[str, Any] = {}
    feature_info: dict[str, dict[str, Any]] = {}
    n_imgs = len(ds.train) * (2 if cfg.augment else 1) + len(ds.val)
    for i, name in enumerate(backbones):
        left = clock.left()
        if i and left is not None:
            est = max(v["seconds"] for v in feature_info.values()) * 1.5
            if est > 0.5 * left:
                echo(
                    f"skipping backbone {name}: extracting its features (~{est:.0f} s) would leave too little "
                    f"of the budget for the search"
                )
                continue
        pp = preprocess_for(name, cfg.image_size)
        with progress_bar(cfg.progress, f"features {name} @{pp.crop}px", n_imgs) as advance:
            fs = image_features(ds, name, pp, cfg.work / "features", flip=cfg.augment, progress=advance)
        features[name] = fs
        feature_info[name] = {
            "dim": int(fs["train"].shape[1]),
            "image_size": pp.crop,
            "seconds": round(fs.seconds, 2),
            "cached": fs.cached,
        }
        echo(
            f"features {name} @{pp.crop}px: {fs['train'].shape[1]}-d, "
            + ("from cache" if fs.cached else f"{fs.seconds:.1f} s for {n_imgs} images")
        )
        left = clock.left()
        if i == 0 and left is not None and left <= 0:
            raise UserInputError(
                f"the budget ({cfg.budget_s:g} s) ran out while extracting features ({clock.elapsed():.0f} s), "
                "before any model was trained",
                hint=f"give a larger --budget (e.g. --budget {max(60, int(clock.elapsed() * 2) + 30)}s); the features "
                f"are cached in {cfg.work}, so the rerun goes straight to the search",
            )
    return features, feature_info, n_imgs


def _print_check(ds: Dataset, echo) -> None:
    c = ds.check
    test = f" / {len(ds.test)} test ({ds.test_split})" if ds.test else ", no test part"
    echo(
        f"data: {len(ds.classes)} classes, {sum(c.counts.values())} {'clip' if ds.kind == 'audio' else ds.kind}s "
        f"({len(ds.train)} train / {len(ds.val)} val, {ds.split} split{test}); "
        + ", ".join(f"{k} {v}" for k, v in c.counts.items())
    )
    for s in c.skipped[:10]:
        echo(f"  skipped {s['path']}: {s['reason']}")
    if len(c.skipped) > 10:
        echo(f"  ... and {len(c.skipped) - 10} more skipped (all listed in the report)")
    if c.duplicates:
        echo(
            f"  {len(c.duplicates)} duplicate file(s) dropped (e.g. {c.duplicates[0]['dropped']} = "
            f"{c.duplicates[0]['kept']})"
        )
    for w in c.warnings:
        echo(f"warning: {w}")


def _finetune(cfg: TrainConfig, ds: Dataset, name: str, head, pp, per_image: float, clock: Clock, echo):
    """(summary["finetune"], the fine-tuned backbone + head if it beat the frozen one, else None)."""
    from .finetune import MIN_EPOCHS, FinetuneConfig, FinetuneResult, finetune

    if not cfg.finetune:
        return {"ran": False, "reason": "turned off (--no-finetune)"}, None
    left = clock.left()
    need = estimate_seconds(per_image, len(ds.train), len(ds.val), MIN_EPOCHS)
    res: FinetuneResult | str  # a str: why fine-tuning was skipped
    if left is not None and need > left:
        res = (
            f"the budget left ({max(left, 0):.0f} s) is less than {MIN_EPOCHS} epochs would take (~{need:.0f} s "
            f"for {len(ds.train)} training examples at {per_image * 1e3:.0f} ms per image forward)"
        )
    else:
        # audio: a time shift only (a flip plays the clip backwards, colour is loudness); --no-augment: none
        mode = "audio" if pp.kind == "audio" else ("image" if cfg.augment else "none")
        fcfg = FinetuneConfig(blocks=cfg.finetune_blocks, max_epochs=cfg.finetune_epochs, augment=mode, seed=cfg.seed)
        reserve = per_image * len(ds.val) + 20.0  # the exports (ONNX, torch.export) and validation run after
        with progress_bar(
            cfg.progress, f"fine-tune {name} (last {fcfg.blocks} blocks)", len(ds.train) * fcfg.max_epochs
        ) as advance:
            res = finetune(
                name,
                head,
                ds.train,
                ds.val,
                pp,
                len(ds.classes),
                fcfg,
                deadline=clock.deadline,
                reserve_s=reserve,
                progress=advance,
                echo=echo,
            )
    if isinstance(res, str):
        echo(f"fine-tuning skipped: {res}")
        return {"ran": False, "reason": res}, None
    info = res.to_dict()
    echo(
        f"fine-tuned the last {fcfg.blocks} blocks of {name} + head ({mode} augmentation, {info['epochs']} epochs, "
        f"{info['seconds']:.0f} s): val accuracy {info['finetuned_val_accuracy']:.4f} (loss "
        f"{info['finetuned_val_loss']:.3g}) vs frozen {info['frozen_val_accuracy']:.4f} (loss "
        f"{info['frozen_val_loss']:.3g}) -> kept the {info['kept']} model"
    )
    return info, (res.module if res.better else None)


def _export(full, ds: Dataset, pp, tmp: Path, progress: bool):
    """``full``: backbone + head (torch, eval mode) -> ONNX, checked against it on real validation images."""
    import torch

    from ..import_ import onnx as conv
    from ..validate import check_tolerance, run_model, summarize

    example = np.random.default_rng(0).standard_normal((2, 3, pp.crop, pp.crop)).astype(np.float32)
    path = conv.export_onnx(full, [example], tmp / MODEL_FILE, ["input"], ["logits"])
    simp = conv.simplify(path)
    # parity on real validation images (up to 8), batch 3 and more: the dynamic batch axis is exercised
    x = load_pixels(ds.val[:8], pp)
    with torch.no_grad():
        ref = {"logits": full(torch.from_numpy(x)).numpy()}
    got = run_model(path, {"input": x})
    rows = check_tolerance("exported ONNX model (backbone + head)", ref, got, ATOL, RTOL)
    parity = {
        "reference": "torch eager (backbone + head)",
        "passed": True,
        "samples": len(x),
        "outputs": summarize(rows),
        "simplify": simp,
    }
    return path, parity, onnx_logits(path, ds.val, pp, progress, "validate")


def _save_reference(full, pp, inputs, outputs, out: Path) -> bool:
    """Keep the trained model as a ``torch.export`` program beside the ONNX graph, as `bushu import` does for
    a PyTorch source: the exports that start from PyTorch (tflite, coreml, torchscript, pt2) need it. False
    (and no file) when torch.export cannot take the model: the ONNX artifact is complete without it."""
    from ..import_ import onnx as conv

    example = np.random.default_rng(0).standard_normal((2, 3, pp.crop, pp.crop)).astype(np.float32)
    return conv.save_reference(full, [example], out, inputs, outputs) is not None


def onnx_logits(path: Path, items, pp, progress: bool, label: str) -> np.ndarray:
    """The exported model's logits on ``items`` with ONNX Runtime, as `bushu eval` computes them."""
    from ..validate import run_model

    logits = []
    with progress_bar(progress, f"{label} (onnxruntime)", len(items)) as advance:
        for i in range(0, len(items), 32):
            chunk = load_pixels(items[i : i + 32], pp)
            logits.append(run_model(path, {"input": chunk}, chunk=32)["logits"])
            advance(len(chunk))
    return np.concatenate(logits)


def _summary(
    cfg: TrainConfig,
    ds: Dataset,
    outcome,
    feature_info,
    metrics,
    parity,
    clock: Clock,
    export_s: float,
    test: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": ds.kind,
        "val_accuracy": metrics["accuracy"],  # ONNX Runtime on the exported model
        "head_val_accuracy": round(outcome.fit.val_accuracy, 4),  # PyTorch head on cached features
        "macro_f1": metrics["macro_f1"],
        # the held-out test part (never seen by the search, fine-tuning or early stopping); None without one
        "test_accuracy": test["accuracy"] if test else None,
        "test_ci95": test["ci95"] if test else None,
        "test_macro_f1": test["macro_f1"] if test else None,
        "test": test,
        "n_train": len(ds.train),
        "n_val": len(ds.val),
        "n_test": len(ds.test),
        "split": ds.split,
        "test_split": ds.test_split,
        "classes": ds.classes,
        "best": {"trial": outcome.trial, **outcome.params, "best_epoch": outcome.fit.best_epoch},
        "trials": outcome.n_trials,
        "trials_this_run": outcome.ran_now,
        "budget_s": cfg.budget_s,
        "seconds": round(clock.elapsed(), 1),
        "export_s": round(export_s, 1),
        "features": feature_info,
        "data_check": ds.check.to_dict(),
        "per_class": metrics["per_class"],
        "confusion": metrics["confusion"],
        "mistakes": metrics["mistakes"],
        "leaderboard": outcome.leaderboard[:50],
        "study": {"name": outcome.study_name, "storage": outcome.storage},
        "parity_max_abs": max(o["max_abs"] for o in parity["outputs"]),
    }
