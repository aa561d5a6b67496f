"""Static int8 for OpenVINO with NNCF: the artifact's ONNX model → an int8 OpenVINO IR (model.xml + .bin).

NNCF's post-training quantization (``nncf.quantize``: min-max ranges on the calibration images,
fast bias correction) inserts FakeQuantize nodes that OpenVINO's CPU plugin runs as int8
(VNNI/AMX where the CPU has them). The IR is saved with fp32 weights where not quantized
(``compress_to_fp16=False``). With ``data`` and ``max_accuracy_drop``, NNCF's accuracy-control loop
(``quantize_with_accuracy_control``) reverts the most harmful layers to float until the drop in
top-1 accuracy is within the bound.

Validation: the int8 IR is run by OpenVINO (f32 inference precision) against the float ONNX model
(ONNX Runtime) on the validation inputs: top-1 agreement where fp32 is confident, and accuracy on
``data``.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import validate
from ..errors import MissingDependencyError, UnknownNameError, UserInputError
from ..model.artifact import Artifact, library_versions, write_artifact
from .calibration import calibration_reader
from .quantize import check_output_and_drop

__all__ = ["OpenVINOInt8Config", "quantize_openvino"]

PRESETS = ("performance", "mixed")


@dataclass(frozen=True)
class OpenVINOInt8Config:
    calibration: Any = None  # folder of images, .npy/.npz, {input: array} or an ArrayReader
    calib_size: int = 300
    preset: str = "performance"  # performance: symmetric activations; mixed: asymmetric activations
    fast_bias_correction: bool = True  # False: NNCF's full BiasCorrection (slower, layer by layer)
    smooth_quant: float | None = None  # SmoothQuant alpha for MatMuls (NNCF runs it for transformers only)
    ignored_nodes: tuple[str, ...] = ()  # ONNX node names kept in float (NNCF ignored_scope)
    min_top1_agreement: float = 0.95  # where fp32 is confident, see _gate
    min_cosine: float = 0.98  # for models that are not classifiers: every output, every validation input
    kind: ClassVar[str] = "openvino-int8"

    def check(self) -> None:
        if self.preset not in PRESETS:
            raise UnknownNameError("NNCF preset", self.preset, PRESETS)
        if self.calib_size < 1:
            raise UserInputError(f"calib_size must be at least 1, got {self.calib_size}")


def _deps():
    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        raise MissingDependencyError(
            "OpenVINO int8 quantization (nncf, openvino)", "openvino", package="'bushu[openvino]' nncf==3.4.0"
        ) from e
    return nncf, ov


def quantize_openvino(
    artifact_in: Artifact | str | Path,
    out: str | Path,
    config: OpenVINOInt8Config,
    *,
    data: str | Path | None = None,
    max_accuracy_drop: float | None = None,
    measure: bool = True,
    log: Callable[[str], None] | None = None,
    keep_failed: bool = False,
) -> Artifact:
    """Quantize ``artifact_in`` (ONNX) to an int8 OpenVINO IR artifact at ``out``; the input is untouched.
    ``keep_failed``: as for ``quantize``, write the result even when it fails the agreement gate."""
    from ..data.arrays import labelled_arrays

    log = log or (lambda _m: None)
    config.check()
    art = artifact_in if isinstance(artifact_in, Artifact) else Artifact.load(artifact_in)
    out = Path(out)
    _check_request(art, out, config, data, max_accuracy_drop)
    assert config.calibration is not None  # _check_request refuses a config without it
    nncf, ov = _deps()
    reader = calibration_reader(config.calibration, art, limit=config.calib_size, batch_size=1)
    detector = art.task == "detection"  # judged by its boxes (bushu.detection.validate), --data holds boxes
    dataset = labelled_arrays(data, art, require="accuracy") if data is not None and not detector else None
    name = art.inputs[0].name
    calib = nncf.Dataset([{k: v[i : i + 1] for k, v in reader.feeds.items()} for i in range(len(reader))])
    model = ov.convert_model(str(art.model_path))
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}[config.preset]
    log(f"NNCF int8 ({config.preset} preset) calibrating on {len(reader)} sample(s)")
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: keep stdout for results (--json)
        qmodel, mode = _run_nncf(nncf, model, calib, dataset, name, preset, len(reader), config, max_accuracy_drop)
    with tempfile.TemporaryDirectory(prefix="bushu-ov-") as tmpd:
        xml = Path(tmpd) / "model.xml"
        ov.save_model(qmodel, str(xml), compress_to_fp16=False)
        feeds = dataset.feeds if dataset is not None else reader.feeds
        ref = validate.run_model(art.model_path, feeds)
        got = validate.run_model(xml, feeds, backend="openvino")
        if list(got) != list(ref):
            raise UserInputError(
                f"the OpenVINO model's outputs {list(got)} are named differently from the source's {list(ref)}"
            )
        per_output = validate.agreement(ref, got)
        details: dict[str, Any] = {}
        images = (data or config.calibration) if detector else None
        verdict = _gate(art, xml, images, ref, got, per_output, config, max_accuracy_drop, keep_failed, details)
        acc = _accuracy(art, dataset, ref, got, max_accuracy_drop, log) if dataset is not None else None
        rows = _rows(art, xml, per_output, acc, measure, log)
        reason = _reason(config, mode, len(reader))
        section: dict[str, Any] = {
            "rows": rows,
            "quantize": {"kind": config.kind, **{k: v for k, v in asdict(config).items() if k != "calibration"}},
            "reason": reason,
            **details,
            "validation": {
                "outputs": per_output,
                "gate": verdict,
                "inputs": {
                    "from": "data" if dataset is not None else "calibration",
                    "samples": len(next(iter(feeds.values()))),
                },
                "backend": "openvino f32 vs onnxruntime fp32",
            },
            "calibration": {"source": reader.source, "samples": len(reader), "skipped_files": reader.skipped[:20]},
        }
        if acc is not None:
            section["accuracy"] = acc
        new = _new_artifact(art, section, reason)
        return write_artifact(out, {"model.xml": xml, "model.bin": xml.with_suffix(".bin")}, new, art.labels)


def _check_request(
    art: Artifact, out: Path, config: OpenVINOInt8Config, data: str | Path | None, max_accuracy_drop: float | None
) -> None:
    if art.format != "onnx":
        raise UserInputError(f"OpenVINO int8 reads ONNX artifacts; {art.path} is {art.format!r}")
    check_output_and_drop(art, out, data, max_accuracy_drop)
    if config.calibration is None:
        raise UserInputError(
            "OpenVINO int8 needs calibration data: a folder of representative images "
            f"or a .npy/.npz file of inputs ({', '.join(str(s) for s in art.inputs)})",
            hint="pass --calib DIR (100-300 images)",
        )


def _gate(
    art: Artifact,
    xml: Path,
    images: Any,
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    per_output: dict[str, Any],
    config: OpenVINOInt8Config,
    max_accuracy_drop: float | None,
    keep_failed: bool,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The verdict: a detector (``images`` given) by its boxes, mAP on labelled data, else box agreement on
    the images; a DBNet-style text detector by its decoded boxes and map; a classifier by top-1 agreement; any
    other model (embeddings, raw tensors) by each output's cosine to fp32."""
    from .quantize import _db_output, check_gate, cosine_gate, text_box_gate

    verdict = None
    if images is not None:
        from ..detection.validate import detection_gate

        verdict = detection_gate(
            "OpenVINO int8", art, xml, "openvino", images, max_accuracy_drop, not keep_failed, details
        )
    text_map = _db_output(art) if verdict is None else None
    if text_map is not None:
        verdict = text_box_gate("OpenVINO int8", ref, got, text_map, not keep_failed, details, config.min_cosine)
    if verdict is None and art.task != "classification":
        verdict = cosine_gate("OpenVINO int8", per_output, config.min_cosine, not keep_failed)
    return verdict or check_gate("OpenVINO int8", per_output, config.min_top1_agreement, not keep_failed, details)


