"""The offline predictor: ONNX Runtime and numpy, plus Pillow (images, audio) or tokenizers (MiniLM text);
no PyTorch, no bushu.

    from PACKAGE import Predictor
    p = Predictor()                      # the model shipped inside this package
    p.predict("cat.jpg")                 # -> [("tabby", 0.61), ("tiger cat", 0.22), ...]
    p.predict_batch(["a.jpg", "b.png"], top_k=1)
    p.logits(["a.jpg"])                  # raw model outputs, shape [batch, classes]

A detection model (``Predictor().task == "detection"``) answers with boxes in the image's own pixels:
``p.predict("street.jpg")`` -> ``[{"box": [x1, y1, x2, y2], "score": 0.91, "label": "car", "index": 2}, ...]``,
``p.detect_batch(images, score=0.3, iou=0.5, max_det=20)`` for a batch.

What an input is follows the model's kind (``Predictor().kind``): an image (path, bytes, PIL image,
HxWx3 uint8 array), a text (a str is the text itself; a pathlib.Path or bytes are read as UTF-8), or an
audio clip (.wav/.flac path or its bytes).

``Predictor(path)`` also takes another model directory (one holding ``sdk.json``) or an unpacked
bundle. Every model file is checked against ``SHA256SUMS`` when the predictor loads: a changed or
corrupted file raises ``ChecksumError`` instead of giving wrong answers.

This file was written by ``bushu package``; the pre-processing is the same as the bushu server's
(text.py and audio.py are bushu's own code, copied into the bundle), so the predictions match the
server's ``:classify`` answer.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from .errors import ChecksumError, PredictorError

__all__ = ["ChecksumError", "Predictor", "PredictorError", "verify_checksums"]

CONFIG_FILE = "sdk.json"
CHECKSUM_FILE = "SHA256SUMS"
ImageLike = Union[str, os.PathLike, bytes, "np.ndarray", Any]  # path, encoded bytes, HWC uint8 array, PIL image
InputLike = Union[ImageLike, str]  # an image, a text or an audio clip, as the model's kind says
NOUNS = {"image": "image", "text": "text", "audio": "clip"}


_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksums(model_dir: Union[str, os.PathLike]) -> List[str]:
    """Check every file listed in ``SHA256SUMS``; returns the names checked, raises ChecksumError."""
    model_dir = Path(model_dir)
    sums = model_dir / CHECKSUM_FILE
    if not sums.is_file():
        raise ChecksumError(f"{sums} is missing: cannot verify the model files. Reinstall the SDK bundle.")
    checked = []
    for n, line in enumerate(sums.read_text().splitlines(), 1):
        if not line.strip():
            continue
        want, sep, name = line.partition("  ")
        name = name.lstrip("*")
        if not sep or len(want) != 64 or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ChecksumError(f"{sums} line {n} is malformed: {line!r}")
        path = model_dir / name
        if not path.is_file():
            raise ChecksumError(f"model file {name!r} is missing from {model_dir} (listed in {CHECKSUM_FILE})")
        got = _sha256(path)
        if got != want:
            raise ChecksumError(
                f"model file {name!r} in {model_dir} failed its SHA-256 check: it is {got[:16]}..., "
                f"the bundle recorded {want[:16]}...; the file was changed or corrupted after packaging. "
                "Reinstall the SDK bundle (or pass verify=False if you changed it on purpose)."
            )
        checked.append(name)
    return checked


def _find_model_dir(path: Union[str, os.PathLike, None]) -> Path:
    if path is None:
        return Path(__file__).resolve().parent / "model"
    p = Path(path)
    if (p / CONFIG_FILE).is_file():
        return p
    if p.is_dir():  # an unpacked bundle: src/<package>/model/sdk.json
        found = sorted(p.glob(f"src/*/model/{CONFIG_FILE}")) + sorted(p.glob(f"*/model/{CONFIG_FILE}"))
        if found:
            return found[0].parent
    raise PredictorError(f"{p} is not a model directory (no {CONFIG_FILE} in it or in src/*/model/)")


def _load_image(src: ImageLike):
    from PIL import Image, UnidentifiedImageError

    if hasattr(src, "convert"):  # already a PIL image
        return src
    if isinstance(src, np.ndarray):
        if src.dtype != np.uint8 or src.ndim not in (2, 3):
            raise PredictorError(f"an array image must be HxW or HxWxC uint8, got {src.dtype} {src.shape}")
        return Image.fromarray(src)
    try:
        img = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
        img.load()
    except FileNotFoundError:
        raise PredictorError(f"image not found: {str(src)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        name = "the given bytes" if isinstance(src, (bytes, bytearray)) else str(src)
        raise PredictorError(f"cannot decode {name} as an image: {e}") from e
    return img


class Predictor:
    """Classifier over the bundled ONNX model: images, texts or audio clips (``kind``).

    path: a model directory (default: the one inside this package). providers: ONNX Runtime
    execution providers in order of preference (default: CPU). threads: intra-op threads (default:
    ONNX Runtime's choice). verify: check SHA256SUMS before loading (default: True).
    """

    def __init__(
        self,
        path: Union[str, os.PathLike, None] = None,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        verify: bool = True,
    ):
        self.model_dir = _find_model_dir(path)
        if verify:
            verify_checksums(self.model_dir)
        try:
            self.config = json.loads((self.model_dir / CONFIG_FILE).read_text())
        except ValueError as e:
            raise PredictorError(f"{self.model_dir / CONFIG_FILE} is not valid JSON: {e}") from e
        self.preprocess_config = self.config.get("preprocess") or {}
        # no pre-processing recorded: a model of named tensors (detector heads, multi-input models): use run()
        self.kind = self.preprocess_config.get("kind", "image") if self.preprocess_config else "tensor"
        self.noun = NOUNS.get(self.kind, "input")
        self.postprocess_config = self.config.get("postprocess") or {}
        self.task = self.config.get("task") or "classification"
        labels_file = self.config.get("labels")
        self.labels: List[str] | None = None
        if labels_file:
            self.labels = (self.model_dir / labels_file).read_text(encoding="utf-8").splitlines()

        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(
            str(self.model_dir / self.config["model"]), opts, providers=list(providers or ["CPUExecutionProvider"])
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._head = None
        if self.task == "detection":
            from .detection import DetectionHead

            size = (self.preprocess_config.get("params") or {}).get("size") or [0, 0]
            self._head = DetectionHead(
                self.postprocess_config.get("params") or {}, self.labels, (int(size[0]), int(size[-1]))
            )
            self._one_at_a_time = self.session.get_inputs()[0].shape[:1] == [1]
        self._tokenizer = self._tfidf = None
        params = self.preprocess_config.get("params") or {}
        if self.kind == "text":
            from .text import load_tokenizer

            if params.get("tokenizer"):
                self._tokenizer = load_tokenizer(
                    self.model_dir / params["tokenizer"], int(params.get("max_length", 256))
                )
                self.text_inputs = list(params.get("inputs") or ["input_ids", "attention_mask"])
            else:
                self._tfidf = json.loads((self.model_dir / params["features"]).read_text(encoding="utf-8"))
        elif self.kind not in ("image", "audio", "tensor"):
            raise PredictorError(
                f"{self.model_dir / CONFIG_FILE} has pre-processing kind {self.kind!r}; this SDK "
                "reads image, text and audio models. Repackage it with a newer bushu."
            )

    # -- pre-processing (same steps as bushu.model.processing.preprocess_image) ------------------------
    def preprocess(self, image: ImageLike) -> np.ndarray:
        """One image (or clip, for an audio model) -> float32 array laid out as the model wants it (no batch
        dimension). Texts are batched together: see ``feeds``."""
        return self._prepare(image)[0]

    def _prepare(self, image: ImageLike) -> Tuple[np.ndarray, Any]:
        """preprocess(), plus for a detector how a point of the image maps into the model's input."""
        if self.kind == "text":
            raise PredictorError("a text model's inputs are batched together: use feeds([...]) or predict(text)")
        from PIL import Image

        pp = self.preprocess_config
        if self.kind == "audio":  # the clip's log-mel spectrogram, as an image
            from .audio import audio_image

            image = audio_image(image, pp.get("params") or {}, int(pp["crop"]))
        img = _load_image(image).convert("RGB")
        resample = {
            "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC,
            "nearest": Image.Resampling.NEAREST,
        }[pp.get("interpolation", "bilinear")]
        transform = None
        if (pp.get("params") or {}).get("size"):  # a detector: the whole image, letterboxed or stretched
            from types import SimpleNamespace

            from .detection import fit_image

            size = img.size
            img, t = fit_image(
                img, SimpleNamespace(params=pp["params"], interpolation=pp.get("interpolation", "bilinear"))
            )
            transform = (*t, *size)
        if pp.get("resize"):
            w, h = img.size
            s = pp["resize"] / min(w, h)
            img = img.resize((max(1, round(w * s)), max(1, round(h * s))), resample)
        if pp.get("crop"):
            w, h = img.size
            c = pp["crop"]
            left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
            img = img.crop((left, top, left + c, top + c))
        x = np.asarray(img, dtype=np.float32) * np.float32(pp.get("scale", 1 / 255))
        if pp.get("color") == "BGR":
            x = x[..., ::-1]
        x = (x - np.asarray(pp.get("mean", (0.0, 0.0, 0.0)), np.float32)) / np.asarray(
            pp.get("std", (1.0, 1.0, 1.0)), np.float32
        )
        if pp.get("layout", "NCHW") == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x, dtype=np.float32), transform

    def feeds(self, inputs: Sequence[InputLike]) -> Dict[str, np.ndarray]:
        """A batch of raw inputs -> the model's input arrays by name (texts padded to the longest)."""
        if self.kind == "tensor":
            raise PredictorError("this model takes named arrays, not files: use run({name: array, ...})")
        if isinstance(inputs, (str, bytes)) or not inputs:
            raise PredictorError(f"give a list of {self.noun}s" if inputs else f"no {self.noun}s given")
        try:
            if self.kind != "text":
                return {self.input_name: np.stack([self.preprocess(x) for x in inputs])}
            from .text import _as_text, tfidf_transform

            texts = [_as_text(x) for x in inputs]
        except FileNotFoundError as e:
            raise PredictorError(f"{self.noun} not found: {e.filename}") from None
        except OSError as e:  # a directory, no permission
            raise PredictorError(f"cannot read {e.filename}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise PredictorError(f"a text file is not UTF-8 (byte {e.start}); save it as UTF-8") from None
        if self._tfidf is not None:
            return {self.input_name: tfidf_transform(self._tfidf, texts)}
        if self._tokenizer is None:
            raise PredictorError(f"this {self.kind} model has no tokenizer (the package is incomplete)")
        enc = self._tokenizer.encode_batch(texts)
        cols = {
            "input_ids": [e.ids for e in enc],
            "attention_mask": [e.attention_mask for e in enc],
            "token_type_ids": [e.type_ids for e in enc],
        }
        return {name: np.asarray(cols[name], np.int64) for name in self.text_inputs}

    # -- inference -----------------------------------------------------------------------------------
    def run(self, inputs: Union[Mapping[str, np.ndarray], Sequence[InputLike]]) -> Dict[str, np.ndarray]:
        """Every output by name, for named arrays ({"images": x} or {"input_ids": ..., ...}) or, for a text
        model, a list of strings (tokenized as the model was exported)."""
        if isinstance(inputs, Mapping):
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
            want = {i.name: i for i in self.session.get_inputs()}
            unknown = sorted(set(feeds) - set(want))
            missing = sorted(set(want) - set(feeds))
            if unknown or missing:
                raise PredictorError(
                    f"the model takes inputs {sorted(want)}; "
                    + (f"unknown: {unknown} " if unknown else "")
                    + (f"missing: {missing}" if missing else "")
                )
            for name, i in want.items():
                dt = _ORT_TYPES.get(i.type)
                if dt is not None and feeds[name].dtype != dt:
                    raise PredictorError(f"input {name!r} is {feeds[name].dtype}, the model takes {np.dtype(dt)}")
                if feeds[name].ndim != len(i.shape):
                    raise PredictorError(
                        f"input {name!r} has shape {list(feeds[name].shape)}, the model takes "
                        f"{i.shape} (rank {len(i.shape)})"
                    )
        else:
            feeds = self.feeds(inputs)
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds)))

    def logits(self, inputs: Sequence[InputLike]) -> np.ndarray:
        """Raw model outputs for a batch of inputs, shape [batch, classes]."""
        out = self.session.run([self.output_name], self.feeds(inputs))[0]
        return out.reshape(out.shape[0], -1)

    def scores(self, inputs: Sequence[InputLike]) -> np.ndarray:
        """Class scores (softmax of the logits when the model was packaged with softmax on)."""
        z = self.logits(inputs).astype(np.float64)
        if not self.postprocess_config.get("softmax", True):
            return z
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def detect_batch(
        self,
        images: Sequence[ImageLike],
        score: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
    ) -> List[List[Dict[str, Any]]]:
        """A detector's boxes for each image, best score first: {"box": [x1, y1, x2, y2] in the image's
        pixels, "score", "label", "index"}; score / iou / max_det default to the packaged settings."""
        if self._head is None:
            raise PredictorError(f"{self.config.get('name')!r} is a {self.task} model, not a detector")
        if isinstance(images, (str, bytes)) or not images:
            raise PredictorError("give a list of images" if images else "no images given")
        try:
            self._head.settings(score, iou, max_det)
            prepared = [self._prepare(x) for x in images]
        except FileNotFoundError as e:
            raise PredictorError(f"image not found: {e.filename}") from None
        batch = np.stack([p[0] for p in prepared])
        names = [o.name for o in self.session.get_outputs()]
        step = 1 if self._one_at_a_time else len(batch)
        parts = [
            dict(zip(names, self.session.run(names, {self.input_name: batch[i : i + step]})))
            for i in range(0, len(batch), step)
        ]
        outputs = {n: np.concatenate([p[n] for p in parts]) for n in names}
        dets = self._head(outputs, [p[1] for p in prepared], score, iou, max_det)
        return [[d.to_dict() for d in row] for row in dets]

    def predict_batch(self, inputs: Sequence[InputLike], top_k: int | None = None) -> List[List[Any]]:
        """The top_k (label, score) pairs for each input, best first (a detector: its boxes as dicts, at most top_k)."""
        if self._head is not None:
            return self.detect_batch(inputs, max_det=top_k)
        scores = self.scores(inputs)
        k = min(int(top_k or self.postprocess_config.get("top_k", 5)), scores.shape[-1])
        if k < 1:
            raise PredictorError(f"top_k must be >= 1, got {top_k}")
        out = []
        for row in scores:
            idx = np.argsort(-row)[:k]
            out.append([(self.label(int(i)), float(row[i])) for i in idx])
        return out

    def predict(self, item: InputLike, top_k: int | None = None) -> List[Any]:
        """The top_k (label, score) pairs for one image, text or clip, best first (a detector: box dicts)."""
        return self.predict_batch([item], top_k)[0]

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels and index < len(self.labels) else str(index)

    def __repr__(self) -> str:
        return f"Predictor({str(self.model_dir)!r}, model={self.config.get('name')!r}, kind={self.kind!r})"
