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
from ..inputs import InputRequest
from ..model.artifact import Artifact, Postprocess, Preprocess, library_versions, write_artifact
from ..spec import TensorSpec, dtype_name, np_dtype, synthetic_feeds

__all__ = ["Tolerance", "import_model", "source_kind"]

MODEL_FILE = "model.onnx"
REFERENCE_FILE = "model.pt2"


@dataclass(frozen=True)
class Tolerance:
    """fp32 export budget: |onnx - torch| <= atol + rtol·max|torch| per output (docs/notes.md: ~1e-5 on logits)."""

    atol: float = 1e-4
    rtol: float = 1e-4


def source_kind(src: str) -> str:
    """'zoo', 'onnx', 'pt2', 'torchscript', 'transformers' (a model folder) or 'callable' for SRC, or a precise error."""
    from ..model import zoo

    if src in zoo.ZOO:
        return "zoo"
    p = Path(src)
    suffix = p.suffix.lower()
    if suffix in (".onnx", ".pt2", ".pt", ".pth", ".torchscript", ".tflite") or p.exists():
        if not p.exists():
            raise NotFoundError(f"model file not found: {src}")
        if p.is_dir():
            if (p / "config.json").is_file():
                return "transformers"
            raise UserInputError(
                f"{src} is a directory without config.json; expected a model file (.onnx, .pt2, "
                ".pt), a Hugging Face Transformers model folder or a zoo name"
            )
        if suffix == ".onnx":
            return "onnx"
        if suffix == ".tflite":
            return "tflite"
        if suffix == ".pt2":
            return "pt2"
        if suffix in (".pt", ".torchscript"):
            return "torchscript"
        if suffix == ".pth":
            raise UserInputError(
                f"{src} looks like a state dict (weights only), which has no architecture",
                hint="import a module:callable that builds the model and loads these weights",
            )
        raise UserInputError(
            f"{src}: unknown model format {suffix or '(no suffix)'}",
            hint="bushu imports .onnx, .pt2 (torch.export), .pt (TorchScript), module:callable "
            "or a zoo name (bushu import --list)",
        )
    if ":" in src and not src.startswith(":"):
        return "callable"
    from ..errors import UnknownNameError

    raise UnknownNameError(
        "model source",
        src,
        zoo.ZOO,
        hint="give an .onnx/.pt2/.pt file, a module:callable, or a zoo name (bushu import --list)",
    )


def import_model(
    src: str,
    out: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    preprocess: Preprocess | None = None,
    tolerance: Tolerance = Tolerance(),
    simplify: bool = True,
    reference: bool = True,
    name: str | None = None,
    inputs: InputRequest | None = None,
    task: str | None = None,
    decoder: str | None = None,
    decoder_options: dict[str, Any] | None = None,
    to_onnx: bool = False,
) -> Artifact:
    """Import ``src`` into an artifact at ``out`` and return it (see module docstring).

    ``inputs`` (``--input``/``--sample``): the shapes/dtypes to export and check at (recorded as the
    typical sizes of the symbolic dims), and real arrays for the parity check.
    ``task``/``decoder``/``decoder_options``: detectors (bushu.import_.detection); an .onnx or .tflite
    model that says it is one becomes a detection artifact without them. ``to_onnx``: a .tflite source is
    converted to ONNX (tflite2onnx) instead of kept as it is.
    """
    kind = source_kind(src)
    out = Path(out)
    req = inputs or InputRequest()
    detect = {"task": task, "decoder": decoder, "options": decoder_options}
    if kind == "onnx":
        return _import_onnx(
            Path(src),
            out,
            labels=labels,
            preprocess=preprocess,
            simplify=simplify,
            tolerance=tolerance,
            name=name,
            req=req,
            detect=detect,
        )
    if kind == "tflite":
        return _import_tflite(
            Path(src),
            out,
            labels=labels,
            preprocess=preprocess,
            name=name,
            detect=detect,
            to_onnx=to_onnx,
            tolerance=tolerance,
        )
    import torch  # noqa: F401 - every other source needs it; fail early with the install hint below

    if kind == "transformers":
        from .transformers import load_folder

        module, pre, example, details = load_folder(Path(src), req)
        labels = labels or details.pop("labels", None)
        return _import_torch(
            module,
            src,
            kind,
            out,
            example=example,
            labels=labels,
            preprocess=preprocess or pre,
            postprocess=None,
            tolerance=tolerance,
            simplify=simplify,
            reference=reference,
            name=name or out.name,
            details=details,
            req=req,
            files=details.pop("files"),
            task="embedding",
        )
    module, pre, post, lbls, shape, details = _load_torch_source(kind, src, input_shape, req)
    exportable = torch.export.load(src) if kind == "pt2" else None
    return _import_torch(
        module,
        src,
        kind,
        out,
        exportable=exportable,
        example=_example_specs(module, shape, req),
        labels=labels or lbls,
        preprocess=preprocess or pre,
        postprocess=post,
        tolerance=tolerance,
        simplify=simplify,
        reference=reference,
        name=name or (src if kind == "zoo" else out.name),
        details=details,
        req=req,
    )


