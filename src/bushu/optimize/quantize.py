"""Quantize an ONNX artifact with ONNX Runtime's own tooling, validate it, write a new artifact.

    quantize(artifact_in, out, config) -> Artifact      config: StaticInt8Config | DynamicInt8Config | Fp16Config

- static int8: ``quant_pre_process`` (shape inference + graph optimization), then ``quantize_static``
  in QDQ format, weights per channel, calibrated on the user's data. The activation/weight types follow
  ONNX Runtime's CPU guidance for this CPU (U8S8 on x86; 7-bit weights without VNNI; S8S8 on ARM).
- dynamic int8: ``quantize_dynamic``, only for models whose arithmetic is mostly MatMul/Gemm (for
  conv nets ORT's dynamic kernels are slower than fp32).
- fp16: ONNX Runtime's float16 converter with float32 inputs/outputs kept, shape arithmetic in fp32
  (``_fp16``).

Every result is checked against the float source: fp16 within a tolerance (ToleranceError per output),
int8 by top-1 agreement / cosine similarity, and by accuracy on ``data`` when given. With
``max_accuracy_drop``, static int8 keeps the most sensitive nodes in float until the drop is within
the bound. The input artifact is never modified; the output is written atomically.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import validate
from ..data.arrays import ArrayReader, labelled_arrays
from ..errors import BushuError, UnknownNameError, UserInputError, ValidationError
from ..model.artifact import Artifact, write_artifact
from ._analysis import CONV_OPS, MATMUL_OPS, ModelProfile, cpu_int8, profile_model
from .calibration import calibration_reader

__all__ = [
    "AccuracyDropError",
    "DynamicInt8Config",
    "Fp16Config",
    "QuantConfig",
    "StaticInt8Config",
    "choose_int8",
    "quantize",
]

METHODS = ("minmax", "entropy", "percentile")
INT8_TYPES = ("uint8", "int8")


@dataclass(frozen=True)
class StaticInt8Config:
    """Static int8 (QDQ). ``activation_type``/``reduce_range`` None = what runs fastest on this CPU."""

    calibration: Any = None  # folder of images, .npy/.npz file, {input: array} or an ArrayReader
    method: str = "minmax"
    per_channel: bool = True
    activation_type: str | None = None
    weight_type: str = "int8"
    reduce_range: bool | None = None
    exclude_nodes: tuple[str, ...] = ()
    calib_size: int = 100
    # top-1 agreement with fp32 required on the validation inputs fp32 is confident about (p ≥ 0.5);
    # where fp32 itself hesitates, int8 noise flips near-ties and says little about quality (see _gate)
    min_top1_agreement: float = 0.95
    min_cosine: float = 0.98  # for models that are not classifiers: every output, every validation input
    kind: ClassVar[str] = "int8"


@dataclass(frozen=True)
class DynamicInt8Config:
    """Dynamic int8: weights int8, activations quantized at run time. For MatMul/Gemm-heavy models."""

    weight_type: str = "int8"
    per_channel: bool = False
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    exclude_nodes: tuple[str, ...] = ()
    allow_conv_models: bool = False  # quantize anyway when most MACs are in Conv (slower on CPUs)
    validation: Any = None  # optional inputs to validate on (as StaticInt8Config.calibration)
    min_top1_agreement: float = 0.9
    min_cosine: float = 0.98
    kind: ClassVar[str] = "dynamic"


@dataclass(frozen=True)
class Fp16Config:
    keep_io_types: bool = True
    atol: float = 1e-2
    rtol: float = 2e-2  # of each output's largest magnitude (see bushu.validate.check_tolerance)
    validation: Any = None
    kind: ClassVar[str] = "fp16"


QuantConfig = StaticInt8Config | DynamicInt8Config | Fp16Config


class AccuracyDropError(ValidationError):
    """The compressed model loses more accuracy (or agreement) than allowed."""

    def __init__(self, message: str, *, hint: str | None = None, best: dict[str, Any] | None = None):
        BushuError.__init__(self, message, hint=hint)
        self.mismatches = []
        self.best = best or {}


# -- defaults by model type and CPU ---------------------------------------------------------------
def choose_int8(profile: ModelProfile, has_calibration: bool) -> tuple[str, str]:
    """('static' | 'dynamic', why) for ``--quantize int8``."""
    conv, mm = profile.share(CONV_OPS), profile.share(MATMUL_OPS)
    if profile.kind == "conv":
        return "static", (
            f"conv net ({conv:.0%} of MACs in Conv): static int8 with calibration; "
            "dynamic int8 runs convolutions slower than fp32 on CPUs"
        )
    if has_calibration:
        return "static", f"MatMul-heavy model ({mm:.0%} of MACs) with calibration data: static int8"
    return "dynamic", (
        f"MatMul-heavy model ({mm:.0%} of MACs in MatMul/Gemm) and no calibration data: "
        "dynamic int8 quantizes activations at run time"
    )


def _resolve_static(cfg: StaticInt8Config) -> tuple[StaticInt8Config, str]:
    if cfg.method not in METHODS:
        raise UnknownNameError("calibration method", cfg.method, METHODS)
    for t in (cfg.activation_type, cfg.weight_type):
        if t is not None and t not in INT8_TYPES:
            raise UnknownNameError("int8 type", t, INT8_TYPES)
    if cfg.calib_size < 1:
        raise UserInputError(f"calib_size must be at least 1, got {cfg.calib_size}")
    cpu = cpu_int8()
    act = cfg.activation_type or cpu.activation_type
    rr = cpu.reduce_range if cfg.reduce_range is None else cfg.reduce_range
    reason = cpu.reason if cfg.activation_type is None else f"activations {act} as asked"
    if act == "int8" and cfg.activation_type and "x86" in cpu.reason:
        reason += " (S8S8 on this x86 CPU is barely faster than fp32; uint8 activations are the fast path)"
    return StaticInt8Config(
        **{**asdict(cfg), "calibration": cfg.calibration, "activation_type": act, "reduce_range": rr}
    ), reason


# -- the entry point ------------------------------------------------------------------------------


def check_output_and_drop(art: Artifact, out: Path, data: object, max_accuracy_drop: float | None) -> None:
    """What every int8 path checks before any work: a new output directory, and an accuracy bound only with
    labelled data and a value >= 0."""
    if out.resolve() == art.path.resolve():
        raise UserInputError(
            "the output must be a new directory, not the input artifact",
            hint="pass another -o OUT; the input stays as it is",
        )
    if max_accuracy_drop is not None and (data is None or max_accuracy_drop < 0):
        raise UserInputError(
            "max_accuracy_drop needs labelled data (--data DIR, one folder per class) and a value ≥ 0",
            hint="add --data DIR, or drop --max-accuracy-drop",
        )


def quantize(
    artifact_in: Artifact | str | Path,
    out: str | Path,
    config: QuantConfig,
    *,
    data: str | Path | None = None,
    max_accuracy_drop: float | None = None,
    measure: bool = True,
    log: Callable[[str], None] | None = None,
    keep_failed: bool = False,
) -> Artifact:
    """Quantize ``artifact_in`` into a new artifact at ``out``; the input is left untouched.

    ``data``: a labelled image folder (one folder per class) to measure accuracy before/after.
    ``max_accuracy_drop``: points of top-1 accuracy int8 may lose on ``data`` (needs ``data``).
    ``keep_failed``: write the result even when it fails the agreement gate (its verdict is in
    ``metrics.optimize.validation.gate``); the fallback search (``int8_search``) judges it then.
    """
    log = log or (lambda _msg: None)
    art = artifact_in if isinstance(artifact_in, Artifact) else Artifact.load(artifact_in)
    out = Path(out)
    if art.format != "onnx":
        raise UserInputError(
            f"quantize reads ONNX artifacts; {art.path} is {art.format!r}",
            hint="export it first: bushu export ART --format onnx",
        )
    check_output_and_drop(art, out, data, max_accuracy_drop)
    profile = profile_model(art.model_path)
    detector = art.task == "detection"  # judged by its boxes (bushu.detection.validate), --data holds boxes
    dataset = labelled_arrays(data, art, require="accuracy") if data is not None and not detector else None

    with tempfile.TemporaryDirectory(prefix="bushu-quant-") as tmpdir:
        tmp = Path(tmpdir)
        job: _Job
        if isinstance(config, StaticInt8Config):
            job = _StaticJob(art, config, profile, tmp, log)
        elif isinstance(config, DynamicInt8Config):
            job = _DynamicJob(art, config, profile, tmp, log)
        elif isinstance(config, Fp16Config):
            job = _Fp16Job(art, config, profile, tmp, log)
        else:
            raise UserInputError(
                f"unknown quantization config {type(config).__name__}",
                hint="use StaticInt8Config, DynamicInt8Config or Fp16Config",
            )
        log(f"{job.name}: building and validating against {art.model_file}")
        model = job.build(job.settings.exclude_nodes if hasattr(job.settings, "exclude_nodes") else ())
        feeds, feeds_from = job.validation_feeds(dataset)
        ref = validate.mask_padding(art.inputs, feeds, validate.run_model(art.model_path, feeds))
        got = validate.mask_padding(art.inputs, feeds, validate.run_model(model, feeds))
        judged = (
            _detection_gate(job, art, model, "onnxruntime", data, max_accuracy_drop, keep_failed) if detector else None
        )
        validation = (
            {"outputs": validate.agreement(ref, got), "gate": judged}
            if judged
            else job.validate(ref, got, refuse=not keep_failed)
        )
        validation["inputs"] = {"from": feeds_from, "samples": len(next(iter(feeds.values())))}
        acc = None
        if dataset is not None:
            acc = _accuracy_check(job, model, dataset, max_accuracy_drop, tmp, log)
            model = acc.pop("_model")
        _check_io(art, model)
        rows = _rows(art, model, job, validation, acc, measure, log)
        new = _new_artifact(art, job, validation, acc, rows)
        files = {"model.onnx": model, **{f: art.path / f for f in (art.preprocess.files if art.preprocess else [])}}
        result = write_artifact(out, files, new, art.labels)
    return result


# -- jobs: one per config kind --------------------------------------------------------------------
class _Job:
    name: ClassVar[str]

    def __init__(self, art: Artifact, cfg: Any, profile: ModelProfile, tmp: Path, log: Callable[[str], None]):
        self.art, self.settings, self.profile, self.tmp, self.log = art, cfg, profile, tmp, log
        self.reason = ""
        self.reader: ArrayReader | None = None
        self.details: dict[str, Any] = {}

    def validation_feeds(self, dataset: ArrayReader | None) -> tuple[dict[str, np.ndarray], str]:
        src = dataset or self.reader
        if src is not None:
            return src.feeds, "data" if src is dataset else "calibration"
        from ..spec import synthetic_feeds

        self.details["validation_warning"] = "validated on synthetic random inputs only; pass real inputs"
        batch = 8 if all(s.has_batch for s in self.art.inputs) else 1
        return synthetic_feeds(self.art.inputs, batch=batch, seed=1), "synthetic"

    def validate(self, ref: dict[str, np.ndarray], got: dict[str, np.ndarray], refuse: bool = True) -> dict[str, Any]:
        per_output = validate.agreement(ref, got)
        text_map = _db_output(self.art) if self.name != "fp16" else None
        if text_map is not None:  # a DBNet-style text detector: judged by the boxes its map decodes to
            return self._validate_by_text_boxes(per_output, ref, got, text_map, refuse)
        if self.art.task != "classification":  # no classes: the outputs themselves must keep their direction
            return self._validate_by_cosine(per_output, refuse)
        verdict = check_gate(self.name, per_output, self.settings.min_top1_agreement, refuse, self.details)
        return {"outputs": per_output, "gate": verdict}

    def _validate_by_text_boxes(
        self,
        per_output: dict[str, Any],
        ref: dict[str, np.ndarray],
        got: dict[str, np.ndarray],
        name: str,
        refuse: bool,
    ) -> dict[str, Any]:
        for v in per_output.values():  # top-1 of a probability map means nothing
            for k in [k for k in v if k.startswith(("top1", "gate", "confident", "top5"))]:
                del v[k]
        floor = getattr(self.settings, "min_cosine", 0.98)
        return {"outputs": per_output, "gate": text_box_gate(self.name, ref, got, name, refuse, self.details, floor)}

    def _validate_by_cosine(self, per_output: dict[str, Any], refuse: bool) -> dict[str, Any]:
        floor = getattr(self.settings, "min_cosine", 0.98)
        return {"outputs": per_output, "gate": cosine_gate(self.name, per_output, floor, refuse)}

    def config_dict(self) -> dict[str, Any]:
        d = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(self.settings).items()
            if k not in ("calibration", "validation")
        }
        return {"kind": self.settings.kind, **d}

    def _validation_reader(self, source: Any) -> None:
        if source is not None:
            self.reader = calibration_reader(source, self.art, limit=64, batch_size=8)


class _StaticJob(_Job):
    name = "int8"

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.settings, cpu_reason = _resolve_static(self.settings)
        cfg = self.settings
        if cfg.calibration is None:
            raise UserInputError(
                "static int8 needs calibration data: a folder of representative images "
                f"or a .npy/.npz file of inputs ({', '.join(str(s) for s in self.art.inputs)})",
                hint="pass --calib DIR (100 images is plenty)",
            )
        # Histogram methods stack per-run outputs, so every run must have the same batch size.
        batch = 8 if cfg.method == "minmax" and all(s.has_batch for s in self.art.inputs) else 1
        self.reader = calibration_reader(cfg.calibration, self.art, limit=cfg.calib_size, batch_size=batch)
        kind, why = choose_int8(self.profile, True)
        self.reason = (
            f"static int8 QDQ, {_short(cfg.activation_type)}{_short(cfg.weight_type)}"
            f"{' per-channel' if cfg.per_channel else ''}{', 7-bit weights' if cfg.reduce_range else ''}, "
            f"{cfg.method} calibration on {len(self.reader)} sample(s): {why}; {cpu_reason}"
        )
        self.details["calibration"] = {
            "source": self.reader.source,
            "samples": len(self.reader),
            "skipped_files": self.reader.skipped[:20],
            "method": cfg.method,
        }
        src = at_least_opset13(self.art.model_path, self.tmp, self.log)
        self.pre = preprocess(src, self.tmp / "pre.onnx", self.log)
        self._check_exclusions(cfg.exclude_nodes)
        self.cache = self.tmp / "calibration.json"
        self.builds = 0

    def _check_exclusions(self, names: tuple[str, ...]) -> None:
        import onnx

        known = {n.name for n in onnx.load(str(self.pre), load_external_data=False).graph.node}
        for n in names:
            if n not in known:
                raise UnknownNameError(
                    "node",
                    n,
                    sorted(known)[:200],
                    hint="node names as in the ONNX graph "
                    "after pre-processing; see them with netron or onnx.load(...).graph.node",
                )

    def build(self, exclude: tuple[str, ...]) -> Path:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        cfg = self.settings
        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[cfg.method]

        class _Reader(CalibrationDataReader):  # ORT's own reader type, fed from ours, in runs
            def __init__(self, r: ArrayReader):
                r.rewind()
                self.runs = list(iter(r.get_next, None))
                self.pos, self.end = 0, len(self.runs)

            def get_next(self):
                if self.pos >= self.end:
                    return None
                self.pos += 1
                return self.runs[self.pos - 1]

            def set_range(self, start_index: int, end_index: int) -> None:
                self.pos, self.end = start_index, min(end_index, len(self.runs))

            def __len__(self) -> int:
                return len(self.runs)

        assert self.reader is not None  # __init__ sets it
        reader = _Reader(self.reader)
        # Histogram methods keep every run's activations until they reduce them: calibrate in strides
        # to bound memory. (MinMax reduces inside the graph; its CalibMaxIntermediateOutputs option
        # drops data in ORT 1.31 instead of merging it, so it is not used.)
        extra = (
            {}
            if cfg.method == "minmax"
            else {"CalibStridedMinMax": max(d for d in range(1, 17) if len(reader) % d == 0)}
        )

        self.builds += 1
        out = self.tmp / f"int8-{self.builds}.onnx"
        try:
            quantize_static(
                str(self.pre),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=cfg.per_channel,
                reduce_range=bool(cfg.reduce_range),
                activation_type=types[cfg.activation_type],
                weight_type=types[cfg.weight_type],
                nodes_to_exclude=list(exclude),
                calibrate_method=method,
                calibration_cache_path=str(self.cache),
                extra_options=extra,
            )
        except (ValueError, RuntimeError) as e:
            from ..errors import BackendError

            raise BackendError(
                f"onnxruntime static quantization failed: {str(e)[:300]}",
                hint="try --method minmax, or exclude the failing node",
            ) from e
        return out


def at_least_opset13(path: Path, tmp: Path, log: Callable[[str], None]) -> Path:
    """Per-channel QDQ needs opset 13 (DequantizeLinear's axis); older graphs (PaddleOCR's DBNet is opset 11)
    are converted first, else the quantized graph does not load."""
    import onnx

    model = onnx.load(str(path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:
        return path
    from onnx import version_converter

    log(f"converting opset {opset} to 13 for per-channel int8")
    out = tmp / "opset13.onnx"
    onnx.save(version_converter.convert_version(model, 13), str(out))
    return out


class _DynamicJob(_Job):
    name = "dynamic int8"

    def __init__(self, *args: Any):
        super().__init__(*args)
        cfg = self.settings
        conv = self.profile.share(CONV_OPS)
        if self.profile.kind == "conv" and not cfg.allow_conv_models:
            raise UserInputError(
                f"dynamic int8 is for MatMul/Gemm-heavy models (transformers, MLPs); this is a "
                f"conv net ({conv:.0%} of its MACs in Conv), and ONNX Runtime's dynamic int8 "
                "convolutions run slower than fp32 on CPUs (measured: 0.44× on resnet18)",
                hint="use static int8: --quantize int8 --calib DIR",
            )
        self.reason = (
            f"dynamic int8 on {', '.join(cfg.op_types)}: "
            f"{self.profile.share(MATMUL_OPS):.0%} of MACs are in MatMul/Gemm"
        )
        self._validation_reader(cfg.validation)

    def build(self, exclude: tuple[str, ...]) -> Path:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        out = self.tmp / "dynamic.onnx"
        quantize_dynamic(
            str(self.art.model_path),
            str(out),
            op_types_to_quantize=list(self.settings.op_types),
            per_channel=self.settings.per_channel,
            nodes_to_exclude=list(exclude),
            weight_type={"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[self.settings.weight_type],
        )
        return out


class _Fp16Job(_Job):
    name = "fp16"

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.reason = (
            "fp16 weights and arithmetic, float32 inputs/outputs kept: half the size; fast on GPUs "
            "and CPUs with native fp16, on other CPUs ONNX Runtime falls back to casts"
        )
        self._validation_reader(self.settings.validation)

    def build(self, exclude: tuple[str, ...] = ()) -> Path:
        import onnx

        from ._fp16 import to_fp16

        with warnings.catch_warnings():  # weights clamped to fp16's range
            warnings.simplefilter("ignore", UserWarning)
            model, self.details["conversion"] = to_fp16(
                onnx.load(str(self.art.model_path)), keep_io_types=self.settings.keep_io_types
            )
        out = self.tmp / "fp16.onnx"
        onnx.save(model, str(out))
        return out

    def validate(self, ref: dict[str, np.ndarray], got: dict[str, np.ndarray], refuse: bool = True) -> dict[str, Any]:
        from ..errors import ToleranceError

        cfg = self.settings
        try:
            rows = validate.check_tolerance("fp16 model", ref, got, cfg.atol, cfg.rtol)
        except ToleranceError as e:
            e.hint = _fp16_hint(e.mismatches, validate.agreement(ref, got), cfg.atol)
            raise
        return {"outputs": {**validate.agreement(ref, got)}, "tolerance": validate.summarize(rows)}


def _fp16_hint(mismatches: list[Any], agreement: dict[str, dict[str, Any]], atol: float) -> str:
    """What to do about an fp16 model outside its tolerance: keep fp32, or accept the measured error with the
    smallest `atol` that passes (with the cosine to fp32 to judge it by)."""
    need = max((m.max_abs - m.rtol * (m.max_abs / m.max_rel if m.max_rel else 0.0) for m in mismatches), default=atol)
    if not math.isfinite(need):
        return "keep this model in fp32: in fp16 its outputs overflow (inf or NaN)"
    if need > 0:  # rounded up to two significant digits
        step = 10.0 ** (math.floor(math.log10(need)) - 1)
        need = round(math.ceil(need / step) * step, 12)
    cos = min((v["cosine_min"] for k, v in agreement.items() if k in {m.name for m in mismatches}), default=None)
    seen = f" (cosine to fp32 {cos:.4f} on these inputs)" if cos is not None else ""
    return (
        f"keep this model in fp32, or accept the error{seen} with `atol` {need:g}; "
        "judge it on real inputs (`sample` FILE.npz) first"
    )


def preprocess(src: Path, dst: Path, log: Callable[[str], None]) -> Path:
    """ONNX Runtime's quantization pre-processing (shape inference, graph optimization): the graph
    whose node names ``exclude_nodes`` refer to."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as e:  # noqa: BLE001 - symbolic shape inference gives up on some graphs; ONNX's is enough then
        log(f"pre-processing with symbolic shapes failed ({str(e)[:100]}); retrying without")
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return dst


