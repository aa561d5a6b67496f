"""Offline classifier SDK written by ``bushu package``: ONNX Runtime and numpy, no PyTorch, no bushu.

    from PACKAGE import Predictor
    Predictor().predict(INPUT)   # -> [(label, score), ...], best first

INPUT is what the bundled model classifies (``Predictor().kind``): an image file, a text, or a .wav
clip. See the bundle's README.md for the command line and the deployment files.
"""

from __future__ import annotations

import json as _json
from pathlib import Path as _Path

from .predictor import ChecksumError, Predictor, PredictorError, verify_checksums

__all__ = ["ChecksumError", "Predictor", "PredictorError", "__version__", "predict", "verify_checksums"]

__version__ = _json.loads((_Path(__file__).parent / "model" / "sdk.json").read_text())["version"]

_default: Predictor | None = None


def predict(item, top_k: int | None = None):
    """Classify one image, text or clip with the bundled model (loaded once, on first use)."""
    global _default
    if _default is None:
        _default = Predictor()
    return _default.predict(item, top_k)
