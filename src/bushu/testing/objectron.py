"""MediaPipe's SSD MobileNetV2 (Open Images v4, 24 classes) with real weights, offline.

The npm package ``@mediapipe/objectron@0.4.1675468480`` packs two files into
``objectron_solution_packed_assets.data``; its ``objectron_solution_packed_assets_loader.js`` lists
them by byte range: ``/object_detection_oidv4_labelmap.txt`` 0-184 and
``/third_party/mediapipe/modules/objectron/object_detection_ssd_mobilenetv2_oidv4_fp16.tflite``
184-9,987,912. The model takes 1x300x300x3 in [-1, 1] and returns raw box encodings [1, 1917, 4]
and class logits [1, 1917, 24] (class 0 is the background, "???").

The test setup (scripts/test.sh) fetches the package with ``npm pack`` into ``.cache/npm``; nothing
here downloads.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

from ..errors import NotFoundError

__all__ = ["NPM_PACKAGE", "NPM_TARBALL", "objectron_ssd"]

NPM_PACKAGE = "@mediapipe/objectron@0.4.1675468480"
NPM_TARBALL = "mediapipe-objectron-0.4.1675468480.tgz"
CACHE = Path(os.environ.get("BUSHU_NPM_CACHE", Path(__file__).resolve().parents[3] / ".cache" / "npm"))
_FETCH = f"npm pack {NPM_PACKAGE} --pack-destination .cache/npm (scripts/test.sh does it)"


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    if f is None:
        raise NotFoundError(f"the archive has no file {name} (not the @mediapipe/objectron package bushu expects)")
    return f.read()


def _ranges(loader_js: str) -> dict[str, tuple[int, int]]:
    pat = re.compile(r'"filename":\s*"([^"]+)",\s*"start":\s*(\d+),\s*"end":\s*(\d+)')
    return {Path(m[1]).name: (int(m[2]), int(m[3])) for m in pat.finditer(loader_js)}


def objectron_ssd(out_dir: str | Path, cache: str | Path = CACHE) -> tuple[Path, Path]:
    """Extract (model .tflite, label map .txt) from the npm tarball in ``cache`` into ``out_dir``."""
    tgz = Path(cache) / NPM_TARBALL
    if not tgz.is_file():
        raise NotFoundError(f"{tgz} is missing", hint=f"fetch it with: {_FETCH}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tar:
        loader = _member(tar, "package/objectron_solution_packed_assets_loader.js").decode()
        data = _member(tar, "package/objectron_solution_packed_assets.data")
    files = {}
    for name, (start, end) in _ranges(loader).items():
        if name.endswith((".tflite", ".txt")):
            (out_dir / name).write_bytes(data[start:end])
            files[name.rsplit(".", 1)[1]] = out_dir / name
    if set(files) != {"tflite", "txt"}:
        raise NotFoundError(f"{tgz}'s asset loader does not list a .tflite and a label map (found {sorted(files)})")
    return files["tflite"], files["txt"]
