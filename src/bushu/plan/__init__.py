"""Requirement-driven deployment: find the served configuration that meets latency, throughput, size
and accuracy targets, write it as a model repository, and verify it under load.

    from bushu.plan import Constraints, PlanConfig, plan
    result = plan("mv2", "images/", "mv2-plan", Constraints(max_p99_ms=40, concurrency=4), PlanConfig(budget_s=300))
"""

from __future__ import annotations

from .config import PlanConfig
from .constraints import Constraints
from .core import check_target, plan

__all__ = ["Constraints", "PlanConfig", "check_target", "plan"]
