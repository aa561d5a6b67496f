"""Export an artifact to many formats, each validated against the artifact's ONNX model.

For every format, one worker process (``python -m bushu.export._worker``) converts, writes the
result as a bushu artifact ``OUT/<format>/``, runs it with the bushu backend for that format on the
same inputs as ONNX Runtime ran the source model, and times batch-1 inference. Its stdout/stderr go
to ``OUT/logs/<format>.log``; the step it is in is kept in ``OUT/logs/<format>.step``. A converter
that raises, exits or crashes (a segfault in native code) fails only its own row, which names the
step and the log; the other formats go on. The rows are saved as ``OUT/export.json`` and
``OUT/export.md``.

int8 formats calibrate on up to ``calib_size`` images from ``data`` (the artifact's pre-processing
applied) and are validated on at least ``INT8_MIN_SAMPLES`` of them, since top-1 agreement on a
handful of images says little. Named explicitly without ``data`` they are an error before anything
runs; through ``--format all`` they are skipped rows.

Row keys: format, file, size_mb, precision, backend, max_abs, top1_agreement, accuracy, p50_ms,
status (ok | exported | mismatch | error | skipped), reason, step, log, seconds; with labelled
``data`` also accuracy_onnx (the source model's accuracy on the same images).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError
from ..model.artifact import Artifact, library_versions
from .formats import Format, get_format, resolve_formats

__all__ = ["ROW_KEYS", "ExportContext", "Exported", "Skip", "export", "markdown_table"]

ROW_KEYS = (
    "format",
    "file",
    "size_mb",
    "precision",
    "backend",
    "max_abs",
    "top1_agreement",
    "accuracy",
    "p50_ms",
    "shapes",
    "status",
    "reason",
    "step",
    "log",
    "seconds",
)
STATUSES = ("ok", "exported", "mismatch", "error", "skipped")
REPORT_JSON, REPORT_MD = "export.json", "export.md"
INT8_MIN_SAMPLES = 32
DATA_HINT = (
    "pass --data DIR: a folder of representative images (100 or so; one sub-folder per class also "
    "measures accuracy), pre-processed as the artifact says; or, for a model without image pre-processing, "
    "--sample FILE.npz with real arrays by input name"
)


class Skip(Exception):  # noqa: N818 - control flow inside a worker, never seen by users
    """A format that cannot be produced here (missing GPU, no PyTorch reference...): a 'skipped' row."""


class ConverterError(Exception):
    """A converter tool exited non-zero; the message names the step, the log has its output."""


@dataclass
class Exported:
    """What an exporter wrote into ``ctx.work``."""

    model_file: str
    files: dict[str, str] = field(default_factory=dict)  # role -> file name (weights, io, ...)
    backend_options: dict[str, Any] = field(default_factory=dict)
    layout: str | None = None  # when it differs from the source (NHWC for TF-style converters)
    tool: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    #: for formats with no registered backend: a callable(feeds) -> outputs that runs the export here
    runner: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None


@dataclass
class ExportContext:
    """Handed to each exporter: the source artifact, a scratch dir that becomes the result, and helpers."""

    art: Artifact
    fmt: Format
    work: Path
    log: Path
    step_file: Path
    options: dict[str, Any] = field(default_factory=dict)

    def note(self, message: str) -> None:
        """A line in the format's log (the worker's own output goes there too, so flush it first: in order)."""
        sys.stdout.flush()
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(message + "\n")

    def step(self, name: str) -> None:
        self.step_file.write_text(name)
        self.note(f"== {self.fmt.name}: {name}")

    def run(self, cmd: Sequence[str | os.PathLike[str]], step: str, timeout: float = 1800) -> None:
        """Run a converter CLI; its output goes to the log; a non-zero exit is a ConverterError."""
        self.step(step)
        self.note("$ " + " ".join(str(c) for c in cmd))
        with open(self.log, "ab") as log:
            proc = subprocess.run(
                [str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, cwd=self.work, timeout=timeout, check=False
            )
        if proc.returncode != 0:
            tail = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()][-1:] or [""]
            raise ConverterError(
                f"{Path(str(cmd[0])).name} exited with {_exit(proc.returncode)} during {step!r}: {tail[0][:200]}"
            )

    @property
    def onnx(self) -> Path:
        return self.art.model_path

    def reference(self) -> Any:
        """The artifact's PyTorch program (``files['reference']``, a torch.export .pt2) as a module."""
        ref = self.art.file("reference")
        if ref is None or not ref.is_file():
            raise Skip(
                "needs the PyTorch reference (model.pt2) that `bushu import` saves from a PyTorch source; "
                "this artifact has none"
            )
        import torch

        self.step("load torch.export reference")
        return torch.export.load(str(ref))

    def calibration(self) -> Any:
        """The calibration images (``--data``), else the ``--sample`` arrays, as an ArrayReader of pre-processed
        samples, batch 1."""
        from ..optimize.calibration import calibration_reader

        data = self.options.get("calibration") or self.options.get("data")
        if not data:
            raise UserInputError(f"{self.fmt.name} needs calibration images", hint=DATA_HINT)
        self.step("read the calibration images")
        reader = calibration_reader(data, self.art, limit=self.options.get("calib_size") or 100, batch_size=1)
        self.note(f"calibration: {len(reader)} sample(s) from {data}")
        return reader

    def example(self, batch: int = 1) -> dict[str, np.ndarray]:
        from ..spec import synthetic_feeds

        return synthetic_feeds(self.art.inputs, batch=batch, seed=1)

    def tool(self, name: str) -> str:
        """A converter CLI installed with this Python (pnnx, mnnconvert), else from PATH."""
        import shutil

        here = Path(sys.executable).parent / name
        found = str(here) if here.is_file() else shutil.which(name)
        if not found:
            raise Skip(f"the {name} command is not installed")
        return found


