"""`bushu optimize`'s options (flags, or the Python API's keywords) -> an OptimizeConfig: one place that
turns "quantize int8 with this calibration data, prune 30%" into the steps the pipeline runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..model.artifact import Artifact
from ..runtime.registry import backend_spec
from .distill import DistillConfig
from .lowrank import LowRankConfig
from .openvino_int8 import OpenVINOInt8Config
from .pipeline import FinetuneConfig, OptimizeConfig
from .prune import PruneConfig
from .quantize import DynamicInt8Config, Fp16Config, QuantConfig, StaticInt8Config

__all__ = ["optimize_config"]

PathLike = str | Path


def optimize_config(
    art: Artifact,
    *,
    quantize: str | None = None,
    backend: str = "onnxruntime",
    calib: PathLike | None = None,
    calib_size: int | None = None,
    method: str = "minmax",
    preset: str = "performance",
    data: PathLike | None = None,
    train: PathLike | None = None,
    max_accuracy_drop: float | None = None,
    exclude: Sequence[str] = (),
    prune: float | None = None,
    prune_mode: str = "structured",
    importance: str = "auto",
    global_pruning: bool = False,
    lowrank: float | None = None,
    lowrank_energy: float | None = None,
    lowrank_max_error: float = 0.1,
    distill: str | None = None,
    width: float = 0.5,
    temperature: float = 4.0,
    alpha: float | None = None,
    epochs: int = 3,
    lr: float = 1e-4,
    bench: bool = True,
    report: bool = True,
    max_attempts: int | None = None,
    no_fallback: bool = False,
    validation: Any = None,
    explicit_calib: bool | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    min_cosine: float | None = None,
) -> OptimizeConfig:
    """Steps run in this order: distill, prune, lowrank, fine-tuning, quantize (int8 | dynamic | fp16).

    ``max_attempts`` bounds int8's fallback search when its first attempt fails the agreement gate
    (default: int8_search.DEFAULT_MAX_ATTEMPTS); ``no_fallback`` means one attempt. ``validation``: what
    dynamic int8 / fp16 are checked on (default ``calib``; arrays by input name for models without images);
    ``explicit_calib``: whether the user gave calibration images (a --sample alone keeps MatMul-heavy models on
    dynamic int8, validated on it: static int8 of a transformer's activations measured cosine 0.48 on
    all-MiniLM-L6-v2); ``atol``/``rtol``: fp16's budget per output, |fp16 - fp32| <= atol + rtol·max|fp32|
    (default Fp16Config's 0.01 and 0.02); ``min_cosine``: the lowest cosine to fp32 an int8 model without
    classes keeps on every output and input (a DB text map: on every image with text), default 0.98."""
    attempts = _check(quantize, no_fallback, max_attempts, atol, rtol, calib_size, lowrank, lowrank_energy)
    steps: list = []
    if distill is not None:
        steps.append(
            DistillConfig(
                student=distill, width=width, temperature=temperature, alpha=alpha, epochs=max(epochs, 5), lr=lr
            )
        )
    if prune is not None:
        steps.append(PruneConfig(ratio=prune, mode=prune_mode, importance=importance, global_pruning=global_pruning))
    if lowrank is not None or lowrank_energy is not None:
        steps.append(LowRankConfig(rank_ratio=lowrank, energy=lowrank_energy, max_layer_error=lowrank_max_error))
    config = _quantize_config(
        art,
        quantize,
        backend,
        calib,
        calib_size,
        method,
        preset,
        exclude,
        calib if validation is None else validation,
        calib is not None if explicit_calib is None else explicit_calib,
        atol,
        rtol,
    )
    if min_cosine is not None:
        config = _with_min_cosine(config, min_cosine)
    return OptimizeConfig(
        steps=tuple(steps),
        quantize=config,
        finetune=FinetuneConfig(epochs=epochs, lr=lr),
        train=train,
        data=data,
        max_accuracy_drop=max_accuracy_drop,
        max_int8_attempts=attempts,
        measure=bench,
        report=report,
    )


def _with_min_cosine(config: Any, floor: float) -> Any:
    """``config`` with its cosine floor set; refused where no int8 quantization reads it."""
    if not 0 < floor <= 1:
        raise UserInputError(f"`min_cosine` must be in (0, 1], got {floor}", hint="e.g. 0.98 (the default) or 0.95")
    if not hasattr(config, "min_cosine"):
        raise UserInputError(
            "`min_cosine` is int8's bar for models without classes; nothing here is quantized to int8",
            hint="add `quantize` int8 (or dynamic); fp16 is judged by `atol` / `rtol`",
        )
    return dataclasses.replace(config, min_cosine=floor)


def _check(
    quantize: str | None,
    no_fallback: bool,
    max_attempts: int | None,
    atol: float | None,
    rtol: float | None,
    calib_size: int | None,
    lowrank: float | None,
    lowrank_energy: float | None,
) -> int:
    """The arguments that contradict each other or are out of range, refused; -> int8's attempt budget."""
    from .int8_search import DEFAULT_MAX_ATTEMPTS

    if no_fallback and max_attempts not in (None, 1):
        raise UserInputError(
            f"`no_fallback` means one int8 attempt; it contradicts `max_attempts` {max_attempts}",
            hint="give one of them",
        )
    attempts = 1 if no_fallback else DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts
    if attempts < 1:
        raise UserInputError(f"`max_attempts` must be at least 1, got {attempts}", hint="or use `no_fallback`")
    if (atol is not None or rtol is not None) and quantize != "fp16":
        raise UserInputError(
            "`atol` / `rtol` are fp16's tolerance; int8 is judged by agreement with fp32 instead",
            hint="add `quantize` fp16, or drop `atol` / `rtol`",
        )
    for name, v in (("atol", atol), ("rtol", rtol)):
        if v is not None and v < 0:
            raise UserInputError(f"`{name}` must be at least 0, got {v}")
    if calib_size is not None and calib_size < 1:
        raise UserInputError(f"`calib_size` must be at least 1, got {calib_size}")
    if lowrank is not None and lowrank_energy is not None:
        raise UserInputError("give either `lowrank` RANK_RATIO or `lowrank_energy` E, not both")
    return attempts


def _quantize_config(
    art: Artifact,
    quantize: str | None,
    backend: str,
    calib: PathLike | None,
    calib_size: int | None,
    method: str,
    preset: str,
    exclude: Sequence[str],
    check_on: Any,
    explicit_calib: bool,
    atol: float | None,
    rtol: float | None,
) -> QuantConfig | OpenVINOInt8Config | None:
    """The quantization step asked for, if any (int8 resolved to static or dynamic by the model's kind)."""
    from ._analysis import profile_model
    from .quantize import choose_int8

    if backend_spec(backend).needs_calibration:  # openvino: NNCF int8, calibrated
        if quantize not in (None, "int8"):
            raise UserInputError(
                f"`backend` {backend} quantizes to int8 (NNCF); `quantize` {quantize} is for onnxruntime",
                hint="use `quantize` int8 with `backend` openvino, or drop `backend`",
            )
        if quantize is None:
            raise UserInputError(f"`backend` {backend} needs `quantize` int8", hint="add `quantize` int8 `calib` DIR")
        return OpenVINOInt8Config(calibration=calib, calib_size=calib_size or 300, preset=preset)
    if quantize is None:
        return None
    if quantize == "int8":
        kind, _ = choose_int8(profile_model(art.model_path), explicit_calib)
        quantize = "static" if kind == "static" else "dynamic"
    if quantize == "static":
        return StaticInt8Config(
            calibration=calib, method=method, calib_size=calib_size or 100, exclude_nodes=tuple(exclude)
        )
    if quantize == "dynamic":
        # per-channel weight scales: all-MiniLM-L6-v2 cosine to fp32 0.953 per tensor, 0.989 per channel
        return DynamicInt8Config(exclude_nodes=tuple(exclude), validation=check_on, per_channel=True)
    if quantize == "fp16":
        return Fp16Config(
            validation=check_on,
            atol=Fp16Config.atol if atol is None else atol,
            rtol=Fp16Config.rtol if rtol is None else rtol,
        )
    raise UserInputError(f"unknown `quantize` {quantize!r}", hint="use int8, dynamic or fp16")