def _example_specs(module: Any, shape: Sequence[int] | None, req: InputRequest) -> list[TensorSpec]:
    """The inputs to export a PyTorch model with: the --input list (names, shapes, dtypes) or one float input."""
    if req.shapes:
        return [TensorSpec(n, req.dtypes.get(n, "float32"), shp) for n, shp in req.given().items()]
    if req.sample is not None:
        return [TensorSpec(n, dtype_name(a.dtype), a.shape) for n, a in req.sample.items()]
    if shape is None:
        raise UserInputError("the input shape is unknown", hint="pass it: bushu import MODEL --input input:1x3x224x224")
    names = getattr(module, "input_names", None) or ["input"]
    return [TensorSpec(names[0], "float32", tuple(shape))]


# -- sources ------------------------------------------------------------------------------------------
def _load_torch_source(kind: str, src: str, input_shape: Sequence[int] | None, req: InputRequest | None = None):
    """-> (module, preprocess, postprocess, labels, example input shape, provenance details)."""
    import torch

    req = req or InputRequest()

    from ..runtime.backends.torch import _read_io

    if kind == "zoo":
        from ..model import zoo

        module, m = zoo.build(src)
        crop = m.preprocess.crop
        assert crop is not None  # every zoo entry records its crop size
        return (
            module,
            m.preprocess,
            Postprocess(),
            zoo.imagenet_labels(),
            tuple(input_shape or (1, 3, crop, crop)),
            {"zoo": m.describe()},
        )
    path = Path(src)
    if kind in ("pt2", "torchscript"):
        try:
            io = _read_io(path)
        except Exception as e:  # noqa: BLE001 - zip/json errors: not a model file
            raise ModelLoadError(f"{path.name} is not a readable PyTorch archive: {e}") from e
        try:
            module = torch.export.load(str(path)).module() if kind == "pt2" else torch.jit.load(str(path)).eval()
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(
                f"{path.name} is not a loadable PyTorch model: {str(e).splitlines()[0][:300]}",
                hint="re-save it with torch.export.save or torch.jit.save",
            ) from e
        shape = input_shape or (tuple(req.given().values())[0] if req.shapes else None)
        if shape is None and req.sample is not None:
            shape = next(iter(req.sample.values())).shape
        if shape is None and io:
            shape = TensorSpec.from_dict(io["inputs"][0]).concrete_shape(batch=1)
        if shape is None and kind == "pt2":
            from ..runtime.backends.torch import _program_specs

            ins, _ = _program_specs(torch.export.load(str(path)))
            shape = ins[0].concrete_shape(batch=1)
        if shape is None:
            raise UserInputError(
                f"{path.name} does not record its input shape",
                hint="pass it: bushu import MODEL.pt --input input:1x3x224x224",
            )
        return module, None, None, None, tuple(shape), {"file": str(path)}
    # module:callable
    mod_name, _, attr = src.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise NotFoundError(
            f"cannot import module {mod_name!r} (from {src!r}): {e}",
            hint="run from the directory that holds it, or install it",
        ) from e
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
    if shape is None and not req:
        raise UserInputError(
            f"the input shape of {src} is unknown",
            hint="pass it: bushu import module:fn --input input:1x3x224x224 (repeat --input "
            "for each input, e.g. --input ids:1x16:int64)",
        )
    return module.eval(), None, None, None, tuple(shape) if shape else None, {"callable": src}


