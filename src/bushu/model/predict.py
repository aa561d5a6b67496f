"""Raw inputs (image files, text strings, wav clips) -> model feeds -> labels with scores, without torch.

The artifact's ``preprocess.kind`` says what the model takes:

- ``image``: decode + resize/crop/normalise (bushu.model.processing);
- ``text`` with a ``tokenizer``: the Rust ``tokenizers`` package (tokenizer.json in the artifact),
  truncated at ``max_length``, padded per batch -> int64 ``input_ids``/``attention_mask``(/``token_type_ids``);
- ``text`` with ``features``: numpy TF-IDF from the stored vocabulary and idf (text_features.json);
- ``audio``: log-mel spectrogram image (bushu.model.audio), then the image steps.

``Classifier(ART).predict([...])`` is what `bushu eval`, the server's ``:classify`` endpoint and the
SDK run; they share ``Pipeline`` so they all see the same numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, MissingDependencyError, UserInputError
from .artifact import Artifact, Preprocess

__all__ = ["Classifier", "Pipeline", "TextClassifier", "tfidf_transform"]


_SPACES = re.compile(r"\s+")


def char_ngrams(text: str, n_min: int, n_max: int) -> list[str]:
    """Character n-grams (whitespace runs collapsed to one space): the tokens of text written without
    spaces between words (Chinese, Japanese), where a word pattern finds whole sentences."""
    t = _SPACES.sub(" ", text).strip()
    return [t[i : i + n] for n in range(n_min, n_max + 1) for i in range(len(t) - n + 1)]


def tfidf_tokens(desc: dict[str, Any], text: str) -> list[str]:
    """The tokens TF-IDF counts, as the stored description says: words (token_pattern) or character n-grams."""
    text = text.lower() if desc["lowercase"] else text
    if desc.get("analyzer") == "char":
        return char_ngrams(text, *desc["ngram_range"])
    return re.findall(desc["token_pattern"], text)


def tfidf_transform(desc: dict[str, Any], texts: Sequence[str]) -> np.ndarray:
    """numpy-only TF-IDF from the stored description (sklearn's sublinear tf, l2 norm)."""
    vocab, idf = desc["vocabulary"], np.asarray(desc["idf"], np.float64)
    out = np.zeros((len(texts), len(idf)), np.float32)
    for r, text in enumerate(texts):
        counts: dict[int, int] = {}
        for tok in tfidf_tokens(desc, text):
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


def load_tokenizer(path: Path, max_length: int):
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise MissingDependencyError("text models (the tokenizers package)", "serve", package="tokenizers") from e
    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length=max_length)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # to the longest in the batch
    return tok


class Pipeline:
    """One artifact's pre-processing: a list of raw inputs -> the model's feeds."""

    def __init__(self, root: Path, pp: Preprocess, input_name: str):
        self.pp, self.kind, self.input_name = pp, pp.kind, input_name
        p = pp.params
        self._tok = self._tfidf = None
        missing = [f for f in pp.files if not (root / f).is_file()]
        if missing:
            raise ArtifactError(
                f"{root} lacks {', '.join(missing)}, which its pre-processing reads",
                hint="copy the whole artifact directory (bushu.yaml, the model and these files) "
                "into the version directory",
            )
        if self.kind == "text":
            if p.get("tokenizer"):
                self._tok = load_tokenizer(root / p["tokenizer"], int(p.get("max_length", 256)))
                self.inputs = list(p.get("inputs") or ["input_ids", "attention_mask"])
            elif p.get("features"):
                self._tfidf = json.loads((root / p["features"]).read_text())
            else:
                raise ArtifactError(f"{root}: text pre-processing names neither a tokenizer nor features")

    def __call__(self, raw: Sequence[Any]) -> dict[str, np.ndarray]:
        if self.kind == "text":
            texts = [_as_text(r) for r in raw]
            if self._tfidf is not None:
                return {self.input_name: tfidf_transform(self._tfidf, texts)}
            assert self._tok is not None  # __init__ set a tokenizer or TF-IDF features
            enc = self._tok.encode_batch(texts)
            cols = {
                "input_ids": [e.ids for e in enc],
                "attention_mask": [e.attention_mask for e in enc],
                "token_type_ids": [e.type_ids for e in enc],
            }
            return {n: np.asarray(cols[n], np.int64) for n in self.inputs}
        return {self.input_name: np.stack([self.one(r) for r in raw])}

    def one(self, raw: Any) -> np.ndarray:
        """One image or clip -> float32 CHW (not for text, whose batches are padded together)."""
        return prepare_one(self.pp, raw)