def _accuracy(
    art: Artifact,
    dataset: Any,
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    max_accuracy_drop: float | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Top-1 accuracy before and after on the labelled ``dataset``; AccuracyDropError past the bound."""
    from .quantize import AccuracyDropError, _targets

    targets = _targets(dataset)
    before = validate.accuracy(ref[art.outputs[0].name], targets)
    after = validate.accuracy(got[art.outputs[0].name], targets)
    acc = {"samples": len(dataset), "fp32": before, "quantized": after, "drop": round(before - after, 3)}
    log(f"accuracy on {len(dataset)} labelled sample(s): fp32 {before:.2f}%, OpenVINO int8 {after:.2f}%")
    if max_accuracy_drop is not None and before - after > max_accuracy_drop:
        raise AccuracyDropError(
            f"OpenVINO int8 loses {before - after:.2f} points of accuracy ({before:.2f}% "
            f"→ {after:.2f}%), more than the {max_accuracy_drop:g} allowed, even with "
            "NNCF's accuracy control",
            hint="calibrate on more data, or keep fp32",
        )
    return acc


def _reason(config: OpenVINOInt8Config, mode: str, samples: int) -> str:
    extras = "".join(
        f", {x}"
        for x in (
            not config.fast_bias_correction and "full bias correction",
            config.smooth_quant is not None and f"SmoothQuant {config.smooth_quant:g}",
            config.ignored_nodes and f"{len(config.ignored_nodes)} node(s) in float",
        )
        if x
    )
    return (
        f"OpenVINO int8 via NNCF post-training quantization ({config.preset} preset{extras}, {mode}, "
        f"{samples} calibration sample(s)); the CPU plugin runs FakeQuantize as int8"
    )


def _new_artifact(art: Artifact, section: dict[str, Any], reason: str) -> Artifact:
    new = art.derived("model.xml", "openvino", files={"weights": "model.bin"}, metrics={"optimize": section})
    new.add_step(
        "optimize",
        quantize=section["quantize"],
        reason=reason,
        source=str(art.path),
        versions_nncf=library_versions("nncf", "openvino"),
    )
    return new


def _run_nncf(
    nncf, model, calib, dataset, name: str, preset, n: int, config: OpenVINOInt8Config, max_accuracy_drop: float | None
):
    """(quantized ov.Model, mode): plain post-training quantization, or NNCF's accuracy-control loop."""
    options: dict[str, Any] = {"fast_bias_correction": config.fast_bias_correction}
    if config.ignored_nodes:
        options["ignored_scope"] = _ignored_scope(nncf, model, config.ignored_nodes)
    if config.smooth_quant is not None:
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
        )

        options["model_type"] = nncf.ModelType.TRANSFORMER  # NNCF runs SmoothQuant for this model type only
        options["advanced_parameters"] = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=config.smooth_quant)
        )
    if max_accuracy_drop is None:
        return nncf.quantize(model, calib, preset=preset, subset_size=n, **options), "plain"
    targets = np.asarray(dataset.targets)
    x = dataset.feeds[name]
    val = nncf.Dataset([(x[i : i + 1], int(targets[i])) for i in range(len(x))], lambda item: {name: item[0]})

    def validation_fn(compiled, items) -> float:
        port = compiled.outputs[0]
        return float(np.mean([int(np.argmax(compiled({name: xi})[port]) == t) for xi, t in items]))

    return nncf.quantize_with_accuracy_control(
        model, calib, val, validation_fn, max_drop=max_accuracy_drop / 100.0, preset=preset, subset_size=n, **options
    ), "accuracy control"


