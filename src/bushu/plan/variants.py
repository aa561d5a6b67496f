"""Model variants: one (backend, precision[, compression]) each, with its model file, size and accuracy.

    fp32  onnxruntime and openvino run the artifact's model.onnx
    int8  static int8 QDQ from bushu.optimize.quantize, calibrated on --data; onnxruntime runs it with
          its int8 kernels, openvino maps the QDQ pairs to its own int8 kernels
    bf16  openvino with INFERENCE_PRECISION_HINT=bf16, offered where the CPU has native bf16
    fp16  offered only where the CPU has native fp16 arithmetic (elsewhere the runtimes add casts
          around fp32 kernels, slower than fp32); never on this kind of CPU
    +SPEC compressed (plan/compression.py: prune0.3, lowrank0.9): fp32 on every backend, and int8 of
          the compressed model when int8 is searched; keys read onnxruntime/int8+prune0.3

Accuracy is measured here on --data for every variant, with the variant's own backend and
precision: top-1 accuracy when the class folders are the model's labels, else top-1 agreement with
the fp32 model on the same images (the accuracy proxy; plan.json says which one it is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BushuError, UserInputError
from ..model.artifact import Artifact
from ..runtime.registry import with_flag

__all__ = ["Dataset", "Variant", "build_variants", "load_dataset", "variant_accuracy"]

BACKENDS = with_flag("plannable")
PRECISIONS = ("fp32", "int8", "bf16", "fp16")


@dataclass
class Variant:
    backend: str
    precision: str
    artifact: Artifact | None  # the artifact whose model file this variant runs
    options: dict[str, Any] = field(default_factory=dict)  # backend options (openvino precision)
    size_mb: float | None = None
    accuracy: float | None = None  # percent: accuracy, or agreement with fp32 (see Dataset.metric)
    accuracy_drop: float | None = None
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    notes: dict[str, Any] = field(default_factory=dict)
    compression: str = ""  # "" or a spec such as prune0.3 (the model file is the compressed one)
    compression_details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.precision}" + (f"+{self.compression}" if self.compression else "")

    @property
    def path(self) -> Path:
        assert self.artifact is not None
        return self.artifact.model_path

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.key,
            "backend": self.backend,
            "precision": self.precision,
            "compression": self.compression or None,
            **({"compression_details": self.compression_details} if self.compression_details else {}),
            "file": str(self.path) if self.artifact is not None else None,
            "options": self.options,
            "size_mb": self.size_mb,
            "accuracy": self.accuracy,
            "accuracy_drop": self.accuracy_drop,
            "status": self.status,
            "reason": self.reason,
            **({"notes": self.notes} if self.notes else {}),
        }


@dataclass
class Dataset:
    feeds: dict[str, np.ndarray]
    targets: list[int] | None  # output index per sample when the folders are the model's labels
    metric: str  # "accuracy" | "agreement" | "cosine" (a --sample .npz for a model without classes)
    why: str
    n: int
    source: str
    mask: np.ndarray | None = None  # proxy mode: the samples fp32 is confident about (agreement is taken there)


def _confident(logits: np.ndarray) -> np.ndarray:
    from ..model.processing import softmax
    from ..validate import CONFIDENT

    probs = logits if np.all(logits >= 0) and np.allclose(logits.sum(1), 1, atol=1e-3) else softmax(logits)
    return probs.max(1) >= CONFIDENT


def set_proxy_mask(ds: Dataset, reference: np.ndarray) -> None:
    """Proxy mode: agreement counts on the images fp32 is confident about (top-1 probability ≥ 0.5);
    where fp32 itself hesitates, a flip between near-tied classes says little about quality."""
    from ..validate import CONFIDENT

    mask = _confident(reference)
    if mask.sum() >= max(10, ds.n // 5):
        ds.mask = mask
        ds.why += (
            f" where fp32's top-1 probability is ≥ {CONFIDENT:g} ({int(mask.sum())} of {ds.n} images; "
            "where fp32 hesitates, flips between near-tied classes say little about quality)"
        )
    else:
        ds.why += f" (all {ds.n} images: too few where fp32 is confident)"


def load_dataset(data: Path, art: Artifact, limit: int | None = 512) -> Dataset:
    """The labelled (or plain) image folder as model inputs, and whether accuracy can be measured."""
    from ..data.arrays import labelled_arrays

    if data.suffix.lower() == ".npz":  # --sample: real arrays by input name
        from ..inputs import InputRequest

        req = InputRequest.parse(sample=data)
        req.check(art.inputs)
        sample = req.sample
        assert sample is not None  # parse(sample=...) read it
        n = len(next(iter(sample.values())))
        if art.task == "classification":
            return Dataset(
                sample,
                None,
                "agreement",
                f"top-1 agreement with the fp32 model on {n} samples in {data.name}",
                n,
                str(data),
            )
        return Dataset(
            sample,
            None,
            "cosine",
            f"lowest cosine similarity to the fp32 model's output (x100) "
            f"over {n} samples in {data.name}: the model has no classes",
            n,
            str(data),
        )
    if art.preprocess is None:
        raise UserInputError(
            f"{art.path} has no pre-processing metadata, so the images in {data} cannot be prepared",
            hint="plan an artifact written by bushu import",
        )
    ds = labelled_arrays(data, art, limit=limit, allow_unmatched=True)
    n = len(ds)
    if ds.labels is None:
        why = f"{data} has no class folders: the accuracy figure is top-1 agreement with the fp32 model"
    elif ds.targets is None:
        why = (
            f"the class folders are not the model's labels ({ds.unlabelled.split(':')[0]}), so the accuracy "
            "figure is the proxy: top-1 agreement with the fp32 model on these images"
        )
    else:
        return Dataset(
            ds.feeds, ds.targets.tolist(), "accuracy", f"top-1 accuracy on {n} labelled images in {data}", n, str(data)
        )
    return Dataset(ds.feeds, None, "agreement", why, n, str(data))


def _run(
    path: Path, backend: str, options: dict[str, Any], feeds: dict[str, np.ndarray], out: str, batch: int = 8
) -> np.ndarray:
    from ..runtime import load_backend

    n = len(next(iter(feeds.values())))
    parts = []
    with load_backend(path, backend, **options) as be:
        for i in range(0, n, batch):
            parts.append(np.asarray(be.infer({k: v[i : i + batch] for k, v in feeds.items()})[out]))
    return np.concatenate(parts).reshape(n, -1)


def variant_accuracy(v: Variant, ds: Dataset, reference: np.ndarray | None, out: str) -> np.ndarray:
    """Run ``v`` over the dataset; set v.accuracy (percent) and v.accuracy_drop; return its logits."""
    logits = _run(v.path, v.backend, v.options, ds.feeds, out)
    if ds.metric == "cosine":
        if reference is not None:
            cos = np.sum(logits * reference, 1) / np.maximum(
                np.linalg.norm(logits, axis=1) * np.linalg.norm(reference, axis=1), 1e-12
            )
            v.accuracy = round(100.0 * float(cos.min()), 3)
        else:
            v.accuracy = 100.0
        return logits
    if ds.targets is not None:
        v.accuracy = round(100.0 * float(np.mean(logits.argmax(1) == np.asarray(ds.targets))), 3)
    elif reference is not None:
        same = logits.argmax(1) == reference.argmax(1)
        v.accuracy = round(100.0 * float(np.mean(same[ds.mask] if ds.mask is not None else same)), 3)
    else:  # the fp32 reference itself
        v.accuracy = 100.0
    if reference is not None:
        v.notes["top1_agreement_with_fp32"] = round(float(np.mean(logits.argmax(1) == reference.argmax(1))), 4)
    return logits


def cpu_flags() -> set[str]:
    from ..envinfo import cpu_info

    return {f for f, on in cpu_info().get("isa", {}).items() if on}


def build_variants(
    art: Artifact,
    data: Path,
    work: Path,
    backends: list[str],
    precisions: list[str],
    max_accuracy_drop: float | None,
    ds: Dataset,
    log: Callable[[str], None],
    cache: dict[str, Any] | None = None,
    compress: list[str] | None = None,
    train: Path | None = None,
    epochs: int = 3,
) -> list[Variant]:
    """Every (backend, precision) pair asked for, built (int8 once, shared) and measured for size and
    accuracy; pairs that cannot help on this machine come back with status "skipped" and why. Each
    ``compress`` spec adds fp32 (and int8, when asked for) variants of the compressed model."""
    from ..optimize._measure import file_size_mb

    flags = cpu_flags()
    out_name = art.outputs[0].name
    # accuracy: the fp32 onnxruntime output is the reference for agreement and for the drop
    ref_art_logits = None
    try:
        ref_art_logits = _run(art.model_path, "onnxruntime", {}, ds.feeds, out_name)
    except BushuError as e:
        log(f"fp32 reference on onnxruntime failed: {e.message}")
    if ds.targets is None and ref_art_logits is not None:
        set_proxy_mask(ds, ref_art_logits)
    variants: list[Variant] = []
    int8_art: Artifact | None = None
    int8_error: str | None = None
    for precision in precisions:
        if precision == "int8" and any(b in backends for b in BACKENDS):
            int8_art, int8_error = _int8_artifact(art, data, work, max_accuracy_drop, ds, log, cache)
        for backend in backends:
            v = Variant(backend, precision, None)
            if precision == "fp32":
                v.artifact = art
                if backend == "openvino":
                    v.options = {"precision": "f32"}
            elif precision == "int8":
                if int8_art is None:
                    v.status, v.reason = "failed", int8_error or "int8 quantization failed"
                else:
                    v.artifact = int8_art
            elif precision == "bf16":
                if backend != "openvino":
                    v.status, v.reason = "skipped", f"{backend} has no bf16 mode here (openvino does)"
                elif not flags & {"avx512_bf16", "amx_bf16"}:
                    v.status, v.reason = "skipped", "this CPU has no native bf16 (avx512_bf16 / amx_bf16)"
                else:
                    v.artifact, v.options = art, {"precision": "bf16"}
            elif precision == "fp16":
                if not flags & {"avx512_fp16", "amx_fp16"}:
                    v.status, v.reason = (
                        "skipped",
                        (
                            "this CPU has no native fp16 arithmetic (avx512_fp16 / "
                            "amx_fp16): fp16 runs as casts around fp32 kernels, slower "
                            "than fp32; it pays off on GPUs"
                        ),
                    )
                elif backend == "openvino":
                    v.artifact, v.options = art, {"precision": "f16"}
                else:
                    v.status, v.reason = "skipped", "onnxruntime's CPU provider has few fp16 kernels"
            if v.artifact is not None:
                v.size_mb = file_size_mb(v.path)
            variants.append(v)
    for spec in compress or []:
        variants += _compressed_variants(
            art, spec, data, work, backends, precisions, max_accuracy_drop, ds, log, cache, train, epochs
        )
    ref_acc = None
    if ds.targets is not None and ref_art_logits is not None:
        ref_acc = round(100.0 * float(np.mean(ref_art_logits.argmax(1) == np.asarray(ds.targets))), 3)
    for v in variants:
        if v.status != "ok":
            continue
        key = f"accuracy:{v.key}:{v.path.stat().st_mtime_ns}"
        if cache is not None and key in cache:
            v.accuracy, v.notes = cache[key]["accuracy"], cache[key]["notes"]
        else:
            try:
                variant_accuracy(v, ds, ref_art_logits, out_name)
            except BushuError as e:
                v.status, v.reason = "failed", f"could not run on {ds.source}: {e.message.splitlines()[0]}"
                continue
            except Exception as e:  # a framework's own error: this variant is out, the plan goes on
                v.status, v.reason = "failed", f"could not run: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                continue
            if cache is not None:
                cache[key] = {"accuracy": v.accuracy, "notes": v.notes}
        base = ref_acc if ds.targets is not None else 100.0
        if base is not None and v.accuracy is not None:
            v.accuracy_drop = round(base - v.accuracy, 3)
        log(f"{v.key}: {v.size_mb:.3g} MB, {ds.metric} {v.accuracy:.1f}%")
    return variants


def _compressed_variants(
    art: Artifact,
    spec: str,
    data: Path,
    work: Path,
    backends: list[str],
    precisions: list[str],
    max_drop: float | None,
    ds: Dataset,
    log: Callable[[str], None],
    cache: dict[str, Any] | None,
    train: Path | None,
    epochs: int,
) -> list[Variant]:
    """fp32 (every backend) and int8 (when asked for) of ``art`` compressed by ``spec``."""
    from ..optimize._measure import file_size_mb
    from .compression import build_compressed, summary

    comp, status, reason = build_compressed(art, spec, work, train, epochs, log, cache)
    details = summary(comp, spec) if comp is not None else {}
    out = []
    for precision in (p for p in ("fp32", "int8") if p in precisions):
        why: str | None
        model, state, why = comp, status, reason
        if precision == "int8" and comp is not None:
            model, why = _int8_artifact(comp, data, work, max_drop, ds, log, cache, tag=spec)
            state = "ok" if model is not None else "failed"
        for backend in backends:
            v = Variant(backend, precision, model, compression=spec, compression_details=details)
            if model is None:
                v.status, v.reason = state, why or "compression failed"
            else:
                v.size_mb = file_size_mb(v.path)
                if backend == "openvino" and precision == "fp32":
                    v.options = {"precision": "f32"}
            out.append(v)
    return out


def _int8_artifact(
    art: Artifact,
    data: Path,
    work: Path,
    max_drop: float | None,
    ds: Dataset,
    log: Callable[[str], None],
    cache: dict[str, Any] | None,
    tag: str = "",
) -> tuple[Artifact | None, str | None]:
    """Static int8 calibrated on --data (bushu optimize's own quantizer); reused when already built.

    With an accuracy bound, the quantizer keeps the most sensitive nodes in float until the bound
    holds: on the labels when the folders are the model's labels, else on pseudo-labels (the fp32
    model's own top-1 per image), which makes its accuracy the top-1 agreement with fp32. On --sample
    (or derived) arrays there are no images to label: the plan picks the calibration by the arrays'
    top-1 agreement with fp32, and the bound is applied to that figure like to any variant's."""
    import contextlib
    import shutil
    import sys

    from ..optimize import StaticInt8Config, quantize_int8
    from ..optimize.quantize import AccuracyDropError, quantize

    # int8 of a compressed model (tag = its spec): its own folder, rebuilt whenever that model is
    out = work / ("int8" + (f"-{tag}" if tag else ""))
    ckey = "int8" + (f":{tag}" if tag else "")
    done = f"ok:{max_drop}" + (f":{art.model_path.stat().st_mtime_ns}" if tag else "")
    name = "int8" + (f"+{tag}" if tag else "")
    if cache is not None and cache.get(ckey) == done and (out / "bushu.yaml").is_file():
        log(f"{name}: reusing {out}")
        return Artifact.load(out), None
    from ..optimize import DynamicInt8Config
    from ..optimize._analysis import profile_model

    if profile_model(art.model_path).kind != "conv" and ds.metric == "cosine":
        # a transformer without classes: dynamic int8 of its MatMuls (static int8 of its activations measured
        # cosine 0.45 on all-MiniLM-L6-v2), validated on the --sample arrays
        log(f"{name}: dynamic int8 (MatMul/Gemm, per-channel), validated on {data}")
        shutil.rmtree(out, ignore_errors=True)
        try:
            result = quantize(art, out, DynamicInt8Config(validation=data, per_channel=True), measure=False, log=log)
        except AccuracyDropError as e:
            return None, f"int8 loses too much agreement with fp32: {e.message}"
        if cache is not None:
            cache[ckey] = done
        return result, None
    check_data: Path | None = data if ds.targets is not None else None
    # --sample/--input arrays: no images to pseudo-label, so the plan bounds the loss itself, as the
    # top-1 agreement with this model's fp32 output on the same arrays (the figure it reports)
    on_arrays = not data.is_dir() and ds.metric == "agreement"
    if ds.targets is None and max_drop is not None and not on_arrays:
        # pseudo-labels from the model being quantized: the quantizer bounds its own loss against it
        check_data = _pseudo_labelled(art, data, work / ("pseudo-labels" + (f"-{tag}" if tag else "")), log)
    bound = max_drop if check_data is not None or on_arrays else None
    what = "accuracy" if ds.targets is not None else "agreement with fp32"
    if art.task == "detection":  # judged by its boxes: mAP@0.5 on --data's boxes, else box agreement with fp32
        check_data, bound, what = data, max_drop, "mAP@0.5 / box agreement"
    drops: dict[str, float] = {}

    reference = _run(art.model_path, "onnxruntime", {}, ds.feeds, art.outputs[0].name) if on_arrays else None

    def drop_of(result: Artifact) -> float | None:
        if reference is None:
            return (result.metrics["optimize"].get("accuracy") or {}).get("drop")
        return _agreement_drop(result, ds, reference)

    def build(method: str, allow: float | None) -> Artifact:
        log(
            f"{name}: static int8 (QDQ), {method} calibration on {data}"
            + (f", keeping {what} within {allow:g} points" if allow is not None else "")
        )
        shutil.rmtree(out, ignore_errors=True)
        # ONNX Runtime's histogram calibrators print progress on stdout; keep stdout for --json
        with contextlib.redirect_stdout(sys.stderr):
            # int8 that fails its agreement gate tries the known remedies first (bushu optimize's search)
            return quantize_int8(
                art,
                out,
                StaticInt8Config(calibration=data, calib_size=100, method=method),
                data=check_data,
                max_accuracy_drop=allow,
                measure=False,
                log=log,
            )

    # Cheapest first: minmax; percentile when minmax loses more than the bound; then the quantizer
    # keeps the most sensitive nodes in float, with the better of the two. (MobileNetV2 on real photos,
    # agreement where fp32 is confident: minmax 94.4%, percentile 96.3%, entropy 92.6%.)
    try:
        for method in ("minmax", "percentile"):  # runs at least once: result is always set
            result = build(method, None)
            drop = drop_of(result)
            if bound is None or drop is None or drop <= bound:
                break
            drops[method] = drop
            log(f"{name}: {method} calibration loses {drop:g} points of {what} (bound {bound:g})")
        else:
            best = min(drops, key=drops.__getitem__)
            if on_arrays:  # the quantizer's remedies measure on labelled images, which arrays are not
                log(
                    f"{name}: keeping the most sensitive nodes in float needs images (--data DIR); "
                    f"using {best} calibration, judged against the bound by its agreement on {data.name}"
                )
                result = build(best, None) if best != "percentile" else result
            else:
                result = build(best, bound)
    except AccuracyDropError as e:
        return None, f"{name} loses too much {what}: {e.message}"
    except BushuError as e:
        return None, f"{name} quantization failed: {e.message.splitlines()[0]}"
    if cache is not None:
        cache[ckey] = done
    return result, None


def _agreement_drop(model: Artifact, ds: Dataset, reference: np.ndarray) -> float:
    """Points of top-1 agreement with ``reference`` (fp32's output on ds.feeds) that ``model`` loses,
    where fp32 is confident when there are enough such samples (as set_proxy_mask counts them)."""
    logits = _run(model.model_path, "onnxruntime", {}, ds.feeds, model.outputs[0].name)
    same = logits.argmax(1) == reference.argmax(1)
    mask = _confident(reference)
    if mask.sum() >= max(10, ds.n // 5):
        same = same[mask]
    return round(100.0 - 100.0 * float(np.mean(same)), 3)


def _pseudo_labelled(art: Artifact, data: Path, out: Path, log: Callable[[str], None]) -> Path | None:
    """A copy of the images fp32 is confident about, under folders named by its top-1 label (labels
    that occur once only)."""
    import shutil

    from ..data.arrays import scan_images
    from ..model.processing import preprocess_images

    labels, pp = art.labels or [], art.preprocess
    if not labels or pp is None:
        return None
    unique = {lbl for lbl in labels if labels.count(lbl) == 1 and "/" not in lbl and not lbl.startswith(".")}
    shutil.rmtree(out, ignore_errors=True)
    from ..runtime import load_backend

    kept = 0
    with load_backend(art.model_path, "onnxruntime") as be:
        name, out_name = be.inputs[0].name, be.outputs[0].name
        for i, (path, _) in enumerate(scan_images(data)):
            try:
                x = preprocess_images([path], pp)
            except UserInputError:
                continue
            logits = np.asarray(be.infer({name: x})[out_name]).reshape(1, -1)
            top = int(logits.argmax())
            if top < len(labels) and labels[top] in unique and _confident(logits)[0]:
                d = out / labels[top]
                d.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, d / f"{i:05d}{path.suffix.lower()}")
                kept += 1
    log(f"int8: {kept} image(s) pseudo-labelled with the fp32 model's top-1, to bound the loss of agreement")
    return out if kept else None