def _exit(rc: int) -> str:
    if rc < 0:
        import signal

        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"code {rc}"


# -- the parent side ----------------------------------------------------------------------------------
def export(
    artifact: str | Path | Artifact,
    formats: str | Sequence[str],
    out: str | Path,
    *,
    samples: int = 8,
    data: str | Path | None = None,
    bench: bool = True,
    opset: int | None = None,
    threads: int | None = 1,
    timeout: float = 900,
    calib_size: int = 100,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    inputs: Any = None,
) -> list[dict[str, Any]]:
    """Export ``artifact`` to each of ``formats`` under ``out``; returns one row per format (ROW_KEYS).

    ``threads``: intra-op threads for every runtime while validating and timing (default 1, so p50
    figures compare runtimes rather than their thread pools on a shared CPU; None: each runtime's own).
    """
    art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
    if inputs:
        inputs.check(art.inputs)  # before any directory is written
    names = resolve_formats(formats)
    if samples < 1:
        raise UserInputError(f"`samples` must be at least 1, got {samples}")
    if calib_size < 1:
        raise UserInputError(f"the calibration size must be at least 1, got {calib_size}")
    if threads is not None and int(threads) < 1:
        raise UserInputError(f"`threads` must be at least 1, got {threads}")
    if opset is not None and not 7 <= int(opset) <= 23:
        raise UserInputError(f"`opset` {opset} is outside the range ONNX converters support (7..23)")
    int8 = [n for n in names if get_format(n).calibrated]
    # without --data, a --sample of real arrays calibrates (models whose inputs are no images: ids, several inputs)
    calibration = data if data is not None else getattr(inputs, "sample_path", None)
    if int8 and calibration is None:
        named = [n for n in int8 if n in _named(formats)]
        if named:
            raise UserInputError(f"int8 format(s) {', '.join(named)} need calibration images", hint=DATA_HINT)
    if int8 and data is not None:
        samples = max(samples, INT8_MIN_SAMPLES)
    out = Path(out)
    if out.resolve() == art.path.resolve():
        raise UserInputError("the export directory must differ from the artifact directory")
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bushu-export-") as tmpd:
        ref = Path(tmpd) / "reference.npz"
        _write_reference(art, ref, samples, data, inputs)
        for name in names:
            if on_start:
                on_start(name)
            row = _run_worker(
                art,
                get_format(name),
                out,
                ref,
                bench=bench,
                opset=opset,
                threads=threads,
                timeout=timeout,
                data=data,
                calibration=calibration,
                calib_size=calib_size,
            )
            rows.append(row)
            if on_row:
                on_row(row)
    write_reports(art, rows, out)
    return rows


def _named(formats: str | Sequence[str]) -> list[str]:
    """The formats named one by one (not through 'all')."""
    parts = [p.strip() for item in ([formats] if isinstance(formats, str) else formats) for p in str(item).split(",")]
    named = [p for p in parts if p and p.lower() != "all"]
    return resolve_formats(named) if named else []


