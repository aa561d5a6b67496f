"""Text detectors that output a probability map (DBNet, PP-OCR's detector): the DB decoder, and the int8 gate
that judges a quantized map by the boxes decoded from it and by the map's cosine on the images with text.

    db_boxes(prob_map) -> list of Detection (axis-aligned, in map pixels)
    is_db_map(art) -> output name or None          judge_text_boxes(ref, got, name) -> verdict

Why boxes: a DBNet map is ~0 almost everywhere and its information sits in a few text-line blobs, so a tensor
metric misjudges it both ways. On a photo without text fp32's map is ~1e-4 everywhere and any int8 noise gives a
cosine near 0, although no box comes out of either; on a page of text int8 moves the blob edges (cosine ~0.97)
while the thresholded blobs, hence the boxes, may stay where they were. What the user gets are the boxes after
the DB decoder, so that is what the gate compares, on the same validation inputs, with the same decoder; and
because a user's own decoder may read the map with other thresholds, the map must also keep cosine >= 0.98 on
each image where fp32 finds text. Plain int8 of PP-OCRv4's detector does not (0.85-0.95 on rendered pages: its
early, full-resolution stages lose thin strokes), so the int8 search keeps those stages in float
(optimize.int8_search: the first 30%, then 60%, of the graph).

The decoder follows PaddleOCR's DBPostProcess with PP-OCR's settings (rapidocr's config.yaml: thresh 0.3,
box_thresh 0.5, unclip_ratio 1.6, use_dilation, score_mode fast, min_size 3), with axis-aligned boxes (numpy and
scipy, no OpenCV/pyclipper): binarize at ``thresh``, dilate 2x2, connected components; a component's score is
the mean probability over it; kept above ``box_thresh``, grown by ``area * unclip_ratio / perimeter`` on every
side (the offset pyclipper's unclip applies to the rectangle), dropped when its short side is under
``min_size + 2``. Both sides of the comparison use the same decoder, so its simplifications (no rotated
rectangles) cancel out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .boxes import Detection

__all__ = [
    "DB_DEFAULTS",
    "MIN_TEXT_BOXES",
    "MIN_TEXT_BOX_F1",
    "MIN_TEXT_BOX_IOU",
    "MIN_TEXT_MAP_COSINE",
    "db_boxes",
    "is_db_map",
    "judge_text_boxes",
    "text_box_agreement",
]

DB_DEFAULTS = {"thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 1.6, "min_size": 3, "max_candidates": 1000}
# The gate's thresholds, fixed before measuring DBNet (not fitted to it):
# - matched-box F1 >= 0.95 at IoU >= 0.5, pooled over the validation images: the same bar as a YOLO/SSD
#   detector's box agreement (bushu.detection.validate.MIN_BOX_AGREEMENT), i.e. at most ~1 text line in 20
#   lost or invented;
# - mean IoU of the matched boxes >= 0.80: the recogniser reads the crop, and a box whose IoU with fp32's is
#   under 0.8 cuts or adds about a character's width at a line's ends (a 20 px high line is ~10 px per glyph);
# - at least 10 fp32 boxes before either is judged (as MIN_BOXES for detectors): with fewer, one line is > 10
#   points of F1 and the inputs "cannot tell".
# - the map itself keeps cosine >= 0.98 to fp32's on every image where fp32 finds text (issue 16's bar for any
#   quantized output): other decoders or thresholds than PP-OCR's read the same map. Images without text are left
#   out of it (their map is ~1e-4 everywhere, so any noise gives a cosine near 0); the boxes judge them.
MIN_TEXT_BOX_F1 = 0.95
MIN_TEXT_BOX_IOU = 0.80
MIN_TEXT_BOXES = 10
MIN_TEXT_MAP_COSINE = 0.98
MATCH_IOU = 0.5


def db_boxes(prob: np.ndarray, **settings: Any) -> list[Detection]:
    """One probability map ``[H, W]`` (or ``[1, H, W]``) -> text boxes x1, y1, x2, y2 in the map's pixels."""
    from scipy import ndimage

    p = {**DB_DEFAULTS, **settings}
    m = np.asarray(prob, np.float32).reshape(prob.shape[-2:])
    mask = ndimage.binary_dilation(m > p["thresh"], structure=np.ones((2, 2), bool))
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))  # 8-connected, as findContours' outer contours
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    scores = ndimage.mean(m, labels, index)
    out = []
    h, w = (int(v) for v in np.shape(prob)[-2:])
    for k, sl in enumerate(ndimage.find_objects(labels)[: p["max_candidates"]]):
        if sl is None:
            continue
        y1, y2, x1, x2 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        bw, bh = x2 - x1, y2 - y1
        if min(bw, bh) < p["min_size"] or scores[k] < p["box_thresh"]:
            continue
        d = bw * bh * p["unclip_ratio"] / (2.0 * (bw + bh))
        bx1, by1, bx2, by2 = max(x1 - d, 0.0), max(y1 - d, 0.0), min(x2 + d, w), min(y2 + d, h)
        if min(bx2 - bx1, by2 - by1) < p["min_size"] + 2:
            continue
        out.append(Detection((float(bx1), float(by1), float(bx2), float(by2)), float(scores[k]), 0, "text"))
    return out


