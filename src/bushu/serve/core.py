"""The model manager: loads repository models (every version the policy names), swaps new ones in
atomically, unloads, polls for changes, and hands requests to each version's batcher."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BushuError, InferenceInputError, ModelLoadError, ModelNotFoundError, UnknownNameError
from ..spec import TensorSpec, check_feeds, np_dtype, to_v2_datatype
from .batching import Arrivals, Batcher, Ticket
from .config import complete_config, config_to_dict, instance_device, io_specs, parameters_of, read_config
from .protocol import classify
from .repository import check_name, list_models, model_versions, read_labels, resolve_version
from .stats import Stats

__all__ = ["LoadedModel", "ModelManager"]

log = logging.getLogger("bushu.serve")

# Backend options a server wants unless config.pbtxt parameters say otherwise. onnxruntime's memory
# pattern is cached per input shape, so with dynamic batch sizes memory keeps growing (measured:
# 116 -> 199 MB on random batch sizes with it, 116 -> 134 MB without). Its intra-op threads spin
# between parallel sections by default, on the cores the event loop and the other requests need:
# served side by side on 2 shared cores (docs/notes.md, issue 21), the server used 5.0-6.2 ms of CPU
# per request without spinning against 7.0-10.4 ms with it, at the same or higher throughput.
_SERVING_DEFAULTS: dict[str, dict[str, Any]] = {"onnxruntime": {"mem_pattern": False, "spinning": False}}


class LoadedModel:
    """One ready model version: its config, backend instances and batcher."""

    def __init__(self, name: str, version: int, model_dir: Path, cfg_in, arrivals: Arrivals | None = None) -> None:
        from ..runtime import load_backend

        self.name, self.version = name, str(version)
        src = resolve_version(
            model_dir / str(version),
            _backend_hint(cfg_in),
            cfg_in.default_model_filename if cfg_in is not None else None,
        )
        self.preprocess = src.artifact.preprocess if src.artifact else None
        self.postprocess = src.artifact.postprocess if src.artifact else None
        self.artifact_dir = src.artifact.path if src.artifact else None  # tokenizer etc. for :classify
        self.artifact = src.artifact
        self.recorded_inputs = list(src.artifact.inputs) if src.artifact else []  # roles and typical sizes
        self.labels = read_labels(model_dir, src)
        try:
            options = {
                **_SERVING_DEFAULTS.get(src.backend, {}),
                **parameters_of(cfg_in),
                **instance_device(cfg_in, src.backend),
            }
            first = load_backend(src.path, src.backend, **options)
        except BushuError as e:
            raise ModelLoadError(f"model {name!r} version {version}: {e.message}", hint=e.hint) from e
        self.backends = [first]
        try:
            self.config, self.settings = complete_config(cfg_in, name, src.backend, first.inputs, first.outputs)
            self.backends += [
                load_backend(src.path, src.backend, **options) for _ in range(self.settings.instances - 1)
            ]
        except BushuError as e:
            for b in self.backends:
                b.close()
            raise ModelLoadError(f"model {name!r} version {version}: {e.message}", hint=e.hint) from e
        self.backend_name = src.backend
        self.inputs: list[TensorSpec] = io_specs(self.config, "input")
        self.outputs: list[TensorSpec] = io_specs(self.config, "output")
        self.output_names = [o.name for o in self.outputs]
        self.warnings = list(self.settings.warnings)
        for w in self.warnings:
            log.warning("model %s: config field %s is not supported by bushu and is ignored", name, w)
        self._warm_up(cfg_in, model_dir)
        self.stats = Stats(name, self.version)
        self.batcher = Batcher(
            f"{name}/{version}", self.settings, [b.infer for b in self.backends], self.stats, arrivals
        )

    @functools.cached_property
    def pipeline(self):
        """Raw input -> feeds for the :classify endpoint, built on first use (a text model loads its tokenizer
        here; a model served only over /v2 never pays for it)."""
        from ..model.predict import Pipeline

        return Pipeline(self.artifact_dir, self.preprocess, self.inputs[0].name)

    @functools.cached_property
    def detection_head(self):
        """The decoder for the :detect endpoint (an ArtifactError, 400, for a model that is not a detector)."""
        from ..detection.detector import head_for

        if self.artifact is None:
            raise InferenceInputError(
                f"model {self.name!r} is not a bushu artifact, so it records no detection decoder",
                hint="serve a detection artifact (bushu import MODEL --task detection)",
            )
        return head_for(self.artifact, self.labels)

    async def detect(self, images: list[Any], options: dict[str, Any], ticket: Ticket | None = None) -> list:
        """Encoded images -> per image a list of Detection, through this model's batcher."""
        import asyncio

        from ..detection.detector import prepare

        head = self.detection_head
        head.settings(options.get("score"), options.get("iou"), options.get("max_det"))  # 400 before any work
        pp = self.artifact.preprocess if self.artifact is not None else None
        assert pp is not None  # detection_head (head_for) raised unless the artifact records its pre-processing
        batch, transforms = await asyncio.to_thread(prepare, images, pp)
        step = self.settings.max_batch_size if self.settings.max_batch_size > 0 else 1
        parts = [
            await self.infer({self.inputs[0].name: batch[i : i + step]}, ticket=ticket)
            for i in range(0, len(batch), step)
        ]
        outputs = {k: np.concatenate([p[k] for p in parts]) for k in head.output_names}
        return await asyncio.to_thread(
            head, outputs, transforms, options.get("score"), options.get("iou"), options.get("max_det")
        )

    def _warm_up(self, cfg_in, model_dir: Path) -> None:
        """Run config.pbtxt's model_warmup samples (Triton's), or else synthetic batches, on every instance,
        so the first real request is not the slow one."""
        from .config import warmup_samples

        try:
            samples = warmup_samples(cfg_in, model_dir, self.settings.max_batch_size > 0)
        except BushuError as e:
            self._close_backends()
            raise ModelLoadError(f"model {self.name!r}: {e.message}", hint=e.hint) from e
        if samples:
            for b in self.backends:
                for sample, feeds, runs in samples:
                    for _ in range(runs):
                        try:
                            self.validate(feeds)
                            b.infer(feeds)
                        except BushuError as e:
                            self._close_backends()
                            raise ModelLoadError(
                                f"model {self.name!r} failed its warm-up sample {sample!r}: {e.message}",
                                hint="fix model_warmup in config.pbtxt",
                            ) from e
            return
        sizes = {1, self.settings.max_batch_size} if self.settings.max_batch_size > 0 else {1}
        for b in self.backends:
            for n in sorted(sizes):
                try:
                    b.infer(_zero_feeds(self.inputs, n, self.recorded_inputs))
                except BushuError as e:
                    self._close_backends()
                    raise ModelLoadError(
                        f"model {self.name!r} failed its warm-up inference at batch {n}: {e.message}",
                        hint="check the config's dims and max_batch_size against the model",
                    ) from e

    # -- requests -----------------------------------------------------------------------------------
    def validate(self, feeds: dict[str, np.ndarray]) -> None:
        check_feeds(self.inputs, feeds, what=f"model {self.name!r}")
        mb = self.settings.max_batch_size
        if mb > 0:
            sizes = {k: a.shape[0] for k, a in feeds.items()}
            if len(set(sizes.values())) > 1:
                raise InferenceInputError(
                    f"inputs of model {self.name!r} have different batch sizes {sizes}; "
                    "the first dim of every input is the batch"
                )
            n = next(iter(sizes.values()), 1)
            if not 1 <= n <= mb:
                raise InferenceInputError(
                    f"batch size {n} is outside 1..{mb} (max_batch_size of model {self.name!r})",
                    hint=f"split the request into batches of at most {mb}",
                )

    def check_outputs(self, names: list[str]) -> None:
        for n in names:
            if n not in self.output_names:
                raise UnknownNameError(f"output of model {self.name!r}", n, self.output_names)

    async def infer(
        self, feeds: dict[str, np.ndarray], timeout_s: float | None = None, ticket: Ticket | None = None
    ) -> dict[str, np.ndarray]:
        try:
            self.validate(feeds)
        except BushuError:
            self.stats.record_failure(0)
            raise
        return await self.batcher.infer(feeds, timeout_s, ticket)

    async def infer_selected(
        self,
        feeds: dict[str, np.ndarray],
        requested: list[tuple[str, bool, int]],
        timeout_s: float | None = None,
        ticket: Ticket | None = None,
    ) -> list[tuple[str, bool, np.ndarray]]:
        """Run one request and return the requested outputs (name, binary, array), classified where asked."""
        self.check_outputs([r[0] for r in requested])
        outs = await self.infer(feeds, timeout_s, ticket)
        result = []
        for name, binary, k in requested:
            arr = outs[name]
            if k:
                arr = classify(arr, k, self.labels, self.settings.max_batch_size > 0)
            result.append((name, binary, arr))
        return result

    # -- descriptions -------------------------------------------------------------------------------
    def metadata(self, versions: list[str]) -> dict[str, Any]:
        def io(specs):
            return [
                {
                    "name": s.name,
                    "datatype": to_v2_datatype(s.dtype),
                    "shape": [d if isinstance(d, int) else -1 for d in s.shape],
                }
                for s in specs
            ]

        return {
            "name": self.name,
            "versions": versions,
            "platform": self.config.platform or self.config.backend,
            "inputs": io(self.inputs),
            "outputs": io(self.outputs),
        }

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self.config)

    def close(self) -> None:
        self.batcher.close()
        self._close_backends()

    def _close_backends(self) -> None:
        for b in self.backends:
            b.close()


