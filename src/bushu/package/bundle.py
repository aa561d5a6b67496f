"""`bushu package`: an artifact -> an offline SDK bundle (a pip-installable source tree, zipped).

    <dist>-<version>/
      pyproject.toml, _sdk_build.py, sdk-build.json   pip installs it with no setuptools and no network
      requirements.txt                                 onnxruntime, numpy + pillow | tokenizers (see requirements())
      README.md                                        install, predict, serve, scale
      MANIFEST.sha256                                  every other file (`sha256sum -c MANIFEST.sha256`)
      src/<package>/                                   Predictor API + CLI (templates/sdk); text.py / audio.py:
                                                       bushu's own pre-processing code, copied (see sdk_modules())
      src/<package>/model/                             model.onnx, labels.txt, sdk.json, bushu.yaml, SHA256SUMS
                                                       (+ tokenizer.json or text_features.json for text models)
      deploy/Dockerfile                                bushu serve with the model baked in
      deploy/repository/<model>/config.pbtxt           + src/<package>/model/ = a Triton-layout repository
      deploy/kubernetes/, deploy/kserve/               manifests (see manifests.py)

The archive format follows the output name: ``.zip``, ``.tar.gz``/``.tgz``, anything else is a directory.
A ``.zip``/``.tar.gz`` with one top directory holding pyproject.toml is also what pip takes as a
source archive, so ``pip install bundle.zip`` works as is.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import re
import shutil
import string
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, UserInputError
from ..model.artifact import LABELS_FILE, META_FILE, Artifact, Preprocess, _dump, _now, library_versions
from .manifests import DeploySettings, manifests

__all__ = ["Bundle", "PackageConfig", "build_bundle", "names_for"]

# the light runtime the SDK needs; lower bounds are versions bushu is tested with or older ones that work
REQUIREMENTS = ["onnxruntime>=1.17", "numpy>=1.23", "pillow>=9.1"]  # an image model's
TOKENIZERS = "tokenizers>=0.20"  # MiniLM text models: tokenizer.json (Rust, no torch)
FLAC_EXTRA = {"flac": ["soundfile>=0.12"]}  # audio models: FLAC (and float WAV) clips, only when asked for
SDK_FILES = ("__init__.py", "predictor.py", "cli.py", "__main__.py", "errors.py")
KINDS = ("image", "text", "audio")  # the preprocess kinds the SDK predictor reads
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PackageConfig:
    name: str | None = None  # distribution name stem (default: the artifact's name)
    version: str = "1.0.0"
    image: str | None = None  # container image tag used in the Dockerfile comments and manifests
    min_replicas: int = 1
    max_replicas: int = 4
    cpu_target: int = 70
    storage_uri: str | None = None
    top_k: int | None = None  # default top_k of the SDK (default: the artifact's)


@dataclass
class Bundle:
    path: Path
    format: str  # zip | tar.gz | dir
    dist: str
    package: str
    script: str
    model: str
    version: str
    size_bytes: int
    files: dict[str, int] = field(default_factory=dict)  # relative path -> bytes

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "dist": self.dist,
            "package": self.package,
            "script": self.script,
            "model": self.model,
            "version": self.version,
            "size_bytes": self.size_bytes,
            "size_mb": round(self.size_bytes / 1e6, 3),
            "files": len(self.files),
        }


def names_for(name: str) -> tuple[str, str, str, str]:
    """Artifact name -> (model name in the repository, distribution, import package, console script)."""
    model = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("._-") or "model"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"
    if slug[0].isdigit():
        slug = "m-" + slug
    return model, f"{slug}-sdk", slug.replace("-", "_") + "_sdk", f"{slug}-predict"


_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*([abc]|rc|\.post|\.dev)?[0-9]*$")


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates").joinpath(name).read_text(encoding="utf-8")


def _sdk_template(name: str) -> str:
    return resources.files(__package__).joinpath("templates").joinpath("sdk").joinpath(name).read_text(encoding="utf-8")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check(art: Artifact) -> Preprocess | None:
    """What the SDK cannot package fails here; returns the artifact's pre-processing."""
    if art.model_path.suffix != ".onnx":
        raise UserInputError(
            f"artifact {art.path} holds {art.model_file!r}; the SDK bundle ships an ONNX model",
            hint="import or export it to ONNX first (bushu import SRC -o ART)",
        )
    pp = art.preprocess
    if pp is None:  # named tensors in and out: Predictor.run({name: array})
        return None
    if pp.kind not in KINDS:
        raise UserInputError(
            f"artifact {art.path} records pre-processing of kind {pp.kind!r}; the SDK predictor "
            f"prepares {', '.join(KINDS)} inputs (or takes named arrays when there is none)"
        )
    fed = (
        list(pp.params.get("inputs") or ["input_ids", "attention_mask"])
        if pp.params.get("tokenizer")
        else [art.inputs[0].name]
    )
    if [s.name for s in art.inputs] != fed:
        raise UserInputError(
            f"artifact {art.path} takes inputs {[s.name for s in art.inputs]}; the SDK predictor feeds {fed}",
            hint="serve multi-input models with bushu serve",
        )
    if pp.kind == "text" and not (pp.params.get("tokenizer") or pp.params.get("features")):
        raise UserInputError(
            f"artifact {art.path}: its text pre-processing names neither a tokenizer nor features",
            hint="retrain it with this bushu version: bushu train DATA -o ART",
        )
    bad = [f for f in _pp_files(pp) if Path(f).name != f or f.startswith(".")]
    if bad:
        raise UserInputError(
            f"artifact {art.path}: pre-processing files {bad} are not plain file names",
            hint="keep the tokenizer/feature files beside bushu.yaml",
        )
    return pp


