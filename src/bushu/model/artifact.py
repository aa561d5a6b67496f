"""The model artifact: a directory with model file(s), ``labels.txt`` and one ``bushu.yaml``.

``bushu.yaml`` holds the IO spec, pre/post-processing, provenance and recorded metrics. Whole
artifacts are written into a temporary sibling directory and swapped in with renames; metadata
updates are written to a temporary file and ``os.replace``d. Either way a crash mid-write leaves
the previous artifact intact.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from ..errors import ArtifactError, NotFoundError
from ..spec import TensorSpec

__all__ = ["META_FILE", "Artifact", "Postprocess", "Preprocess", "library_versions", "write_artifact"]

META_FILE = "bushu.yaml"
LABELS_FILE = "labels.txt"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Preprocess:
    """Image pre-processing: decode → colour → resize shorter side → centre crop → scale → normalize → layout."""

    kind: str = "image"
    resize: int | None = 256  # shorter side, before the crop
    crop: int | None = 224
    interpolation: str = "bilinear"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    layout: str = "NCHW"
    color: str = "RGB"
    # kind "text": {"tokenizer": "tokenizer.json", "max_length", "inputs"} or {"features": "text_features.json"};
    # kind "audio": the spectrogram settings (bushu.model.audio), then the image fields above apply.
    # "files": artifact files the pre-processing reads (copied along into a serving repository).
    # "size": [height, width] resizes the whole image to the model's size instead of resize/crop, with
    # "fit": "letterbox" (keep the aspect ratio, pad with "pad" grey, centred) or "stretch" (detectors).
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def files(self) -> list[str]:
        return list(self.params.get("files") or [])

    def to_dict(self) -> dict[str, Any]:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        if self.kind == "text":  # the image fields do not apply
            return {"kind": self.kind, "params": d["params"]}
        if not d["params"]:  # image artifacts keep their bushu.yaml (and feature cache keys) unchanged
            del d["params"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocess:
        known: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in cls.__dataclass_fields__
        }
        known["params"] = dict(d.get("params") or {})
        return cls(**known)


@dataclass(frozen=True)
class Postprocess:
    kind: str = "classification"  # classification | detection | raw
    top_k: int = 5
    softmax: bool = True  # apply softmax to logits before reporting scores
    # kind "detection": the decoder and its settings (bushu.detection.decode), e.g.
    # {"decoder": "yolo", "output": "output0", "layout": "channels_first", "score": 0.25, "iou": 0.45, "max_det": 300}
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if not d["params"]:  # classification artifacts keep their bushu.yaml unchanged
            del d["params"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Postprocess:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["params"] = dict(d.get("params") or {})
        return cls(**known)


def library_versions(*names: str) -> dict[str, str]:
    names = names or ("bushu", "numpy", "onnx", "onnxruntime", "openvino", "torch", "torchvision", "timm")
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Artifact:
    path: Path
    model_file: str
    format: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    name: str = "model"
    task: str = "classification"
    preprocess: Preprocess | None = None
    postprocess: Postprocess | None = None
    files: dict[str, str] = field(default_factory=dict)  # role -> file, e.g. {"reference": "model.pt2"}
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    _labels: list[str] | None = field(default=None, repr=False)

    # -- reading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        path = Path(path)
        _recover(path)
        meta_path = path / META_FILE
        if not path.exists():
            raise NotFoundError(f"artifact not found: {path}", hint="create one with: bushu import SRC -o ART")
        if not meta_path.is_file():
            raise ArtifactError(
                f"{path} is not a bushu artifact (no {META_FILE})", hint="create one with: bushu import SRC -o ART"
            )
        try:
            meta = yaml.safe_load(meta_path.read_text())
            art = cls(
                path=path,
                model_file=meta["model"]["file"],
                format=meta["model"]["format"],
                name=meta.get("name", path.name),
                task=meta.get("task", "classification"),
                inputs=[TensorSpec.from_dict(d) for d in meta["inputs"]],
                outputs=[TensorSpec.from_dict(d) for d in meta["outputs"]],
                preprocess=Preprocess.from_dict(meta["preprocess"]) if meta.get("preprocess") else None,
                postprocess=Postprocess.from_dict(meta["postprocess"]) if meta.get("postprocess") else None,
                files=dict(meta.get("files") or {}),
                provenance=dict(meta.get("provenance") or {}),
                metrics=dict(meta.get("metrics") or {}),
            )
        except (yaml.YAMLError, KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{meta_path} is unreadable or incomplete: {e!r}") from e
        if not art.model_path.is_file():
            raise ArtifactError(f"artifact {path} names model file {art.model_file!r}, which is missing")
        art.inputs = _sizes_from_preprocess(art.inputs, art.preprocess)
        return art

    @property
    def model_path(self) -> Path:
        return self.path / self.model_file

    def file(self, role: str) -> Path | None:
        return self.path / self.files[role] if role in self.files else None

    @property
    def labels(self) -> list[str] | None:
        if self._labels is None and (self.path / LABELS_FILE).is_file():
            self._labels = (self.path / LABELS_FILE).read_text().splitlines()
        return self._labels

    def to_meta(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "task": self.task,
            "model": {"file": self.model_file, "format": self.format},
            "files": self.files,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "preprocess": self.preprocess.to_dict() if self.preprocess else None,
            "postprocess": self.postprocess.to_dict() if self.postprocess else None,
            "labels": LABELS_FILE if self.labels else None,
            "provenance": self.provenance,
            "metrics": self.metrics,
        }

    # -- writing ----------------------------------------------------------------------------------
    def save(self) -> None:
        """Rewrite bushu.yaml atomically (metadata only)."""
        _atomic_write_text(self.path / META_FILE, _dump(self.to_meta()))

    def record(self, key: str, value: Any) -> None:
        """Record a metric section (e.g. ``bench``, ``eval``, ``parity``) and save."""
        self.metrics[key] = value
        self.save()

    def derived(self, model_file: str, format: str, **changes: Any) -> Artifact:
        """The same model as a new graph (an optimized copy): its IO, name, task, pre/post-processing and a
        copy of its provenance; files and metrics start empty unless ``changes`` sets them."""
        fresh: dict[str, Any] = {"files": {}, "metrics": {}, "provenance": copy.deepcopy(self.provenance)}
        return dataclasses.replace(
            self,
            model_file=model_file,
            format=format,
            inputs=list(self.inputs),
            outputs=list(self.outputs),
            _labels=None,
            **{**fresh, **changes},
        )

    def add_step(self, command: str, **details: Any) -> None:
        self.provenance.setdefault("steps", []).append(
            {"command": command, "time": _now(), **details, "versions": library_versions()}
        )

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "format": self.format,
            "model_file": self.model_file,
            "size_bytes": self.size_bytes,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    @property
    def size_bytes(self) -> int:
        size = self.model_path.stat().st_size
        data = self.model_path.with_name(self.model_path.name + ".data")
        return size + (data.stat().st_size if data.exists() else 0)


def _sizes_from_preprocess(inputs: list[TensorSpec], pp: Preprocess | None) -> list[TensorSpec]:
    """Typical sizes for symbolic dims that bushu.yaml does not size (artifacts written before dim ranges):
    a tokenizer's inputs take its max_length (at most 128), an image input the crop size."""
    if pp is None:
        return inputs
    out = []
    for s in inputs:
        size = None
        if (
            pp.kind == "text"
            and pp.params.get("tokenizer")
            and s.name in (pp.params.get("inputs") or ["input_ids", "attention_mask"])
        ):
            size = min(int(pp.params.get("max_length") or 128), 128)
        elif pp.kind in ("image", "audio") and pp.crop and len(s.shape) == 4:
            size = int(pp.crop)
        syms = [s.symbol(i) for i in range(1, len(s.shape))]
        missing = {k: {"typical": size} for k in syms if k is not None and k not in s.ranges}
        if size and missing:
            role = s.role or ("attention_mask" if "mask" in s.name else None)
            s = s.with_(ranges={**s.ranges, **missing}, role=role)
        out.append(s)
    return out