def check_gate(
    what: str, per_output: dict[str, Any], floor: float, refuse: bool, details: dict[str, Any]
) -> dict[str, Any]:
    """The agreement gate's verdict (see _gate); AccuracyDropError on "fail" when ``refuse``, and a
    warning in ``details`` when the validation inputs cannot tell."""
    from ._gate import CANNOT_TELL, FAIL, judge

    verdict = judge(per_output, floor)
    if verdict["outcome"] == FAIL and refuse:
        raise AccuracyDropError(
            f"{what} model fails the agreement gate: {verdict['detail']}",
            hint="let bushu try the known remedies (drop --no-fallback / raise --max-attempts), "
            "calibrate on more representative data, or bound the loss with "
            "--data DIR --max-accuracy-drop X",
        )
    if verdict["outcome"] == CANNOT_TELL:
        details["validation_warning"] = (
            f"the validation inputs cannot tell whether {what} agrees with fp32: "
            f"{verdict['detail']}; pass more images of the model's classes "
            "(--calib, or labelled --data)"
        )
    return verdict


def cosine_gate(what: str, per_output: dict[str, Any], floor: float, refuse: bool) -> dict[str, Any]:
    """The verdict for a model without classes (an embedding, a detector's raw tensors): every output keeps
    cosine >= ``floor`` to fp32 on every validation input. Drops the top-1 figures from ``per_output`` (they
    mean nothing there); AccuracyDropError naming the outputs below the floor when ``refuse``."""
    from ._gate import FAIL, PASS

    for v in per_output.values():
        for k in [k for k in v if k.startswith(("top1", "gate", "confident"))]:
            del v[k]
    low = {k: v for k, v in per_output.items() if v["cosine_min"] < floor}
    detail = ", ".join(f"{k}: cosine {v['cosine_min']:.4f}" for k, v in (low or per_output).items())
    if low and refuse:
        raise AccuracyDropError(
            f"{what} model drifts from fp32 on {detail} (minimum {floor}, lowest over the validation inputs)",
            hint="calibrate on real inputs (--sample FILE.npz), exclude the most "
            "sensitive nodes (--exclude), or use --quantize fp16",
        )
    return {"outcome": FAIL if low else PASS, "floor": floor, "detail": f"cosine >= {floor} per output: {detail}"}


