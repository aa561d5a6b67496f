"""Fine-tuning the top blocks of the chosen backbone together with its searched head.

After the frozen search, the last N blocks of the backbone and the head (initialised from the searched
one) train on augmented training examples; the lower blocks run without gradients. Batch-norm layers
keep their pretrained statistics (few-shot batches are too small to re-estimate them; only their scale
and shift train). The validation examples go through the frozen lower blocks once, so each epoch's
validation costs only the top. Early stopping on validation (accuracy, then loss); the caller keeps the
fine-tuned model only if it beats the frozen one on validation.

Augmentation: images get a random resized crop, a horizontal flip and a small colour jitter; audio
spectrograms only a time shift (a flip would play the clip backwards, colour is loudness).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..data.images import open_image
from ..errors import UserInputError
from ..model.artifact import Preprocess
from .data import Item
from .features import backbone_module, input_side, load_pixels

__all__ = ["FinetuneConfig", "FinetuneResult", "augmenter", "estimate_seconds", "finetune", "split_backbone"]

MIN_EPOCHS = 2  # fewer affordable epochs than this: skip (say why)
STEP_FACTOR = 1.6  # a training step per image ~ this x a frozen forward (lower blocks + top forward/backward)


@dataclass(frozen=True)
class FinetuneConfig:
    blocks: int = 2  # the last N blocks of the backbone train (the final 1x1 conv counts as one)
    max_epochs: int = 30
    patience: int = 8  # epochs without a better validation (the first epochs often dip, then recover)
    lr: float = 3e-3  # top blocks
    head_lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 16
    warmup_steps: int = 5  # the learning rate ramps up linearly: the first steps on a converged head stay small
    # SGD: steps scale with the gradient, small on a head that already fits; AdamW moves every weight by ~lr
    # at once, which through frozen batch-norm scales degraded validation even at lr 3e-5 (lfw_subset, 5 a class)
    optimizer: str = "sgd"  # sgd (momentum 0.9) | adamw
    augment: str = "image"  # image | audio | none
    crop_scale: float = 0.4  # images: the random resized crop keeps this much of the area at least
    seed: int = 0


@dataclass
class FinetuneResult:
    module: Any  # Sequential(backbone, head) with the fine-tuned weights
    frozen_val_accuracy: float
    frozen_val_loss: float
    val_accuracy: float
    val_loss: float
    best_epoch: int
    epochs: int
    seconds: float
    step_ms_per_image: float
    config: FinetuneConfig
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def better(self) -> bool:
        """Beats the frozen model on validation: higher accuracy, or the same and a lower loss."""
        return (self.val_accuracy, -self.val_loss) > (self.frozen_val_accuracy, -self.frozen_val_loss)

    def to_dict(self) -> dict[str, Any]:
        r = lambda v: float(f"{v:.4g}")  # noqa: E731 - losses near 0 keep their digits
        return {
            "ran": True,
            "kept": "fine-tuned" if self.better else "frozen",
            "blocks": self.config.blocks,
            "augment": self.config.augment,
            "optimizer": self.config.optimizer,
            "lr": self.config.lr,
            "frozen_val_accuracy": r(self.frozen_val_accuracy),
            "frozen_val_loss": r(self.frozen_val_loss),
            "finetuned_val_accuracy": r(self.val_accuracy),
            "finetuned_val_loss": r(self.val_loss),
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 1),
            "step_ms_per_image": round(self.step_ms_per_image, 1),
            "history": self.history,
        }


def split_backbone(module: Any, blocks: int) -> tuple[Any, Any]:
    """(lower, top) sharing ``module``'s layers, with top(lower(x)) == module(x); top = the last ``blocks`` blocks."""
    from torch import nn

    if hasattr(module, "blocks") and hasattr(module, "conv_head"):  # timm EfficientNet(-Lite)
        units = [b for stage in module.blocks for b in stage] + [nn.Sequential(module.conv_head, module.bn2)]
        stem, pool = [module.conv_stem, module.bn1], [module.global_pool]
    elif hasattr(module, "features"):  # torchvision MobileNetV2: features -> avg pool -> flatten
        units, stem, pool = list(module.features)[1:], [module.features[0]], [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
    else:
        raise TypeError(f"fine-tuning does not know the blocks of {type(module).__name__}")
    if not 1 <= blocks <= len(units):
        raise UserInputError(f"--finetune-blocks must be between 1 and {len(units)} for this backbone, got {blocks}")
    return nn.Sequential(*stem, *units[:-blocks]), nn.Sequential(*units[-blocks:], *pool)


def estimate_seconds(per_image_s: float, n_train: int, n_val: int, epochs: int) -> float:
    """Fine-tuning + the export's validation, from the frozen per-image forward cost."""
    return per_image_s * (n_val * 2 + STEP_FACTOR * n_train * epochs) + 10.0


def augmenter(pp: Preprocess, mode: str, seed: int = 0, crop_scale: float = 0.4) -> Callable[[Any], np.ndarray]:
    """PIL image (the loaded example) -> one augmented, normalised CHW array (what the backbone sees)."""
    from ..model.processing import preprocess_image

    rng = np.random.default_rng(seed)
    if mode == "none":
        return lambda img: preprocess_image(img, pp)
    flat = replace(pp, resize=None)  # the augmented image is already crop x crop
    if mode == "audio":
        from PIL import Image

        def shift(img) -> np.ndarray:  # time runs along the width: shift it, pad with silence (pixel 0)
            a = np.asarray(img)
            s = int(rng.integers(-a.shape[1] // 8, a.shape[1] // 8 + 1))
            out = np.zeros_like(a)
            if s >= 0:
                out[:, s:] = a[:, : a.shape[1] - s]
            else:
                out[:, :s] = a[:, -s:]
            return preprocess_image(Image.fromarray(out), flat)

        return shift
    if mode != "image":
        raise ValueError(f"unknown augmentation {mode!r}")
    from torchvision.transforms import InterpolationMode, v2

    interp = {"bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}.get(
        pp.interpolation, InterpolationMode.BILINEAR
    )
    t = v2.Compose(
        [
            v2.RandomResizedCrop(input_side(pp), scale=(crop_scale, 1.0), interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(0.2, 0.2, 0.2, 0.02),
        ]
    )
    return lambda img: preprocess_image(t(img.convert("RGB")), flat)


def _load(it: Item, pp: Preprocess):
    """The example as a PIL image, scaled down to about the model's input (cached for every epoch)."""
    if pp.kind == "audio":
        from ..model.audio import audio_image

        return audio_image(it.source, pp.params, input_side(pp))
    img = open_image(it.source).convert("RGB")
    target = pp.resize or input_side(pp)
    if min(img.size) > target * 1.15:
        s = target * 1.15 / min(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))))
    return img


def _validation_activations(backbone: str, model: Any, lower: Any, top: Any, val: list[Item], pp: Preprocess) -> Any:
    """The frozen lower blocks' view of the validation set, computed once; on the first batch, lower + top must
    reproduce the whole backbone exactly."""
    import torch

    with torch.no_grad():
        acts = []
        for i in range(0, len(val), 32):
            x = torch.from_numpy(load_pixels(val[i : i + 32], pp))
            acts.append(lower(x))
            if i == 0:
                diff = float((top(acts[0]) - model(x)).abs().max())
                if diff > 1e-4:
                    raise RuntimeError(f"fine-tuning: split {backbone} differs from the whole by {diff:.2g}")
        return torch.cat(acts)


def _training_setup(
    top: Any, head: Any, y_train: np.ndarray, n_classes: int, cfg: FinetuneConfig
) -> tuple[Any, Any, Any]:
    """(the loss, balanced over the classes as the heads' is; the optimizer of the top blocks and the head; the
    learning-rate warm-up)."""
    import torch
    from torch import nn

    counts = np.bincount(y_train, minlength=n_classes).astype(np.float32)
    weight = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0).astype(np.float32)
    loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(weight))
    groups = [{"params": top.parameters(), "lr": cfg.lr}, {"params": head.parameters(), "lr": cfg.head_lr}]
    opt: torch.optim.Optimizer
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / max(cfg.warmup_steps, 1)))
    return loss_fn, opt, sched


