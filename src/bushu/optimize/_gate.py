"""The int8 agreement gate: pass, fail, or "cannot tell" when the inputs cannot judge it.

Top-1 agreement with fp32 is counted only on inputs where fp32 is confident: its top-1 softmax
probability is at least ``validate.CONFIDENT`` (0.5). There the runner-up holds less than half the
probability, so int8 must move the logits a long way to change the answer; on inputs where fp32
hesitates between near-tied classes (photos of no class it knows, textures), rounding flips the
top-1 either way and neither answer is wrong. Top-5 overlap and logit cosine are reported on all
inputs. With fewer than ``MIN_CONFIDENT`` confident inputs a percentage would be noise (one flip
out of 5 is 20 points), so the verdict is "cannot tell" instead of pass or fail.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CANNOT_TELL", "FAIL", "MIN_CONFIDENT", "PASS", "judge"]

PASS, FAIL, CANNOT_TELL = "pass", "fail", "cannot tell"
MIN_CONFIDENT = 10  # confident inputs needed before top-1 agreement is judged


def judge(per_output: dict[str, dict[str, Any]], floor: float, min_confident: int = MIN_CONFIDENT) -> dict[str, Any]:
    """{"outcome": pass | fail | cannot tell, "detail": one line with the figures, "floor", "min_confident"}.

    ``per_output``: ``validate.agreement``'s result. Outputs without classes are not judged here.
    One failing output fails the gate; otherwise one that cannot be judged makes it "cannot tell".
    """
    outcomes, parts = [], []
    for name, row in per_output.items():
        if "top1_agreement" not in row:
            continue
        n, agree = row.get("confident_samples", 0), row.get("top1_agreement_confident")
        figures = (
            f"top-5 overlap {row['top5_overlap']:.1%} and logit cosine {row['cosine_mean']:.4f} "
            f"(mean) on all {row['samples']}"
        )
        if n < min_confident or agree is None:  # None: no confident input at all
            outcomes.append(CANNOT_TELL)
            parts.append(
                f"{name}: fp32 is confident on only {n} of {row['samples']} inputs (at least "
                f"{min_confident} needed to judge top-1 agreement); {figures}"
            )
            continue
        outcomes.append(PASS if agree >= floor else FAIL)
        parts.append(
            f"{name}: top-1 agreement {agree:.1%} on the {n} inputs where fp32 is confident "
            f"(minimum {floor:.0%}); {figures}"
        )
    outcome = FAIL if FAIL in outcomes else CANNOT_TELL if CANNOT_TELL in outcomes else PASS
    return {
        "outcome": outcome,
        "detail": "; ".join(parts) or "no classification output to judge",
        "floor": floor,
        "min_confident": min_confident,
    }
