"""int8 that finds its way: when a quantized model fails its agreement gate, try the known remedies.

    quantize_int8(artifact, out, config, max_attempts=8) -> Artifact    config: StaticInt8Config | OpenVINOInt8Config

Attempts, in order, each judged by the same gate (``_gate``) on the same validation inputs, stopping
at the first that passes:

- onnxruntime: the asked calibration method, then the others (entropy, percentile);
- openvino (NNCF): the asked preset, then the mixed preset (asymmetric activations), then full bias
  correction instead of the fast one; SmoothQuant only for MatMul-heavy models (NNCF applies it
  to MatMuls, and to transformers only);
- both: the best attempt so far with the nodes whose quantization adds the most noise kept in float
  (ranked by ``_sensitivity.rank_nodes`` on an ONNX Runtime int8 of the model, one pass),
  5%, 15%, then 30% of the quantizable nodes (ORT ``nodes_to_exclude``, NNCF ``ignored_scope``);
- both: the best plain attempt with the first 30%, then 60%, of the graph's nodes (in graph order: the
  early, full-resolution stages) kept in float. For PP-OCRv4's text detector the noise does not sit in a
  few convolutions the ranking can single out but in the activations of its early stages, where thin strokes
  are a few pixels wide. Measured on 6 rendered pages + scikit-image's page at 640 px (calibrated and
  validated on them, as --sample does), the map's lowest cosine to fp32: 0.845 plain (minmax), 0.953
  percentile, 0.95 with the 20 most sensitive convolutions in float, 0.963 / 0.992 with the first 50% / 60%
  of the nodes in float (minmax); 1 thread, 640x640: plain int8 1.62x faster than fp32 at 0.32x the size,
  60% in float 1.21x at 0.53x. Keeping the last 30-70% in float instead changed nothing.

When no attempt passes, AccuracyDropError lists every attempt and its figures. When the inputs
cannot tell (fewer than ``_gate.MIN_CONFIDENT`` confident inputs), no attempt can be told apart by
agreement either, since the confident subset depends on fp32 only: the search stops there and keeps
that attempt, with a warning in the artifact and on the console. ``max_attempts=1`` is the plain
quantizer. The table in ``metrics.optimize.rows`` has fp32 and one row per attempt (model "int8",
its ``attempt`` and ``gate`` columns; the kept one last); ``metrics.optimize.attempts`` and the
provenance step record what was tried and kept.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import BushuError, UserInputError
from ..model.artifact import Artifact, write_artifact
from ._gate import CANNOT_TELL, FAIL, PASS
from .openvino_int8 import OpenVINOInt8Config, quantize_openvino
from .quantize import AccuracyDropError, QuantConfig, StaticInt8Config, quantize

__all__ = ["DEFAULT_MAX_ATTEMPTS", "quantize_int8"]

DEFAULT_MAX_ATTEMPTS = 8
SENSITIVE_SHARES = (0.05, 0.15, 0.30)  # of the quantizable nodes kept in float, one attempt each
LEADING_SHARES = (0.3, 0.6)  # of all the graph's nodes, the first ones in graph order, kept in float
METHODS = ("minmax", "entropy", "percentile")

Config = StaticInt8Config | OpenVINOInt8Config


def quantize_int8(
    artifact_in: Artifact | str | Path,
    out: str | Path,
    config: Any,
    *,
    data: str | Path | None = None,
    max_accuracy_drop: float | None = None,
    measure: bool = True,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    log: Callable[[str], None] | None = None,
) -> Artifact:
    """``quantize`` / ``quantize_openvino`` with the fallback search; other configs go straight through."""
    log = log or (lambda _m: None)
    if max_attempts < 1:
        raise UserInputError(
            f"max_attempts must be at least 1, got {max_attempts}",
            hint="pass --max-attempts N with N ≥ 1, or --no-fallback for one attempt",
        )
    if max_attempts == 1 or not isinstance(config, (StaticInt8Config, OpenVINOInt8Config)):
        return _quantize(
            artifact_in, out, config, data=data, max_accuracy_drop=max_accuracy_drop, measure=measure, log=log
        )
    art = artifact_in if isinstance(artifact_in, Artifact) else Artifact.load(artifact_in)
    with tempfile.TemporaryDirectory(prefix="bushu-int8-") as tmpd:
        tmp = Path(tmpd)
        tried: list[dict[str, Any]] = []
        kept: tuple[dict[str, Any], Artifact] | None = None
        best: dict[str, Any] = {}  # "record", "config": the best attempt so far (the sensitivity attempts' base)
        for i, (label, cfg) in enumerate(_variants(art, config, best, max_accuracy_drop, tmp, log)):
            if i >= max_attempts:
                break
            log(f"int8 attempt {i + 1}: {label}")
            record: dict[str, Any] = {"attempt": label, "config": _brief(cfg)}
            try:
                result = _quantize(
                    art,
                    tmp / f"attempt-{i}",
                    cfg,
                    data=data,
                    max_accuracy_drop=max_accuracy_drop,
                    measure=False,
                    log=log,
                    keep_failed=True,
                )
            except BushuError as e:  # accuracy bound missed, or the quantizer failed on this variant
                if i == 0 and not isinstance(e, AccuracyDropError):
                    raise  # bad input or a broken model: no variant will do better
                tried.append({**record, "gate": FAIL, "error": e.message.splitlines()[0]})
                log(f"  {tried[-1]['error']}")
                continue
            record.update(_figures(result))
            record["_result"] = result
            tried.append(record)
            log(f"  {record['gate']}: {record['detail']}")
            if not best or _score(record) > _score(best["record"]):
                best.update(record=record, config=cfg)
            if record["gate"] in (PASS, CANNOT_TELL):
                kept = (record, result)
                break
        if kept is None:
            raise AccuracyDropError(
                f"no int8 attempt passes the agreement gate ({len(tried)} tried):\n"
                + "\n".join(f"  {r['attempt']}: {r.get('detail') or r.get('error')}" for r in tried),
                hint="calibrate on more images like those the model will see (--calib), bound the loss on "
                "labelled data instead (--data DIR --max-accuracy-drop X), or keep fp32 / use --quantize fp16",
                best={"attempts": [_public(r) for r in tried]},
            )
        return _write(art, Path(out), kept, tried, measure, isinstance(config, OpenVINOInt8Config), log)


def _quantize(
    artifact_in: Artifact | str | Path,
    out: str | Path,
    config: QuantConfig | OpenVINOInt8Config,
    *,
    data: str | Path | None,
    max_accuracy_drop: float | None,
    measure: bool,
    log: Callable[[str], None],
    keep_failed: bool = False,
) -> Artifact:
    """``quantize_openvino`` for an OpenVINO config, ``quantize`` for the others."""
    if isinstance(config, OpenVINOInt8Config):
        return quantize_openvino(
            artifact_in,
            out,
            config,
            data=data,
            max_accuracy_drop=max_accuracy_drop,
            measure=measure,
            log=log,
            keep_failed=keep_failed,
        )
    return quantize(
        artifact_in,
        out,
        config,
        data=data,
        max_accuracy_drop=max_accuracy_drop,
        measure=measure,
        log=log,
        keep_failed=keep_failed,
    )


def _variants(
    art: Artifact,
    first: Config,
    best: dict[str, Any],
    max_accuracy_drop: float | None,
    tmp: Path,
    log: Callable[[str], None],
) -> Iterator[tuple[str, Config]]:
    """(label, config) per attempt; the sensitivity attempts start from the best attempt so far."""
    replace = dataclasses.replace
    if isinstance(first, StaticInt8Config):
        yield f"{first.method} calibration", first
        for m in METHODS:
            if m != first.method:
                yield f"{m} calibration", replace(first, method=m)
        if max_accuracy_drop is not None and art.task != "detection":  # the quantizer keeps nodes in float for it
            return
    else:
        yield f"NNCF {first.preset} preset", first
        mixed = replace(first, preset="mixed")
        if first.preset != "mixed":
            yield "NNCF mixed preset", mixed
        if first.fast_bias_correction:
            yield "NNCF mixed preset, full bias correction", replace(mixed, fast_bias_correction=False)
        from ._analysis import profile_model

        if profile_model(art.model_path).kind != "conv":
            yield "NNCF mixed preset, SmoothQuant 0.95", replace(mixed, smooth_quant=0.95)
    if not best:
        return
    record, base = best["record"], best["config"]  # the best of the attempts above, then more nodes in float
    ranked = _rank(art, first, tmp, log)
    where = "exclude_nodes" if isinstance(base, StaticInt8Config) else "ignored_nodes"
    for k in sorted({max(1, math.ceil(share * len(ranked))) for share in SENSITIVE_SHARES} if ranked else ()):
        yield (
            f"{record['attempt']} + {k} most sensitive of {len(ranked)} nodes in float",
            replace(base, **{where: tuple(getattr(base, where)) + tuple(ranked[:k])}),
        )
    leading = _leading(art, base, tmp, log)
    for k in sorted({max(1, math.ceil(share * len(leading))) for share in LEADING_SHARES} if leading else ()):
        yield (
            f"{record['attempt']} + the first {k} of {len(leading)} nodes in float",
            replace(base, **{where: tuple(getattr(base, where)) + tuple(leading[:k])}),
        )


def _rank(art: Artifact, first: Config, tmp: Path, log: Callable[[str], None]) -> list[str]:
    """Quantizable ONNX node names, the one whose int8 adds the most noise first (ONNX Runtime int8,
    minmax, on up to 16 calibration inputs)."""
    from ._sensitivity import rank_nodes
    from .calibration import calibration_reader
    from .quantize import preprocess

    log("ranking nodes by the quantization noise they add (one ONNX Runtime int8 pass)")
    try:
        static = StaticInt8Config(calibration=first.calibration, calib_size=first.calib_size, min_top1_agreement=0.0)
        qdq = quantize(art, tmp / "rank-qdq", static, measure=False, keep_failed=True)
        pre = preprocess(art.model_path, tmp / "rank-pre.onnx", log)
        feeds = calibration_reader(first.calibration, art, limit=16, batch_size=8).feeds
        return [n for n, _ in rank_nodes(pre, qdq.model_path, feeds, tmp)]
    except BushuError as e:
        log(f"node ranking failed ({e.message.splitlines()[0]}); no attempts with nodes in float")
        return []


def _leading(art: Artifact, cfg: Config, tmp: Path, log: Callable[[str], None]) -> list[str]:
    """The graph's node names in graph order (ONNX keeps nodes topologically sorted, inputs first): those of the
    graph ONNX Runtime quantizes (pre-processed, opset >= 13) for a static config, the model's own for NNCF."""
    import onnx

    path = art.model_path
    if isinstance(cfg, StaticInt8Config):
        from .quantize import at_least_opset13, preprocess

        try:
            path = preprocess(at_least_opset13(path, tmp, log), tmp / "leading-pre.onnx", log)
        except Exception as e:  # noqa: BLE001 - onnxruntime's pre-processing raises whatever its passes raise
            log(f"pre-processing for the leading-nodes attempts failed ({str(e)[:100]}); no such attempts")
            return []
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.name]


