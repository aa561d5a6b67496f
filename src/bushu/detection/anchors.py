"""SSD anchors, generated as MediaPipe's SsdAnchorsCalculator (and the TF Object Detection API's
``ssd_anchor_generator``) generates them, so a model's raw box encodings can be decoded without
the graph that produced them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["SSD_MOBILENET_DEFAULTS", "ssd_anchors"]

# ssd_mobilenet_v1/v2 configs of the TF Object Detection API; MediaPipe's object detection graphs
# (objectron's oidv4 SSD MobileNetV2 among them) use the same numbers with strides 16..512.
SSD_MOBILENET_DEFAULTS: dict[str, Any] = {
    "num_layers": 6,
    "min_scale": 0.2,
    "max_scale": 0.95,
    "strides": [16, 32, 64, 128, 256, 512],
    "aspect_ratios": [1.0, 2.0, 0.5, 3.0, 0.3333],
    "interpolated_scale_aspect_ratio": 1.0,
    "reduce_boxes_in_lowest_layer": True,
    "anchor_offset_x": 0.5,
    "anchor_offset_y": 0.5,
    "fixed_anchor_size": False,
}


def _scale(lo: float, hi: float, i: int, n: int) -> float:
    return (lo + hi) * 0.5 if n == 1 else lo + (hi - lo) * i / (n - 1)


def ssd_anchors(height: int, width: int, options: Mapping[str, Any] | None = None) -> np.ndarray:
    """[anchors, 4] float32 rows (y_center, x_center, h, w), normalised to the input size."""
    o = {**SSD_MOBILENET_DEFAULTS, **(options or {})}
    strides, n = list(o["strides"]), int(o["num_layers"])
    rows: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < n:
        ratios: list[float] = []
        scales: list[float] = []
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            s = _scale(o["min_scale"], o["max_scale"], last, len(strides))
            if last == 0 and o["reduce_boxes_in_lowest_layer"]:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, s, s]
            else:
                for r in o["aspect_ratios"]:
                    ratios.append(float(r))
                    scales.append(s)
                if o["interpolated_scale_aspect_ratio"] > 0:
                    nxt = (
                        1.0
                        if last == len(strides) - 1
                        else _scale(o["min_scale"], o["max_scale"], last + 1, len(strides))
                    )
                    scales.append(math.sqrt(s * nxt))
                    ratios.append(float(o["interpolated_scale_aspect_ratio"]))
            last += 1
        sizes = [(sc / math.sqrt(r), sc * math.sqrt(r)) for r, sc in zip(ratios, scales, strict=True)]
        fh, fw = math.ceil(height / strides[layer]), math.ceil(width / strides[layer])
        for y in range(fh):
            for x in range(fw):
                cy, cx = (y + o["anchor_offset_y"]) / fh, (x + o["anchor_offset_x"]) / fw
                for h, w in sizes:
                    rows.append((cy, cx, 1.0, 1.0) if o["fixed_anchor_size"] else (cy, cx, h, w))
        layer = last
    return np.asarray(rows, np.float32)
