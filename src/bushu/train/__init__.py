"""`bushu train`: from a folder of labelled examples to a validated, deployable artifact.

    load_dataset  -> data check (classes, counts, imbalance, duplicates, unreadable files), split
    features      -> frozen pretrained backbone features, cached under WORK/features
    search        -> Optuna over feature source x head x hyperparameters, stored in WORK/study.db
    finetune      -> the last blocks of the chosen backbone + the head on augmented examples, when the
                     budget allows; kept only if better on validation (finetune.py)
    export        -> backbone + head as ONE ONNX graph (image NCHW float32 -> logits), checked
                     against PyTorch, evaluated with ONNX Runtime on the validation split and on the
                     held-out test part (which nothing before this step sees)
    report        -> leaderboard, per-class P/R/F1, confusion matrix, worst mistakes (report.html)

``train(TrainConfig(...))`` is the one entry point; the CLI only parses arguments into the config.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError

__all__ = ["TrainConfig", "parse_budget", "train"]

DEFAULT_BACKBONES = ("efficientnet_lite0", "mobilenet_v2")
DEFAULT_TEXT_FEATURES = ("minilm", "tfidf")


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    out: Path
    kind: str = "auto"  # auto | image | text | audio | detection
    val: Path | None = None  # a given validation folder / CSV
    val_fraction: float = 0.2
    test: Path | None = None  # a given test folder / CSV (default: DATA/test when DATA has train/)
    test_fraction: float | None = None  # None: 0.2 when DATA is split here, none with a given val; 0: no test part
    budget_s: float | None = 300.0  # wall-clock budget for the whole run (features + search)
    trials: int | None = 30  # total finished trials in the study (resumed runs count earlier ones)
    sources: tuple[str, ...] | None = None  # backbones (images) or text features; None = defaults
    heads: tuple[str, ...] = ("logreg", "linear", "mlp")
    image_size: int | None = None  # None = each backbone's native input size
    augment: bool = True
    finetune: bool = True  # fine-tune the top blocks + head after the search, when the budget allows
    finetune_blocks: int = 2
    finetune_epochs: int = 30  # at most; early stopping on validation
    other: bool = False  # add a none-of-the-above class of generic photos
    jobs: int = 1
    seed: int = 0
    work_dir: Path | None = None  # default: OUT.work next to the artifact
    storage: str | None = None  # an Optuna storage URL; default sqlite:///WORK/study.db
    progress: Any = True  # bool, or a bushu.progress.Progress
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.work_dir or self.out.with_name(self.out.name + ".work")


def parse_budget(text: str | float | int | None) -> float | None:
    """'300', '300s', '5m', '1h', '1m30s' -> seconds; None/'none'/'0' -> no budget."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text) if text > 0 else None
    s = str(text).strip().lower()
    if s in ("", "none", "0", "inf"):
        return None
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)", s)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)", "", s).strip():
        raise UserInputError(
            f"cannot read the budget {text!r}", hint="give seconds (300) or a duration: 90s, 5m, 1h, 1m30s"
        )
    unit = {"h": 3600, "m": 60, "min": 60, "s": 1, "sec": 1}
    return float(sum(float(v) * unit[u] for v, u in parts))


def _is_detection(path: Path) -> bool:
    from .detection import is_detection_data

    return is_detection_data(path)


def train(cfg: TrainConfig, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole pipeline; returns the summary (also recorded as metrics["train"] in the artifact).

    ``echo`` receives the run's messages (the data check, each step); by default they go to logging."""
    from .data import load_dataset

    echo = echo or logging.getLogger(__name__).info
    if cfg.trials is not None and cfg.trials < 1:
        raise UserInputError(f"`trials` must be at least 1, got {cfg.trials}")
    if cfg.trials is None and cfg.budget_s is None:
        raise UserInputError("give `budget` and/or `trials`, so the search knows when to stop")
    if cfg.kind == "detection" or (cfg.kind == "auto" and Path(cfg.data).exists() and _is_detection(Path(cfg.data))):
        from .detection import train_detection

        return train_detection(cfg, echo)
    ds = load_dataset(
        cfg.data,
        kind=cfg.kind,
        val=cfg.val,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        test=cfg.test,
        test_fraction=cfg.test_fraction,
    )
    if cfg.other:
        from .data import add_other_class

        ds = add_other_class(ds, cfg.work, cfg.seed)
    if ds.kind == "image":
        from .image import train_images

        return train_images(cfg, ds, echo)
    if ds.kind == "audio":
        from .audio import train_audio

        return train_audio(cfg, ds, echo)
    from .text import train_text

    return train_text(cfg, ds, echo)