def _pp_files(pp) -> list[str]:
    """The artifact files the pre-processing reads (tokenizer.json, text_features.json)."""
    named = [pp.params.get(k) for k in ("tokenizer", "features")]
    return list(dict.fromkeys([*pp.files, *(f for f in named if f)]))


def requirements(art: Artifact) -> list[str]:
    """What the SDK needs for this artifact: onnxruntime and numpy, plus Pillow (images, spectrograms) or
    tokenizers (MiniLM text); TF-IDF text needs nothing more."""
    pp = art.preprocess
    if pp is None:
        return REQUIREMENTS[:2]
    if pp.kind != "text":
        return list(REQUIREMENTS)
    return REQUIREMENTS[:2] + ([TOKENIZERS] if pp.params.get("tokenizer") else [])


# bushu's own pre-processing runs in the SDK as it is (sdk_modules): audio.py whole, text.py from predict.py's
# functions. Their relative imports may only name bushu.errors, which becomes the SDK's errors.py.
_TEXT_HEADER = '''"""Text pre-processing: bushu.model.predict's own functions, copied by `bushu package`, so the SDK
tokenizes (or weighs words) exactly as bushu's server does."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingDependencyError, UserInputError
'''
SDK_IMPORTS = {"numpy", "PIL", "onnxruntime", "tokenizers", "soundfile"}


def sdk_modules(kind: str, task: str | None = None) -> dict[str, str]:
    """The modules of bushu an SDK for ``kind`` carries: file name -> source, with relative imports
    pointed at the SDK's errors.py."""
    if task == "detection":  # plus the decoders (no torch, no bushu): see _detection_module
        return {**sdk_modules(kind), "detection.py": _detection_module()}
    if kind == "audio":
        from ..model import audio

        src = inspect.getsource(audio).replace("from ..errors import", "from .errors import")
        out = {"audio.py": "# Copied from bushu.model.audio by `bushu package`.\n" + src}
    elif kind == "text":
        from ..model import predict

        funcs: list[Callable[..., Any]] = [
            predict.char_ngrams,
            predict.tfidf_tokens,
            predict.tfidf_transform,
            predict.load_tokenizer,
            predict._as_text,
        ]
        spaces = f"\n_SPACES = re.compile({predict._SPACES.pattern!r})\n"  # char_ngrams' whitespace runs
        out = {"text.py": _TEXT_HEADER + spaces + "".join("\n\n" + inspect.getsource(f) for f in funcs)}
    else:
        return {}
    for name, src in out.items():  # a change in bushu that the SDK cannot run must fail here, not at a user's
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.level:
                ok = node.level == 1 and node.module == "errors"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                ok = all(m.split(".")[0] in SDK_IMPORTS | set(sys.stdlib_module_names) for m in mods)
            else:
                continue
            if not ok:
                raise RuntimeError(
                    f"bushu bug: the SDK's {name} (copied from bushu) has an import it cannot run: {ast.unparse(node)}"
                )
    return out