def is_db_map(art: Any) -> str | None:
    """The name of ``art``'s DB probability-map output, or None when it is no DB-style text detector.

    Either its postprocess says so (``params["decoder"] == "db"``), or the graph has DBNet's signature: one
    image input and one output ``[batch, 1, H, W]`` (spatial dims symbolic or equal to the input's) produced by
    a Sigmoid, the shrink-map head of DBNet and of PP-OCR's exported detectors."""
    pp = getattr(art, "postprocess", None)
    if pp is not None and (pp.params or {}).get("decoder") == "db":
        return str(pp.params.get("output") or art.outputs[0].name)
    if len(art.outputs) != 1 or len(art.inputs) != 1 or getattr(art.inputs[0], "role", None) != "image":
        return None
    out, inp = art.outputs[0], art.inputs[0]
    if len(out.shape) != 4 or out.shape[1] != 1 or len(inp.shape) != 4:
        return None
    for o, i in zip(out.shape[2:], inp.shape[2:]):
        if isinstance(o, int) and isinstance(i, int) and o != i:
            return None
    import onnx

    graph = onnx.load(str(art.model_path), load_external_data=False).graph
    producer = next((n for n in graph.node if out.name in n.output), None)
    return out.name if producer is not None and producer.op_type == "Sigmoid" else None


def _pairs(ref: Sequence[Detection], got: Sequence[Detection]) -> list[float]:
    """IoUs of the one-to-one matches at IoU >= MATCH_IOU (greedy, best IoU first)."""
    if not ref or not got:
        return []
    a = np.asarray([d.box for d in ref], np.float64)
    b = np.asarray([d.box for d in got], np.float64)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou = inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)
    out, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < MATCH_IOU:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append(float(iou[i, j]))
    return out


def _f1(matched: int, n_ref: int, n_got: int) -> float:
    return 1.0 if n_ref + n_got == 0 else 2.0 * matched / (n_ref + n_got)


def text_box_agreement(ref_maps: np.ndarray, got_maps: np.ndarray, **settings: Any) -> dict[str, Any]:
    """Decode both ``[N, 1, H, W]`` maps and compare the boxes image by image: per image and pooled, the fp32
    and candidate box counts, the matched pairs (IoU >= 0.5, one to one), matched-box F1 and mean IoU."""
    per_image, ious = [], []
    n_ref = n_got = 0
    for r, g in zip(np.asarray(ref_maps), np.asarray(got_maps)):
        rb, gb = db_boxes(r, **settings), db_boxes(g, **settings)
        pairs = _pairs(rb, gb)
        ious += pairs
        n_ref, n_got = n_ref + len(rb), n_got + len(gb)
        per_image.append(
            {
                "fp32_boxes": len(rb),
                "boxes": len(gb),
                "matched": len(pairs),
                "f1": round(_f1(len(pairs), len(rb), len(gb)), 4),
                "mean_iou": round(float(np.mean(pairs)), 4) if pairs else None,
            }
        )
    return {
        "images": len(per_image),
        "fp32_boxes": n_ref,
        "boxes": n_got,
        "matched": len(ious),
        "f1": round(_f1(len(ious), n_ref, n_got), 4),
        "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
        "per_image": per_image,
    }


