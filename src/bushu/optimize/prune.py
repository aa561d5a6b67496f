"""Pruning: remove the least important weights of a PyTorch module.

- ``structured`` (default): whole output channels of Conv/Linear layers go, with everything that
  depends on them (following BatchNorm, the next layer's input channels, residual partners), found
  by torch-pruning's dependency graph. The graph really gets smaller: fewer parameters and FLOPs.
  Importance: L1 magnitude, or first-order Taylor (|weight × gradient| of the task loss) when data
  is given. The layer that produces the model's output is never pruned (it would change the
  output shape).
- ``unstructured``: the smallest-magnitude ``ratio`` of each Conv/Linear layer's weights are set
  to zero (L1). The graph keeps its shape; the sparsity is reported (dense runtimes do not run
  faster, the file compresses better).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..data.arrays import ArrayReader
from ..errors import MissingDependencyError, UnknownNameError, UserInputError
from ._torch import count_params, prunable_layers, task_gradients

__all__ = ["IMPORTANCE", "MODES", "PruneConfig", "prune_module"]

MODES = ("structured", "unstructured")
IMPORTANCE = ("auto", "magnitude", "taylor")


@dataclass(frozen=True)
class PruneConfig:
    """``ratio``: share of channels (structured) or weights (unstructured) to remove, in (0, 1)."""

    ratio: float
    mode: str = "structured"
    importance: str = "auto"  # auto = taylor when data is given, else magnitude
    global_pruning: bool = False  # structured: rank channels across layers (uneven widths) or per layer
    round_to: int | None = None  # structured: keep channel counts multiples of this
    kind: ClassVar[str] = "prune"

    def check(self) -> None:
        if not isinstance(self.ratio, (int, float)) or not 0 < self.ratio < 1:
            raise UserInputError(
                f"prune ratio must be between 0 and 1 (exclusive), got {self.ratio}",
                hint="e.g. --prune 0.3 removes 30% of the channels of each layer",
            )
        if self.mode not in MODES:
            raise UnknownNameError("pruning mode", self.mode, MODES)
        if self.importance not in IMPORTANCE:
            raise UnknownNameError("pruning importance", self.importance, IMPORTANCE)
        if self.round_to is not None and self.round_to < 1:
            raise UserInputError(f"round_to must be a positive integer, got {self.round_to}")


def prune_module(
    module: Any,
    cfg: PruneConfig,
    example: Any,
    data: ArrayReader | None = None,
    teacher: np.ndarray | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Prune ``module`` in place; return what was done (params before/after, sparsity, per-layer widths)."""
    cfg.check()
    import torch

    layers, out_layer = prunable_layers(module, example)
    if not layers:
        raise UserInputError(
            "the model has no Conv2d or Linear layers to prune",
            hint="pruning works on convolutional and fully connected networks",
        )
    if cfg.mode == "unstructured":
        return _unstructured(module, cfg, layers)
    try:
        import torch_pruning as tp
    except ImportError as e:
        raise MissingDependencyError(
            "structured pruning (torch-pruning)",
            "torch",
            package="'bushu[torch]'  (or: pip install torch-pruning==1.6.1)",
        ) from e
    importance = cfg.importance
    if importance == "auto":
        importance = "taylor" if data is not None and (data.targets is not None or teacher is not None) else "magnitude"
    if importance == "taylor" and (data is None or (data.targets is None and teacher is None)):
        raise UserInputError(
            "Taylor importance needs data (labelled, or scored by the original model)",
            hint="pass --train DIR or --data DIR, or use --importance magnitude",
        )
    imp = tp.importance.TaylorImportance() if importance == "taylor" else tp.importance.MagnitudeImportance(p=1)
    with torch.no_grad():
        out_shape = tuple(module(example).shape)
    before = count_params(module)
    widths_before = {n: _width(m) for n, m in layers}
    pruner = tp.pruner.MetaPruner(
        module,
        example,
        importance=imp,
        pruning_ratio=cfg.ratio,
        ignored_layers=[out_layer],
        global_pruning=cfg.global_pruning,
        round_to=cfg.round_to,
    )
    groups = list(
        pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types)
    )
    if not groups:
        raise UserInputError(
            f"nothing to prune: the model's only Conv/Linear layer ({layers[-1][0]}) produces "
            "its output, and removing its channels would change the output shape",
            hint="structured pruning needs hidden layers; try --prune-mode unstructured",
        )
    if importance == "taylor":
        assert data is not None  # checked above: Taylor importance without data is a UserInputError
        task_gradients(module, data, teacher)
    pruner.step()
    module.zero_grad(set_to_none=True)
    module.eval()
    with torch.no_grad():
        new_shape = tuple(module(example).shape)
    if new_shape != out_shape:  # torch-pruning keeps ignored layers intact; this guards a broken graph
        raise UserInputError(
            f"pruning changed the output shape {out_shape} → {new_shape}",
            hint="lower the ratio, or use --prune-mode unstructured",
        )
    after = count_params(module)
    if after >= before:
        raise UserInputError(
            f"nothing was pruned at ratio {cfg.ratio}: every layer is too narrow "
            f"({', '.join(f'{n}={w}' for n, w in list(widths_before.items())[:5])})",
            hint="raise the ratio, or use --prune-mode unstructured",
        )
    changed = {n: [widths_before[n], _width(m)] for n, m in layers if _width(m) != widths_before[n]}
    log(
        f"structured pruning ({importance}): {before:,} → {after:,} parameters; "
        f"{len(changed)} of {len(layers)} layers narrowed"
    )
    return {
        "mode": "structured",
        "ratio": cfg.ratio,
        "importance": importance,
        "global": cfg.global_pruning,
        "params_before": before,
        "params_after": after,
        "groups": len(groups),
        "layers_narrowed": len(changed),
        "widths": dict(list(changed.items())[:50]),
    }


def _width(m: Any) -> int:
    return int(getattr(m, "out_channels", getattr(m, "out_features", 0)))


def _unstructured(module: Any, cfg: PruneConfig, layers: list[tuple[str, Any]]) -> dict[str, Any]:
    import torch
    from torch.nn.utils import prune as tprune

    seen: set[int] = set()
    per_layer, zeros, total = {}, 0, 0
    for name, m in layers:
        if id(m) in seen:
            continue
        seen.add(id(m))
        tprune.l1_unstructured(m, "weight", amount=cfg.ratio)
        tprune.remove(m, "weight")
        with torch.no_grad():
            z, n = int((m.weight == 0).sum()), m.weight.numel()
        per_layer[name] = round(z / n, 4)
        zeros, total = zeros + z, total + n
    all_params = count_params(module)
    return {
        "mode": "unstructured",
        "ratio": cfg.ratio,
        "importance": "magnitude (L1)",
        "sparsity_prunable": round(zeros / total, 4),
        "sparsity_all": round(zeros / all_params, 4),
        "zero_weights": zeros,
        "params_after": all_params,
        "layers": len(per_layer),
        "per_layer": dict(list(per_layer.items())[:50]),
    }