def _figures(result: Artifact) -> dict[str, Any]:
    val = result.metrics["optimize"]["validation"]
    gate = val["gate"]
    row = next((r for r in val["outputs"].values() if "top1_agreement" in r), next(iter(val["outputs"].values())))
    figures = {
        "gate": gate["outcome"],
        "detail": gate["detail"],
        "agreement_confident": row.get("top1_agreement_confident"),
        "detection_score": gate.get("score"),
        "confident_n": row.get("confident_samples"),
        "top1_agreement": row.get("top1_agreement"),
        "top5_overlap": row.get("top5_overlap"),
        "cosine_mean": row.get("cosine_mean"),
        "samples": row.get("samples"),
    }
    acc = result.metrics["optimize"].get("accuracy")
    if acc:
        figures["accuracy"] = acc["quantized"]
    return figures


def _score(record: dict[str, Any]) -> tuple[float, float]:
    # a detector's: its mAP@0.5 or box agreement (bushu.detection.validate)
    return (record.get("detection_score") or record.get("agreement_confident") or 0.0, record.get("cosine_mean") or 0.0)


def _brief(cfg: Config) -> dict[str, Any]:
    d = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "calibration"}
    for k in ("exclude_nodes", "ignored_nodes"):
        if k in d:
            d[k] = list(d[k])
    return d


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _write(
    art: Artifact,
    out: Path,
    kept: tuple[dict[str, Any], Artifact],
    tried: list[dict[str, Any]],
    measure: bool,
    openvino: bool,
    log: Callable[[str], None],
) -> Artifact:
    """The kept attempt as the artifact at ``out``, with every attempt in its table and metadata."""
    from ._measure import measure as _measure

    record, result = kept
    backend = "openvino" if openvino else "onnxruntime"
    suffix = " (openvino)" if openvino else ""
    if measure:
        log(f"measuring size, latency (batch 1) and throughput (batch 8) of fp32 and {len(tried)} attempt(s)")
    rows = [
        {"model": f"fp32{suffix}", **_measure(art.model_path, backend=backend, speed=measure), "top1_agreement": 1.0}
    ]
    for r in sorted((r for r in tried if "_result" in r), key=lambda r: r is record):
        rows.append(
            {
                "model": f"int8{suffix}",
                "attempt": r["attempt"],
                **_measure(r["_result"].model_path, backend=backend, speed=measure),
                **{
                    k: r[k]
                    for k in (
                        "gate",
                        "top1_agreement",
                        "agreement_confident",
                        "confident_n",
                        "top5_overlap",
                        "cosine_mean",
                        "accuracy",
                    )
                    if r.get(k) is not None
                },
            }
        )
        r.update({k: rows[-1].get(k) for k in ("size_mb", "p50_ms", "throughput_b8")})
    for r in tried:
        r.pop("_result", None)
    section = result.metrics["optimize"]
    if "accuracy" in section:
        rows[0]["accuracy"] = section["accuracy"]["fp32"]
    section["rows"] = rows
    section["attempts"] = tried
    section["kept"] = record["attempt"]
    if record["gate"] == CANNOT_TELL:
        log(f"warning: {section.get('validation_warning', record['detail'])}")
    files = {result.model_file: result.model_path, **{f: result.path / f for f in result.files.values()}}
    step = result.provenance["steps"][-1]
    step["int8_attempts"] = [r["attempt"] for r in tried]
    step["int8_kept"] = record["attempt"]
    return write_artifact(out, files, result, result.labels)
