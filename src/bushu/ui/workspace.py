"""The web UI's workspace on disk: models, datasets, evaluation results, exports and thumbnails.

    WORKSPACE/models/<name>/       bushu artifacts (trained, imported or copied in)
    WORKSPACE/datasets/<name>/     folder-per-class images (uploaded zips are extracted here)
    WORKSPACE/datasets/<name>.link a linked folder elsewhere on this machine
    WORKSPACE/datasets/<name>.upload.json  what an uploaded zip left out (skipped files, empty classes)
    WORKSPACE/evals/<model>@<dataset>.json   the latest `bushu eval --json` of a model on a dataset
    WORKSPACE/exports/<model>/<format>/      `bushu export` output (export.json + the artifact)

File paths recorded in result files are never served as given: thumbnails and excerpts are read only
from inside the dataset folder the result names.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BushuError, NotFoundError, UserInputError
from .safety import safe_name

__all__ = ["Workspace"]


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        for d in ("models", "datasets", "bundles", "jobs", "uploads", "evals", "exports"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self._models: dict[str, tuple[float, Any, bool]] = {}  # name -> (mtime, predictor, is a detector)
        self._lock = threading.Lock()

    # -- models -----------------------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        d = self.root / "models" / safe_name(name, "model name")
        if not (d / "bushu.yaml").is_file():
            raise NotFoundError(f"no model {name!r} in the workspace")
        return d

    def models(self) -> list[dict[str, Any]]:
        out = []
        for d in sorted((self.root / "models").iterdir()):
            if (d / "bushu.yaml").is_file():
                try:
                    out.append(self.model_info(d.name))
                except BushuError as e:
                    out.append({"name": d.name, "error": e.message})
        return out

    def model_info(self, name: str, detail: bool = False) -> dict[str, Any]:
        from ..model.artifact import Artifact

        art = Artifact.load(self.model_dir(name))
        m = art.metrics
        bench = [
            {
                k: r.get(k)
                for k in ("backend", "batch", "threads", "precision", "p50_ms", "p99_ms", "throughput", "peak_rss_mb")
            }
            for r in (m.get("bench") or {}).get("rows", [])
            if r.get("p50_ms") is not None
        ]  # rows of backends that were skipped carry no numbers
        train = m.get("train") or {}
        ev = m.get("eval") or {}
        accuracy = ev.get("accuracy", train.get("val_accuracy"))
        confusion = train.get("confusion") or ev.get("confusion")
        n_val = (
            ev.get("n_images")
            if "accuracy" in ev
            else sum(map(sum, confusion["matrix"]))
            if confusion and confusion.get("matrix")
            else None
        )
        return {
            "name": name,
            "task": art.task,
            "format": art.format,
            "size_mb": round(art.size_bytes / 1e6, 2),
            "inputs": [str(s) for s in art.inputs],
            "outputs": [str(s) for s in art.outputs],
            "labels": (art.labels or [])[:1000],
            "n_labels": len(art.labels or []),
            "accuracy": accuracy,
            "accuracy_note": accuracy_note(accuracy, n_val),
            "bench": bench,
            "train": {
                k: train.get(k)
                for k in (
                    "backbone",
                    "head",
                    "val_accuracy",
                    "macro_f1",
                    "trials",
                    "image_size",
                    "test_accuracy",
                    "test_ci95",
                    "n_test",
                )
                if k in train
            },
            "confusion": confusion,
            "mistakes": [{k: x.get(k) for k in ("true", "pred", "score")} for x in train.get("mistakes") or []],
            "created": art.provenance.get("created"),
            "steps": [s.get("command") for s in art.provenance.get("steps", [])],
            "dataset": self._dataset_of(art),
            "variants": self.variants(name, art) if detail else None,  # reads every model: not in lists
            "input_kind": art.preprocess.kind if art.preprocess else None,  # image | text | audio
            "can_classify": art.preprocess is not None and art.model_path.suffix == ".onnx",
        }

    def _dataset_of(self, art) -> str | None:
        """The workspace dataset the model was trained on, if it is still there."""
        data = next((s.get("data") for s in art.provenance.get("steps", []) if s.get("command") == "train"), None)
        if not data:
            return None
        for p in (self.root / "datasets").iterdir():  # no scan: compare folders only
            name = p.name.removesuffix(".link")
            try:
                if self.dataset_dir(name).resolve() == Path(data).resolve():
                    return name
            except BushuError:
                continue
        return None

    def variants(self, name: str, art=None) -> list[dict[str, Any]]:
        """Size and speed of the model, the models optimized from it and its exports, in one table."""
        from ..model.artifact import Artifact

        art = art or Artifact.load(self.model_dir(name))
        me = art.path.resolve()

        def b1(a) -> dict[str, Any]:
            rows = [
                r
                for r in (a.metrics.get("bench") or {}).get("rows", [])
                if r.get("batch") == 1 and r.get("p50_ms") is not None
            ]
            return rows[0] if rows else {}

        acc = (art.metrics.get("eval") or {}).get("accuracy", (art.metrics.get("train") or {}).get("val_accuracy"))
        out = [
            {
                "name": name,
                "kind": "this model",
                "precision": "fp32",
                "size_mb": round(art.size_bytes / 1e6, 3),
                "p50_ms": b1(art).get("p50_ms"),
                "accuracy": acc,
                "top1_agreement": None,
                "model": name,
            }
        ]
        for d in sorted((self.root / "models").iterdir()):
            if d.name == name or not (d / "bushu.yaml").is_file():
                continue
            try:
                other = Artifact.load(d)
            except BushuError:
                continue
            steps = [s for s in other.provenance.get("steps", []) if s.get("command") == "optimize"]
            if not any(Path(str(s.get("source", "")).split(" (after")[0]).resolve() == me for s in steps):
                continue
            rows = (other.metrics.get("optimize") or {}).get("rows") or [{}]
            after = rows[-1]
            q = steps[-1].get("quantize") or {}
            kind = q.get("kind") or q.get("type") or after.get("model") or "optimized"
            acc = after.get("accuracy")
            out.append(
                {
                    "name": d.name,
                    "kind": f"optimize: {kind}",
                    "precision": str(after.get("model", "")).lstrip("+ "),
                    "size_mb": round(other.size_bytes / 1e6, 3),
                    "p50_ms": b1(other).get("p50_ms", after.get("p50_ms")),
                    "accuracy": acc / 100 if isinstance(acc, (int, float)) else None,
                    "top1_agreement": after.get("top1_agreement"),
                    "model": d.name,
                }
            )
            if out[0]["p50_ms"] is None and rows[0].get("p50_ms") is not None:
                out[0]["p50_ms"] = rows[0]["p50_ms"]  # never benched itself: optimize timed it as "before"
        exports = self.root / "exports" / safe_name(name)
        for report in sorted(exports.glob("*/export.json")) if exports.is_dir() else []:
            try:
                rows = json.loads(report.read_text()).get("rows", [])
            except (OSError, ValueError):
                continue
            for r in rows:
                out.append(
                    {
                        "name": f"{name} ({r.get('format')})",
                        "kind": f"export: {r.get('status')}",
                        "precision": r.get("precision"),
                        "size_mb": r.get("size_mb"),
                        "p50_ms": r.get("p50_ms"),
                        # export.json (like optimize's rows) has it in percent; the table shows fractions
                        "accuracy": r["accuracy"] / 100 if isinstance(r.get("accuracy"), (int, float)) else None,
                        "top1_agreement": r.get("top1_agreement"),
                        "file": r.get("file"),
                        "reason": r.get("reason"),
                        "model": None,
                        "download": f"/api/models/{name}/exports/{report.parent.name}.zip"
                        if r.get("status") in ("ok", "exported", "mismatch")
                        else None,
                    }
                )
        return out

    def train_mistake_thumb(self, name: str, index: int) -> bytes:
        from ..model.artifact import Artifact

        art = Artifact.load(self.model_dir(name))
        mistakes = (art.metrics.get("train") or {}).get("mistakes") or []
        data = next((s.get("data") for s in art.provenance.get("steps", []) if s.get("command") == "train"), None)
        if not 0 <= index < len(mistakes) or not data:
            raise NotFoundError(f"model {name!r} records no training mistake {index}")
        return _thumb(Path(data) / mistakes[index]["path"], data)  # recorded relative to the data folder

    def classify(self, name: str, raw: bytes, k: int) -> dict[str, Any]:
        """An image file (or, for a text model, UTF-8 text) -> ``{"predictions": top-k labels}`` through
        bushu.model.predict; a detector's image -> ``{"detections": boxes}`` through bushu.detection.Detector."""
        from ..model.artifact import Artifact

        make: Callable[[Artifact], Any]
        try:
            from ..model.predict import Classifier

            make = Classifier
        except ImportError:  # an older bushu: images only
            make = _ImageClassifier
        d = self.model_dir(name)
        mtime = (d / "bushu.yaml").stat().st_mtime
        with self._lock:
            cached = self._models.get(name)
            if cached is None or cached[0] != mtime:
                art = Artifact.load(d)
                if art.preprocess is None:
                    raise UserInputError(f"model {name!r} records no pre-processing; it cannot take raw inputs")
                if cached is not None and hasattr(cached[1], "close"):
                    cached[1].close()
                predictor: Any
                if art.task == "detection":
                    from ..detection import Detector

                    predictor = Detector(art)
                else:
                    predictor = make(art)
                self._models[name] = cached = (mtime, predictor, art.task == "detection")
            if cached[2]:
                from ..model.processing import load_image

                found = cached[1].predict([load_image(raw)])[0]  # a clear error for a non-image first
                return {"detections": [d.to_dict() for d in found]}
            preds = cached[1].predict([raw], k=k)[0]
        return {"predictions": [{"label": lbl, "index": i, "score": s} for i, lbl, s in preds]}

    def forget_predictor(self, name: str) -> None:
        """Drop the try-it predictor cached for a model (it is being deleted)."""
        with self._lock:
            cached = self._models.pop(name, None)
        if cached is not None and hasattr(cached[1], "close"):
            cached[1].close()

    def bundle(self, name: str) -> Path:
        from ..package.bundle import build_bundle

        d = self.model_dir(name)
        out = self.root / "bundles" / f"{safe_name(name)}-sdk.zip"
        newest = max(p.stat().st_mtime for p in d.iterdir() if p.is_file())
        if not out.is_file() or out.stat().st_mtime < newest:
            build_bundle(d, out)
        return out

    def export_zip(self, name: str, fmt: str) -> Path:
        """``bushu export``'s output for one format (the exported artifact and its report) as a zip."""
        import zipfile

        folder = self.root / "exports" / safe_name(name, "model name") / safe_name(fmt, "format")
        if not (folder / "export.json").is_file():
            raise NotFoundError(f"model {name!r} has no {fmt} export", hint="export it from the model's page first")
        out = self.root / "bundles" / f"{folder.parent.name}-{folder.name}.zip"
        files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        if not out.is_file() or out.stat().st_mtime < max(p.stat().st_mtime for p in files):
            tmp = out.with_suffix(".zip.tmp")
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for p in files:
                    zf.write(p, f"{folder.parent.name}-{folder.name}/{p.relative_to(folder)}")
            tmp.replace(out)
        return out

    # -- datasets ---------------------------------------------------------------------------------------
    def dataset_dir(self, name: str) -> Path:
        d = self.root / "datasets" / safe_name(name, "dataset name")
        link = d.with_suffix(".link")
        if link.is_file():
            d = Path(link.read_text().strip())
        if not d.is_dir():
            raise NotFoundError(f"no dataset {name!r} in the workspace")
        return d

    def datasets(self) -> list[dict[str, Any]]:
        names = sorted(
            {
                p.name.removesuffix(".link")
                for p in (self.root / "datasets").iterdir()
                if p.is_dir() or p.suffix == ".link"
            }
        )
        out = []
        for n in names:
            try:
                out.append(self.dataset_info(n))
            except BushuError as e:
                out.append({"name": n, "error": e.message})
        return out

    def upload_report_path(self, name: str) -> Path:
        return self.root / "datasets" / f"{safe_name(name, 'dataset name')}.upload.json"

    def dataset_info(self, name: str) -> dict[str, Any]:
        from ..data.folders import LabelledFolder

        d = self.dataset_dir(name)
        counts = LabelledFolder.scan(d).counts()
        warnings = []
        if len(counts) < 2:
            warnings.append("only one class: training needs at least two")
        small = [c for c, n in counts.items() if n < 5]
        if small:
            warnings.append(f"fewer than 5 images in {', '.join(small)}: add more for a trustworthy accuracy")
        if counts and max(counts.values()) > 10 * max(1, min(counts.values())):
            warnings.append("classes are imbalanced more than 10:1")
        try:
            upload = json.loads(self.upload_report_path(name).read_text())
        except (OSError, ValueError):
            upload = {}
        return {
            "name": name,
            "path": str(d),
            "classes": counts,
            "n_images": sum(counts.values()),
            "warnings": warnings,
            "skipped": upload.get("skipped", []),
            "empty_classes": upload.get("empty_classes", []),
        }

    def thumbnail(self, name: str, cls: str, index: int, size: int = 96) -> bytes:
        from ..data.folders import LabelledFolder

        folder = LabelledFolder.scan(self.dataset_dir(name))
        if cls not in folder.classes:
            raise NotFoundError(f"dataset {name!r} has no class {cls!r}")
        files = [p for p, i in folder.items if folder.classes[i] == cls]
        if not 0 <= index < len(files):
            raise NotFoundError(f"class {cls!r} has {len(files)} images; no index {index}")
        return _thumb(files[index], self.dataset_dir(name), size)

    # -- evaluations ------------------------------------------------------------------------------------
    def eval_path(self, model: str, dataset: str) -> Path:
        # "<model>~<format>": an export of the model (ui/compare.py); '~' never occurs in a safe name
        who = "~".join(safe_name(part, "model name") for part in model.split("~", 1))
        return self.root / "evals" / f"{who}@{safe_name(dataset, 'dataset name')}.json"

    def _eval_file(self, key: str) -> Path:
        model, _, dataset = key.partition("@")
        path = self.eval_path(model, dataset)
        if not path.is_file():
            raise NotFoundError(f"no evaluation {key!r}", hint="evaluate the model on the dataset first")
        return path

    def evals(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted((self.root / "evals").glob("*@*.json"), key=lambda p: -p.stat().st_mtime):
            try:
                r = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            model, _, dataset = p.stem.partition("@")
            out.append(
                {
                    "key": p.stem,
                    "model": model,
                    "dataset": dataset,
                    "accuracy": r.get("accuracy"),
                    "accuracy_note": accuracy_note(r.get("accuracy"), r.get("n_images")),
                    "macro_f1": (r.get("macro") or {}).get("f1"),
                    "n_images": r.get("n_images"),
                    "n_mistakes": len(r.get("mistakes") or []),
                    "time": r.get("time"),
                }
            )
        return out

    def eval_result(self, key: str) -> dict[str, Any]:
        r = json.loads(self._eval_file(key).read_text())
        model, _, dataset = key.partition("@")
        keep = (
            "accuracy",
            "top5",
            "n_images",
            "n_skipped",
            "classes",
            "per_class",
            "macro",
            "confusion",
            "seconds",
            "time",
            "backend",
        )
        mistakes = [{k: m.get(k) for k in ("true", "pred", "score")} for m in r.get("mistakes") or []]
        for m, src in zip(mistakes, r.get("mistakes") or []):
            if str(src.get("path", "")).endswith(".txt"):  # a text model's mistake: show the words, not a picture
                m["excerpt"] = _excerpt(src["path"], r["data"])
        return {
            "key": key,
            "model": model,
            "dataset": dataset,
            **{k: r.get(k) for k in keep},
            "mistakes": mistakes,
            "accuracy_note": accuracy_note(r.get("accuracy"), r.get("n_images")),
        }

    def eval_mistake_thumb(self, key: str, index: int) -> bytes:
        r = json.loads(self._eval_file(key).read_text())
        mistakes = r.get("mistakes") or []
        if not 0 <= index < len(mistakes):
            raise NotFoundError(f"evaluation {key!r} has {len(mistakes)} mistakes; no index {index}")
        return _thumb(mistakes[index]["path"], r["data"])


def accuracy_note(acc: Any, n: Any) -> str | None:
    """An accuracy with its sample size and 95% Wilson interval: "1.00 on 2 images — 95% interval 0.34–1.00"
    (on few images one figure says little; the interval shows how little)."""
    if not isinstance(acc, (int, float)) or not isinstance(n, int) or n <= 0:
        return None
    z = 1.96
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((acc * (1 - acc) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return f"{acc:.2f} on {n} image{'s' if n != 1 else ''} — 95% interval {lo:.2f}–{hi:.2f}"


class _ImageClassifier:
    """Images only, for a bushu without bushu.model.predict."""

    def __init__(self, art):
        from ..runtime import load_backend

        self.art = art
        self.backend = (
            load_backend(art.model_path, threads=1)
            if art.model_path.suffix == ".onnx"
            else load_backend(art.model_path)
        )

    def predict(self, raw: list[bytes], k: int):
        from ..model.processing import load_image, preprocess_image, top_k

        art = self.art
        x = preprocess_image(load_image(raw[0]), art.preprocess)[None]
        logits = self.backend.infer({art.inputs[0].name: x})[art.outputs[0].name]
        return top_k(logits.reshape(logits.shape[0], -1), art.labels, art.postprocess, k=k)


def _excerpt(path: str, inside: str, chars: int = 240) -> str | None:
    p, root = Path(path).resolve(), Path(inside).resolve()
    if not p.is_relative_to(root) or not p.is_file():
        return None
    with open(p, encoding="utf-8", errors="replace") as f:
        text = f.read(chars + 1)
    return text[:chars] + ("…" if len(text) > chars else "")


def _thumb(path: str | Path, inside: str | Path, size: int = 96) -> bytes:
    """A JPEG thumbnail of an image that must lie in the folder ``inside`` (paths come from result files)."""
    from PIL import Image

    p, root = Path(path).resolve(), Path(inside).resolve()
    if not p.is_relative_to(root) or not p.is_file():
        raise NotFoundError(f"image {Path(path).name!r} is not in {root.name!r} any more")
    with Image.open(p) as img:
        img = img.convert("RGB")
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
    return buf.getvalue()
