"""On import: recognise a detector and record its pre-processing and decoder in the artifact.

A model says what it is through Ultralytics' ONNX metadata (``names``, ``imgsz``, ``task: detect``),
SSD outputs whose anchor count is the standard SSD anchor grid of its input size, or outputs named
boxes / scores / classes. Anything else imports as before (task ``raw``) unless ``--task detection``
asks for a decoder, in which case a model that matches none fails with the shapes it has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..errors import UserInputError
from ..model.artifact import Postprocess, Preprocess
from ..spec import TensorSpec

__all__ = ["TASKS", "detection_setup", "onnx_metadata"]

TASKS = ("classification", "detection", "raw")


def onnx_metadata(path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def detection_setup(
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    metadata: Mapping[str, str],
    *,
    task: str | None,
    labels: Sequence[str] | None,
    preprocess: Preprocess | None,
    decoder: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Preprocess, Postprocess, list[str] | None] | None:
    """(preprocess, postprocess, labels) for a detector, None for a model that is not one."""
    from ..detection.layouts import LayoutError, choose_decoder, ultralytics_metadata

    if task not in (None, "detection"):
        if task not in TASKS:
            from ..errors import UnknownNameError

            raise UnknownNameError("task", task, TASKS)
        return None
    if task is None and (decoder is not None or options):
        task = "detection"
    options = dict(options or {})
    try:
        params = choose_decoder(inputs, outputs, metadata, decoder, options)
    except LayoutError:
        if task == "detection":
            raise
        return None
    ul = ultralytics_metadata(metadata)
    labels = list(labels) if labels else (ul["names"] if ul else None)
    size = _size(inputs[0], ul, options)
    layout = "NHWC" if len(inputs[0].shape) == 4 and inputs[0].shape[3] in (1, 3) else "NCHW"
    if params["decoder"] == "ssd":  # TF OD API / MediaPipe SSDs take [-1, 1] and a stretched image
        base = Preprocess(resize=None, crop=None, scale=1 / 255, mean=(0.5,) * 3, std=(0.5,) * 3, layout=layout)
        fit = "stretch"
    else:  # Ultralytics: letterbox with grey 114, [0, 1]
        base = Preprocess(resize=None, crop=None, scale=1 / 255, mean=(0.0,) * 3, std=(1.0,) * 3, layout=layout)
        fit = "letterbox" if params["decoder"] == "yolo" else "stretch"
    base = replace(preprocess, resize=None, crop=None, layout=layout) if preprocess is not None else base
    pp = replace(
        base,
        params={**base.params, "size": list(size), "fit": options.get("fit", fit), "pad": int(options.get("pad", 114))},
    )
    params["matched_by"] = (
        "--decoder"
        if decoder
        else "Ultralytics metadata"
        if ul
        else "SSD anchor count"
        if params["decoder"] == "ssd"
        else "output names"
    )
    return pp, Postprocess(kind="detection", top_k=int(params["max_det"]), softmax=False, params=params), labels


def _size(spec: TensorSpec, ul: Mapping[str, Any] | None, options: Mapping[str, Any]) -> tuple[int, int]:
    if "size" in options:
        v = options["size"]
        dims = [int(x) for x in (v.replace("x", ",").split(",") if isinstance(v, str) else v)]
        return (dims[0], dims[-1])
    shape = [d if isinstance(d, int) else None for d in spec.shape]
    if len(shape) == 4:
        h, w = (shape[1], shape[2]) if shape[3] in (1, 3) else (shape[2], shape[3])
        if h and w:
            return h, w
    if ul and ul.get("imgsz"):
        imgsz = ul["imgsz"]
        return (int(imgsz[0]), int(imgsz[-1])) if isinstance(imgsz, (list, tuple)) else (int(imgsz), int(imgsz))
    raise UserInputError(
        f"the detector's input {spec.name} {list(spec.shape)} has no fixed height and width",
        hint="pass them: --decoder-option size=640,640",
    )


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``k=v`` strings (--decoder-option) -> a dict, numbers and lists parsed."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserInputError(
                f"decoder option {item!r} is not KEY=VALUE", hint="e.g. --decoder-option layout=channels_first"
            )
        try:
            parsed = yaml.safe_load(f"[{value}]") if "," in value else yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        out[key.strip()] = parsed
    return out
