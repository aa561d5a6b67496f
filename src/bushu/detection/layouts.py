"""Which decoder fits a model: its outputs' shapes and names, and Ultralytics' ONNX metadata.

Without an explicit ``decoder`` only models that say what they are match: Ultralytics metadata (YOLO),
SSD outputs whose anchor count is the standard SSD anchor grid of the input size, or outputs named
boxes / scores / classes (NMS in the graph). The settings returned become ``postprocess.params``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UserInputError
from ..spec import TensorSpec
from .anchors import ssd_anchors
from .decode import DECODERS, DEFAULTS, _truthy

__all__ = ["LayoutError", "choose_decoder", "ultralytics_metadata"]

OPTIONS_HINT = (
    "import it with --task detection --decoder yolo|ssd|boxes, and where the shapes are ambiguous "
    "--decoder-option layout=channels_first|anchors_first (yolo), objectness=true (YOLOv5), "
    "boxes=NAME scores=NAME classes=NAME box_format=xyxy|yxyx normalized=true (boxes), "
    "background=0 score_fn=sigmoid|softmax (ssd)"
)


class LayoutError(UserInputError):
    """The model's outputs match no decoder bushu knows (or not the one asked for)."""


def _shapes(outputs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{o.name} {list(o.shape)}" for o in outputs)


def ultralytics_metadata(meta: Mapping[str, str]) -> dict[str, Any] | None:
    """``names``/``imgsz``/``task`` that Ultralytics writes into an exported ONNX model's metadata."""
    if "names" not in meta:
        return None
    try:
        names = ast.literal_eval(meta["names"])
        imgsz = ast.literal_eval(meta["imgsz"]) if "imgsz" in meta else None
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names)]
    try:  # export(nms=True) records it only in the export arguments
        args = ast.literal_eval(meta.get("args", "{}"))
    except (ValueError, SyntaxError):
        args = {}
    nms_in_graph = str(meta.get("end2end", "")).lower() == "true" or (
        isinstance(args, dict) and args.get("nms") is True
    )
    return {
        "names": list(names),
        "imgsz": imgsz,
        "task": meta.get("task"),
        "stride": meta.get("stride"),
        "end2end": nms_in_graph,
    }


def _dims(spec: TensorSpec) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in spec.shape]


