"""What `bushu plan` searches and how long it measures: one frozen object instead of twenty keywords.

    PlanConfig(budget_s=300, backends=("onnxruntime",), precisions=("fp32", "int8"))

``None`` means "the default for this machine" (every installed backend, all precisions, 1..cores
threads); :func:`bushu.plan.core.plan` resolves and checks the fields before searching.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .search import BATCH_SIZES

__all__ = ["PlanConfig"]


@dataclass(frozen=True)
class PlanConfig:
    budget_s: float = 600.0  # time for the whole search; fewer configurations are served when short
    backends: tuple[str, ...] | None = None  # None: every installed backend
    precisions: tuple[str, ...] | None = None  # None: all of PRECISIONS
    duration_s: float = 3.0  # seconds of load per served configuration
    bench_duration_s: float = 0.5  # seconds per in-process timing row
    serve_top: int = 4  # served configurations in the first round (at least one per variant)
    refine: bool = True  # serve the winners' neighbours next
    confirm: bool = True  # serve the leaders again in alternating windows; choose on upper bounds of p99
    verify: bool = True  # serve the written repository once more and replay the load
    verify_s: float | None = None  # None: max(2 × duration_s, 3 s)
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    threads: tuple[int, ...] | None = None  # threads per instance to try; None: 1..cores
    name: str | None = None  # model name in the repository; None: the artifact's
    fresh: bool = False  # ignore finished work journaled in OUT/.work
    compress: tuple[str, ...] = ()  # compression specs such as ("prune0.3", "lowrank0.9")
    train: Path | None = None  # images to fine-tune the compressed models on
    epochs: int = 3  # fine-tuning epochs on ``train``

    @classmethod
    def from_options(cls, base: PlanConfig | None = None, **options: Any) -> PlanConfig:
        """``base`` (or the defaults) with ``options`` replaced; lists become tuples, a comma string of
        compression specs is split. Unknown option names fail with the valid ones."""
        from ..errors import UnknownNameError

        names = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in names:
                raise UnknownNameError("plan option", key, names)
        for key in ("backends", "precisions", "batch_sizes", "threads"):
            if options.get(key) is not None:
                options[key] = tuple(options[key])
        if "compress" in options:
            spec = options["compress"]
            options["compress"] = tuple(spec.split(",") if isinstance(spec, str) else spec or ())
        if options.get("train") is not None:
            options["train"] = Path(options["train"])
        return dataclasses.replace(base or cls(), **options)
