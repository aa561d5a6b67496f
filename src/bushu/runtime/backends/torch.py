"""PyTorch eager: the reference backend. Reads ``torch.export`` programs (.pt2) and TorchScript (.pt).

Neither format keeps output names, so bushu stores the IO spec in an extra file (``bushu_io.json``)
inside the archive; without it names come from the program signature (``output0``...).

A .pt2 that ``bushu import`` saved from a module (zoo name, module:callable) also records how to rebuild
that module (``bushu_eager.json``): the backend then runs the rebuilt module eagerly with the program's
weights, since the exported program's unflattened module is several times slower on CPU. It falls back
to the program when the module cannot be rebuilt or its weights do not fit (compressed variants...);
``describe()["runs"]`` says which one runs. ``mode="exported"`` forces the program; ``compile=True``
wraps the module in ``torch.compile`` (off by default: the first call compiles for tens of seconds).
"""

from __future__ import annotations

import json
import logging
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import BackendError, InferenceInputError, ModelLoadError
from ...spec import TensorSpec, dtype_name
from ..backend import Backend

IO_EXTRA_FILE = "bushu_io.json"
EAGER_EXTRA_FILE = "bushu_eager.json"
MODES = ("auto", "eager", "exported")

_TORCH_TO_NP = {
    torch.float32: np.float32,
    torch.float16: np.float16,
    torch.float64: np.float64,
    torch.int8: np.int8,
    torch.int16: np.int16,
    torch.int32: np.int32,
    torch.int64: np.int64,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}


def _read_io(path: Path, extra: str = IO_EXTRA_FILE) -> dict[str, Any] | None:
    """A bushu extra file (the IO spec by default) stored in the archive, found without loading the model."""
    with zipfile.ZipFile(path) as z:
        for n in z.namelist():
            if n.endswith(extra):
                return json.loads(z.read(n))
    return None


def _rebuild_eager(recipe: dict[str, str], program: Any) -> tuple[Any, str]:
    """The source module of ``program`` with the program's weights, or a reason why not (-> (None, reason))."""
    import importlib
    import sys

    try:
        if "zoo" in recipe:
            from ...model import zoo

            module, _ = zoo.build(recipe["zoo"])
            what = f"zoo:{recipe['zoo']}"
        else:
            mod_name, _, attr = recipe["callable"].partition(":")
            sys.path.insert(0, str(Path.cwd()))
            try:
                obj = importlib.import_module(mod_name)
            finally:
                sys.path.pop(0)
            for part in attr.split("."):
                obj = getattr(obj, part)
            module = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
            what = recipe["callable"]
        module.load_state_dict(program.state_dict, strict=True)  # persistent params/buffers, source FQNs
    except Exception as e:  # noqa: BLE001 - missing package/module, changed architecture: run the program instead
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return module.eval(), what