def prepare_one(pp: Preprocess, raw: Any, fused: bool = False, fast_decode: bool = False) -> np.ndarray:
    """One image or clip -> float32 CHW; needs only the recorded settings (so Ray tasks can run it alone).
    ``fused``: resize and crop in one pass (processing.preprocess_image_fused; bushu predict's throughput path).
    ``fast_decode``: a large JPEG decoded at a reduced scale first (processing.jpeg_draft; bushu predict
    --fast-decode)."""
    from .processing import load_image, preprocess_image, preprocess_image_fused

    if pp.kind == "audio":
        from .audio import audio_image

        assert pp.crop is not None  # audio artifacts record the spectrogram size as crop
        return preprocess_image(audio_image(raw, pp.params, pp.crop), pp)
    img = raw if hasattr(raw, "convert") else load_image(raw, pp if fast_decode else None)
    return preprocess_image_fused(img, pp) if fused else preprocess_image(img, pp)


def _as_text(r: Any) -> str:
    if isinstance(r, (bytes, bytearray)):
        try:
            return bytes(r).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise UserInputError(f"the text is not UTF-8 (byte {e.start})", hint="send UTF-8 text") from e
    if isinstance(r, Path):
        return r.read_text(encoding="utf-8-sig")
    if not isinstance(r, str):
        raise UserInputError(f"a text model takes strings, got {type(r).__name__}")
    return r


class Classifier:
    """Raw inputs -> labels with scores, from an artifact with recorded pre-processing (onnxruntime)."""

    def __init__(self, artifact: str | Path | Artifact, backend: str | None = None, **options: Any):
        """``backend``: another runtime for the artifact's files (default onnxruntime on the model file);
        ``options``: that backend's load options (e.g. ``threads``)."""
        from ..runtime import load_backend

        self.art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        if self.art.preprocess is None:
            raise ArtifactError(
                f"{self.art.path} records no pre-processing, so it cannot take raw inputs",
                hint="train it with bushu train, or import it with --preprocess",
            )
        target: Path | str = self.art.model_path
        if backend not in (None, "onnxruntime"):
            from ..bench.bench import files_for_backends

            target = files_for_backends(self.art, self.art.model_path, [backend])[backend]
            if isinstance(target, str):
                raise ArtifactError(
                    f"backend {backend!r} cannot run {self.art.path}: {target}",
                    hint="leave --backend out for onnxruntime, or export the artifact for it",
                )
        self.backend = load_backend(target, backend or "onnxruntime", **options)
        self.pipeline = Pipeline(self.art.path, self.art.preprocess, self.backend.inputs[0].name)
        self.kind = self.pipeline.kind

    def logits(self, raw: Sequence[Any]) -> np.ndarray:
        out = self.backend.infer(self.pipeline(list(raw)))[self.backend.outputs[0].name]
        return np.asarray(out).reshape(len(raw), -1)

    def predict(self, raw: Sequence[Any], k: int = 1) -> list[list[tuple[int, str, float]]]:
        from .processing import top_k

        return top_k(self.logits(raw), self.art.labels, self.art.postprocess, k=k)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TextClassifier(Classifier):
    """Raw strings -> labels with scores, from a text artifact written by `bushu train`."""

    def __init__(self, artifact: str | Path | Artifact):
        art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        legacy = art.file("text_features")
        if (
            art.preprocess is None
            and legacy is not None
            and legacy.is_file()
            and json.loads(legacy.read_text()).get("kind") == "tfidf"
        ):  # trained before preprocess.kind "text"
            art.preprocess = Preprocess(
                kind="text", resize=None, crop=None, params={"features": art.files["text_features"]}
            )
        if art.preprocess is None or art.preprocess.kind != "text":
            raise ArtifactError(
                f"{art.path} is not a text artifact (preprocess kind "
                f"{art.preprocess.kind if art.preprocess else None!r})",
                hint="retrain it with this bushu version: bushu train DATA -o ART",
            )
        super().__init__(art)