def _db_output(art: Artifact) -> str | None:
    from ..detection.textmap import is_db_map

    try:
        return is_db_map(art)
    except Exception:  # noqa: BLE001 - an unreadable graph is judged by cosine, as before
        return None


def text_box_gate(
    what: str,
    ref: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    name: str,
    refuse: bool,
    details: dict[str, Any],
    min_cosine: float = 0.98,
) -> dict[str, Any]:
    """A DB text detector's verdict: the DB decoder's boxes on fp32's and the candidate's maps must agree, and the
    map keep ``min_cosine`` on the images with text (bushu.detection.textmap; not on photos without text, where
    it is near 0 and no box comes out). AccuracyDropError naming the output on "fail" when ``refuse``; a warning
    in ``details`` on "cannot tell"."""
    from ..detection.textmap import judge_text_boxes
    from ._gate import CANNOT_TELL, FAIL

    verdict = judge_text_boxes(ref, got, name, min_cosine=min_cosine)
    if verdict["outcome"] == FAIL and refuse:
        raise AccuracyDropError(
            f"{what} text detector drifts from fp32: {verdict['detail']}",
            hint="calibrate on more pages like those the model will see (--sample FILE.npz / --calib DIR), "
            "let bushu keep the sensitive nodes in float (drop --no-fallback), accept a looser map "
            "(--min-cosine), or use --quantize fp16",
        )
    if verdict["outcome"] == CANNOT_TELL:
        details["validation_warning"] = (
            f"the validation inputs cannot tell whether {what} finds the text fp32 finds: "
            f"{verdict['detail']}; pass inputs with text (--sample FILE.npz / --calib DIR)"
        )
    return verdict