def _detection_module() -> str:
    """bushu.detection's boxes, anchors and decoders plus the letterbox, in one SDK module."""
    from ..detection import anchors, boxes, decode
    from ..model.processing import _resample, fit_image

    parts = []
    for mod in (boxes, anchors, decode):
        src = inspect.getsource(mod).replace("from __future__ import annotations\n", "")
        src = "\n".join(
            line
            for line in src.splitlines()
            if not line.startswith(("from .anchors import", "from .boxes import", "__all__ ="))
        )
        parts.append(src.replace("from ..errors import", "from .errors import"))
    parts += [inspect.getsource(fit_image), inspect.getsource(_resample)]  # fit_image calls _resample
    return (
        '"""Detection decoding: bushu.detection (boxes, anchors, decode) and bushu.model.processing.fit_image,\n'
        'copied by `bushu package`, so the SDK finds the boxes bushu\'s server finds."""\n\n'
        "from __future__ import annotations\n\n" + "\n\n".join(parts)
    )


def _config_pbtxt(model: str, art: Artifact) -> str:
    batched = bool(art.inputs[0].shape) and isinstance(art.inputs[0].shape[0], str)
    lines = [f'name: "{model}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {8 if batched else 0}"]
    if batched:
        lines.append("dynamic_batching {\n  max_queue_delay_microseconds: 2000\n}")
    lines.append("instance_group {\n  count: 1\n  kind: KIND_CPU\n}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Layout:
    """What build_bundle writes, decided (and checked) before anything is written."""

    art: Artifact
    pp: Preprocess | None  # the artifact's (checked: image, text or audio; None: named arrays)
    cfg: PackageConfig
    out: Path
    fmt: str  # zip | tar.gz | dir
    model: str
    dist: str
    package: str
    script: str
    image: str
    reqs: list[str]

    @property
    def top(self) -> str:
        return f"{self.dist}-{self.cfg.version}"


def build_bundle(
    src: str | Path | Artifact, out: str | Path, config: PackageConfig | None = None, validate: bool = False
) -> Bundle:
    """Write the SDK bundle for artifact ``src`` to ``out`` (zip, tar.gz or a directory)."""
    lay = _layout(src, Path(out), config or PackageConfig())
    lay.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bushu-package-", dir=lay.out.parent))
    try:
        root = work / lay.top
        pkg_dir = root / "src" / lay.package
        sdk = _write_model_dir(lay, pkg_dir / "model")
        _write_python_package(lay, root, pkg_dir)
        _write_deploy(lay, root, sdk, pkg_dir / "model")
        if validate:
            from .manifests import validate_manifests

            validate_manifests(sorted((root / "deploy").glob("*/*.yaml")))
        files = _write_manifest(root)
        _move_into_place(lay, root, work, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = lay.out.stat().st_size if lay.fmt != "dir" else sum(files.values())
    return Bundle(
        path=lay.out,
        format=lay.fmt,
        dist=lay.dist,
        package=lay.package,
        script=lay.script,
        model=lay.model,
        version=lay.cfg.version,
        size_bytes=size,
        files=files,
    )


def _layout(src: str | Path | Artifact, out: Path, cfg: PackageConfig) -> _Layout:
    art = src if isinstance(src, Artifact) else Artifact.load(src)
    pp = _check(art)
    if not _VERSION.match(cfg.version):
        raise UserInputError(f"version {cfg.version!r} is not a PEP 440 version", hint="e.g. 1.0.0 or 2.1rc1")
    if not 1 <= cfg.min_replicas <= cfg.max_replicas:
        raise UserInputError(f"replicas {cfg.min_replicas}:{cfg.max_replicas}: need 1 <= min <= max")
    model, dist, package, script = names_for(cfg.name or art.name)
    image = cfg.image or f"{dist.removesuffix('-sdk')}-server:{cfg.version}"
    fmt = "zip" if out.name.endswith(".zip") else "tar.gz" if out.name.endswith((".tar.gz", ".tgz")) else "dir"
    if fmt == "dir" and out.exists() and any(out.iterdir()) and not (out / "MANIFEST.sha256").is_file():
        raise ArtifactError(
            f"refusing to overwrite {out}: it exists and is not an SDK bundle", hint="choose another -o, e.g. NAME.zip"
        )
    return _Layout(art, pp, cfg, out, fmt, model, dist, package, script, image, requirements(art))


def _write_model_dir(lay: _Layout, model_dir: Path) -> dict[str, Any]:
    """The model directory: also a bushu artifact, so the server can serve it as is; returns sdk.json's content."""
    art, cfg, model = lay.art, lay.cfg, lay.model
    model_dir.mkdir(parents=True)
    shutil.copyfile(art.model_path, model_dir / "model.onnx")
    data = art.model_path.with_name(art.model_path.name + ".data")
    if data.is_file():  # external weights keep the file name recorded in the graph
        shutil.copyfile(data, model_dir / data.name)
    pp_files = _pp_files(lay.pp) if lay.pp else []
    for f in pp_files:  # the serving path reads them from the model directory too
        if not (art.path / f).is_file():
            raise ArtifactError(
                f"{art.path} lacks {f}, which its pre-processing reads",
                hint="copy the whole artifact directory, or retrain it",
            )
        shutil.copyfile(art.path / f, model_dir / f)
    labels = art.labels
    if labels:
        (model_dir / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
    post: dict[str, Any] = (
        art.postprocess.to_dict()
        if art.postprocess
        else (
            {"kind": "classification", "top_k": 5, "softmax": True} if art.task == "classification" else {"kind": "raw"}
        )
    )
    if cfg.top_k:
        post["top_k"] = cfg.top_k
    sdk = {
        "name": model,
        "version": cfg.version,
        "task": art.task,
        "model": "model.onnx",
        "labels": LABELS_FILE if labels else None,
        "inputs": [s.to_dict() for s in art.inputs],
        "outputs": [s.to_dict() for s in art.outputs],
        "preprocess": lay.pp.to_dict() if lay.pp else None,
        "postprocess": post,
        "created": _now(),
        "source": str(art.provenance.get("source", art.path)),
        "packaged_with": library_versions("bushu", "onnxruntime", "numpy", *[r.split(">")[0] for r in lay.reqs[2:]]),
    }
    (model_dir / "sdk.json").write_text(json.dumps(sdk, indent=2) + "\n", encoding="utf-8")
    meta = art.to_meta()
    meta["name"] = model
    meta["model"]["file"] = "model.onnx"
    # references (model.pt2 ...) stay behind, the bundle is light; the pre-processing files come along
    meta["files"] = {role: f for role, f in art.files.items() if f in pp_files}
    meta["labels"] = LABELS_FILE if labels else None
    meta["postprocess"] = post
    meta["provenance"] = {
        **meta.get("provenance", {}),
        "packaged": {"time": sdk["created"], "dist": lay.dist, "version": cfg.version},
    }
    (model_dir / META_FILE).write_text(_dump(meta), encoding="utf-8")
    sums = [f"{_sha256(p)}  {p.name}" for p in sorted(model_dir.iterdir()) if p.is_file()]
    (model_dir / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return sdk


def _write_python_package(lay: _Layout, root: Path, pkg_dir: Path) -> None:
    """The Predictor API and CLI (templates/sdk), the pre-processing modules, and what pip builds it with."""
    kind = lay.pp.kind if lay.pp else "tensor"
    for f in SDK_FILES:
        (pkg_dir / f).write_text(_sdk_template(f).replace("PACKAGE", lay.package), encoding="utf-8")
    for f, text in sdk_modules(kind, lay.art.task).items():
        (pkg_dir / f).write_text(text, encoding="utf-8")
    build_meta = {
        "name": lay.dist,
        "version": lay.cfg.version,
        "package": lay.package,
        "summary": f"Offline {lay.model} {kind} "
        f"{'classifier' if lay.art.task == 'classification' else 'model'} (ONNX Runtime), packaged by bushu",
        "requires_python": ">=3.9",
        "dependencies": lay.reqs,
        "optional_dependencies": FLAC_EXTRA if kind == "audio" else {},
        "scripts": {lay.script: f"{lay.package}.cli:main"},
    }
    (root / "sdk-build.json").write_text(json.dumps(build_meta, indent=2) + "\n")
    (root / "_sdk_build.py").write_text(_template("_sdk_build.py"))
    (root / "pyproject.toml").write_text(_pyproject(build_meta))
    (root / "requirements.txt").write_text("\n".join(lay.reqs) + "\n")


def _write_deploy(lay: _Layout, root: Path, sdk: dict[str, Any], model_dir: Path) -> None:
    """deploy/: the repository's config.pbtxt, the Kubernetes/KServe manifests, the Dockerfile; and README.md."""
    import yaml

    art, cfg, model = lay.art, lay.cfg, lay.model
    deploy = root / "deploy"
    (deploy / "repository" / model).mkdir(parents=True)
    (deploy / "repository" / model / "config.pbtxt").write_text(_config_pbtxt(model, art))
    settings = DeploySettings(
        model=model,
        image=lay.image,
        min_replicas=cfg.min_replicas,
        max_replicas=cfg.max_replicas,
        cpu_target=cfg.cpu_target,
        storage_uri=cfg.storage_uri,
    )
    for rel, obj in manifests(settings).items():
        (deploy / rel).parent.mkdir(parents=True, exist_ok=True)
        (deploy / rel).write_text(
            f"# {obj['kind']} for model {model}, written by bushu package\n"
            + yaml.safe_dump(obj, sort_keys=False, width=120)
        )
    subst = {
        "image": lay.image,
        "model": model,
        "package": lay.package,
        "dist": lay.dist,
        "version": cfg.version,
        "script": lay.script,
        "task": art.task,
        "n_labels": len(art.labels or []) or "no",
        "created": sdk["created"][:10],
        "model_file": "model.onnx",
        "model_mb": f"{(model_dir / 'model.onnx').stat().st_size / 1e6:.1f}",
        "input": ", ".join(str(s) for s in art.inputs),
        "output": ", ".join(str(s) for s in art.outputs),
        "preprocess": _describe(lay.pp),
        "top_k": sdk["postprocess"].get("top_k", 5),
        "archive": lay.out.name if lay.fmt != "dir" else ".",
        "min_replicas": cfg.min_replicas,
        "max_replicas": cfg.max_replicas,
        **usage(lay.pp),
    }
    (deploy / "Dockerfile").write_text(string.Template(_template("Dockerfile.txt")).substitute(subst))
    (root / "README.md").write_text(string.Template(_template("README.md.txt")).substitute(subst))


def _write_manifest(root: Path) -> dict[str, int]:
    """MANIFEST.sha256 over every file; returns relative path -> bytes (the manifest included)."""
    files = {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
    (root / "MANIFEST.sha256").write_text("".join(f"{_sha256(root / rel)}  {rel}\n" for rel in files))
    files["MANIFEST.sha256"] = (root / "MANIFEST.sha256").stat().st_size
    return files


def _move_into_place(lay: _Layout, root: Path, work: Path, files: dict[str, int]) -> None:
    """The finished tree to ``out``: renamed as a directory, or archived next to it and renamed."""
    if lay.fmt == "dir":
        if lay.out.exists():
            shutil.rmtree(lay.out)
        os.replace(root, lay.out)
    else:
        tmp_archive = work / ("bundle." + lay.fmt)
        (_write_zip if lay.fmt == "zip" else _write_tar)(root, lay.top, files, tmp_archive)
        os.replace(tmp_archive, lay.out)


def usage(pp) -> dict[str, str]:
    """The README's and Dockerfile's words for what the model takes (see templates/README.md.txt)."""
    if pp is None:
        return {
            "noun": "input",
            "runtime": "ONNX Runtime and numpy",
            "ex_cli": "inputs.npz",
            "ex1": "inputs.npz",
            "py1": 'dict(np.load("inputs.npz"))',
            "py2": 'dict(np.load("more.npz"))',
            "inputs_doc": "The model takes named arrays: `Predictor().run({name: array, ...})` returns every "
            "output by name.",
            "curl": "-H 'Content-Type: application/json' -d @request.json",
        }
    if pp.kind == "text":
        runtime = "ONNX Runtime, numpy and tokenizers" if pp.params.get("tokenizer") else "ONNX Runtime and numpy"
        return {
            "noun": "text",
            "runtime": runtime,
            "ex_cli": '"Shares fell after the profit warning" news.txt',
            "ex1": "news.txt",
            "py1": '"Shares fell after the profit warning"',
            "py2": 'open("news.txt").read()',
            "inputs_doc": "A text is a `str` (the text itself); a `pathlib.Path` or `bytes` are read as UTF-8. "
            "On the command line an argument ending in `.txt` is read from that file, `-` from "
            "standard input, and anything else is the text.",
            "curl": "-H 'Content-Type: text/plain' --data-binary @news.txt",
        }
    if pp.kind == "audio":
        p = pp.params
        return {
            "noun": "audio",
            "runtime": "ONNX Runtime, numpy and Pillow (WAV is read by the standard library)",
            "ex_cli": "yes.wav no.wav",
            "ex1": "yes.wav",
            "py1": '"yes.wav"',
            "py2": 'open("no.wav", "rb").read()',
            "inputs_doc": f"A clip is a `.wav` path or its bytes (8/16/24/32-bit PCM, any sample rate: it is "
            f"resampled to {p.get('sample_rate')} Hz and its loudest {p.get('duration')} s kept). "
            "FLAC and float WAV need soundfile: `pip install soundfile` (the bundle's `flac` extra).",
            "curl": "-H 'Content-Type: audio/wav' --data-binary @yes.wav",
        }
    return {
        "noun": "image",
        "runtime": "ONNX Runtime, numpy and Pillow",
        "ex_cli": "cat.jpg dog.png",
        "ex1": "cat.jpg",
        "py1": '"cat.jpg"',
        "py2": '"dog.png"',
        "inputs_doc": "Images may be file paths, encoded bytes, PIL images or HxWx3 uint8 arrays.",
        "curl": "--data-binary @cat.jpg",
    }


def _describe(pp) -> str:
    if pp is None:
        return "none: named arrays in, named arrays out (Predictor.run)"
    if pp.kind == "text":
        p = pp.params
        if p.get("tokenizer"):
            return (
                f"`{p['tokenizer']}` ({p.get('encoder', 'tokenizer')}), truncated at {p.get('max_length', 256)} "
                f"tokens, padded per batch -> {', '.join(p.get('inputs') or ['input_ids', 'attention_mask'])}"
            )
        return f"TF-IDF features from `{p['features']}` (numpy)"
    steps = []
    if pp.kind == "audio":
        p = pp.params
        steps.append(
            f"log-mel spectrogram ({p.get('sample_rate')} Hz, {p.get('duration')} s, {p.get('n_mels')} mels, "
            f"top {p.get('top_db')} dB) as a {pp.crop}x{pp.crop} image"
        )
    if pp.resize:
        steps.append(f"resize shorter side to {pp.resize} ({pp.interpolation})")
    if pp.crop:
        steps.append(f"centre crop {pp.crop}")
    steps.append(f"scale {pp.scale:.6g}, mean {list(pp.mean)}, std {list(pp.std)}, {pp.color}, {pp.layout}")
    return "; ".join(steps)


def _pyproject(meta: dict[str, Any]) -> str:
    deps = ", ".join(json.dumps(d) for d in meta["dependencies"])
    scripts = "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in meta["scripts"].items())
    extras = "".join(
        f"{json.dumps(k)} = [{', '.join(json.dumps(d) for d in v)}]\n"
        for k, v in (meta.get("optional_dependencies") or {}).items()
    )
    return (
        "# Built by _sdk_build.py (standard library only; metadata in sdk-build.json): pip install .\n"
        '[build-system]\nrequires = []\nbuild-backend = "_sdk_build"\nbackend-path = ["."]\n\n'
        f"[project]\nname = {json.dumps(meta['name'])}\nversion = {json.dumps(meta['version'])}\n"
        f'description = {json.dumps(meta["summary"])}\nreadme = "README.md"\n'
        f"requires-python = {json.dumps(meta['requires_python'])}\ndependencies = [{deps}]\n\n"
        f"[project.scripts]\n{scripts}" + (f"\n[project.optional-dependencies]\n{extras}" if extras else "")
    )


def _write_zip(root: Path, top: str, files: dict[str, int], dest: Path) -> None:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel in files:
            zi = zipfile.ZipInfo(f"{top}/{rel}", date_time=_EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            with open(root / rel, "rb") as f, zf.open(zi, "w") as w:
                shutil.copyfileobj(f, w, 1 << 20)


def _write_tar(root: Path, top: str, files: dict[str, int], dest: Path) -> None:
    def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mtime = 315532800
        ti.mode = 0o644 if ti.isfile() else 0o755
        return ti

    with tarfile.open(dest, "w:gz") as tf:
        for rel in files:
            tf.add(root / rel, arcname=f"{top}/{rel}", recursive=False, filter=clean)
