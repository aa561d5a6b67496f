"""ncnn (Tencent): ``model.ncnn.param`` + ``model.ncnn.bin``, as written by pnnx (``bushu export --format ncnn``).

fp32 by default: ncnn's own default on x86 is fp16 storage and arithmetic (``use_fp16_*``), which
misses fp32 parity (docs/notes.md); ``precision="fp16"`` turns them back on. ncnn runs one sample at a
time (its Mat has no batch axis): a batch is run sample by sample on one extractor each. The IO spec
and ncnn's blob names (``in0``/``out0``) come from the ``.io.json`` sidecar written at export.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ncnn
import numpy as np

from ...errors import BackendError, ModelLoadError, UserInputError
from ..backend import Backend
from ._io import read_io

_PRECISIONS = {"fp32": False, "f32": False, "float32": False, "fp16": True, "f16": True, "float16": True}


class NcnnBackend(Backend):
    name = "ncnn"
    suffixes = (".param",)
    options = ("threads", "precision")

    def load(self, path: Path, device: str = "cpu", *, threads: int | None = None, precision: str = "fp32") -> None:  # type: ignore[override]
        path = Path(path)
        if precision not in _PRECISIONS:
            raise UserInputError(f"ncnn precision {precision!r} is not one of ['fp16', 'fp32']")
        if device not in ("cpu", "CPU"):
            raise UserInputError(
                f"the ncnn backend runs on the cpu only here, not {device!r}",
                hint="ncnn's Vulkan GPU path is not wired into bushu yet",
            )
        if threads is not None and not str(threads).isdigit():
            raise UserInputError(f"ncnn threads {threads!r} is not a positive integer")
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelLoadError(f"{path.name} needs its weights {weights.name} beside it, which is missing")
        self._inputs, self._outputs, self._in_blobs, self._out_blobs, _ = read_io(path)
        text = path.read_bytes()
        if not text.startswith(b"7767517"):  # ncnn's param magic; the parser would read garbage anyway
            raise ModelLoadError(
                f"{path.name} is not an ncnn .param file (no 7767517 magic)",
                hint="re-export the model, or check the file is complete (not truncated)",
            )
        self.fp16 = _PRECISIONS[precision]
        net = ncnn.Net()
        opt = net.opt
        opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = self.fp16
        opt.use_bf16_storage = False
        opt.use_vulkan_compute = False
        if threads:
            opt.num_threads = int(threads)
        if net.load_param(str(path)) != 0:
            raise ModelLoadError(
                f"ncnn could not parse {path.name}",
                hint="re-export the model, or check the file is complete (not truncated)",
            )
        if net.load_model(str(weights)) != 0:
            raise ModelLoadError(f"ncnn could not read the weights {weights.name} (truncated, or not for this .param)")
        have_in, have_out = set(net.input_names()), set(net.output_names())
        missing = [b for b in self._in_blobs if b not in have_in] + [b for b in self._out_blobs if b not in have_out]
        if missing:
            raise ModelLoadError(
                f"{path.name} has no blob(s) {missing} named in its IO description",
                hint="the .param and .io.json files come from different exports",
            )
        self.net = net
        self.threads = opt.num_threads
        self._lock = threading.Lock()

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if getattr(self, "net", None) is None:
            raise BackendError("this ncnn model was closed", hint="load it again")
        self.check(feeds)
        n = len(next(iter(feeds.values())))
        parts: list[list[np.ndarray]] = [[] for _ in self._outputs]
        with self._lock:
            for i in range(n):
                with self.net.create_extractor() as ex:
                    for spec, blob in zip(self._inputs, self._in_blobs, strict=True):
                        ex.input(blob, ncnn.Mat(np.ascontiguousarray(feeds[spec.name][i])).clone())
                    for j, blob in enumerate(self._out_blobs):
                        rc, mat = ex.extract(blob)
                        if rc != 0:
                            raise BackendError(f"ncnn failed to compute {blob!r} (error {rc})")
                        parts[j].append(np.array(mat, dtype=np.float32))
        out = {}
        for spec, p in zip(self._outputs, parts, strict=True):
            tail = tuple(d for d in spec.shape[1:])
            arr = np.stack(p) if p else np.zeros((0,), np.float32)
            if all(isinstance(d, int) for d in tail):
                arr = arr.reshape((n, *tail))
            out[spec.name] = arr
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "precision": "fp16" if getattr(self, "fp16", False) else "fp32",
            "threads": getattr(self, "threads", None),
            "batch": "one sample at a time",
            "version": getattr(ncnn, "__version__", None),
        }

    def close(self) -> None:
        net = getattr(self, "net", None)
        self.net = None
        if net is not None:
            net.clear()