def _zero_feeds(specs: list[TensorSpec], batch: int, recorded: list[TensorSpec] | None = None) -> dict[str, np.ndarray]:
    """Warm-up inputs: zeros (as Triton's zero_data), valid even for index and token-id inputs where random
    values would be out of range. Dynamic dims take the artifact's typical sizes (a detector fed 1x1 images
    fails), else 1; attention masks are ones."""
    known = {s.name: s for s in recorded or []}
    feeds = {}
    for s in specs:
        r = known.get(s.name)
        typical = r.concrete_shape(batch) if r is not None and len(r.shape) == len(s.shape) else None
        shape = tuple(
            d
            if isinstance(d, int) and d >= 0
            else (batch if i == 0 and s.has_batch else (typical[i] if typical else 1))
            for i, d in enumerate(s.shape)
        )
        if s.dtype == "bytes":
            feeds[s.name] = np.full(shape, b"", dtype=object)
        else:
            fill = np.ones if r is not None and r.role == "attention_mask" else np.zeros
            feeds[s.name] = fill(shape, np_dtype(s.dtype) if s.dtype != "bfloat16" else np.float32)
    return feeds


def _backend_hint(cfg) -> str | None:
    from .config import backend_of

    return backend_of(cfg)


def _select_versions(cfg, available: list[int]) -> list[int]:
    """Triton's version_policy: latest { num_versions } (default 1), all, or specific { versions }."""
    available = sorted(available)
    if cfg is None or not cfg.HasField("version_policy"):
        return available[-1:]
    pol = cfg.version_policy
    kind = pol.WhichOneof("policy_choice")
    if kind == "all":
        return available
    if kind == "specific":
        missing = [v for v in pol.specific.versions if v not in available]
        if missing:
            raise ModelLoadError(
                f"version_policy names version(s) {missing}, which are not in the repository (found {available})"
            )
        return sorted(pol.specific.versions)
    n = pol.latest.num_versions if kind == "latest" and pol.latest.num_versions > 0 else 1
    return available[-n:]