def _ignored_scope(nncf, model, onnx_names: tuple[str, ...]):
    """NNCF IgnoredScope for ONNX node names: OpenVINO names a converted node's operations after it
    (a Conv with bias becomes '<name>/WithoutBiases' plus an Add)."""
    names = [
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if any(op.get_friendly_name() == n or op.get_friendly_name().startswith(n + "/") for n in onnx_names)
    ]
    return nncf.IgnoredScope(names=names, validate=False)


def _rows(
    art: Artifact,
    xml: Path,
    per_output: dict[str, Any],
    acc: dict[str, Any] | None,
    measure: bool,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    from ._measure import measure as _measure

    if measure:
        log("measuring size, latency (batch 1) and throughput (batch 8) on OpenVINO, before and after")
    before = {"model": "fp32 (openvino)", **_measure(art.model_path, backend="openvino", speed=measure)}
    after = {"model": "int8 (openvino)", **_measure(xml, backend="openvino", speed=measure)}
    first: dict[str, Any] = next(iter(per_output.values()), {})
    if "top1_agreement" in first:
        before["top1_agreement"], after["top1_agreement"] = 1.0, first["top1_agreement"]
    if acc is not None:
        before["accuracy"], after["accuracy"] = acc["fp32"], acc["quantized"]
    return [before, after]