def write_artifact(
    out: str | Path, files: Mapping[str, str | Path | bytes], art: Artifact, labels: list[str] | None = None
) -> Artifact:
    """Write a whole artifact to ``out``: files (name -> source path or bytes) plus metadata.

    Built in a temporary sibling directory, then swapped in; the previous artifact at ``out`` stays
    intact until the new one is complete.
    """
    out = Path(out)
    if out.exists() and not (out / META_FILE).exists() and any(out.iterdir()):
        raise ArtifactError(
            f"refusing to overwrite {out}: it exists and is not a bushu artifact",
            hint="choose another -o directory or remove it",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name, src in files.items():
            dst = tmp / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                dst.write_bytes(src)
            else:
                shutil.copyfile(src, dst)
        if labels:
            (tmp / LABELS_FILE).write_text("\n".join(labels) + "\n")
        art.path = tmp
        art._labels = list(labels) if labels else None
        art.provenance.setdefault("created", _now())
        (tmp / META_FILE).write_text(_dump(art.to_meta()))
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    art.path = out
    return art


def _swap_in(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _recover(out: Path) -> None:
    """A crash between the two renames of _swap_in leaves only ``.NAME.old``: put it back."""
    old = out.with_name(f".{out.name}.old")
    if not out.exists() and old.exists():
        os.replace(old, out)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump(meta: Mapping[str, Any]) -> str:
    return yaml.safe_dump(_plain(meta), sort_keys=False, default_flow_style=None, width=120)


def _plain(x: Any) -> Any:
    """numpy scalars and tuples -> plain YAML types."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x
