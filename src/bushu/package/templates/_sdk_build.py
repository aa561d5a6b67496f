"""A PEP 517 build backend in the standard library only, so that ``pip install`` of this bundle needs
no setuptools and no network: it packs ``src/<package>/`` into a pure-Python wheel.

Written by ``bushu package``. The metadata lives in ``sdk-build.json`` beside this file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".git", "build", "dist"}


def _meta() -> dict:
    return json.loads((ROOT / "sdk-build.json").read_text(encoding="utf-8"))


def _dist_name(meta: dict) -> str:
    return meta["name"].replace("-", "_")


def _metadata_text(meta: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {meta['name']}",
        f"Version: {meta['version']}",
        f"Summary: {meta.get('summary', '')}",
        f"Requires-Python: {meta.get('requires_python', '>=3.9')}",
    ]
    lines += [f"Requires-Dist: {dep}" for dep in meta.get("dependencies", [])]
    for extra, deps in sorted((meta.get("optional_dependencies") or {}).items()):
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {dep}; extra == "{extra}"' for dep in deps]
    readme = ROOT / "README.md"
    if readme.is_file():
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + readme.read_text(encoding="utf-8")
    return "\n".join(lines) + "\n"


def _entry_points_text(meta: dict) -> str:
    scripts = meta.get("scripts") or {}
    if not scripts:
        return ""
    return "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(scripts.items()))


def _package_files(meta: dict):
    base = ROOT / "src"
    pkg = base / meta["package"]
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for f in sorted(filenames):
            if f.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / f
            yield path.relative_to(base).as_posix(), path


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    meta = _meta()
    dist = _dist_name(meta)
    info = f"{dist}-{meta['version']}.dist-info"
    wheel_name = f"{dist}-{meta['version']}-py3-none-any.whl"
    records = []

    def add(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
        zi = zipfile.ZipInfo(arcname, date_time=_EPOCH)
        zi.external_attr = 0o644 << 16
        zi.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(zi, data)
        records.append(f"{arcname},{_record_hash(data)},{len(data)}")

    os.makedirs(wheel_directory, exist_ok=True)
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in _package_files(meta):
            add(zf, arcname, path.read_bytes())
        add(zf, f"{info}/METADATA", _metadata_text(meta).encode())
        add(
            zf,
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: bushu-sdk-build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        entry_points = _entry_points_text(meta)
        if entry_points:
            add(zf, f"{info}/entry_points.txt", entry_points.encode())
        records.append(f"{info}/RECORD,,")
        zi = zipfile.ZipInfo(f"{info}/RECORD", date_time=_EPOCH)
        zi.external_attr = 0o644 << 16
        zf.writestr(zi, "\n".join(records) + "\n")
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    meta = _meta()
    base = f"{_dist_name(meta)}-{meta['version']}"
    os.makedirs(sdist_directory, exist_ok=True)
    name = f"{base}.tar.gz"
    with tarfile.open(Path(sdist_directory) / name, "w:gz") as tf:
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for f in sorted(filenames):
                if f.endswith((".pyc", ".pyo")):
                    continue
                path = Path(dirpath) / f
                tf.add(path, arcname=f"{base}/{path.relative_to(ROOT).as_posix()}", recursive=False)
    return name
