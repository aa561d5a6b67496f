"""The export formats as one table: name → Format (suffix, what it needs, what runs it here, options).

Third parties add formats with an entry point in the group ``bushu.exporters`` naming a Format.
Each format's exporter is a small function in its own module, named by a "module:function" string
and imported only when that format is exported (in a worker process, see core.py)::

    fmt = get_format("ncnn")          # UnknownNameError with "did you mean" for typos
    names = resolve_formats("onnx,tflite")   # or "all": every format that takes part in --format all

int8 formats (``calibrated``) quantize with calibration images from ``--data`` and are judged by
top-1 agreement with the fp32 ONNX model (``min_top1``) and accuracy on labelled data, not by a
max-abs budget (docs/notes.md: int8 is judged by the task metric on real data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any

from ..errors import MissingDependencyError, UnknownNameError, UserInputError

__all__ = ["FORMATS", "Format", "get_format", "list_formats", "resolve_formats"]


@dataclass(frozen=True)
class Format:
    name: str
    exporter: str  # "module:function" taking an ExportContext, returning an Exported
    suffix: str  # the main file written
    description: str
    #: python modules the exporter needs, each with the pip requirement that installs it
    needs: tuple[tuple[str, str], ...] = ()
    #: the bushu backend that runs the result here (None: convert-only on this platform)
    backend: str | None = None
    precision: str = "fp32"
    #: part of --format all (AOTInductor is opt-in: it compiles C++ for about a minute per model)
    in_all: bool = True
    gpu: bool = False
    #: |exported - onnx| <= atol + rtol·max|onnx| per output
    atol: float = 1e-4
    rtol: float = 1e-4
    note: str = ""
    options: tuple[str, ...] = field(default=())
    #: quantizes with calibration images from --data (int8)
    calibrated: bool = False
    #: judged by top-1 agreement with the ONNX model (at least this) instead of atol/rtol
    min_top1: float | None = None
    #: starts from the artifact's torch.export program (files['reference'], model.pt2), not from the ONNX model
    reference: bool = False

    def row(self) -> dict[str, object]:
        return {
            "format": self.name,
            "suffix": self.suffix,
            "precision": self.precision,
            "runs_here": self.backend or ("gpu only" if self.gpu else "no (convert-only)"),
            "needs": ", ".join(req for _, req in self.needs) + (" + --data" if self.calibrated else "") or "-",
            "in_all": self.in_all,
            "description": self.description,
        }


_M = "bushu.export"
_FP16: dict[str, Any] = dict(precision="fp16", atol=5e-2, rtol=2e-2)
# top-1 agreement ≥ 0.9 where fp32 is confident: the gate bushu optimize's int8 uses too
_INT8: dict[str, Any] = dict(precision="int8", calibrated=True, min_top1=0.9)
# TensorRT builds the engine; cuda-python (cuda.bindings) gives the backend device memory without PyTorch
_TRT = (("tensorrt", "tensorrt"), ("cuda", "cuda-python"))

FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format(
            "onnx",
            f"{_M}._onnx:export_onnx",
            ".onnx",
            "ONNX at the artifact's opset (or --opset)",
            needs=(("onnx", "onnx"),),
            backend="onnxruntime",
            options=("opset",),
        ),
        Format(
            "onnx-fp16",
            f"{_M}._onnx:export_onnx_fp16",
            ".onnx",
            "ONNX with fp16 weights and math, fp32 IO",
            needs=(("onnx", "onnx"),),
            backend="onnxruntime",
            **_FP16,
            options=("opset",),
        ),
        Format(
            "openvino",
            f"{_M}._openvino:export_ir",
            ".xml",
            "OpenVINO IR, fp32 weights, run in f32",
            needs=(("openvino", "openvino"),),
            backend="openvino",
        ),
        Format(
            "openvino-fp16",
            f"{_M}._openvino:export_ir_fp16",
            ".xml",
            "OpenVINO IR with fp16-compressed weights",
            needs=(("openvino", "openvino"),),
            backend="openvino",
            **_FP16,
        ),
        Format(
            "openvino-int8",
            f"{_M}._openvino:export_ir_int8",
            ".xml",
            "OpenVINO IR, static int8 (NNCF post-training quantization calibrated on --data)",
            needs=(("openvino", "openvino"), ("nncf", "nncf")),
            backend="openvino",
            **_INT8,
        ),
        Format(
            "torchscript",
            f"{_M}._torch:export_torchscript",
            ".torchscript",
            "TorchScript (torch.jit.trace of the artifact's torch.export reference), for libtorch",
            needs=(("torch", "torch"),),
            backend="torch",
            reference=True,
        ),
        Format(
            "pt2",
            f"{_M}._torch:export_pt2",
            ".pt2",
            "torch.export ExportedProgram (dynamic batch)",
            needs=(("torch", "torch"),),
            backend="torch",
            reference=True,
        ),
        Format(
            "aoti",
            f"{_M}._torch:export_aoti",
            ".pt2",
            "AOTInductor package (compiled .so inside a .pt2) for libtorch C++; opt-in, ~1 min per model",
            needs=(("torch", "torch"),),
            backend=None,
            in_all=False,
            reference=True,
        ),
        Format(
            "tflite",
            f"{_M}._tflite:export_tflite",
            ".tflite",
            "LiteRT/TFLite flatbuffer via litert-torch (NCHW kept)",
            needs=(("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert")),
            backend="litert",
            reference=True,
        ),
        Format(
            "tflite-int8",
            f"{_M}._tflite:export_tflite_int8",
            ".tflite",
            "LiteRT full-integer int8 (int8 weights, activations and IO; PT2E static quantization calibrated "
            "on --data)",
            needs=(("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert"), ("torchao", "torchao")),
            backend="litert",
            **_INT8,
            reference=True,
        ),
        Format(
            "ncnn",
            f"{_M}._ncnn:export_ncnn",
            ".param",
            "ncnn param/bin via the pnnx CLI (fp16=0), run in fp32",
            needs=(("pnnx", "pnnx"), ("ncnn", "ncnn")),
            backend="ncnn",
        ),
        Format(
            "ncnn-fp16",
            f"{_M}._ncnn:export_ncnn_fp16",
            ".param",
            "ncnn with fp16 weights (pnnx fp16=1), fp16 math",
            needs=(("pnnx", "pnnx"), ("ncnn", "ncnn")),
            backend="ncnn",
            **_FP16,
        ),
        Format(
            "ncnn-int8",
            f"{_M}._ncnn:export_ncnn_int8",
            ".param",
            "ncnn int8 via ncnn2table/ncnn2int8 (not in the pip packages: build ncnn from source)",
            needs=(("pnnx", "pnnx"), ("ncnn", "ncnn")),
            backend="ncnn",
            **_INT8,
        ),
        Format(
            "mnn",
            f"{_M}._mnn:export_mnn",
            ".mnn",
            "MNN via mnnconvert from the ONNX model, run at high precision",
            needs=(("MNN", "MNN"),),
            backend="mnn",
            atol=1e-3,
            rtol=1e-4,
            note="MNN at high precision is ~1e-4 off ONNX Runtime (docs/notes.md)",
        ),
        Format(
            "mnn-fp16",
            f"{_M}._mnn:export_mnn_fp16",
            ".mnn",
            "MNN with fp16 weights (mnnconvert --fp16)",
            needs=(("MNN", "MNN"),),
            backend="mnn",
            **_FP16,
        ),
        Format(
            "mnn-int8",
            f"{_M}._mnn:export_mnn_int8",
            ".mnn",
            "MNN full int8 (weights and activations) via MNN's offline quantization tool (mnnquant, "
            "feature ranges calibrated on --data)",
            needs=(("MNN", "MNN"),),
            backend="mnn",
            **_INT8,
        ),
        Format(
            "coreml",
            f"{_M}._coreml:export_coreml",
            ".mlpackage",
            "Core ML ML Program (.mlpackage) via coremltools; convert-only on Linux (runs on macOS/iOS)",
            needs=(("coremltools", "coremltools"), ("torch", "torch")),
            backend=None,
            note="convert-only on Linux: Core ML runs on macOS/iOS, so no parity check here",
            reference=True,
        ),
        Format(
            "tensorrt",
            f"{_M}._tensorrt:export_engine",
            ".engine",
            "TensorRT engine built from the ONNX model, fp32 (needs an NVIDIA GPU and the tensorrt package)",
            needs=_TRT,
            backend="tensorrt",
            gpu=True,
            atol=1e-3,
            rtol=1e-3,
        ),
        Format(
            "tensorrt-fp16",
            f"{_M}._tensorrt:export_engine_fp16",
            ".engine",
            "TensorRT engine with fp16 kernels, fp32 IO (needs an NVIDIA GPU)",
            needs=_TRT,
            backend="tensorrt",
            gpu=True,
            **_FP16,
        ),
        Format(
            "tensorrt-int8",
            f"{_M}._tensorrt:export_engine_int8",
            ".engine",
            "TensorRT int8 engine from an ONNX Runtime Q/DQ model calibrated on --data (explicit quantization)",
            needs=_TRT,
            backend="tensorrt",
            gpu=True,
            **_INT8,
        ),
        Format(
            "snpe",
            f"{_M}._onnx:export_profile_snpe",
            ".onnx",
            "ONNX profile for Qualcomm SNPE's snpe-onnx-to-dlc (converter not installable here)",
            needs=(("onnx", "onnx"),),
            backend="onnxruntime",
            note="ONNX opset-13 profile, checked with ONNX Runtime; convert with snpe-onnx-to-dlc where the "
            "SNPE SDK is installed",
        ),
        Format(
            "mace",
            f"{_M}._onnx:export_profile_mace",
            ".onnx",
            "ONNX profile for Xiaomi MACE's converter (not installable here)",
            needs=(("onnx", "onnx"),),
            backend="onnxruntime",
            note="ONNX opset-11 profile, checked with ONNX Runtime; convert with MACE's converter "
            "(not installable here)",
        ),
        Format(
            "paddle-lite",
            f"{_M}._onnx:export_profile_paddle",
            ".onnx",
            "ONNX profile for Paddle-Lite via x2paddle (not installable here)",
            needs=(("onnx", "onnx"),),
            backend="onnxruntime",
            note="ONNX opset-13 profile, checked with ONNX Runtime; convert with x2paddle + paddle_lite_opt "
            "(not installable here)",
        ),
    ]
}

_ALIASES = {
    "openvino_fp16": "openvino-fp16",
    "onnx_fp16": "onnx-fp16",
    "ncnn_fp16": "ncnn-fp16",
    "mnn_fp16": "mnn-fp16",
    "openvino_int8": "openvino-int8",
    "tflite_int8": "tflite-int8",
    "litert-int8": "tflite-int8",
    "ncnn_int8": "ncnn-int8",
    "mnn_int8": "mnn-int8",
    "paddle_lite": "paddle-lite",
    "paddlelite": "paddle-lite",
    "ir": "openvino",
    "engine": "tensorrt",
    "trt": "tensorrt",
    "trt-fp16": "tensorrt-fp16",
    "trt-int8": "tensorrt-int8",
    "tensorrt_fp16": "tensorrt-fp16",
    "tensorrt_int8": "tensorrt-int8",
    "litert": "tflite",
    "torch.export": "pt2",
    "export": "pt2",
    "mlpackage": "coreml",
    "aotinductor": "aoti",
    "libtorch": "torchscript",
}


@cache
def _plugin_formats() -> dict[str, metadata.EntryPoint]:
    """Third-party formats: entry points in the group ``bushu.exporters`` naming a Format object
    ("module:FORMAT"); listed without importing them, imported when asked for."""
    return {ep.name: ep for ep in metadata.entry_points(group="bushu.exporters") if ep.name not in FORMATS}


def list_formats() -> list[str]:
    return [*FORMATS, *_plugin_formats()]


def get_format(name: str) -> Format:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in FORMATS:
        return FORMATS[key]
    if key in _plugin_formats():
        return _load_plugin(key, _plugin_formats()[key])
    raise UnknownNameError(
        "export format",
        name,
        [*list_formats(), "all"],
        hint="bushu export --list shows every format and whether it runs here",
    )


def _load_plugin(name: str, ep: metadata.EntryPoint) -> Format:
    from ..runtime.registry import entry_point_package

    try:
        fmt = ep.load()
    except ImportError as e:
        raise MissingDependencyError(
            f"export format {name!r} ({e.name or e})", name, entry_point_package(ep) or name
        ) from e
    if not isinstance(fmt, Format) or fmt.name != name:
        raise UserInputError(
            f"the bushu.exporters entry point {name!r} ({ep.value}) is not a Format named {name!r}",
            hint="the plugin must point at a bushu.export.formats.Format with the same name",
        )
    return fmt


def resolve_formats(spec: str | Sequence[str]) -> list[str]:
    """'onnx,ncnn' or ['onnx', 'ncnn'] or 'all' → format names, in the order given, without repeats."""
    parts = [p for item in ([spec] if isinstance(spec, str) else spec) for p in str(item).split(",")]
    parts = [p.strip() for p in parts if p.strip()]
    if not parts:
        raise UserInputError("no export format given", hint=f"--format one or more of: {', '.join(FORMATS)}, all")
    out: list[str] = []
    for p in parts:
        names = [n for n, f in FORMATS.items() if f.in_all] if p.lower() == "all" else [get_format(p).name]
        out += [n for n in names if n not in out]
    return out
