"""Judge an int8, fp16 or converted detector against its fp32 source by its boxes, not by a classifier's top-1.

    detection_gate(what, source, model, backend, data, ...) -> verdict (as compress._gate.judge's) or None

- ``data`` holds labelled boxes (a COCO, YOLO or VOC folder, bushu.data.detection): mAP@0.5 of the source and
  of the candidate on it (COCO evaluation, score threshold 0.001); the candidate may lose at most
  ``max_map_drop`` points (default ``MAX_MAP_DROP``).
- ``data`` is a folder of images without boxes: ``box_agreement`` with the source at the artifact's own score
  threshold (matched boxes of the same class at IoU >= 0.5, both ways), at least ``MIN_BOX_AGREEMENT``; with
  fewer than ``MIN_BOXES`` source boxes the images cannot tell ("cannot tell", as the int8 gate says).

The verdict's ``detail`` names the metric and its figures; ``score`` is the judged figure (the candidate's
mAP@0.5, or the agreement), which the int8 fallback search ranks attempts by.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserInputError

if TYPE_CHECKING:
    from .boxes import Detection

__all__ = [
    "MAX_MAP_DROP",
    "MIN_BOXES",
    "MIN_BOX_AGREEMENT",
    "detection_gate",
    "image_paths",
    "judge_detector",
    "judge_export",
]

MAX_MAP_DROP = 1.0  # points of mAP@0.5 (PRODUCT.md's "int8 within 1 point")
MIN_BOX_AGREEMENT = 0.95
MIN_BOXES = 10  # source boxes needed before agreement is judged: one miss in 5 would be 20 points
LIMIT = 64  # images judged; a detector sees many objects per image, so a few dozen images suffice
PASS, FAIL, CANNOT_TELL = "pass", "fail", "cannot tell"  # the int8 gate's words (compress._gate)


def _dataset(data: str | Path):
    """The labelled detection dataset at ``data``, or None for a folder of images without boxes."""
    from ..data.detection import detect_format, read_detection_dataset

    try:
        detect_format(data)
    except UserInputError:
        return None
    ds = read_detection_dataset(data)
    return ds if any(len(s.classes) for s in ds.samples) else None


def image_paths(data: str | Path, limit: int | None = LIMIT) -> list[Path]:
    """The images a detector is judged or calibrated on: a detection dataset's images, else the folder's."""
    from ..optimize.calibration import scan_images

    ds = _dataset(data)
    paths = [s.image for s in ds.samples] if ds is not None else [p for p, _ in scan_images(Path(data))]
    if not paths:
        raise UserInputError(f"no images in {data}", hint="pass a detection dataset or a folder of images")
    return paths[:limit] if limit else paths


class _Recording:
    """A detector whose predictions are kept, in order, for box agreement after the mAP run."""

    def __init__(self, detector: Any):
        self.detector = detector
        self.dets: list[list[Detection]] = []

    def predict(self, images, **kw):
        out = self.detector.predict(images, **kw)
        self.dets += out
        return out


def _run(detector: Any, data: str | Path, ds, labels, limit: int) -> tuple[list, dict[str, Any] | None]:
    """(detections per image at score 0.001, mAP figures or None without boxes)."""
    from PIL import Image

    from .evaluation import evaluate_detector

    rec = _Recording(detector)
    if ds is not None:
        m = evaluate_detector(rec, replace(ds, samples=ds.samples[:limit]), labels, score=0.001)
        return rec.dets, {"map50": m["map50"], "map": m["map"], "n_images": m["n_images"], "n_boxes": m["n_boxes"]}
    for path in image_paths(data, limit):
        with Image.open(path) as im:
            rec.predict([im.convert("RGB")], score=0.001)
    return rec.dets, None


def judge_detector(
    source,
    candidate: Any,
    data: str | Path,
    what: str,
    max_map_drop: float | None = None,
    min_agreement: float = MIN_BOX_AGREEMENT,
    limit: int = LIMIT,
) -> dict[str, Any]:
    """The verdict on ``candidate`` (anything with ``predict(images, score=)``) against the ``source`` artifact's
    own model on onnxruntime, on ``data``."""
    from .detector import Detector
    from .metrics import box_agreement

    max_map_drop = MAX_MAP_DROP if max_map_drop is None else max_map_drop
    ds = _dataset(data)
    with Detector(source, backend="onnxruntime") as ref:
        ref_dets, ref_map = _run(ref, data, ds, source.labels, limit)
        threshold = ref.head.settings(None, None, None)[0]
    cand_dets, cand_map = _run(candidate, data, ds, source.labels, limit)

    def above(dets):
        return [[d for d in image if d.score >= threshold] for image in dets]

    agree = box_agreement(above(ref_dets), above(cand_dets))
    figures = (
        f"{agree['matched']} of {agree['n_reference']} fp32 boxes and of {agree['n_candidate']} {what} boxes "
        f"matched at IoU >= 0.5 (score >= {threshold:g}), mean score drift {agree['score_drift']:.3f}"
    )
    verdict: dict[str, Any] = {
        "data": str(data),
        "images": len(ref_dets),
        "score_threshold": threshold,
        "box_agreement": agree,
    }
    if ref_map is not None and cand_map is not None:  # both or neither: the same dataset
        drop = (ref_map["map50"] - cand_map["map50"]) * 100
        outcome = PASS if drop <= max_map_drop + 1e-9 else FAIL
        detail = (
            f"mAP@0.5 on {ref_map['n_images']} labelled image(s) ({ref_map['n_boxes']} boxes): fp32 "
            f"{ref_map['map50']:.3f}, {what} {cand_map['map50']:.3f}, a drop of {drop:.2f} point(s) "
            f"(at most {max_map_drop:g} allowed); box agreement {agree['agreement']:.1%}: {figures}"
        )
        return {
            **verdict,
            "outcome": outcome,
            "detail": detail,
            "metric": "mAP@0.5",
            "floor": max_map_drop,
            "score": cand_map["map50"],
            "map50_fp32": ref_map["map50"],
            "map50": cand_map["map50"],
            "map_fp32": ref_map["map"],
            "map": cand_map["map"],
            "map50_drop": round(drop, 3),
        }
    if agree["n_reference"] < MIN_BOXES:
        outcome = CANNOT_TELL
        detail = (
            f"box agreement with fp32 cannot be judged: fp32 finds only {agree['n_reference']} box(es) on "
            f"{len(ref_dets)} image(s) (at least {MIN_BOXES} needed); {figures}"
        )
    else:
        outcome = PASS if agree["agreement"] >= min_agreement else FAIL
        detail = (
            f"box agreement with fp32 {agree['agreement']:.1%} on {len(ref_dets)} image(s) (minimum "
            f"{min_agreement:.0%}): {figures}"
        )
    return {
        **verdict,
        "outcome": outcome,
        "detail": detail,
        "metric": "box agreement",
        "floor": min_agreement,
        "score": agree["agreement"],
    }


def detection_gate(
    what: str,
    source,
    model: str | Path,
    backend: str,
    data: Any,
    max_map_drop: float | None,
    refuse: bool,
    details: dict[str, Any],
    **backend_options: Any,
) -> dict[str, Any] | None:
    """The verdict on the detector ``model`` (read by ``backend``) with ``source``'s decoder, or None when ``data``
    is no folder of images (a .npz of tensors: the tensor gate judges then). AccuracyDropError on "fail" when
    ``refuse``; a warning in ``details`` on "cannot tell"."""
    if data is None or not isinstance(data, (str, Path)) or not Path(data).is_dir():
        return None
    from .detector import Detector

    with Detector(source, backend=backend, model_path=model, **backend_options) as candidate:
        verdict = judge_detector(source, candidate, data, what, max_map_drop)
    if verdict["outcome"] == FAIL and refuse:
        from ..optimize.quantize import AccuracyDropError

        raise AccuracyDropError(
            f"{what} detector fails its {verdict['metric']} check: {verdict['detail']}",
            hint="calibrate on more images like those the model will see (--calib DIR), keep "
            "fp32 or use --quantize fp16",
        )
    if verdict["outcome"] == CANNOT_TELL:
        details["validation_warning"] = (
            f"the images cannot tell whether {what} finds the boxes fp32 finds: "
            f"{verdict['detail']}; pass labelled detection data (--data DIR)"
        )
    return verdict


def judge_export(
    row: dict[str, Any], source, exported, fmt: str, backend: str, data: str | Path, backend_options: dict[str, Any]
) -> dict[str, Any]:
    """An export row judged by the exported detector's boxes on ``data`` (mAP with boxes, else box agreement):
    its status follows that verdict, the tensor-level parity stays in the row (``tensor_status``)."""
    from .detector import Detector

    with Detector(exported, backend=backend, **backend_options) as candidate:
        verdict = judge_detector(source, candidate, data, fmt)
    exported.record("detection_parity", verdict)
    row = {**row, "tensor_status": row.get("status"), "detection": verdict}
    if row.get("status") == "mismatch":
        row["tensor_reason"] = row.pop("reason", None)
    row["status"] = "mismatch" if verdict["outcome"] == FAIL else "ok"
    row["box_agreement"] = round(verdict["box_agreement"]["agreement"], 4)
    if verdict["metric"] == "mAP@0.5":
        row |= {"map50": round(verdict["map50"], 4), "map50_fp32": round(verdict["map50_fp32"], 4)}
    if verdict["outcome"] != PASS:
        row["reason"] = verdict["detail"]
    return row