def finetune(
    backbone: str,
    head: Any,
    train: list[Item],
    val: list[Item],
    pp: Preprocess,
    n_classes: int,
    cfg: FinetuneConfig,
    *,
    deadline: float | None = None,
    reserve_s: float = 0.0,
    progress: Callable[..., None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> FinetuneResult | str:
    """Fine-tune; returns the result, or a one-line reason to skip: the time left (``deadline``, time.monotonic,
    minus ``reserve_s`` for what follows) does not allow ``MIN_EPOCHS`` epochs after a measured step, or the
    frozen model is already perfect on validation."""
    if cfg.max_epochs < 1:
        return f"max_epochs is {cfg.max_epochs}: no epoch to fine-tune"
    import torch
    from torch import nn

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = backbone_module(backbone)
    lower, top = split_backbone(model, cfg.blocks)
    head = copy.deepcopy(head).eval()
    model.requires_grad_(False)
    top.requires_grad_(True)
    model.eval()  # batch-norm keeps its statistics; dropout off (only the head's, if any, trains)

    y_val = torch.as_tensor([it.label for it in val], dtype=torch.int64)
    val_act = _validation_activations(backbone, model, lower, top, val, pp)

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            logits = torch.cat([head(top(val_act[i : i + 64])) for i in range(0, len(val_act), 64)])
            return float((logits.argmax(1) == y_val).float().mean()), float(nn.functional.cross_entropy(logits, y_val))

    frozen_acc, frozen_loss = evaluate()
    if frozen_acc >= 1.0 and frozen_loss < 1e-3:  # "better" could only mean a smaller loss, nothing to gain
        return (
            f"the frozen model already classifies every validation example right (loss {frozen_loss:.2g}), "
            "fine-tuning cannot beat it"
        )
    images = [_load(it, pp) for it in train]
    y_train = np.asarray([it.label for it in train])
    aug = augmenter(pp, cfg.augment, cfg.seed, cfg.crop_scale)
    loss_fn, opt, sched = _training_setup(top, head, y_train, n_classes, cfg)

    def step(idx: np.ndarray) -> float:
        x = torch.from_numpy(np.stack([aug(images[i]) for i in idx]))
        with torch.no_grad():
            a = lower(x)
        head.train()
        opt.zero_grad()
        loss = loss_fn(head(top(a)), torch.from_numpy(y_train[idx]))
        loss.backward()
        opt.step()
        sched.step()
        head.eval()
        return float(loss.detach())

    trained = _train_epochs(
        step, evaluate, top, head, rng, len(train), cfg, (frozen_acc, frozen_loss), deadline, reserve_s, progress, echo
    )
    if isinstance(trained, str):
        return trained
    best_state, best, best_epoch, history, step_s = trained
    top.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    model.requires_grad_(False)
    full = nn.Sequential(model, head).eval()
    return FinetuneResult(
        full,
        frozen_acc,
        frozen_loss,
        best[0],
        best[1],
        best_epoch,
        len(history) - 1,
        time.perf_counter() - t0,
        (step_s or 0.0) * 1e3,
        cfg,
        history,
    )


def _train_epochs(
    step: Callable[[np.ndarray], float],
    evaluate: Callable[[], tuple[float, float]],
    top: Any,
    head: Any,
    rng: np.random.Generator,
    n: int,
    cfg: FinetuneConfig,
    frozen: tuple[float, float],
    deadline: float | None,
    reserve_s: float,
    progress: Callable[..., None] | None,
    echo: Callable[[str], None] | None,
) -> tuple[tuple[Any, Any], tuple[float, float], int, list[dict[str, Any]], float | None] | str:
    """Train up to ``cfg.max_epochs`` epochs of ``n`` examples, stopping early on patience or the budget:
    (the best epoch's (top, head) states, its (accuracy, loss), its number, the history per epoch, the seconds
    a step takes per image), or a one-line reason to skip when the budget does not allow ``MIN_EPOCHS``."""
    frozen_acc, frozen_loss = frozen
    # the best fine-tuned epoch (>= 1), compared with the frozen model (epoch 0) by the caller
    best_state, best, best_epoch = None, (-1.0, float("inf")), 0
    history = [{"epoch": 0, "val_accuracy": round(frozen_acc, 4), "val_loss": float(f"{frozen_loss:.4g}")}]
    bs = cfg.batch_size
    epochs, step_s, epoch_s = cfg.max_epochs, None, None
    for epoch in range(1, cfg.max_epochs + 1):
        te = time.perf_counter()
        order = rng.permutation(n)
        train_loss = 0.0
        for i in range(0, n, bs):
            ts = time.perf_counter()
            train_loss += step(order[i : i + bs]) * len(order[i : i + bs])
            if step_s is None:  # the first step decides whether the budget allows enough epochs
                step_s = (time.perf_counter() - ts) / len(order[i : i + bs])
                if deadline is not None:
                    left = deadline - time.monotonic() - reserve_s
                    epochs = min(cfg.max_epochs, int(left / max(step_s * n, 1e-6)))
                    if epochs < MIN_EPOCHS:
                        return (
                            f"the budget left ({max(left, 0):.0f} s) does not allow {MIN_EPOCHS} epochs "
                            f"(a step takes {step_s * 1e3:.0f} ms per image, {n} training examples)"
                        )
            if progress:
                progress(len(order[i : i + bs]))
        acc, loss = evaluate()
        history.append(
            {
                "epoch": epoch,
                "val_accuracy": round(acc, 4),
                "val_loss": float(f"{loss:.4g}"),
                "train_loss": float(f"{train_loss / n:.4g}"),  # the mean over the epoch's (augmented) steps
            }
        )
        if progress:
            progress(0, epoch=history[-1])  # the UI's live chart of loss and accuracy per epoch
        if (acc, -loss) > (best[0], -best[1]):
            best, best_epoch = (acc, loss), epoch
            best_state = copy.deepcopy((top.state_dict(), head.state_dict()))
        epoch_s = time.perf_counter() - te
        if epoch >= epochs or epoch - max(best_epoch, 1) >= cfg.patience:
            break
        if deadline is not None and time.monotonic() + epoch_s > deadline - reserve_s:
            if echo:
                echo(f"fine-tuning stopped after {epoch} epochs: the budget is running out")
            break
    assert best_state is not None  # epoch 1 (max_epochs >= 1) beats (-1, inf): its accuracy is >= 0
    return best_state, best, best_epoch, history, step_s
