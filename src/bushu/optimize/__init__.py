"""Compression: make a model smaller and faster, checked against the original.

quantize(artifact, out, config)            config: StaticInt8Config | DynamicInt8Config | Fp16Config
quantize_openvino(artifact, out, config)   OpenVINOInt8Config (NNCF → int8 OpenVINO IR)
quantize_int8(artifact, out, config)       static / OpenVINO int8, trying remedies when the agreement gate fails
optimize(artifact, out, OptimizeConfig(steps=(DistillConfig|PruneConfig|LowRankConfig, ...), quantize=...))
"""

from .calibration import ArrayReader, CalibrationReader, calibration_reader
from .distill import DistillConfig
from .int8_search import quantize_int8
from .lowrank import LowRankConfig
from .openvino_int8 import OpenVINOInt8Config, quantize_openvino
from .pipeline import FinetuneConfig, OptimizeConfig, optimize
from .prune import PruneConfig
from .quantize import AccuracyDropError, DynamicInt8Config, Fp16Config, QuantConfig, StaticInt8Config, quantize

__all__ = [
    "AccuracyDropError",
    "ArrayReader",
    "CalibrationReader",
    "DistillConfig",
    "DynamicInt8Config",
    "FinetuneConfig",
    "Fp16Config",
    "LowRankConfig",
    "OpenVINOInt8Config",
    "OptimizeConfig",
    "PruneConfig",
    "QuantConfig",
    "StaticInt8Config",
    "calibration_reader",
    "optimize",
    "quantize",
    "quantize_int8",
    "quantize_openvino",
]
