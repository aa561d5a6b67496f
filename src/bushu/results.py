"""What the top-level functions return: small frozen dataclasses with the figures people read first,
and ``details``, the full report (the same keys as the command's ``--json``), read-only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model.artifact import Artifact

__all__ = ["EvalResult", "ExportResult", "ExportRow", "PlanResult", "Prediction", "TrainResult"]


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class Prediction:
    index: int  # output index
    label: str
    score: float


@dataclass(frozen=True)
class EvalResult:
    artifact: Path
    data: Path
    backend: str
    accuracy: float  # top-1, 0..1
    top5: float
    macro_f1: float
    n: int  # examples evaluated (images, texts or clips)
    n_skipped: int
    classes: tuple[str, ...]
    report: Path | None = None  # the HTML report, when asked for
    details: Mapping[str, Any] = field(default_factory=dict, repr=False)  # `bushu eval --json`

    @classmethod
    def from_dict(cls, r: Mapping[str, Any]) -> EvalResult:
        return cls(
            Path(r["model"]),
            Path(r["data"]),
            r["backend"],
            r["accuracy"],
            r["top5"],
            r["macro"]["f1"],
            r["n_images"],
            r["n_skipped"],
            tuple(r["classes"]),
            Path(r["report"]) if r.get("report") else None,
            _frozen(r),
        )


@dataclass(frozen=True)
class ExportRow:
    format: str
    status: str  # ok | exported | mismatch | error | skipped
    file: Path | None
    backend: str | None  # what runs it here (None: convert-only)
    precision: str | None
    size_mb: float | None
    max_abs: float | None  # against the ONNX model
    p50_ms: float | None
    reason: str | None
    details: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, r: Mapping[str, Any]) -> ExportRow:
        return cls(
            r["format"],
            r["status"],
            Path(r["file"]) if r.get("file") else None,
            r.get("backend"),
            r.get("precision"),
            r.get("size_mb"),
            r.get("max_abs"),
            r.get("p50_ms"),
            r.get("reason"),
            _frozen(r),
        )


@dataclass(frozen=True)
class ExportResult:
    out: Path
    rows: tuple[ExportRow, ...]

    def __getitem__(self, fmt: str) -> ExportRow:
        """The row of one format: ``result["onnx"]``."""
        for r in self.rows:
            if r.format == fmt:
                return r
        raise KeyError(fmt)

    @property
    def ok(self) -> bool:
        return all(r.status in ("ok", "exported") for r in self.rows)


@dataclass(frozen=True)
class PlanResult:
    out: Path
    met: bool  # a configuration meets every constraint
    chosen: str | None  # its variant, e.g. onnxruntime/int8
    repository: Path | None  # OUT/repository, written when met
    verified: bool | None  # the repository served and re-measured under load (None: not verified)
    report: Path
    details: Mapping[str, Any] = field(default_factory=dict, repr=False)  # OUT/plan.json

    @classmethod
    def from_dict(cls, r: Mapping[str, Any]) -> PlanResult:
        ver = r.get("verification")
        return cls(
            Path(r["out"]),
            bool(r["met"]),
            (r.get("chosen") or {}).get("variant"),
            Path(r["repository"]) if r.get("repository") else None,
            None if ver is None else bool(ver.get("passed")),
            Path(r["report"]),
            _frozen(r),
        )


@dataclass(frozen=True)
class TrainResult:
    artifact: Artifact
    val_accuracy: float
    macro_f1: float
    classes: tuple[str, ...]
    report: Path
    details: Mapping[str, Any] = field(default_factory=dict, repr=False)  # `bushu train --json`

    @classmethod
    def from_dict(cls, r: Mapping[str, Any], artifact: Artifact) -> TrainResult:
        return cls(artifact, r["val_accuracy"], r["macro_f1"], tuple(r["classes"]), Path(r["report"]), _frozen(r))


def predictions(rows: Sequence[Sequence[tuple[int, str, float]]]) -> list[list[Prediction]]:
    return [[Prediction(int(i), str(lbl), float(s)) for i, lbl, s in row] for row in rows]