def _release_freed_memory() -> None:
    """Hand the memory of closed sessions back to the OS (glibc keeps freed arenas otherwise), so a
    swapped or unloaded model does not leave the process larger."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _fingerprint(model_dir: Path) -> tuple:
    out = []
    for p in sorted(model_dir.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(model_dir).parts):
            st = p.stat()
            out.append((str(p.relative_to(model_dir)), st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass
class _Entry:
    versions: dict[int, LoadedModel] = field(default_factory=dict)
    state: str = "UNAVAILABLE"
    reason: str = ""
    fingerprint: tuple = ()


class ModelManager:
    def __init__(self, repo: Path, control_mode: str = "none") -> None:
        self.repo = Path(repo)
        self.control_mode = control_mode
        self._entries: dict[str, _Entry] = {}
        self.arrivals = Arrivals()  # shared by the batchers: are batch-mates on their way?
        self._lock = threading.Lock()  # one load/unload at a time; readers never wait for it

    # -- lifecycle ----------------------------------------------------------------------------------
    def load_all(self) -> None:
        for name in list_models(self.repo):
            try:
                self.load(name)
            except BushuError as e:
                log.error("model %s failed to load: %s", name, e.message)

    def load(self, name: str) -> None:
        """Load every version the policy names beside the serving ones, then swap them in at once.
        A failed load leaves the previous versions serving, with the reason in the index."""
        check_name(name)
        with self._lock:
            models = list_models(self.repo)
            if name not in models:
                raise UnknownNameError("model", name, models, hint=f"models live in {self.repo}/<model>/<version>/")
            model_dir = models[name]
            entry = self._entries.setdefault(name, _Entry())
            fp = _fingerprint(model_dir)
            new: dict[int, LoadedModel] = {}
            try:
                cfg = read_config(model_dir)
                versions = _select_versions(cfg, list(model_versions(model_dir)))
                if not versions:
                    raise ModelLoadError(f"model {name!r} has no version directories (expected {model_dir}/1/)")
                for v in versions:
                    new[v] = LoadedModel(name, v, model_dir, cfg, self.arrivals)
            except BushuError as e:
                for m in new.values():
                    m.close()
                entry.reason = e.message
                entry.fingerprint = fp
                if not entry.versions:
                    entry.state = "UNAVAILABLE"
                raise
            except Exception as e:  # a model must never take the server down
                for m in new.values():
                    m.close()
                entry.reason = f"{type(e).__name__}: {e}"
                entry.fingerprint = fp
                raise ModelLoadError(f"model {name!r} failed to load: {entry.reason}") from e
            old, entry.versions = entry.versions, new
            entry.state, entry.reason, entry.fingerprint = "READY", "", fp
        for m in old.values():  # queued requests on the old versions finish first
            m.close()
        if old:
            _release_freed_memory()
        log.info("loaded model %s versions %s", name, sorted(new))

    def unload(self, name: str) -> None:
        check_name(name)
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or not entry.versions:
                raise UnknownNameError("loaded model", name, [n for n, e in self._entries.items() if e.versions])
            old, entry.versions = entry.versions, {}
            entry.state, entry.reason = "UNAVAILABLE", "unloaded"
        for m in old.values():
            m.close()
        _release_freed_memory()

    def poll(self) -> None:
        """Poll mode: load new or changed models, unload removed ones."""
        try:
            models = list_models(self.repo)
        except BushuError as e:
            log.error("repository poll failed: %s", e.message)
            return
        for name, d in models.items():
            entry = self._entries.get(name)
            if entry is None or entry.fingerprint != _fingerprint(d):
                try:
                    self.load(name)
                except BushuError as e:
                    log.error("model %s failed to (re)load, previous version keeps serving: %s", name, e.message)
        for name in [n for n, e in self._entries.items() if n not in models and e.versions]:
            self.unload(name)

    def close(self) -> None:
        for name in list(self._entries):
            entry = self._entries[name]
            old, entry.versions = entry.versions, {}
            for m in old.values():
                m.close()

    # -- lookups ------------------------------------------------------------------------------------
    def get(self, name: str, version: str | None = None) -> LoadedModel:
        entry = self._entries.get(name)
        if entry is None or not entry.versions:
            ready = [n for n, e in self._entries.items() if e.versions]
            why = f" ({entry.reason})" if entry is not None and entry.reason else ""
            if entry is not None:
                raise ModelNotFoundError(f"model {name!r} is not ready{why}")
            raise UnknownNameError("model", name, ready)
        versions = entry.versions
        if not version:
            return versions[max(versions)]
        if not version.isdigit() or int(version) not in versions:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r}; ready versions: {[str(v) for v in sorted(versions)]}"
            )
        return versions[int(version)]

    def versions(self, name: str) -> list[str]:
        entry = self._entries.get(name)
        return [str(v) for v in sorted(entry.versions)] if entry else []

    def loaded_versions(self, name: str) -> list[LoadedModel]:
        """The loaded versions of one model, oldest first (empty when none is loaded or the name is unknown)."""
        entry = self._entries.get(name)
        return [entry.versions[v] for v in sorted(entry.versions)] if entry else []

    def loaded(self) -> list[LoadedModel]:
        return [m for e in list(self._entries.values()) for m in list(e.versions.values())]

    def is_ready(self, name: str, version: str | None = None) -> bool:
        try:
            self.get(name, version)
        except BushuError:
            return False
        return True

    @property
    def ready(self) -> bool:
        return all(e.versions for e in self._entries.values() if e.reason != "unloaded")

    def index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        names = set(self._entries)
        try:
            names |= set(list_models(self.repo))
        except BushuError:
            pass
        out = []
        for name in sorted(names):
            entry = self._entries.get(name)
            if entry is None or (not entry.versions and not ready_only):
                if not ready_only:
                    out.append(
                        {
                            "name": name,
                            "state": entry.state if entry else "UNAVAILABLE",
                            "reason": entry.reason if entry else "not loaded",
                        }
                    )
                continue
            for v, m in sorted(entry.versions.items()):
                row: dict[str, Any] = {"name": name, "version": str(v), "state": "READY", "reason": entry.reason}
                if m.warnings:
                    row["warnings"] = m.warnings
                out.append(row)
        return out