# -- torch → onnx -------------------------------------------------------------------------------------
def _example_arrays(example: Sequence[TensorSpec], batch: int = 2) -> list[np.ndarray]:
    """Arrays to trace with: floats standard normal, ids zeros (valid for any table), masks ones."""
    rng = np.random.default_rng(0)
    arrays = []
    for s in example:
        shape = (batch, *s.concrete_shape()[1:]) if s.shape else ()  # the example's dims are all ints
        dt = np_dtype(s.dtype)
        if dt.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dt))
        else:
            arrays.append((np.ones if "mask" in s.name.lower() else np.zeros)(shape, dt))
    return arrays


def _dynamic_axes(module: Any, example: Sequence[TensorSpec], req: InputRequest) -> dict[str, dict[int, str]]:
    """Dim 0 of every input is ``batch``; more from the module's ``dynamic_axes`` and from dims a sweep varies."""
    axes = {s.name: {0: "batch"} for s in example if s.shape}
    for n, d in (getattr(module, "dynamic_axes", None) or {}).items():
        axes.setdefault(n, {}).update({int(k): str(v) for k, v in dict(d).items()})
    for n, shapes in req.shapes.items():
        for i in range(1, len(shapes[0])):
            if len({shp[i] for shp in shapes if len(shp) > i}) > 1:
                axes.setdefault(n, {}).setdefault(i, f"{n}_dim{i}")
    return axes


def _import_torch(
    module: Any,
    src: str,
    kind: str,
    out: Path,
    *,
    example: Sequence[TensorSpec],
    labels: Sequence[str] | None,
    preprocess: Preprocess | None,
    postprocess: Postprocess | None,
    tolerance: Tolerance,
    simplify: bool,
    reference: bool,
    name: str,
    details: dict[str, Any],
    exportable: Any = None,
    req: InputRequest | None = None,
    files: dict[str, Path] | None = None,
    task: str | None = None,
) -> Artifact:
    import torch

    from . import onnx as conv

    req = req or InputRequest()
    if any(len(s.shape) < 1 for s in example) or (len(example) == 1 and len(example[0].shape) < 2):
        raise UserInputError(f"input shape {list(example[0].shape)} has no batch dim; expected e.g. 1,3,224,224")
    arrays = _example_arrays(example)
    with torch.no_grad():
        try:
            ref_out = module(*[torch.from_numpy(a) for a in arrays])
        except Exception as e:  # noqa: BLE001 - the user's model does not run on this shape
            got = ", ".join(f"{s.name}:{'x'.join(map(str, a.shape))}:{s.dtype}" for s, a in zip(example, arrays))
            raise UserInputError(
                f"the model does not run on inputs {got}: {str(e).splitlines()[0][:300]}",
                hint="state each input: --input NAME:SHAPE[:DTYPE] (repeatable)",
            ) from e
    outs = _flat_outputs(ref_out)
    n_out = len(outs)
    output_names = getattr(module, "output_names", None) or (
        ["logits"] if n_out == 1 and (labels or kind == "zoo") else [f"output{i}" for i in range(n_out)]
    )
    input_names = [s.name for s in example]
    axes = _dynamic_axes(module, example, req)
    stated = {**{s.name: [tuple(s.shape)] for s in example}, **req.shapes}
    with tempfile.TemporaryDirectory(prefix="bushu-import-") as tmpd:
        tmp = Path(tmpd)
        onnx_path = conv.export_onnx(
            exportable if exportable is not None else module,
            arrays,
            tmp / MODEL_FILE,
            input_names,
            output_names,
            dynamic_axes=axes,
        )
        simp = conv.simplify(onnx_path) if simplify else {"simplified": False, "reason": "--no-simplify"}
        inputs, outputs = _onnx_specs(onnx_path, preprocess, stated, seq=details.get("seq"))
        req.check(inputs)
        parity = _parity(module, onnx_path, inputs, tolerance, what=f"ONNX export of {src}", req=req)
        files_out: dict[str, Any] = {MODEL_FILE: onnx_path, **(files or {})}
        roles = {}
        if kind == "pt2":  # the source already is the reference; add the IO spec to it
            reference = conv.save_reference(exportable, arrays, tmp / REFERENCE_FILE, inputs, outputs) is not None
            if reference:
                files_out[REFERENCE_FILE] = tmp / REFERENCE_FILE
                roles["reference"] = REFERENCE_FILE
        elif reference and conv.save_reference(
            module,
            arrays,
            tmp / REFERENCE_FILE,
            inputs,
            outputs,
            dynamic_axes=axes,
            eager={kind: src} if kind in ("zoo", "callable") else None,
        ):
            files_out[REFERENCE_FILE] = tmp / REFERENCE_FILE
            roles["reference"] = REFERENCE_FILE
        art = Artifact(
            path=out,
            model_file=MODEL_FILE,
            format="onnx",
            inputs=inputs,
            outputs=outputs,
            name=name,
            task="classification" if labels else (task or "raw"),
            preprocess=preprocess,
            postprocess=postprocess or (Postprocess() if labels else None),
            files=roles,
            provenance={"source": src, "source_kind": kind, **details, "versions": library_versions()},
            metrics={"parity": parity},
        )
        art.add_step(
            "import",
            source=src,
            exporter=f"torch.onnx.export(dynamo=False, opset={conv.OPSET})",
            dynamic_axes=axes,
            simplify=simp,
        )
        return write_artifact(out, files_out, art, labels=list(labels) if labels else None)