def _program_specs(program: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """IO specs from a torch.export program's signature and fake-tensor metadata."""
    from torch.export.graph_signature import InputKind

    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = []
    for s in program.graph_signature.input_specs:
        if s.kind != InputKind.USER_INPUT:
            continue
        val = placeholders[s.arg.name].meta.get("val")
        shape = tuple(
            int(d) if isinstance(d, int) else ("batch" if i == 0 else str(d)) for i, d in enumerate(val.shape)
        )
        inputs.append(TensorSpec(s.arg.name, dtype_name(_TORCH_TO_NP.get(val.dtype, np.float32)), shape))
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    vals = [a.meta.get("val") for a in out_node.args[0]]
    outputs = []
    for i, val in enumerate(vals):
        shape = tuple(
            int(d) if isinstance(d, int) else ("batch" if j == 0 else str(d)) for j, d in enumerate(val.shape)
        )
        outputs.append(TensorSpec(f"output{i}", dtype_name(_TORCH_TO_NP.get(val.dtype, np.float32)), shape))
    return inputs, outputs


class TorchBackend(Backend):
    name = "torch"
    suffixes = (".pt2", ".pt", ".torchscript")
    options = ("threads", "mode", "compile")

    def load(  # type: ignore[override]
        self, path: Path, device: str = "cpu", *, threads: int | None = None, mode: str = "auto", compile: bool = False
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        if mode not in MODES:
            from ...errors import UnknownNameError

            raise UnknownNameError("torch backend mode", mode, MODES)
        self.runs, self.fallback = None, None
        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device("cuda" if device in ("cuda", "gpu") and torch.cuda.is_available() else "cpu")
        try:
            io = _read_io(path)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise ModelLoadError(
                f"{path.name} is not a readable PyTorch archive: {e}",
                hint="re-save it with torch.export.save or torch.jit.save",
            ) from e
        logging.getLogger("torch.export").setLevel(logging.ERROR)  # it logs a traceback before raising
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if path.suffix == ".pt2":
                    program = torch.export.load(str(path))
                    self.kind = "torch.export"
                    recipe = _read_io(path, EAGER_EXTRA_FILE) if mode != "exported" else None
                    self.module: Any
                    self.module, self.runs = _rebuild_eager(recipe, program) if recipe else (None, None)
                    if self.module is None:
                        self.fallback = self.runs or (
                            f"{path.name} records no source module" if mode != "exported" else "mode=exported"
                        )
                        if mode == "eager":
                            raise ModelLoadError(
                                f"cannot run {path.name} eagerly: {self.fallback}",
                                hint="use mode='exported' (or 'auto') to run the exported program",
                            )
                        self.module, self.runs = program.module(), "exported program (torch.export unflattened module)"
                    else:
                        self.runs = f"eager {self.runs}"
                else:
                    self.module = torch.jit.load(str(path), map_location=self.device)
                    self.module.eval()
                    program, self.kind = None, "torchscript"
        except ModelLoadError:
            raise
        except Exception as e:  # torch raises RuntimeError, zip errors, pickle errors...
            raise ModelLoadError(
                f"{path.name} is not a loadable PyTorch model: {str(e).splitlines()[0][:300]}",
                hint="re-save it with torch.export.save or torch.jit.save",
            ) from e
        if io:
            self._inputs = [TensorSpec.from_dict(d) for d in io["inputs"]]
            self._outputs = [TensorSpec.from_dict(d) for d in io["outputs"]]
        elif program is not None:
            self._inputs, self._outputs = _program_specs(program)
        else:
            raise ModelLoadError(
                f"{path.name} is TorchScript without {IO_EXTRA_FILE}: its IO spec is unknown",
                hint="import it with bushu import, which records the IO spec",
            )
        if self.kind == "torch.export" and self.device.type == "cuda":
            self.module.to(self.device)
        if self.kind == "torchscript":
            self.runs = "TorchScript"
        self.compiled = bool(compile)
        if self.compiled:
            self.module = torch.compile(self.module)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if getattr(self, "module", None) is None:
            raise BackendError("torch backend is closed")
        self.check(feeds)
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])).to(self.device) for s in self._inputs]
        try:
            with torch.inference_mode():
                out = self.module(*args)
        except Exception as e:  # shape guards of torch.export raise RuntimeError/AssertionError
            raise InferenceInputError(f"torch rejected the inputs: {str(e).splitlines()[0][:300]}") from e
        outs = [out] if isinstance(out, torch.Tensor) else list(out.values()) if isinstance(out, dict) else list(out)
        if len(outs) != len(self._outputs):
            raise BackendError(f"model returned {len(outs)} outputs, its spec names {len(self._outputs)}")
        return {s.name: o.detach().cpu().numpy() for s, o in zip(self._outputs, outs, strict=True)}

    def describe(self) -> dict[str, Any]:
        d = {
            "format": getattr(self, "kind", None),
            "runs": getattr(self, "runs", None),
            "compiled": getattr(self, "compiled", False),
            "device": str(getattr(self, "device", "cpu")),
            "threads": torch.get_num_threads(),
            "version": torch.__version__,
        }
        if getattr(self, "fallback", None):
            d["eager_unavailable"] = self.fallback
        return d

    def close(self) -> None:
        self.module = None