def _detection_gate(
    job: _Job, art: Artifact, model: Path, backend: str, data: Any, max_map_drop: float | None, keep_failed: bool
) -> dict[str, Any] | None:
    """A detector's verdict by mAP on ``data`` or box agreement on its calibration images (None: no images)."""
    from ..detection.validate import detection_gate

    images = data or getattr(job.settings, "validation", None) or getattr(job.settings, "calibration", None)
    return detection_gate(job.name, art, model, backend, images, max_map_drop, not keep_failed, job.details)


# -- accuracy, accuracy-aware retries ----------------------------------------------------------------
def _targets(ds: ArrayReader) -> np.ndarray:
    """The labels of ``ds``, read with ``labelled_arrays(require="accuracy")``, which refuses a folder without them."""
    if ds.targets is None:
        raise UserInputError(f"{ds.source} has no labels, so accuracy cannot be measured")
    return ds.targets


def _accuracy_check(
    job: _Job, model: Path, ds: ArrayReader, bound: float | None, tmp: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    out_name = job.art.outputs[0].name
    targets = _targets(ds)
    before = validate.accuracy(validate.run_model(job.art.model_path, ds.feeds)[out_name], targets)
    after = validate.accuracy(validate.run_model(model, ds.feeds)[out_name], targets)
    log(f"accuracy on {len(ds)} labelled sample(s): fp32 {before:.2f}%, {job.name} {after:.2f}%")
    result: dict[str, Any] = {
        "samples": len(ds),
        "fp32": before,
        "quantized": after,
        "drop": round(before - after, 3),
        "excluded_nodes": [],
        "_model": model,
    }
    if bound is None or before - after <= bound:
        return result
    if not isinstance(job, _StaticJob):
        raise AccuracyDropError(
            f"{job.name} loses {before - after:.2f} points of accuracy ({before:.2f}% → "
            f"{after:.2f}%), more than the {bound:g} allowed",
            hint="use static int8 with --calib DIR, or keep fp32",
        )
    return _keep_sensitive_in_float(job, model, ds, bound, before, result, tmp, log)


def _keep_sensitive_in_float(
    job: _StaticJob,
    model: Path,
    ds: ArrayReader,
    bound: float,
    before: float,
    result: dict[str, Any],
    tmp: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from ._sensitivity import rank_nodes

    sub = ds.take(min(len(ds), 16))
    ranking = rank_nodes(job.pre, model, sub.feeds, tmp)
    base = tuple(job.settings.exclude_nodes)
    ranked = [n for n, _ in ranking if n not in base]
    log(
        f"accuracy drop {before - result['quantized']:.2f} > {bound:g}: keeping the most sensitive nodes in float "
        f"(most sensitive: {', '.join(ranked[:3])})"
    )
    best = dict(result)
    out_name, targets, k, limit = job.art.outputs[0].name, _targets(ds), 1, max(1, len(ranked) // 2)
    tried = []
    while k <= limit:
        excluded = tuple(ranked[:k])
        candidate = job.build(base + excluded)
        acc = validate.accuracy(validate.run_model(candidate, ds.feeds)[out_name], targets)
        tried.append({"excluded": k, "accuracy": acc})
        log(f"  {k} node(s) in float: {acc:.2f}% (drop {before - acc:.2f})")
        if acc > best["quantized"]:
            best = {
                **result,
                "quantized": acc,
                "drop": round(before - acc, 3),
                "excluded_nodes": list(excluded),
                "_model": candidate,
            }
        if before - acc <= bound:
            best["search"] = tried
            return best
        k = k * 2 if k * 2 <= limit or k == limit else limit
    raise AccuracyDropError(
        f"int8 stays {best['drop']:.2f} points below fp32 ({before:.2f}% → {best['quantized']:.2f}%), more than the "
        f"{bound:g} allowed, even with up to {tried[-1]['excluded'] if tried else 0} of {len(ranked)} quantizable "
        f"nodes kept in float; best reached: {best['quantized']:.2f}% with {len(best['excluded_nodes'])} in float",
        hint="calibrate on more representative data (--calib), try --method entropy or percentile, "
        "raise --max-accuracy-drop, or use --quantize fp16",
        best={k: v for k, v in best.items() if k != "_model"} | {"search": tried},
    )


# -- output ---------------------------------------------------------------------------------------
def _check_io(art: Artifact, model: Path) -> None:
    """Same input/output names and dtypes as the source: the artifact's IO spec stays valid."""
    from ..errors import BackendError
    from ..runtime import load_backend

    with load_backend(model, "onnxruntime") as be:
        got = [(s.name, s.dtype) for s in be.inputs + be.outputs]
    want = [(s.name, s.dtype) for s in art.inputs + art.outputs]
    if got != want:
        raise BackendError(
            f"the quantized model's IO {got} differs from the source's {want}",
            hint="keep float inputs/outputs (Fp16Config(keep_io_types=True))",
        )


def _rows(
    art: Artifact,
    model: Path,
    job: _Job,
    validation: dict[str, Any],
    acc: dict[str, Any] | None,
    measure: bool,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    from ._measure import measure as _measure

    if measure:
        log("measuring size, latency (batch 1) and throughput (batch 8), before and after")
    before = {"model": "fp32", **_measure(art.model_path, speed=measure)}
    after = {"model": job.name, **_measure(model, speed=measure)}
    first: dict[str, Any] = next(iter(validation["outputs"].values()), {})
    if "top1_agreement" in first:
        before["top1_agreement"], after["top1_agreement"] = 1.0, first["top1_agreement"]
    if acc is not None:
        before["accuracy"], after["accuracy"] = acc["fp32"], acc["quantized"]
    return [before, after]


def _new_artifact(
    art: Artifact, job: _Job, validation: dict[str, Any], acc: dict[str, Any] | None, rows: list[dict[str, Any]]
) -> Artifact:
    section: dict[str, Any] = {
        "rows": rows,
        "quantize": job.config_dict(),
        "reason": job.reason,
        "validation": validation,
        **job.details,
    }
    if acc is not None:
        section["accuracy"] = {k: v for k, v in acc.items() if not k.startswith("_")}
    new = art.derived("model.onnx", "onnx", metrics={"optimize": section})
    new.add_step(
        "optimize",
        quantize=job.config_dict(),
        reason=job.reason,
        source=str(art.path),
        excluded_nodes=(acc or {}).get("excluded_nodes", []),
    )
    return new


def _short(t: str | None) -> str:
    return {"uint8": "U8", "int8": "S8"}.get(t or "", str(t))
