"""A model file uploaded through the web UI, checked before ``bushu import`` runs on it.

Taken: an ``.onnx`` file (weights inside it), a torch.export ``.pt2`` archive, or a ``.zip`` of a Hugging
Face Transformers model folder (config.json, weights, tokenizer; at the top of the zip or in one folder).
A file that is not what its name says is refused at upload time with the reason, in plain words, before
any job starts; the zip is extracted member by member under the same rules as data set zips (no absolute
paths, ``..`` or links; sizes counted while decompressing). The inputs the user states
(``NAME:SHAPE[:DTYPE]``, as ``bushu import --input``) are parsed up front too.

The checked file is kept in ``WORKSPACE/sources/<model name>/`` so a failed import can be retried.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import ModelLoadError, UserInputError
from .safety import UnsafeArchiveError, ZipLimits, _member_parts, safe_name

__all__ = ["MODEL_SUFFIXES", "check_inputs", "place_model"]

MODEL_SUFFIXES = {".onnx": "an ONNX model", ".pt2": "a torch.export program", ".zip": "a Hugging Face model folder"}
# model weights barely compress and can be large; the upload limit (--max-upload-mb) bounds the zip itself
MODEL_ZIP_LIMITS = ZipLimits(max_members=5_000, max_total_bytes=16 << 30, max_member_bytes=8 << 30, max_ratio=200.0)


def model_kind(filename: str) -> str:
    """The suffix of an uploadable model file name (``.onnx``, ``.pt2`` or ``.zip``), or a clear refusal."""
    suffix = PurePosixPath(str(filename).replace("\\", "/")).suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        shown = PurePosixPath(str(filename).replace("\\", "/")).name or "(no file name)"
        raise UserInputError(
            f"{shown}: bushu imports an .onnx file, a torch.export .pt2 file or a .zip of a Hugging Face model folder",
            hint="a .pt/.pth checkpoint has no architecture: export it with torch.export.save (.pt2) or to ONNX first",
        )
    return suffix


def check_inputs(lines: list[str]) -> list[str]:
    """The stated inputs (``NAME:SHAPE[:DTYPE]`` each, blank lines dropped), parsed as ``bushu import
    --input`` parses them: a mistake is refused now, in the form's words."""
    from ..inputs import InputRequest

    given = [s.strip() for s in lines if s.strip()]
    for spec in given:
        try:
            InputRequest.parse([spec])
        except UserInputError as e:  # a 400 whatever the kind (an unknown dtype is a NotFoundError)
            # its errors name "--input"; the endpoint's plain() turns that into the form's words
            msg = e.message if "--input" in e.message else f"input {spec!r}: {e.message}"
            raise UserInputError(msg, hint=e.hint) from None
    InputRequest.parse(given)  # an input given twice
    return given


def _check_onnx(path: Path, shown: str) -> None:
    import onnx

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's decode errors have no common base worth naming
        raise ModelLoadError(
            f"{shown} is not a readable ONNX model ({type(e).__name__}: {str(e)[:200]})",
            hint="upload the .onnx file that torch.onnx.export (or your framework's exporter) wrote",
        ) from None
    if m.ir_version <= 0 or not m.graph.output:
        raise ModelLoadError(
            f"{shown} is not a readable ONNX model (no graph in it)", hint="upload the .onnx file itself"
        )
    external = [t.name for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ModelLoadError(
            f"{shown} keeps its weights in separate files ({external[0]!r}, ...), which an upload of one file lacks",
            hint="save it with the weights inside: onnx.save(onnx.load(PATH), OUT, save_as_external_data=False)",
        )


def _check_pt2(path: Path, shown: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        names = None
    if not names or not any(n == "archive_format" or n.endswith("/archive_format") for n in names):
        raise ModelLoadError(
            f"{shown} is not a torch.export program (a .pt2 file is the archive torch.export.save writes)",
            hint="save it with torch.export.save(torch.export.export(model, example_inputs), 'model.pt2')",
        )


def extract_zip(src: Path, dest: Path, limits: ZipLimits = MODEL_ZIP_LIMITS) -> None:
    """Every member of ``src`` into ``dest`` (which must not exist), under the data set zips' safety rules;
    __MACOSX and hidden files are left out. On any error ``dest`` is removed."""
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserInputError(
            f"the upload is not a readable zip file ({e})", hint="zip the Hugging Face model folder and upload that"
        ) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise UnsafeArchiveError(f"the zip has {len(infos)} members, more than the {limits.max_members} allowed")
        members = []
        for info in infos:
            try:
                parts = _member_parts(info)  # absolute paths, '..' and links are refused here
            except UnsafeArchiveError as e:
                hint = "zip the model folder itself: no links, nothing outside it"
                raise UnsafeArchiveError(e.message, hint=hint) from None
            if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts) or info.is_dir():
                continue
            members.append((info, parts))
        if sum(i.file_size for i, _ in members) > limits.max_total_bytes:
            raise UnsafeArchiveError(f"the zip expands beyond the {limits.max_total_bytes}-byte limit")
        dest.mkdir(parents=True)
        total = 0
        try:
            for info, parts in members:
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with zf.open(info) as r, open(target, "wb") as w:
                    while chunk := r.read(1 << 20):
                        written += len(chunk)
                        total += len(chunk)
                        if written > limits.max_member_bytes or total > limits.max_total_bytes:
                            raise UnsafeArchiveError(f"zip member {info.filename!r} expands beyond the size limits")
                        if written > 1 << 20 and written > limits.max_ratio * max(info.compress_size, 1):
                            raise UnsafeArchiveError(
                                f"zip member {info.filename!r} expands more than {limits.max_ratio:.0f}x: "
                                "refusing a likely zip bomb"
                            )
                        w.write(chunk)
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            shutil.rmtree(dest, ignore_errors=True)
            raise UserInputError(f"the zip is damaged ({e})", hint="zip the folder again and re-upload") from None
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise


def _model_folder(root: Path, shown: str) -> Path:
    """The folder with config.json: the zip's top, or its one top folder."""
    if (root / "config.json").is_file():
        return root
    tops = [p for p in root.iterdir() if p.is_dir()]
    if len(tops) == 1 and (tops[0] / "config.json").is_file():
        return tops[0]
    raise UserInputError(
        f"{shown} has no config.json at its top: it is not a zipped Hugging Face model folder",
        hint="zip the folder that save_pretrained wrote (config.json, model.safetensors, tokenizer files)",
    )


def place_model(tmp: Path, filename: str, dest: Path) -> Path:
    """Check the uploaded file ``tmp`` (named ``filename`` by the user) and move it into ``dest`` (a fresh
    folder): the path to import (the model file, or the model folder of a zip)."""
    suffix = model_kind(filename)
    shown = PurePosixPath(str(filename).replace("\\", "/")).name
    if tmp.stat().st_size == 0:
        raise UserInputError(f"{shown} is empty", hint="choose the model file again and re-upload")
    shutil.rmtree(dest, ignore_errors=True)  # an earlier upload under this name whose import failed
    if suffix == ".zip":
        extract_zip(tmp, dest)
        try:
            return _model_folder(dest, shown)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    (_check_onnx if suffix == ".onnx" else _check_pt2)(tmp, shown)
    dest.mkdir(parents=True)
    try:
        stem = safe_name(PurePosixPath(shown).stem, "file name")
    except UserInputError:
        stem = "model"
    target = dest / f"{stem}{suffix}"
    shutil.move(str(tmp), target)
    return target