def _text_cosines(ref_maps: np.ndarray, got_maps: np.ndarray, per_image: Sequence[Mapping[str, Any]]) -> list[float]:
    """The cosine of each candidate map to fp32's, on the images where fp32's map decodes to a text box."""
    out = []
    for r, g, p in zip(np.asarray(ref_maps), np.asarray(got_maps), per_image):
        if p["fp32_boxes"]:
            a, b = r.ravel().astype(np.float64), g.ravel().astype(np.float64)
            out.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)))
    return out


def judge_text_boxes(
    ref: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    output: str,
    min_f1: float = MIN_TEXT_BOX_F1,
    min_iou: float = MIN_TEXT_BOX_IOU,
    min_boxes: int = MIN_TEXT_BOXES,
    min_cosine: float = MIN_TEXT_MAP_COSINE,
) -> dict[str, Any]:
    """The gate's verdict on the ``output`` map: {"outcome", "detail" (starts with the output's name), "metric",
    "score" (the pooled F1, which the int8 search ranks attempts by), "floor", "min_iou", "min_cosine",
    "text_boxes" (with "map_cosine": per image with text)}. Passes when the boxes agree and the map keeps
    ``min_cosine`` on every image with text."""
    from ..optimize._gate import CANNOT_TELL, FAIL, PASS

    a = text_box_agreement(ref[output], got[output])
    cosines = _text_cosines(ref[output], got[output], a["per_image"])
    a["map_cosine"] = [round(c, 5) for c in cosines]
    iou = a["mean_iou"]
    low = min(cosines) if cosines else None
    figures = (
        f"{a['matched']} of {a['fp32_boxes']} fp32 boxes and of {a['boxes']} int8 boxes matched at IoU >= "
        f"{MATCH_IOU} on {a['images']} image(s): F1 {a['f1']:.3f} (minimum {min_f1}), mean IoU "
        f"{'-' if iou is None else f'{iou:.3f}'} (minimum {min_iou}); per image F1 "
        + ", ".join(f"{p['f1']:.2f} ({p['matched']}/{p['fp32_boxes']}/{p['boxes']})" for p in a["per_image"])
        + " (matched/fp32/int8)"
        + (
            f"; map cosine to fp32 {low:.4f} at the lowest over the {len(cosines)} image(s) with text "
            f"(minimum {min_cosine})"
            if low is not None
            else ""
        )
    )
    if a["fp32_boxes"] < min_boxes:
        outcome = CANNOT_TELL
        detail = (
            f"{output}: DB boxes cannot be judged: fp32 finds only {a['fp32_boxes']} text box(es) (at least "
            f"{min_boxes} needed); {figures}"
        )
    else:
        boxes_ok = a["f1"] >= min_f1 and iou is not None and iou >= min_iou
        map_ok = low is not None and low >= min_cosine
        outcome = PASS if boxes_ok and map_ok else FAIL
        verdict = "agree" if boxes_ok else "disagree"
        drift = "" if map_ok or not boxes_ok else f", but the map drifts (cosine {low:.4f} < {min_cosine})"
        detail = f"{output}: DB text boxes {verdict}{drift}: {figures}"
    return {
        "outcome": outcome,
        "detail": detail,
        "metric": "DB text-box F1",
        "score": a["f1"],
        "floor": min_f1,
        "min_iou": min_iou,
        "min_boxes": min_boxes,
        "min_cosine": min_cosine,
        "decoder": {"name": "db", **DB_DEFAULTS},
        "text_boxes": a,
    }
