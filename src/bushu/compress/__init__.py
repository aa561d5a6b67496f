"""Compression: make a model smaller and faster, checked against the original.

    quantize(artifact, out, config)   config: StaticInt8Config | DynamicInt8Config | Fp16Config
"""

from .calibration import ArrayReader, CalibrationReader, calibration_reader
from .quantize import AccuracyDropError, DynamicInt8Config, Fp16Config, QuantConfig, StaticInt8Config, quantize

__all__ = ["AccuracyDropError", "ArrayReader", "CalibrationReader", "DynamicInt8Config", "Fp16Config",
           "QuantConfig", "StaticInt8Config", "calibration_reader", "quantize"]