def choose_decoder(
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    metadata: Mapping[str, str],
    decoder: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The decoder settings (postprocess params) for a model with these outputs, or a LayoutError.

    Without ``decoder`` only models that say what they are match: Ultralytics metadata, SSD outputs
    whose anchor count is the standard SSD anchor grid of the input size, or outputs named boxes /
    scores / classes.
    """
    options = dict(options or {})
    if decoder is not None and decoder not in DECODERS:
        from ..errors import UnknownNameError

        raise UnknownNameError("decoder", decoder, DECODERS)
    ul = ultralytics_metadata(metadata)
    hw = _input_hw(inputs[0]) if inputs else None
    tries = [decoder] if decoder else ["yolo", "ssd", "boxes"]
    for name in tries:
        found = {"yolo": _match_yolo, "ssd": _match_ssd, "boxes": _match_boxes}[name](
            outputs, ul, hw, options, forced=decoder is not None
        )
        if found is not None:
            return {"decoder": name, **DEFAULTS, **found, **{k: v for k, v in options.items() if k in DEFAULTS}}
    what = (
        f"do not match the {decoder!r} decoder"
        if decoder
        else "match no detection layout bushu knows (yolo, ssd, boxes)"
    )
    raise LayoutError(f"the model's outputs ({_shapes(outputs)}) {what}", hint=OPTIONS_HINT)


def _input_hw(spec: TensorSpec) -> tuple[int, int] | None:
    d = _dims(spec)
    if len(d) != 4:
        return None
    h, w = (d[1], d[2]) if d[3] in (1, 3) else (d[2], d[3])
    return (h, w) if h and w else None


def _match_yolo(outputs, ul, hw, options, forced) -> dict[str, Any] | None:
    if not (ul or forced) or (ul and ul.get("task") not in (None, "detect")):
        return None
    cands = [o for o in outputs if len(o.shape) == 3]
    if not cands:
        return None
    o = cands[0]
    _, a, b = _dims(o)
    n_names = len(ul["names"]) if ul else None
    layout, objectness = options.get("layout"), options.get("objectness")
    if ul and ul.get("end2end") and b == 6:
        return None  # NMS in the graph: the boxes decoder's packed rows
    if layout is None:
        if n_names is not None and a == 4 + n_names:
            layout = "channels_first"
        elif n_names is not None and b == 5 + n_names:
            layout, objectness = "anchors_first", True if objectness is None else objectness
        elif n_names is not None and b == 4 + n_names:
            layout = "anchors_first"
        elif forced and a is not None and b is not None:
            layout = "channels_first" if a < b else "anchors_first"
        else:
            return None
    classes = (a if layout == "channels_first" else b) - 4 - (1 if _truthy(objectness) else 0) if a and b else None
    return {"output": o.name, "layout": layout, "objectness": _truthy(objectness), "classes": classes}


def _match_ssd(outputs, ul, hw, options, forced) -> dict[str, Any] | None:
    boxes = [o for o in outputs if len(o.shape) == 3 and _dims(o)[2] == 4]
    if len(outputs) != 2 or len(boxes) != 1 or hw is None:
        return None
    scores = next(o for o in outputs if o is not boxes[0])
    n = _dims(boxes[0])[1]
    if len(scores.shape) != 3 or _dims(scores)[1] != n:
        return None
    anchors = {
        k: options[k]
        for k in (
            "num_layers",
            "min_scale",
            "max_scale",
            "strides",
            "aspect_ratios",
            "interpolated_scale_aspect_ratio",
            "reduce_boxes_in_lowest_layer",
            "fixed_anchor_size",
        )
        if k in options
    }
    if not forced and len(ssd_anchors(hw[0], hw[1], anchors)) != n:
        return None
    return {
        "boxes": boxes[0].name,
        "scores": scores.name,
        "anchors": anchors,
        "box_scale": list(options.get("box_scale", [10.0, 10.0, 5.0, 5.0])),
        "score_fn": options.get("score_fn", "sigmoid"),
        "background": int(options.get("background", 0)),
    }


def _named(outputs, *words) -> TensorSpec | None:
    return next((o for o in outputs if any(w in o.name.lower() for w in words)), None)


def _match_boxes(outputs, ul, hw, options, forced) -> dict[str, Any] | None:
    packed = [o for o in outputs if len(o.shape) == 3 and _dims(o)[2] == 6]
    # Ultralytics export(nms=True) / YOLOv10: rows of x1 y1 x2 y2 score class
    if ul and ul.get("end2end") and len(outputs) == 1 and packed:
        return {"packed": packed[0].name, "box_format": "xyxy", "normalized": False, "batched": True}
    boxes = outputs_by_name(outputs, options.get("boxes")) or _named(outputs, "box")
    scores = outputs_by_name(outputs, options.get("scores")) or _named(outputs, "score")
    classes = outputs_by_name(outputs, options.get("classes")) or _named(outputs, "class", "label")
    if boxes is None or scores is None or _dims(boxes)[-1] != 4:
        return None
    tf_style = boxes.name.lower().startswith("detection_boxes")  # TF OD API: normalised ymin, xmin, ymax, xmax
    return {
        "boxes": boxes.name,
        "scores": scores.name,
        "classes": classes.name if classes else None,
        "box_format": options.get("box_format", "yxyx" if tf_style else "xyxy"),
        "normalized": _truthy(options.get("normalized", tf_style)),
        "batched": len(boxes.shape) == 3,
    }


def outputs_by_name(outputs, name) -> TensorSpec | None:
    if name is None:
        return None
    found = next((o for o in outputs if o.name == name), None)
    if found is None:
        from ..errors import UnknownNameError

        raise UnknownNameError("model output", str(name), [o.name for o in outputs])
    return found
