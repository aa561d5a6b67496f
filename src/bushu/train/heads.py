"""Classifier heads trained on cached features, each behind an optional fixed standardization layer:

- ``logreg``: multinomial logistic regression solved exactly (scikit-learn, L-BFGS, L2 strength C),
  copied into a ``Linear`` layer: the strong few-shot baseline;
- ``linear``: the same model trained with AdamW and early stopping;
- ``mlp``: one hidden layer with dropout, AdamW, early stopping.

The head is a plain ``torch.nn.Module``, so backbone + head export as one ONNX graph.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["FitResult", "HeadConfig", "build_head", "fit_head"]

HEADS = ("logreg", "linear", "mlp")


@dataclass(frozen=True)
class HeadConfig:
    kind: str = "linear"  # logreg | linear | mlp
    lr: float = 1e-2
    epochs: int = 100
    batch_size: int = 32
    weight_decay: float = 1e-4
    hidden: int = 256
    dropout: float = 0.2
    augment: bool = True  # also train on the flipped copies (images)
    standardize: bool = True  # scale each feature to unit variance (fitted on the training features)
    C: float = 1.0  # logreg: inverse L2 strength
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    module: Any
    best_epoch: int
    val_accuracy: float
    val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)


def build_head(cfg: HeadConfig, mean: np.ndarray, std: np.ndarray, n_classes: int) -> Any:
    import torch
    from torch import nn

    class Standardize(nn.Module):
        def __init__(self, mean: np.ndarray, std: np.ndarray):
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
            self.register_buffer("inv_std", torch.from_numpy((1.0 / std).astype(np.float32)))

        def forward(self, x):
            return (x - self.mean) * self.inv_std

    d = mean.shape[0]
    if cfg.kind in ("linear", "logreg"):
        body: list[nn.Module] = [nn.Linear(d, n_classes)]
    elif cfg.kind == "mlp":
        body = [nn.Linear(d, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, n_classes)]
    else:
        raise ValueError(f"unknown head {cfg.kind!r}; expected one of {HEADS}")
    return nn.Sequential(Standardize(mean, std), *body)


def fit_head(
    cfg: HeadConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    report: Callable[[int, float], None] | None = None,
    patience: int | None = None,
) -> FitResult:
    """Train; keep the weights of the epoch with the best validation (accuracy, then loss).

    ``report(epoch, val_accuracy)`` is called after each epoch (Optuna prunes through it).
    Deterministic for a given config and data.
    """
    import torch
    from torch import nn

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.standardize:
        mean = x_train.mean(0)
        std = x_train.std(0)
        std = np.maximum(std, max(float(np.median(std)), 1e-6))  # dead (constant) features would explode
    else:
        mean, std = np.zeros(x_train.shape[1], np.float32), np.ones(x_train.shape[1], np.float32)
    head = build_head(cfg, mean, std, n_classes)
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val.astype(np.int64))
    if cfg.kind == "logreg":
        return _fit_logreg(cfg, head, x_train, y_train, xv, yv, n_classes, mean, std)
    counts = np.bincount(y_train, minlength=n_classes).astype(np.float32)
    weight = torch.from_numpy(
        np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0).astype(np.float32)
    )  # balanced: each class counts the same
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64))
    patience = patience or max(15, cfg.epochs // 4)
    best = (-1.0, float("inf"))
    best_state, best_epoch, history = None, 0, []
    n = len(xt)
    for epoch in range(1, cfg.epochs + 1):
        head.train()
        order = rng.permutation(n)
        for i in range(0, n, cfg.batch_size):
            idx = torch.from_numpy(order[i : i + cfg.batch_size])
            opt.zero_grad()
            loss_fn(head(xt[idx]), yt[idx]).backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            logits = head(xv)
            val_loss = float(nn.functional.cross_entropy(logits, yv))
            val_acc = float((logits.argmax(1) == yv).float().mean())
        history.append({"epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss})
        if (val_acc, -val_loss) > (best[0], -best[1]):
            best, best_epoch, best_state = (val_acc, val_loss), epoch, copy.deepcopy(head.state_dict())
        if report:
            report(epoch, val_acc)
        if epoch - best_epoch >= patience:
            break
    head.load_state_dict(best_state)
    head.eval()
    return FitResult(head, best_epoch, best[0], best[1], history)


def _fit_logreg(cfg: HeadConfig, head, x_train, y_train, xv, yv, n_classes, mean, std) -> FitResult:
    import torch
    from sklearn.linear_model import LogisticRegression

    z = (x_train - mean) / std
    present = np.unique(y_train)
    clf = LogisticRegression(C=cfg.C, max_iter=2000, class_weight="balanced")
    clf.fit(z, y_train)
    w = np.zeros((n_classes, z.shape[1]), np.float32)
    b = np.zeros(n_classes, np.float32)
    if len(present) == 2 and clf.coef_.shape[0] == 1:  # binary: logits [0, w.x + b] give the same softmax
        w[present[1]], b[present[1]] = clf.coef_[0], clf.intercept_[0]
        b[[c for c in range(n_classes) if c not in present]] = -1e4
    else:
        w[present], b[present] = clf.coef_, clf.intercept_
        b[[c for c in range(n_classes) if c not in present]] = -1e4
    linear = head[1]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w))
        linear.bias.copy_(torch.from_numpy(b))
        head.eval()
        logits = head(xv)
        val_loss = float(torch.nn.functional.cross_entropy(logits, yv))
        val_acc = float((logits.argmax(1) == yv).float().mean())
    return FitResult(head, 1, val_acc, val_loss, [{"epoch": 1, "val_accuracy": val_acc, "val_loss": val_loss}])
