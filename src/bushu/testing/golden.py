"""Tiny golden models: every backend must reproduce their numpy reference outputs.

Each model is defined once, as a numpy function with fixed weights, and written in every format a
backend may read: ONNX (built with ``onnx.helper``, so no PyTorch is needed) and, when torch is
installed, ``torch.export`` ``.pt2`` and TorchScript ``.pt``. The numpy function is the reference;
no runtime grades itself. IO names are the same in every format (Triton's add_sub convention):
``INPUT0, INPUT1 → OUTPUT0, OUTPUT1``, with a dynamic leading ``batch`` dim.

    cases = write_golden(tmp_dir)
    for case in cases:
        feeds = case.feeds(batch=3)
        expected = case.expected(feeds)
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..spec import DTYPES, TensorSpec, np_dtype

__all__ = [
    "CASES",
    "EDGE_FORMATS",
    "IO_EXTRA_FILE",
    "UNSUPPORTED_OP",
    "GoldenCase",
    "golden_cases",
    "write_golden",
    "write_unsupported_onnx",
]

IO_EXTRA_FILE = "bushu_io.json"  # IO specs stored inside .pt2/.pt files (torch keeps no output names)
OPSET = 17
IR_VERSION = 8  # readable by every ONNX Runtime and OpenVINO release we support

# Tolerances per dtype, against the float64-accumulated numpy reference.
TOLERANCE: dict[str, tuple[float, float]] = {
    "float32": (1e-5, 1e-5),  # (rtol, atol)
    "float16": (1e-3, 1e-3),
    "int32": (0.0, 0.0),
    "int64": (0.0, 0.0),
}


@dataclass
class GoldenCase:
    """One golden model: its IO, its numpy reference and the files written for it."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    reference: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] = field(repr=False)
    rtol: float = 1e-5
    atol: float = 1e-5
    formats: tuple[str, ...] = (".onnx", ".xml", ".pt2", ".pt")  # the suffixes written for it
    files: dict[str, Path] = field(default_factory=dict)  # suffix -> path, once written

    def feeds(self, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Deterministic inputs; integers stay small so no dtype overflows."""
        rng = np.random.default_rng(seed)
        out = {}
        for s in self.inputs:
            shape, dt = s.concrete_shape(batch), np_dtype(s.dtype)
            if dt.kind == "f":
                out[s.name] = rng.standard_normal(shape).astype(dt)
            else:
                out[s.name] = rng.integers(-1000, 1000, size=shape).astype(dt)
        return out

    def expected(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.reference(feeds)

    def file(self, suffixes: tuple[str, ...]) -> Path | None:
        """The first written file whose suffix is in ``suffixes`` (a backend's readable formats)."""
        for sfx in suffixes:
            if sfx in self.files:
                return self.files[sfx]
        return None


# -- the models: numpy reference + fixed weights ---------------------------------------------------
_RNG = np.random.default_rng(20240601)
GEMM_W = _RNG.standard_normal((8, 16)).astype(np.float32) * 0.5  # Linear(16, 8): y = x @ W.T + b
GEMM_B = _RNG.standard_normal(8).astype(np.float32) * 0.1
CONV_W = _RNG.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3  # Conv2d(3, 4, 3, padding=1)
CONV_B = _RNG.standard_normal(4).astype(np.float32) * 0.1


def _add_sub(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    a, b = f["INPUT0"], f["INPUT1"]
    return {"OUTPUT0": a + b, "OUTPUT1": a - b}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _gemm_softmax(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = f["INPUT0"].astype(np.float64)
    return {"OUTPUT0": _softmax(x @ GEMM_W.T.astype(np.float64) + GEMM_B).astype(np.float32)}


def _conv_relu(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = np.pad(f["INPUT0"].astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # n, c, h, w, kh, kw
    y = np.einsum("nchwij,ocij->nohw", win, CONV_W.astype(np.float64)) + CONV_B[None, :, None, None]
    return {"OUTPUT0": np.maximum(y, 0).mean(axis=(2, 3)).astype(np.float32)}


def _echo(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"OUTPUT0": f["INPUT0"].copy(), "OUTPUT1": f["INPUT1"].copy()}


#: edge formats written for the float32 cases (by the converters `bushu export` uses), with the IO
#: sidecar (``<file>.io.json``) their backends read: ncnn ``.param`` (+ ``.bin``), MNN, LiteRT
EDGE_FORMATS = (".param", ".mnn", ".tflite")
EDGE_CASES = ("add_sub_float32", "gemm_softmax", "conv_relu")


def golden_cases(root: str | Path | None = None) -> list[GoldenCase]:
    """The golden models; with ``root``, each knows its files already written there (see write_golden)."""
    cases = []
    for dt in ("float32", "float16", "int32", "int64"):
        io = [TensorSpec(f"INPUT{i}", dt, ("batch", 4)) for i in range(2)]
        out = [TensorSpec(f"OUTPUT{i}", dt, ("batch", 4)) for i in range(2)]
        rtol, atol = TOLERANCE[dt]
        cases.append(GoldenCase(f"add_sub_{dt}", io, out, _add_sub, rtol, atol))
    cases.append(
        GoldenCase(
            "gemm_softmax",
            [TensorSpec("INPUT0", "float32", ("batch", 16))],
            [TensorSpec("OUTPUT0", "float32", ("batch", 8))],
            _gemm_softmax,
            1e-5,
            1e-6,
        )
    )
    cases.append(
        GoldenCase(
            "conv_relu",
            [TensorSpec("INPUT0", "float32", ("batch", 3, 8, 8))],
            [TensorSpec("OUTPUT0", "float32", ("batch", 4))],
            _conv_relu,
            1e-5,
            1e-5,
        )
    )
    # The null backend echoes input i as output i; it is the only format it reads.
    io = [TensorSpec(f"INPUT{i}", "float32", ("batch", 4)) for i in range(2)]
    out = [TensorSpec(f"OUTPUT{i}", "float32", ("batch", 4)) for i in range(2)]
    cases.append(GoldenCase("echo", io, out, _echo, 0.0, 0.0, formats=(".null",)))
    for case in cases:  # the edge formats (ncnn, MNN, LiteRT) take float32 tensors only
        if case.name in EDGE_CASES:
            case.formats = (*case.formats, *EDGE_FORMATS)
    if root is not None:
        for case in cases:
            case.files = {sfx: p for sfx in case.formats if (p := Path(root) / _file_name(case.name, sfx)).is_file()}
    return cases


def _file_name(name: str, suffix: str) -> str:
    # ncnn's weights are NAME.bin beside NAME.param: keep them apart from OpenVINO's NAME.bin
    return f"{name}.ncnn.param" if suffix == ".param" else f"{name}{suffix}"


CASES = [c.name for c in golden_cases()]


# -- ONNX, built by hand ---------------------------------------------------------------------------
def _onnx_model(case: GoldenCase):
    import onnx
    from onnx import helper, numpy_helper

    def vi(s: TensorSpec):
        return helper.make_tensor_value_info(s.name, DTYPES[s.dtype][2], list(s.shape))

    inits = []
    if case.name.startswith("add_sub"):
        nodes = [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ]
    elif case.name == "gemm_softmax":
        inits = [numpy_helper.from_array(GEMM_W, "W"), numpy_helper.from_array(GEMM_B, "B")]
        nodes = [
            helper.make_node("Gemm", ["INPUT0", "W", "B"], ["logits"], transB=1),
            helper.make_node("Softmax", ["logits"], ["OUTPUT0"], axis=-1),
        ]
    elif case.name == "conv_relu":
        inits = [numpy_helper.from_array(CONV_W, "W"), numpy_helper.from_array(CONV_B, "B")]
        nodes = [
            helper.make_node("Conv", ["INPUT0", "W", "B"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["OUTPUT0"], axis=1),
        ]
    else:
        raise ValueError(f"no ONNX builder for golden case {case.name!r}")
    graph = helper.make_graph(nodes, case.name, [vi(s) for s in case.inputs], [vi(s) for s in case.outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bushu.golden")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


UNSUPPORTED_OP = "BushuNoSuchOp"


def write_unsupported_onnx(case: GoldenCase, path: str | Path) -> Path:
    """``case``'s IO around one op no runtime implements: loading it must raise UnsupportedOpError."""
    import onnx
    from onnx import helper

    def vi(s: TensorSpec):
        return helper.make_tensor_value_info(s.name, DTYPES[s.dtype][2], list(s.shape))

    node = helper.make_node(UNSUPPORTED_OP, [s.name for s in case.inputs], [s.name for s in case.outputs])
    graph = helper.make_graph(
        [node], f"{case.name}_unsupported", [vi(s) for s in case.inputs], [vi(s) for s in case.outputs]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return Path(path)


# -- PyTorch, when installed -----------------------------------------------------------------------
def _torch_module(case: GoldenCase):
    import torch
    from torch import nn

    class AddSub(nn.Module):
        def forward(self, INPUT0: torch.Tensor, INPUT1: torch.Tensor):  # noqa: N803 - the IO names
            return INPUT0 + INPUT1, INPUT0 - INPUT1

    class GemmSoftmax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 8)
            with torch.no_grad():
                self.fc.weight.copy_(torch.from_numpy(GEMM_W))
                self.fc.bias.copy_(torch.from_numpy(GEMM_B))

        def forward(self, INPUT0: torch.Tensor) -> torch.Tensor:  # noqa: N803
            return torch.softmax(self.fc(INPUT0), dim=-1)

    class ConvRelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            with torch.no_grad():
                self.conv.weight.copy_(torch.from_numpy(CONV_W))
                assert self.conv.bias is not None  # Conv2d(bias=True)
                self.conv.bias.copy_(torch.from_numpy(CONV_B))

        def forward(self, INPUT0: torch.Tensor) -> torch.Tensor:  # noqa: N803
            return torch.relu(self.conv(INPUT0)).mean(dim=(2, 3))

    if case.name.startswith("add_sub"):
        return AddSub().eval()
    return {"gemm_softmax": GemmSoftmax, "conv_relu": ConvRelu}[case.name]().eval()


def _write_torch(case: GoldenCase, out: Path) -> None:
    import torch
    from torch.export import Dim

    module = _torch_module(case)
    example = tuple(torch.from_numpy(a) for a in case.feeds(batch=2).values())  # batch ≥ 2, else it specializes
    batch = Dim("batch", min=1, max=1024)
    shapes = {s.name: {0: batch} for s in case.inputs}
    # Neither format keeps output names; a backend may read them from this extra file.
    io = {
        IO_EXTRA_FILE: json.dumps(
            {"inputs": [s.to_dict() for s in case.inputs], "outputs": [s.to_dict() for s in case.outputs]}
        )
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still read by the torch backend
        program = torch.export.export(module, example, dynamic_shapes=shapes)
        torch.export.save(program, out / f"{case.name}.pt2", extra_files=io)
        torch.jit.save(torch.jit.script(module), str(out / f"{case.name}.pt"), _extra_files=io)
    case.files[".pt2"] = out / f"{case.name}.pt2"
    case.files[".pt"] = out / f"{case.name}.pt"


def _write_ir(case: GoldenCase, out: Path) -> None:
    import openvino as ov

    # fp32 weights: save_model would compress them to fp16 by default (docs/notes.md)
    ov.save_model(ov.convert_model(str(case.files[".onnx"])), str(out / f"{case.name}.xml"), compress_to_fp16=False)
    case.files[".xml"] = out / f"{case.name}.xml"


def _write_null(case: GoldenCase, out: Path) -> None:
    import yaml

    path = out / f"{case.name}.null"
    path.write_text(
        yaml.safe_dump(
            {"inputs": [s.to_dict() for s in case.inputs], "outputs": [s.to_dict() for s in case.outputs]},
            sort_keys=False,
        )
    )
    case.files[".null"] = path


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def write_golden(out: str | Path, names: list[str] | None = None, torch: bool | None = None) -> list[GoldenCase]:
    """Write every golden model (or those ``names``) into ``out``; returns the cases with their files.

    ONNX always; OpenVINO IR when openvino is installed; ``.pt2``/``.pt`` when PyTorch is
    (``torch=False`` skips them: exporting is the slow part).
    """
    import onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with_torch = _installed("torch") if torch is None else torch
    cases = [c for c in golden_cases() if names is None or c.name in names]
    for case in cases:
        if ".null" in case.formats:
            _write_null(case, out)
        if ".onnx" in case.formats:
            case.files[".onnx"] = out / f"{case.name}.onnx"
            onnx.save(_onnx_model(case), str(case.files[".onnx"]))
        if ".xml" in case.formats and _installed("openvino"):
            _write_ir(case, out)
        if ".pt2" in case.formats and with_torch:
            _write_torch(case, out)
        if ".param" in case.formats and _installed("pnnx") and _installed("ncnn"):
            _write_ncnn(case, out)
        if ".mnn" in case.formats and _installed("MNN"):
            _write_mnn(case, out)
    tflite = [c for c in cases if ".tflite" in c.formats]
    if tflite and with_torch and _installed("litert_torch"):
        _write_tflite(tflite, out)
    return cases


# -- edge formats, with the converters bushu export uses ----------------------------------------------
def _tool(name: str) -> str:
    import shutil
    import sys

    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else (shutil.which(name) or name)


def _convert(cmd: list[str], out: Path, what: str) -> None:
    import subprocess

    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-800:]}")


def _write_ncnn(case: GoldenCase, out: Path) -> None:
    import ncnn

    from ..runtime.backends._io import write_io

    param = out / _file_name(case.name, ".param")
    weights = param.with_suffix(".bin")
    scratch = out / f"{case.name}.pnnx"
    scratch.mkdir(exist_ok=True)
    shapes = ",".join("[" + ",".join(str(d) for d in s.concrete_shape(1)) + "]f32" for s in case.inputs)
    _convert(
        [
            _tool("pnnx"),
            str(case.files[".onnx"]),
            f"inputshape={shapes}",
            "fp16=0",
            f"ncnnparam={param}",
            f"ncnnbin={weights}",
            f"pnnxparam={scratch / 'p.param'}",
            f"pnnxbin={scratch / 'p.bin'}",
            f"pnnxpy={scratch / 'p.py'}",
            f"pnnxonnx={scratch / 'p.onnx'}",
            f"ncnnpy={scratch / 'n.py'}",
        ],
        out,
        "pnnx",
    )
    net = ncnn.Net()
    net.load_param(str(param))
    key = lambda n: int("".join(c for c in n if c.isdigit()) or 0)  # noqa: E731
    write_io(
        param,
        case.inputs,
        case.outputs,
        sorted(net.input_names(), key=key),
        sorted(net.output_names(), key=key),
        batch="loop",
    )
    case.files[".param"] = param


def _write_mnn(case: GoldenCase, out: Path) -> None:
    from ..runtime.backends._io import write_io

    path = out / f"{case.name}.mnn"
    from ..export._mnn import mnnconvert_command  # not the mnnconvert script: it pip-installs a telemetry SDK

    _convert(
        [
            *mnnconvert_command(),
            "-f",
            "ONNX",
            "--modelFile",
            str(case.files[".onnx"]),
            "--MNNModel",
            str(path),
            "--bizCode",
            "bushu",
        ],
        out,
        "mnnconvert",
    )
    write_io(path, case.inputs, case.outputs)
    case.files[".mnn"] = path


def _write_tflite(cases: list[GoldenCase], out: Path) -> None:
    """In one child process: litert-torch imports JAX, whose threads make a later fork() of this process unsafe."""
    import sys

    code = (
        "import sys; from pathlib import Path; from bushu.testing import golden; "
        "[golden._write_tflite_here(c, Path(sys.argv[1])) for c in golden.golden_cases() "
        "if c.name in sys.argv[2:]]"
    )
    _convert([sys.executable, "-c", code, str(out), *(c.name for c in cases)], out, "litert-torch")
    for case in cases:
        case.files[".tflite"] = out / f"{case.name}.tflite"


def _write_tflite_here(case: GoldenCase, out: Path) -> None:
    import torch  # noqa: I001 - litert_torch (heavy; only when writing .tflite) is imported last on purpose

    from ..runtime.backends._io import write_io

    import litert_torch

    path = out / f"{case.name}.tflite"
    args = tuple(torch.from_numpy(a) for a in case.feeds(batch=1).values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(_torch_module(case), args).export(str(path))
    from ai_edge_litert import interpreter as tfl

    runner = tfl.Interpreter(model_path=str(path)).get_signature_runner()
    write_io(
        path,
        case.inputs,
        case.outputs,
        list(runner.get_input_details()),
        list(runner.get_output_details()),
        batch="loop",
    )
    case.files[".tflite"] = path