def _write_reference(art: Artifact, path: Path, samples: int, data: str | Path | None, inputs: Any = None) -> None:
    """Validation inputs (images from ``data``, ``--sample`` arrays, else safe inputs derived from the IO spec at
    the ``--input`` or typical sizes) and the ONNX Runtime outputs on them."""
    from ..inputs import InputRequest
    from ..validate import run_model

    targets = None
    req = inputs or InputRequest()
    if data is not None:
        feeds, targets = _data_feeds(art, Path(data), samples)
    else:
        feeds = req.feeds(art.inputs, batch=None if req.sample is not None else samples, seed=0)
    ref = run_model(art.model_path, feeds, backend="onnxruntime")
    arrays = {f"in:{k}": v for k, v in feeds.items()} | {f"out:{k}": v for k, v in ref.items()}
    if targets is not None:
        arrays["targets"] = np.asarray(targets)
    # not allow_pickle=True to please numpy's stubs: numpy < 2.1 (bushu allows >= 1.24) would save it as an array
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _data_feeds(art: Artifact, data: Path, samples: int) -> tuple[dict[str, np.ndarray], list[int] | None]:
    from ..data.folders import LabelledFolder, scan_folder
    from ..data.images import open_image
    from ..data.labels import match_classes
    from ..data.suffixes import IMAGE_SUFFIXES
    from ..model.processing import preprocess_images

    if art.preprocess is None or len(art.inputs) != 1:
        raise UserInputError(
            f"`data` needs an image model with one input and pre-processing; {art.name} has "
            f"{len(art.inputs)} input(s) and "
            f"{'no' if art.preprocess is None else 'its'} pre-processing"
        )
    if not data.is_dir():
        raise UserInputError(f"`data` {data} is not a directory of images")
    subdirs = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    targets: list[int] | None = None
    if art.task == "detection":  # a detection dataset's images (bushu.detection.validate judges the boxes)
        from ..detection.validate import image_paths

        files = image_paths(data, samples)
    elif subdirs:
        folder = LabelledFolder.scan(data)
        # accuracy only when the class folders are the model's own labels ('Egyptian_cat' for 'Egyptian cat')
        try:
            index = match_classes(folder.classes, art.labels, len(art.labels or []))
        except UserInputError:
            index = None
        rng = np.random.default_rng(0)
        items = [folder.items[i] for i in sorted(rng.permutation(len(folder.items))[:samples])]
        files = [p for p, _ in items]
        targets = [index[folder.classes[i]] for _, i in items] if index else None
    else:
        files = scan_folder(data, IMAGE_SUFFIXES).loose[:samples]
    if not files:
        raise UserInputError(f"`data` {data} holds no images")
    x = preprocess_images([open_image(p) for p in files], art.preprocess).astype(np.float32)
    return {art.inputs[0].name: x}, targets


def _run_worker(
    art: Artifact,
    fmt: Format,
    out: Path,
    ref: Path,
    *,
    bench: bool,
    opset: int | None,
    threads: int | None,
    timeout: float,
    data: str | Path | None = None,
    calibration: str | Path | None = None,
    calib_size: int = 100,
) -> dict[str, Any]:
    log, step_file = out / "logs" / f"{fmt.name}.log", out / "logs" / f"{fmt.name}.step"
    result = out / "logs" / f"{fmt.name}.result.json"
    for p in (log, step_file, result):
        p.unlink(missing_ok=True)
    stale = out / fmt.name
    if (stale / "bushu.yaml").is_file():  # a previous run's export: a failure now must not leave it looking current
        shutil.rmtree(stale)
    # absolute paths: converters run with their scratch directory as the working directory
    job = {
        "artifact": str(art.path.resolve()),
        "format": fmt.name,
        "exporter": fmt.exporter,
        "out": str(out.resolve()),
        "reference": str(Path(ref).resolve()),
        "bench": bench,
        "opset": opset,
        "threads": threads,
        "log": str(Path(log).resolve()),
        "step_file": str(Path(step_file).resolve()),
        "result": str(Path(result).resolve()),
        "data": str(Path(data).resolve()) if data is not None else None,
        "calibration": str(Path(calibration).resolve()) if calibration is not None else None,
        "calib_size": calib_size,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    t0 = time.perf_counter()
    try:
        with open(log, "ab") as fh:
            proc = subprocess.run(
                [sys.executable, "-m", "bushu.export._worker", json.dumps(job)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout,
                check=False,
            )
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        rc = None
    seconds = round(time.perf_counter() - t0, 1)
    step = step_file.read_text().strip() if step_file.is_file() else None
    base = dict.fromkeys(ROW_KEYS) | {
        "format": fmt.name,
        "precision": fmt.precision,
        "backend": fmt.backend,
        "log": str(log),
        "seconds": seconds,
    }
    if result.is_file():
        row = base | json.loads(result.read_text())
        result.unlink()
        if row.get("status") != "error":
            step_file.unlink(missing_ok=True)
        return row
    why = f"timed out after {timeout:g} s" if rc is None else f"the converter process died ({_exit(rc)})"
    return base | {"status": "error", "step": step, "reason": f"{why}{f' during {step!r}' if step else ''}; see {log}"}


def write_reports(art: Artifact, rows: list[dict[str, Any]], out: Path) -> None:
    report = {
        "artifact": str(art.path),
        "name": art.name,
        "source_model": art.model_file,
        "versions": library_versions(
            "bushu",
            "onnx",
            "onnxruntime",
            "openvino",
            "torch",
            "ncnn",
            "pnnx",
            "MNN",
            "ai-edge-litert",
            "litert-torch",
            "coremltools",
            "opencv-python-headless",
            "tensorrt",
        ),
        "rows": rows,
    }
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / REPORT_MD).write_text(f"# bushu export: {art.name}\n\n" + markdown_table(rows) + "\n")


MD_COLUMNS = (
    "format",
    "file",
    "size_mb",
    "max_abs",
    "top1_agreement",
    "accuracy",
    "accuracy_onnx",
    "p50_ms",
    "shapes",
    "status",
    "reason",
)


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str] = MD_COLUMNS) -> str:
    cols = [c for c in columns if c in ("format", "status") or any(r.get(c) is not None for r in rows)]

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
