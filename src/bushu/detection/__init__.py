"""Object detection: boxes from a detector's outputs (YOLO, SSD, NMS-in-graph), class-wise NMS, and
``Detector(ART).predict(images)`` -> per image a list of ``Detection`` in the image's own pixels.

No torch here: the server and the packaged SDK import this package.
"""

from .boxes import Detection, box_iou, nms
from .decode import DECODERS, DetectionHead
from .detector import Detector, prepare
from .layouts import LayoutError, choose_decoder

__all__ = [
    "DECODERS",
    "Detection",
    "DetectionHead",
    "Detector",
    "LayoutError",
    "box_iou",
    "choose_decoder",
    "nms",
    "prepare",
]
