"""Knowledge distillation: train a smaller student to mimic the artifact's model (the teacher).

Students: ``narrow`` (the teacher's own architecture with ``1 - width`` of its channels removed by
magnitude, so it starts from the teacher's weights) or a zoo name (its shipped pretrained weights,
its classifier replaced to match the teacher's outputs). The teacher's soft targets come from the
artifact's ONNX model (no PyTorch teacher is needed); the loss is T²·KL(student/T ‖ teacher/T),
plus cross-entropy on the hard labels when the data folder has classes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..data.arrays import ArrayReader
from ..errors import UnknownNameError, UserInputError
from ._torch import count_params, finetune, prunable_layers

__all__ = ["DistillConfig", "make_student"]


@dataclass(frozen=True)
class DistillConfig:
    student: str = "narrow"  # "narrow" or a zoo model name
    width: float = 0.5  # narrow: share of channels kept
    temperature: float = 4.0
    alpha: float | None = None  # weight of the soft-target term (None: 0.5 with labels, 1 without)
    epochs: int = 5
    lr: float = 1e-3  # the student learns from scratch-ish: higher than fine-tuning's
    kind: ClassVar[str] = "distill"

    def check(self) -> None:
        from ..model import zoo

        if self.student != "narrow" and self.student not in zoo.ZOO:
            raise UnknownNameError(
                "student",
                self.student,
                ["narrow", *zoo.ZOO],
                hint="use 'narrow' (a thinner copy of the teacher) or a zoo model name",
            )
        if not 0 < self.width < 1:
            raise UserInputError(f"student width must be between 0 and 1 (exclusive), got {self.width}")
        if self.temperature <= 0:
            raise UserInputError(f"temperature must be positive, got {self.temperature}")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise UserInputError(f"alpha (soft-target weight) must be in [0, 1], got {self.alpha}")
        if self.epochs < 1:
            raise UserInputError(f"distillation needs at least one epoch, got {self.epochs}")


def make_student(
    teacher: Any | None, cfg: DistillConfig, example: Any, n_out: int, log: Callable[[str], None] = lambda _m: None
) -> tuple[Any, dict[str, Any]]:
    """A fresh student module whose output has ``n_out`` values, and how it was made."""
    import torch

    if cfg.student == "narrow":
        if teacher is None:
            raise UserInputError(
                "a 'narrow' student is a thinner copy of the teacher, which needs its PyTorch module",
                hint="import the teacher from a zoo name or module:callable, "
                "or distill into a zoo model (--distill mobilenet_v2)",
            )
        from .prune import PruneConfig, prune_module

        student = copy.deepcopy(teacher)
        details = prune_module(student, PruneConfig(1 - cfg.width, importance="magnitude"), example, log=log)
        return student, {
            "student": "narrow",
            "width": cfg.width,
            "init": "teacher weights, magnitude-pruned",
            "channels": details.get("widths", {}),
        }
    from ..model import zoo

    student, m = zoo.build(cfg.student)
    layers, last = prunable_layers(student, example)
    if not isinstance(last, torch.nn.Linear):
        raise UserInputError(
            f"zoo model {cfg.student} does not end in a Linear classifier; cannot fit it to {n_out} outputs"
        )
    name = next(n for n, mod in layers if mod is last)
    head = torch.nn.Linear(last.in_features, n_out)
    parent, _, leaf = name.rpartition(".")
    setattr(student.get_submodule(parent) if parent else student, leaf, head)
    student.eval()
    with torch.no_grad():
        got = tuple(student(example).shape)
    if got[1:] != (n_out,):
        raise UserInputError(f"student {cfg.student} gives outputs of shape {list(got)}, the teacher {n_out} values")
    return student, {
        "student": cfg.student,
        "init": f"zoo weights ({m.weights_package or 'random'}), new {last.in_features}→{n_out} head",
        "student_params": count_params(student),
    }


def distill(
    student: Any,
    data: ArrayReader,
    teacher_logits: tuple[Any, Any],
    cfg: DistillConfig,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    log(
        f"distilling into {cfg.student} ({count_params(student):,} parameters) on {len(data)} image(s), "
        f"T={cfg.temperature:g}, {cfg.epochs} epoch(s)"
    )
    return finetune(
        student,
        data,
        teacher_logits,
        epochs=cfg.epochs,
        lr=cfg.lr,
        temperature=cfg.temperature,
        alpha=cfg.alpha,
        log=log,
    )
