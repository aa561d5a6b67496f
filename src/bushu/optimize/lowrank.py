"""Low-rank factorization: replace a weight matrix W (out × in) by two thin ones, B (out × r) · A (r × in).

A Linear layer becomes Linear(in → r, no bias) then Linear(r → out); a Conv2d (groups = 1) is
reshaped to out × (in·kh·kw) and becomes Conv2d(in → r, same kernel/stride/padding) then a 1×1
Conv2d(r → out). The rank comes from ``rank_ratio`` (r = ratio × the full rank) or ``energy`` (the
smallest r keeping that share of the squared singular values). A layer is factorized only when it
saves parameters, and only when its *sensitivity* is low enough: factorized alone, it may move the
model's outputs by at most ``max_layer_error`` (relative L2 on sample inputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import UserInputError
from ._torch import count_params, module_logits, prunable_layers

__all__ = ["LowRankConfig", "factorize_module"]


@dataclass(frozen=True)
class LowRankConfig:
    rank_ratio: float | None = None  # r = ceil(rank_ratio × min(out, in·k·k))
    energy: float | None = None  # or: keep this share of Σσ²
    max_layer_error: float = 0.1  # sensitivity bound per layer (relative L2 change of the outputs)
    min_saving: float = 0.1  # factorize only if it removes at least this share of the layer's weights
    kind: ClassVar[str] = "lowrank"

    def check(self) -> None:
        if (self.rank_ratio is None) == (self.energy is None):
            raise UserInputError(
                "low-rank factorization needs exactly one of a rank ratio or an energy threshold",
                hint="e.g. --lowrank 0.25, or --lowrank-energy 0.9",
            )
        for what, v in (("rank ratio", self.rank_ratio), ("energy", self.energy)):
            if v is not None and not 0 < v < 1:
                raise UserInputError(
                    f"low-rank {what} must be between 0 and 1 (exclusive), got {v}",
                    hint="e.g. --lowrank 0.25 keeps a quarter of each layer's rank",
                )
        if self.max_layer_error <= 0:
            raise UserInputError(f"max_layer_error must be positive, got {self.max_layer_error}")


def _matrix(m: Any):
    w = m.weight.detach()
    return w.reshape(w.shape[0], -1)


def _rank(s: np.ndarray, cfg: LowRankConfig) -> int:
    if cfg.rank_ratio is not None:
        return max(1, math.ceil(cfg.rank_ratio * len(s)))
    assert cfg.energy is not None  # LowRankConfig.check: exactly one of rank_ratio, energy
    e = np.cumsum(s.astype(np.float64) ** 2)
    return int(np.searchsorted(e / e[-1], cfg.energy) + 1)


def _factorized(m: Any, r: int, u, s, vh):
    import torch

    root = torch.sqrt(s[:r])
    a = vh[:r] * root[:, None]  # r × (in·k·k)
    b = u[:, :r] * root[None, :]  # out × r
    has_bias = m.bias is not None
    first: torch.nn.Linear | torch.nn.Conv2d
    second: torch.nn.Linear | torch.nn.Conv2d
    if isinstance(m, torch.nn.Linear):
        first, second = torch.nn.Linear(m.in_features, r, bias=False), torch.nn.Linear(r, m.out_features, bias=has_bias)
        first.weight.data.copy_(a)
        second.weight.data.copy_(b)
    else:
        first = torch.nn.Conv2d(
            m.in_channels,
            r,
            m.kernel_size,
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            bias=False,
            padding_mode=m.padding_mode,
        )
        second = torch.nn.Conv2d(r, m.out_channels, 1, bias=has_bias)
        first.weight.data.copy_(a.reshape(r, *m.weight.shape[1:]))
        second.weight.data.copy_(b.reshape(m.out_channels, r, 1, 1))
    if second.bias is not None:  # made with bias=has_bias
        second.bias.data.copy_(m.bias.detach())
    return torch.nn.Sequential(first, second)


def _set(module: Any, name: str, new: Any) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, leaf, new)


def factorize_module(
    module: Any, cfg: LowRankConfig, example: Any, samples: np.ndarray, log: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Factorize the eligible layers of ``module`` in place; return the per-layer decisions."""
    cfg.check()
    import torch

    layers, _ = prunable_layers(module, example)
    candidates = [
        (n, m)
        for n, m in dict(layers).items()
        if isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv2d) and m.groups == 1)
    ]
    if not candidates:
        raise UserInputError(
            "the model has no Linear or (non-grouped) Conv2d layers for low-rank factorization",
            hint="low-rank factorization needs dense weight matrices; try --prune instead",
        )
    ref = module_logits(module, samples)
    ref_norm = max(float(np.linalg.norm(ref)), 1e-12)
    before = count_params(module)
    rows, chosen = [], []
    for name, m in candidates:
        w = _matrix(m)
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        r = _rank(s.numpy(), cfg)
        full = w.shape[0] * w.shape[1]
        new = r * (w.shape[0] + w.shape[1])
        row: dict[str, Any] = {
            "layer": name,
            "shape": list(w.shape),
            "rank": r,
            "full_rank": len(s),
            "params": full,
            "params_factorized": new,
        }
        if new > (1 - cfg.min_saving) * full:
            rows.append({**row, "chosen": False, "why": "saves too little at this rank"})
            continue
        _set(module, name, _factorized(m, r, u, s, vh))
        err = float(np.linalg.norm(module_logits(module, samples) - ref)) / ref_norm
        _set(module, name, m)
        row["error"] = round(err, 5)
        ok = err <= cfg.max_layer_error
        rows.append(
            {**row, "chosen": ok, "why": "" if ok else f"too sensitive (error {err:.3g} > {cfg.max_layer_error:g})"}
        )
        if ok:
            chosen.append((name, m, r, u, s, vh))
    if not chosen:
        why = {r["why"].split(" (")[0] for r in rows}
        raise UserInputError(
            f"no layer can be factorized at this setting: all {len(rows)} candidate layers are "
            f"{' or '.join(sorted(why))}",
            hint="lower the rank ratio / energy to save more, or raise --lowrank-max-error",
        )
    for name, m, r, u, s, vh in chosen:
        _set(module, name, _factorized(m, r, u, s, vh))
    module.eval()
    after = count_params(module)
    err = float(np.linalg.norm(module_logits(module, samples) - ref)) / ref_norm
    log(
        f"low-rank: factorized {len(chosen)} of {len(candidates)} layers; {before:,} → {after:,} parameters; "
        f"output change {err:.3g} (relative L2, before fine-tuning)"
    )
    return {
        "rank_ratio": cfg.rank_ratio,
        "energy": cfg.energy,
        "max_layer_error": cfg.max_layer_error,
        "layers_factorized": len(chosen),
        "candidates": len(candidates),
        "params_before": before,
        "params_after": after,
        "output_error": round(err, 5),
        "sensitivity_samples": len(samples),
        "layers": rows[:80],
    }
