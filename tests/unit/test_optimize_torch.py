"""Edge cases of the PyTorch helpers behind bushu optimize (bushu.optimize._torch) on a tiny Linear model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bushu.data.arrays import ArrayReader  # noqa: E402
from bushu.optimize._torch import fit_head, task_gradients  # noqa: E402


def _model_and_data(labelled: bool) -> tuple[torch.nn.Module, ArrayReader]:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    targets = np.array([0, 1, 2, 0, 1, 2]) if labelled else None
    return module, ArrayReader({"x": x}, targets=targets, source="six samples")


def test_fit_head_with_no_steps_reports_no_loss():
    # round(None) raised a TypeError before
    module, ds = _model_and_data(labelled=True)
    assert fit_head(module, ds, None, temperature=2.0, alpha=0.0, steps=0) == {
        "steps": 0,
        "loss_first": None,
        "loss_last": None,
    }


def test_task_gradients_without_labels_or_teacher_is_a_clear_error():
    # indexing the missing teacher raised "'NoneType' object is not subscriptable" before
    module, ds = _model_and_data(labelled=False)
    with pytest.raises(ValueError, match="labelled data or the teacher"):
        task_gradients(module, ds, None)


def test_task_gradients_uses_labels_or_teacher():
    module, ds = _model_and_data(labelled=True)
    task_gradients(module, ds, None)
    assert all(p.grad is not None for p in module.parameters())
    module, ds = _model_and_data(labelled=False)
    task_gradients(module, ds, np.zeros((6, 3), np.float32))
    assert all(p.grad is not None for p in module.parameters())