def _flat_outputs(out: Any) -> list[Any]:
    """A model's outputs as a flat list (a tensor, a tuple/list, or a dict/ModelOutput of tensors)."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        out = list(out.values()) if isinstance(out, dict) else list(out.to_tuple())
    return [t for o in out for t in _flat_outputs(o)]


def _import_onnx(
    path: Path,
    out: Path,
    *,
    labels,
    preprocess,
    simplify: bool,
    tolerance: Tolerance,
    name: str | None,
    req: InputRequest,
    detect: dict[str, Any] | None = None,
) -> Artifact:
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
        src_inputs, _ = _onnx_specs(path, preprocess, req.shapes)
        req.check(src_inputs)  # before anything runs: a wrong --input/--sample is the user's to fix
        feeds = _parity_feeds(src_inputs, req)  # also proves the derived sizes run (a smoke run when not simplified)
        simp = {"simplified": False, "reason": "--no-simplify"}
        parity: dict[str, Any] = {"reference": "source .onnx (unchanged graph)", "passed": True, "outputs": []}
        if simplify:
            simp = conv.simplify(tmp)
        if simp.get("simplified"):
            parity = _parity_onnx(path, tmp, tolerance, feeds)
        else:
            _run_checked(path, feeds)
        inputs, outputs = _onnx_specs(tmp, preprocess, req.shapes)
        from .detection import detection_setup, onnx_metadata

        task, postprocess = ("classification", Postprocess()) if labels else ("raw", None)
        det = detection_setup(
            inputs, outputs, onnx_metadata(path), labels=labels, preprocess=preprocess, **(detect or {})
        )
        if det is not None:
            task, (preprocess, postprocess, labels) = "detection", det
        meta = _onnx_metadata(tmp)
        art = Artifact(
            path=out,
            model_file=MODEL_FILE,
            format="onnx",
            inputs=inputs,
            outputs=outputs,
            name=name or out.name,
            task=task,
            preprocess=preprocess,
            postprocess=postprocess,
            provenance={
                "source": str(path),
                "source_kind": "onnx",
                "versions": library_versions(),
                **({"metadata": meta} if meta else {}),
            },
            metrics={"parity": parity},
        )
        art.add_step("import", source=str(path), simplify=simp, inputs=req.describe(inputs) if req else None)
        return write_artifact(out, {MODEL_FILE: tmp}, art, labels=list(labels) if labels else None)


def _import_tflite(
    path: Path,
    out: Path,
    *,
    labels,
    preprocess,
    name: str | None,
    detect: dict[str, Any],
    to_onnx: bool = False,
    tolerance: Tolerance = Tolerance(),
) -> Artifact:
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
        art = Artifact(
            path=out,
            model_file=model_file,
            format=fmt,
            inputs=inputs,
            outputs=outputs,
            name=name or out.name,
            task=task,
            preprocess=preprocess,
            postprocess=postprocess,
            provenance={"source": str(path), "source_kind": "tflite", "versions": library_versions()},
            metrics={"parity": parity},
        )
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
        raise ModelLoadError(
            f"tflite2onnx cannot convert {src.name}: {str(e).splitlines()[0][:300]}",
            hint="import the .tflite as it is (without --to-onnx): the litert backend runs it",
        ) from e
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
            if (
                x.ndim == 4
                and x.shape != g.concrete_shape(batch=1)
                and x.transpose(0, 3, 1, 2).shape == g.concrete_shape(batch=1)
            ):
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            onnx_feeds[g.name] = x
        ref, got = ref_be.infer(feeds), got_be.infer(onnx_feeds)
    return _report(
        f"tflite2onnx conversion of {src.name}",
        "source .tflite (LiteRT)",
        ref,
        got,
        tol,
        check_tolerance,
        agreement,
        summarize,
    )


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    from .signature import metadata

    return metadata(onnx.load(str(path), load_external_data=False))


def _run_checked(path: Path, feeds: dict[str, np.ndarray]) -> None:
    """Run once; a runtime failure on the derived inputs names them, so the user knows which --input to state."""
    from ..validate import run_model

    try:
        run_model(path, feeds)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
        got = " ".join(f"{k}:{'x'.join(map(str, v.shape))}:{dtype_name(v.dtype)}" for k, v in feeds.items())
        raise UserInputError(
            f"{path.name} fails on the inputs bushu derived ({got}): "
            f"{str(getattr(e, 'message', e)).splitlines()[0][:300]}",
            hint="state the sizes it takes: --input NAME:SHAPE[:DTYPE], or real arrays: --sample FILE.npz",
        ) from e


# -- checks -------------------------------------------------------------------------------------------
def _onnx_specs(
    path: Path, preprocess: Preprocess | None = None, stated: dict | None = None, seq: dict | None = None
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's IO, inputs annotated with role, safe values and dim ranges (bushu.import_.signature)."""
    import onnx

    from ..bench.info import onnx_io
    from .signature import annotate

    proto = onnx.load(str(path), load_external_data=False)
    ins, outs = onnx_io(proto)
    return annotate(proto, ins, preprocess, stated, seq), outs


