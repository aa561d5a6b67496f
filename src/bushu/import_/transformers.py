"""A Hugging Face Transformers model folder (config.json + weights + tokenizer) -> a module bushu exports.

Exported the way optimum's ``feature-extraction`` / ``text-classification`` ONNX configs do it: inputs
``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the model has token types), int64,
``[batch, sequence_length]``; output ``last_hidden_state`` (or ``logits`` for a sequence classifier).
optimum-onnx itself is not used: its release needs transformers 4.57 and tokenizers 0.22, which would
downgrade the transformers 5.x / tokenizers 0.23 bushu's other extras use.

The tokenizer files are copied into the artifact (beside bushu.yaml) and the text pre-processing is
recorded (bushu.model.predict.Pipeline), so the server and the SDK take raw strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, ModelLoadError, UserInputError
from ..inputs import InputRequest
from ..model.artifact import Preprocess
from ..spec import TensorSpec

__all__ = ["load_folder"]

WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
)
SEQ = "sequence_length"
SEQ_TYPICAL = 128


def _check_folder(folder: Path) -> None:
    if not any((folder / w).is_file() for w in WEIGHTS):
        raise UserInputError(
            f"{folder} has config.json but no weights (expected one of {', '.join(WEIGHTS[:2])})",
            hint="download the whole model folder (e.g. huggingface-cli download NAME --local-dir DIR) and import DIR",
        )
    if not any(
        (folder / t).is_file()
        for t in ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
    ):
        raise UserInputError(
            f"{folder} has no tokenizer (tokenizer.json, vocab.txt, ...), which text inputs need",
            hint="save the tokenizer into the folder: AutoTokenizer.from_pretrained(NAME).save_pretrained(DIR)",
        )


def load_folder(folder: Path, req: InputRequest) -> tuple[Any, Preprocess, list[TensorSpec], dict[str, Any]]:
    """-> (module taking the int64 inputs positionally, text pre-processing, example specs, provenance details)."""
    _check_folder(folder)
    try:
        import torch
        import transformers
    except ImportError as e:
        raise MissingDependencyError("Hugging Face model folders", "train", package="transformers") from e
    config = json.loads((folder / "config.json").read_text())
    classifier = any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or [])
    auto = transformers.AutoModelForSequenceClassification if classifier else transformers.AutoModel
    try:
        model = auto.from_pretrained(str(folder), local_files_only=True).eval()
    except Exception as e:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError...
        raise ModelLoadError(f"{folder}: transformers cannot load the model: {str(e).splitlines()[0][:300]}") from e
    import inspect

    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"] + (
        ["token_type_ids"] if "token_type_ids" in params and config.get("type_vocab_size", 0) else []
    )
    output = "logits" if classifier else "last_hidden_state"
    max_pos = int(config.get("max_position_embeddings") or 512)
    tok_files = _tokenizer_files(folder)
    max_len = min(max_pos, _tokenizer_max(folder), 512)

    class Wrapped(torch.nn.Module):
        input_names, output_names = names, [output]
        dynamic_axes = {n: {1: SEQ} for n in names} | ({output: {1: SEQ}} if not classifier else {})

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args):
            return getattr(self.model(**dict(zip(names, args, strict=True)), return_dict=True), output)

    given = req.given()
    # the inputs share [batch, seq]: one stated input sizes the others (--input input_ids:1x8:int64 alone)
    stated = next((tuple(given[n]) for n in names if len(given.get(n) or ()) == 2), None)
    example = [TensorSpec(n, "int64", given.get(n) or stated or (1, min(SEQ_TYPICAL, max_len))) for n in names]
    pre = Preprocess(
        kind="text",
        resize=None,
        crop=None,
        params={"tokenizer": "tokenizer.json", "max_length": max_len, "inputs": names, "files": sorted(tok_files)},
    )
    details = {
        "transformers_folder": str(folder),
        "architecture": (config.get("architectures") or ["?"])[0],
        "exporter_note": "optimum-style IO names and dynamic axes (optimum-onnx not installed: it would "
        "downgrade transformers/tokenizers)",
        "seq": {"typical": min(SEQ_TYPICAL, max_len), "max": max_pos},
        "files": tok_files,
    }
    labels = config.get("id2label") if classifier else None
    if labels:
        details["labels"] = [labels[str(i)] for i in range(len(labels))]
    return Wrapped().eval(), pre, example, details


def _tokenizer_max(folder: Path) -> int:
    cfg = folder / "tokenizer_config.json"
    v = json.loads(cfg.read_text()).get("model_max_length") if cfg.is_file() else None
    return int(v) if isinstance(v, (int, float)) and v < 1e6 else 512


def _tokenizer_files(folder: Path) -> dict[str, Path | bytes]:
    """The tokenizer files to keep; a folder with only vocab files gets its tokenizer.json written by transformers."""
    files: dict[str, Path | bytes] = {n: folder / n for n in TOKENIZER_FILES if (folder / n).is_file()}
    if "tokenizer.json" not in files:
        import tempfile

        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True)
            with tempfile.TemporaryDirectory() as d:
                tok.backend_tokenizer.save(str(Path(d) / "tokenizer.json"))
                files["tokenizer.json"] = (Path(d) / "tokenizer.json").read_bytes()
        except Exception as e:  # noqa: BLE001
            raise UserInputError(
                f"{folder}: no tokenizer.json, and transformers cannot build a fast tokenizer "
                f"from its files: {str(e).splitlines()[0][:200]}"
            ) from e
    return files
