"""The int8 agreement gate: top-1 agreement where fp32 is confident, "cannot tell" below 10 such inputs."""

from __future__ import annotations

import numpy as np
import pytest

from bushu import validate
from bushu.optimize._gate import CANNOT_TELL, FAIL, PASS, judge
from bushu.optimize.quantize import AccuracyDropError, check_gate


def logits(n_confident: int, n_tied: int, classes: int = 10) -> np.ndarray:
    """Rows 0..n_confident-1: class i % classes far ahead (p ≈ 1); then near-ties between classes 0 and 1."""
    x = np.zeros((n_confident + n_tied, classes), np.float32)
    for i in range(n_confident):
        x[i, i % classes] = 8.0
    x[n_confident:, 0], x[n_confident:, 1] = 1.0, 0.99
    return x


def flip(x: np.ndarray, rows) -> np.ndarray:
    """The other model: in each row given, the two highest classes swap places."""
    y = x.copy()
    for i in rows:
        a, b = np.argsort(-y[i])[:2]
        y[i, [a, b]] = y[i, [b, a]]
    return y


def test_agreement_counts_confident_inputs_and_reports_every_figure_with_its_count():
    ref = logits(20, 10)
    got = flip(ref, range(20, 30))  # every near-tie flips, no confident input does
    row = validate.agreement({"logits": ref}, {"logits": got})["logits"]
    assert row["confident_samples"] == 20 and row["samples"] == 30
    assert row["top1_agreement_confident"] == 1.0 and row["top1_agreement"] == pytest.approx(20 / 30, abs=1e-4)
    assert row["top5_overlap"] == 1.0  # a swap within the top two keeps the top five
    assert 0.99 < row["cosine_mean"] <= 1.0
    verdict = judge({"logits": row}, 0.95)
    assert verdict["outcome"] == PASS and "on the 20 inputs where fp32 is confident" in verdict["detail"]
    assert "on all 30" in verdict["detail"]


def test_flips_on_confident_inputs_fail():
    ref = logits(20, 0)
    row = validate.agreement({"logits": ref}, {"logits": flip(ref, [0, 1])})["logits"]
    assert row["top1_agreement_confident"] == 0.9
    assert judge({"logits": row}, 0.95)["outcome"] == FAIL
    assert judge({"logits": row}, 0.9)["outcome"] == PASS
    with pytest.raises(AccuracyDropError, match=r"90\.0% on the 20 inputs where fp32 is confident"):
        check_gate("int8", {"logits": row}, 0.95, True, {})


def test_fewer_than_ten_confident_inputs_cannot_tell_however_good_or_bad():
    ref = logits(9, 21)
    for got in (ref, flip(ref, range(30))):  # perfect and all wrong: neither can be judged on 9 inputs
        row = validate.agreement({"logits": ref}, {"logits": got})["logits"]
        verdict = judge({"logits": row}, 0.95)
        assert verdict["outcome"] == CANNOT_TELL, verdict
        assert "confident on only 9 of 30 inputs" in verdict["detail"]
    details: dict = {}
    assert check_gate("int8", {"logits": row}, 0.95, True, details)["outcome"] == CANNOT_TELL  # no exception
    assert "cannot tell" in details["validation_warning"]
    ten = validate.agreement({"logits": logits(10, 0)}, {"logits": logits(10, 0)})["logits"]
    assert judge({"logits": ten}, 0.95)["outcome"] == PASS


def test_one_failing_output_fails_and_outputs_without_classes_are_not_judged():
    ref = logits(12, 0)
    good = validate.agreement({"a": ref}, {"a": ref})["a"]
    bad = validate.agreement({"b": ref}, {"b": flip(ref, range(6))})["b"]
    few = validate.agreement({"c": logits(3, 0)}, {"c": logits(3, 0)})["c"]
    assert judge({"a": good, "b": bad, "c": few}, 0.95)["outcome"] == FAIL
    assert judge({"a": good, "c": few}, 0.95)["outcome"] == CANNOT_TELL
    feats = validate.agreement({"f": np.ones((4, 8, 2), np.float32)}, {"f": np.ones((4, 8, 2), np.float32)})["f"]
    assert "top1_agreement" not in feats and judge({"f": feats}, 0.95)["outcome"] == PASS
