"""`bushu import`: any supported source → a validated ONNX artifact.

Sources: an ``.onnx`` file, a ``torch.export`` (``.pt2``) or TorchScript (``.pt``) file, a
``module:callable`` returning an ``nn.Module``, or a zoo name. PyTorch sources are exported to ONNX
with a dynamic batch axis, simplified, and checked against PyTorch on the same inputs; the check's
figures are recorded in the artifact (``metrics.parity``) and a failure raises ToleranceError naming
each output that differed.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError, NotFoundError, UserInputError
from ..model.artifact import Artifact, Postprocess, Preprocess, library_versions, write_artifact
from ..spec import TensorSpec, synthetic_feeds

__all__ = ["Tolerance", "import_model", "source_kind"]

MODEL_FILE = "model.onnx"
REFERENCE_FILE = "model.pt2"


@dataclass(frozen=True)
class Tolerance:
    """fp32 export budget: |onnx - torch| <= atol + rtol·max|torch| per output (NOTES.md: ~1e-5 on logits)."""

    atol: float = 1e-4
    rtol: float = 1e-4


def source_kind(src: str) -> str:
    """'zoo', 'onnx', 'pt2', 'torchscript' or 'callable' for a SRC argument, or a precise error."""
    from ..model import zoo

    if src in zoo.ZOO:
        return "zoo"
    p = Path(src)
    suffix = p.suffix.lower()
    if suffix in (".onnx", ".pt2", ".pt", ".pth", ".torchscript", ".tflite") or p.exists():
        if not p.exists():
            raise NotFoundError(f"model file not found: {src}")
        if p.is_dir():
            raise UserInputError(f"{src} is a directory; expected a model file (.onnx, .pt2, .pt) or a zoo name")
        if suffix == ".onnx":
            return "onnx"
        if suffix == ".tflite":
            return "tflite"
        if suffix == ".pt2":
            return "pt2"
        if suffix in (".pt", ".torchscript"):
            return "torchscript"
        if suffix == ".pth":
            raise UserInputError(f"{src} looks like a state dict (weights only), which has no architecture",
                                 hint="import a module:callable that builds the model and loads these weights")
        raise UserInputError(f"{src}: unknown model format {suffix or '(no suffix)'}",
                             hint="bushu imports .onnx, .pt2 (torch.export), .pt (TorchScript), module:callable "
                                  "or a zoo name (bushu import --list)")
    if ":" in src and not src.startswith(":"):
        return "callable"
    from ..errors import UnknownNameError

    raise UnknownNameError("model source", src, zoo.ZOO,
                           hint="give an .onnx/.pt2/.pt file, a module:callable, or a zoo name (bushu import --list)")


def import_model(src: str, out: str | Path, *, input_shape: Sequence[int] | None = None,
                 labels: Sequence[str] | None = None, preprocess: Preprocess | None = None,
                 tolerance: Tolerance = Tolerance(), simplify: bool = True, reference: bool = True,
                 name: str | None = None, task: str | None = None, decoder: str | None = None,
                 decoder_options: dict[str, Any] | None = None, to_onnx: bool = False) -> Artifact:
    """Import ``src`` into an artifact at ``out`` and return it (see module docstring).

    ``task``/``decoder``/``decoder_options``: detectors (bushu.convert.detection); an .onnx or .tflite
    model that says it is one becomes a detection artifact without them. ``to_onnx``: a .tflite source is
    converted to ONNX (tflite2onnx) instead of kept as it is.
    """
    kind = source_kind(src)
    out = Path(out)
    detect = {"task": task, "decoder": decoder, "options": decoder_options}
    if kind == "onnx":
        return _import_onnx(Path(src), out, labels=labels, preprocess=preprocess, simplify=simplify,
                            tolerance=tolerance, name=name, detect=detect)
    if kind == "tflite":
        return _import_tflite(Path(src), out, labels=labels, preprocess=preprocess, name=name, detect=detect,
                              to_onnx=to_onnx, tolerance=tolerance)
    import torch  # noqa: F401 - every other source needs it; fail early with the install hint below

    module, pre, post, lbls, shape, details = _load_torch_source(kind, src, input_shape)
    exportable = torch.export.load(src) if kind == "pt2" else None
    return _import_torch(module, src, kind, out, exportable=exportable, shape=shape, labels=labels or lbls, preprocess=preprocess or pre,
                         postprocess=post, tolerance=tolerance, simplify=simplify, reference=reference,
                         name=name or (src if kind == "zoo" else out.name), details=details)


# -- sources ------------------------------------------------------------------------------------------
def _load_torch_source(kind: str, src: str, input_shape: Sequence[int] | None):
    """-> (module, preprocess, postprocess, labels, example input shape, provenance details)."""
    import torch

    from ..runtime.backends.torch import _read_io

    if kind == "zoo":
        from ..model import zoo

        module, m = zoo.build(src)
        shape = (1, 3, m.preprocess.crop, m.preprocess.crop)
        return (module, m.preprocess, Postprocess(), zoo.imagenet_labels(), tuple(input_shape or shape),
                {"zoo": m.describe()})
    path = Path(src)
    if kind in ("pt2", "torchscript"):
        try:
            io = _read_io(path)
        except Exception as e:  # noqa: BLE001 - zip/json errors: not a model file
            raise ModelLoadError(f"{path.name} is not a readable PyTorch archive: {e}") from e
        try:
            module = torch.export.load(str(path)).module() if kind == "pt2" else torch.jit.load(str(path)).eval()
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"{path.name} is not a loadable PyTorch model: {str(e).splitlines()[0][:300]}",
                                 hint="re-save it with torch.export.save or torch.jit.save") from e
        shape = input_shape
        if shape is None and io:
            shape = TensorSpec.from_dict(io["inputs"][0]).concrete_shape(batch=1)
        if shape is None and kind == "pt2":
            from ..runtime.backends.torch import _program_specs

            ins, _ = _program_specs(torch.export.load(str(path)))
            shape = ins[0].concrete_shape(batch=1)
        if shape is None:
            raise UserInputError(f"{path.name} does not record its input shape",
                                 hint="pass it: bushu import MODEL.pt --input-shape 1,3,224,224")
        return module, None, None, None, tuple(shape), {"file": str(path)}
    # module:callable
    mod_name, _, attr = src.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise NotFoundError(f"cannot import module {mod_name!r} (from {src!r}): {e}",
                            hint="run from the directory that holds it, or install it") from e
    finally:
        sys.path.pop(0)
    for part in attr.split("."):
        if not hasattr(obj, part):
            from ..errors import UnknownNameError

            raise UnknownNameError(f"attribute of {mod_name}", part, [n for n in dir(obj) if not n.startswith("_")])
        obj = getattr(obj, part)
    module = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
    if not isinstance(module, torch.nn.Module):
        raise UserInputError(f"{src} returned {type(module).__name__}, expected a torch.nn.Module")
    shape = input_shape or getattr(module, "input_shape", None)
    if shape is None:
        raise UserInputError(f"the input shape of {src} is unknown",
                             hint="pass it: bushu import module:fn --input-shape 1,3,224,224")
    return module.eval(), None, None, None, tuple(shape), {"callable": src}


# -- torch → onnx -------------------------------------------------------------------------------------
def _import_torch(module: Any, src: str, kind: str, out: Path, *, shape: tuple[int, ...],
                  labels: Sequence[str] | None, preprocess: Preprocess | None, postprocess: Postprocess | None,
                  tolerance: Tolerance, simplify: bool, reference: bool, name: str,
                  details: dict[str, Any], exportable: Any = None) -> Artifact:
    import torch

    from . import onnx as conv

    if len(shape) < 2:
        raise UserInputError(f"input shape {list(shape)} has no batch dim; expected e.g. 1,3,224,224")
    example = np.random.default_rng(0).standard_normal((2, *shape[1:])).astype(np.float32)
    with torch.no_grad():
        try:
            ref_out = module(torch.from_numpy(example))
        except Exception as e:  # noqa: BLE001 - the user's model does not run on this shape
            raise UserInputError(f"the model does not run on an input of shape {[2, *shape[1:]]}: "
                                 f"{str(e).splitlines()[0][:300]}", hint="pass the right --input-shape") from e
    n_out = 1 if isinstance(ref_out, torch.Tensor) else len(ref_out)
    output_names = ["logits"] if n_out == 1 and (labels or kind == "zoo") else [f"output{i}" for i in range(n_out)]
    input_names = ["input"]
    with tempfile.TemporaryDirectory(prefix="bushu-import-") as tmpd:
        tmp = Path(tmpd)
        onnx_path = conv.export_onnx(exportable if exportable is not None else module, [example],
                                     tmp / MODEL_FILE, input_names, output_names)
        simp = conv.simplify(onnx_path) if simplify else {"simplified": False, "reason": "--no-simplify"}
        inputs, outputs = _onnx_specs(onnx_path)
        parity = _parity(module, onnx_path, inputs, tolerance, what=f"ONNX export of {src}")
        files: dict[str, Any] = {MODEL_FILE: onnx_path}
        roles = {}
        if kind == "pt2":  # the source already is the reference; add the IO spec to it
            reference = conv.save_reference(exportable, [example], tmp / REFERENCE_FILE, inputs, outputs) is not None
            if reference:
                files[REFERENCE_FILE] = tmp / REFERENCE_FILE
                roles["reference"] = REFERENCE_FILE
        elif reference and conv.save_reference(module, [example], tmp / REFERENCE_FILE, inputs, outputs,
                                               eager={kind: src} if kind in ("zoo", "callable") else None):
            files[REFERENCE_FILE] = tmp / REFERENCE_FILE
            roles["reference"] = REFERENCE_FILE
        art = Artifact(path=out, model_file=MODEL_FILE, format="onnx", inputs=inputs, outputs=outputs, name=name,
                       task="classification" if labels else "raw",
                       preprocess=preprocess, postprocess=postprocess or (Postprocess() if labels else None),
                       files=roles,
                       provenance={"source": src, "source_kind": kind, **details, "versions": library_versions()},
                       metrics={"parity": parity})
        art.add_step("import", source=src, exporter=f"torch.onnx.export(dynamo=False, opset={conv.OPSET})",
                     simplify=simp)
        return write_artifact(out, files, art, labels=list(labels) if labels else None)


def _import_onnx(path: Path, out: Path, *, labels, preprocess, simplify: bool, tolerance: Tolerance,
                 name: str | None, detect: dict[str, Any] | None = None) -> Artifact:
    from ..runtime import load_backend
    from . import onnx as conv

    data = path.with_name(path.name + ".data")
    with load_backend(path, "onnxruntime"):  # a clear ModelLoadError for a corrupt/truncated file
        pass
    with tempfile.TemporaryDirectory(prefix="bushu-import-") as tmpd:
        tmp = Path(tmpd) / MODEL_FILE
        if data.exists():  # keep external weights beside the graph, under the name the graph records
            import onnx

            onnx.save(onnx.load(str(path)), str(tmp))  # inlines them (models < 2 GB)
        else:
            shutil.copyfile(path, tmp)
        simp = {"simplified": False, "reason": "--no-simplify"}
        parity: dict[str, Any] = {"reference": "source .onnx (unchanged graph)", "passed": True, "outputs": []}
        if simplify:
            simp = conv.simplify(tmp)
            if simp.get("simplified"):
                parity = _parity_onnx(path, tmp, tolerance)
        inputs, outputs = _onnx_specs(tmp)
        from .detection import detection_setup, onnx_metadata

        task, postprocess = ("classification", Postprocess()) if labels else ("raw", None)
        det = detection_setup(inputs, outputs, onnx_metadata(path), labels=labels, preprocess=preprocess,
                              **(detect or {}))
        if det is not None:
            task, (preprocess, postprocess, labels) = "detection", det
        art = Artifact(path=out, model_file=MODEL_FILE, format="onnx", inputs=inputs, outputs=outputs,
                       name=name or out.name, task=task, preprocess=preprocess, postprocess=postprocess,
                       provenance={"source": str(path), "source_kind": "onnx", "versions": library_versions()},
                       metrics={"parity": parity})
        art.add_step("import", source=str(path), simplify=simp)
        return write_artifact(out, {MODEL_FILE: tmp}, art, labels=list(labels) if labels else None)


def _import_tflite(path: Path, out: Path, *, labels, preprocess, name: str | None, detect: dict[str, Any],
                   to_onnx: bool = False, tolerance: Tolerance = Tolerance()) -> Artifact:
    """A .tflite model as it is (the litert backend runs it), or with ``to_onnx`` converted by tflite2onnx
    and checked against LiteRT on the same inputs. Detectors are recognised as ONNX ones are."""
    from ..runtime import load_backend
    from .detection import detection_setup

    with load_backend(path, "litert") as be:
        inputs, outputs = list(be.inputs), list(be.outputs)
    model_file, fmt, src_file = "model.tflite", "tflite", path
    parity: dict[str, Any] = {"reference": "source .tflite (unchanged file)", "passed": True, "outputs": []}
    with tempfile.TemporaryDirectory(prefix="bushu-import-") as tmpd:
        if to_onnx:
            src_file = Path(tmpd) / MODEL_FILE
            _tflite_to_onnx(path, src_file)
            inputs, outputs = _onnx_specs(src_file)
            parity = _parity_tflite(path, src_file, tolerance)
            model_file, fmt = MODEL_FILE, "onnx"
        task, postprocess = ("classification", Postprocess()) if labels else ("raw", None)
        det = detection_setup(inputs, outputs, {}, labels=labels, preprocess=preprocess, **detect)
        if det is not None:
            task, (preprocess, postprocess, labels) = "detection", det
        art = Artifact(path=out, model_file=model_file, format=fmt, inputs=inputs, outputs=outputs,
                       name=name or out.name, task=task, preprocess=preprocess, postprocess=postprocess,
                       provenance={"source": str(path), "source_kind": "tflite", "versions": library_versions()},
                       metrics={"parity": parity})
        art.add_step("import", source=str(path), **({"converter": "tflite2onnx"} if to_onnx else {}))
        return write_artifact(out, {model_file: src_file}, art, labels=list(labels) if labels else None)


def _tflite_to_onnx(src: Path, dst: Path) -> None:
    try:
        import tflite2onnx
    except ImportError as e:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(".tflite -> ONNX conversion (tflite2onnx)", "tflite2onnx") from e
    try:
        tflite2onnx.convert(str(src), str(dst))
    except Exception as e:  # noqa: BLE001 - the converter's own errors (unsupported op ...)
        raise ModelLoadError(f"tflite2onnx cannot convert {src.name}: {str(e).splitlines()[0][:300]}",
                             hint="import the .tflite as it is (without --to-onnx): the litert backend runs it") from e
    import onnx
    from onnx import version_converter

    model = onnx.load(str(dst))
    if model.opset_import[0].version < 13:  # tflite2onnx writes opset 11; per-channel int8 (axis on Q/DQ) needs 13
        onnx.save(version_converter.convert_version(model, 13), str(dst))


def _parity_tflite(src: Path, onnx_path: Path, tol: Tolerance) -> dict[str, Any]:
    """LiteRT on the .tflite vs onnxruntime on the conversion; NHWC inputs are transposed where tflite2onnx
    made them NCHW."""
    from ..runtime import load_backend
    from ..validate import agreement, check_tolerance, summarize

    with load_backend(src, "litert") as ref_be, load_backend(onnx_path, "onnxruntime") as got_be:
        feeds = synthetic_feeds(ref_be.inputs, batch=1, seed=1)
        onnx_feeds = {}
        for r, g in zip(ref_be.inputs, got_be.inputs, strict=True):
            x = feeds[r.name]
            if x.ndim == 4 and x.shape != g.concrete_shape(batch=1) and x.transpose(0, 3, 1, 2).shape == \
                    g.concrete_shape(batch=1):
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            onnx_feeds[g.name] = x
        ref, got = ref_be.infer(feeds), got_be.infer(onnx_feeds)
    return _report(f"tflite2onnx conversion of {src.name}", "source .tflite (LiteRT)", ref, got, tol,
                   check_tolerance, agreement, summarize)


# -- checks -------------------------------------------------------------------------------------------
def _onnx_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    from ..runtime import load_backend

    with load_backend(path, "onnxruntime") as be:
        return list(be.inputs), list(be.outputs)


def _parity_feeds(inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    # batch 3: different from the export example (2), so the dynamic batch axis is exercised too
    return synthetic_feeds(inputs, batch=3, seed=1)


def _parity(module: Any, onnx_path: Path, inputs: list[TensorSpec], tol: Tolerance, what: str) -> dict[str, Any]:
    import torch

    from ..validate import agreement, check_tolerance, run_model, summarize

    feeds = _parity_feeds(inputs)
    with torch.no_grad():
        out = module(*[torch.from_numpy(feeds[s.name]) for s in inputs])
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    got = run_model(onnx_path, feeds)
    ref = {name: o.numpy() for name, o in zip(got, outs, strict=True)}
    return _report(what, "torch eager", ref, got, tol, check_tolerance, agreement, summarize)


def _parity_onnx(src: Path, simplified: Path, tol: Tolerance) -> dict[str, Any]:
    from ..validate import agreement, check_tolerance, run_model, summarize

    inputs, _ = _onnx_specs(src)
    feeds = _parity_feeds(inputs)
    return _report(f"simplified {src.name}", "source .onnx", run_model(src, feeds), run_model(simplified, feeds),
                   tol, check_tolerance, agreement, summarize)


def _report(what, reference, ref, got, tol, check_tolerance, agreement, summarize) -> dict[str, Any]:
    rows = check_tolerance(what, ref, got, tol.atol, tol.rtol)  # raises ToleranceError / ShapeError
    agree = agreement(ref, got)
    outputs = [{**r, **{k: v for k, v in agree[r["name"]].items() if k in ("top1_agreement", "cosine_min")}}
               for r in summarize(rows)]
    return {"reference": reference, "passed": True, "samples": len(next(iter(ref.values()))), "outputs": outputs}
