"""The model repository in Triton's layout, and the writer other commands use.

REPO/<model>/config.pbtxt          optional
REPO/<model>/labels.txt            optional
REPO/<model>/<version>/model.onnx  (or model.xml, a *.null file, or a bushu artifact: bushu.yaml + model)
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError, ModelNotFoundError, UserInputError
from ..model.artifact import LABELS_FILE, META_FILE, Artifact, _dump
from ..runtime.registry import BUILTIN
from .config import CONFIG_FILE, read_config, write_config

__all__ = [
    "ModelSource",
    "add_to_repository",
    "artifact_repository",
    "check_name",
    "is_artifact_dir",
    "list_models",
    "model_versions",
    "resolve_version",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
# file name -> backend, in the order bushu looks for them in a version directory (the servable backends)
_MODEL_FILES = {f"model{b.suffixes[0]}": n for n, b in BUILTIN.items() if b.servable}


def check_name(name: str) -> str:
    """Model names are directory names, never paths."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UserInputError(
            f"invalid model name {name!r}",
            hint="use letters, digits, '_', '-' and '.', starting with a letter or digit (no paths)",
        )
    return name


def list_models(repo: Path) -> dict[str, Path]:
    """Model directories in the repository, by name (hidden and invalid names are skipped)."""
    if not repo.is_dir():
        raise ModelNotFoundError(
            f"model repository not found: {repo}",
            hint="create one with `bushu quickstart` or lay out REPO/<model>/1/model.onnx",
        )
    return {p.name: p for p in sorted(repo.iterdir()) if p.is_dir() and _NAME.match(p.name) and ".." not in p.name}


def model_versions(model_dir: Path) -> dict[int, Path]:
    return {int(p.name): p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()}


@dataclass(frozen=True)
class ModelSource:
    """Where one model version's file is and which backend reads it."""

    path: Path
    backend: str
    artifact: Artifact | None = None


def resolve_version(version_dir: Path, backend: str | None = None, filename: str | None = None) -> ModelSource:
    if (version_dir / META_FILE).is_file():
        art = Artifact.load(version_dir)
        from ..runtime.registry import backend_for_path

        return ModelSource(art.model_path, backend or backend_for_path(art.model_path).name, art)
    if filename:
        if not (version_dir / filename).is_file():
            raise ModelLoadError(f"{version_dir} has no {filename} (default_model_filename in config.pbtxt)")
        return ModelSource(version_dir / filename, backend or _backend_for(filename))
    for fname, be in _MODEL_FILES.items():
        if (version_dir / fname).is_file() and (backend in (None, be) or fname == "model.onnx"):
            return ModelSource(version_dir / fname, backend or be)
    nulls = sorted(version_dir.glob("*.null"))
    if nulls:
        return ModelSource(nulls[0], "null")
    found = sorted(p.name for p in version_dir.iterdir())
    raise ModelLoadError(
        f"{version_dir} has no model file; found {found or 'nothing'}",
        hint=f"put one of {list(_MODEL_FILES)}, a *.null file or a bushu artifact there",
    )


def _backend_for(filename: str) -> str:
    from ..runtime.registry import backend_for_path

    return backend_for_path(Path(filename)).name


def read_labels(model_dir: Path, source: ModelSource) -> list[str] | None:
    if (model_dir / LABELS_FILE).is_file():
        return (model_dir / LABELS_FILE).read_text().splitlines()
    return source.artifact.labels if source.artifact else None


def is_artifact_dir(path: Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def artifact_repository(artifacts: list[Path], root: Path) -> Path:
    """A one-model-each repository under ``root`` for artifact directories, without copying them:
    ``root/<artifact name>/1`` is a symbolic link to the artifact (its bushu.yaml and labels are read there)."""
    names: dict[str, Path] = {}
    for path in artifacts:
        art = Artifact.load(path)
        name = check_name(art.name or Path(path).resolve().name)
        if name in names:
            raise UserInputError(
                f"{path} and {names[name]} are both named {name!r}; a repository holds one model of a name",
                hint="serve them one at a time, or lay out a repository: "
                "REPO/<name>/<version>/ (bushu package writes one)",
            )
        names[name] = Path(path)
        (root / name).mkdir(parents=True)
        (root / name / "1").symlink_to(Path(path).resolve(), target_is_directory=True)
    return root


def add_to_repository(
    repo: Path,
    artifact: Artifact,
    name: str | None = None,
    version: int = 1,
    max_batch_size: int = 8,
    max_queue_delay_us: int = 2000,
    instances: int = 1,
    backend: str = "onnxruntime",
    threads: int | None = None,
) -> Path:
    """Write ``artifact`` as ``repo/<name>/<version>/`` (model.onnx + bushu.yaml) with config.pbtxt and
    labels.txt; returns the model directory. The artifact's metadata keeps pre/post-processing for
    the image endpoint; a Triton server reads only model.onnx and config.pbtxt."""
    name = check_name(name or artifact.name)
    if version < 1:
        raise UserInputError(f"version must be >= 1, got {version}")
    if not artifact.model_path.suffix == ".onnx" and backend == "onnxruntime":
        raise UserInputError(
            f"artifact model {artifact.model_file!r} is not ONNX; onnxruntime serves model.onnx",
            hint="export it to ONNX first (bushu import / bushu export --format onnx)",
        )
    if max_batch_size and artifact.inputs and not all(s.has_batch for s in artifact.inputs):
        max_batch_size = 0  # exported with a fixed batch (Ultralytics' default, tflite2onnx): no batching axis
    model_dir = Path(repo) / name
    vdir = model_dir / str(version)
    tmp = model_dir / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shutil.copyfile(artifact.model_path, tmp / ("model" + artifact.model_path.suffix))
        data = artifact.model_path.with_name(artifact.model_path.name + ".data")
        if data.is_file():  # external weights are found by the name recorded in the graph: keep it
            shutil.copyfile(data, tmp / data.name)
        for f in artifact.preprocess.files if artifact.preprocess else ():  # the tokenizer / vocabulary of a text model
            shutil.copyfile(artifact.path / f, tmp / f)
        meta = artifact.to_meta()
        meta["model"]["file"] = "model" + artifact.model_path.suffix
        meta["files"] = {}  # references (e.g. model.pt2) stay in the artifact, not in the serving repo
        meta["labels"] = None
        (tmp / META_FILE).write_text(_dump(meta))
        if vdir.exists():
            shutil.rmtree(vdir)
        tmp.rename(vdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if artifact.labels:
        (model_dir / LABELS_FILE).write_text("\n".join(artifact.labels) + "\n")
    write_config(model_dir / CONFIG_FILE, name, backend, max_batch_size, max_queue_delay_us, instances, threads)
    read_config(model_dir)  # what we wrote must parse
    return model_dir