def _parity_feeds(inputs: Sequence[TensorSpec], req: InputRequest | None = None) -> dict[str, np.ndarray]:
    # batch 3: different from the export example (2), so the dynamic batch axis is exercised too
    req = req or InputRequest()
    if req.sample is not None:
        return req.feeds(inputs)
    batch = 3 if all(s.has_batch for s in inputs if s.shape) else None
    return req.feeds(inputs, batch=batch, seed=1)


def _parity(
    module: Any, onnx_path: Path, inputs: list[TensorSpec], tol: Tolerance, what: str, req: InputRequest | None = None
) -> dict[str, Any]:
    import torch

    from ..validate import agreement, check_tolerance, run_model, summarize

    feeds = _parity_feeds(inputs, req)
    with torch.no_grad():
        out = module(*[torch.from_numpy(feeds[s.name]) for s in inputs])
    outs = _flat_outputs(out)
    got = run_model(onnx_path, feeds)
    ref = {name: o.numpy() for name, o in zip(got, outs, strict=True)}
    return _report(what, "torch eager", ref, got, tol, check_tolerance, agreement, summarize)


def _parity_onnx(src: Path, simplified: Path, tol: Tolerance, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    from ..validate import agreement, check_tolerance, run_model, summarize

    return _report(
        f"simplified {src.name}",
        "source .onnx",
        run_model(src, feeds),
        run_model(simplified, feeds),
        tol,
        check_tolerance,
        agreement,
        summarize,
    )


def _report(what, reference, ref, got, tol, check_tolerance, agreement, summarize) -> dict[str, Any]:
    rows = check_tolerance(what, ref, got, tol.atol, tol.rtol)  # raises ToleranceError / ShapeError
    agree = agreement(ref, got)
    outputs = [
        {**r, **{k: v for k, v in agree[r["name"]].items() if k in ("top1_agreement", "cosine_min")}}
        for r in summarize(rows)
    ]
    return {"reference": reference, "passed": True, "samples": len(next(iter(ref.values()))), "outputs": outputs}
