"""The SDK's command line: ``NAME-predict INPUT [INPUT ...] [-k N] [--json]``.

An INPUT is an image file, a .wav/.flac clip, or for a text model a text itself, a .txt file, or ``-``
(standard input), as the bundled model takes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, List, Optional

from .predictor import Predictor, PredictorError

HELP = {
    "image": "image files (jpg, png, bmp, webp, ...)",
    "audio": "audio clips (.wav; .flac with soundfile)",
    "text": "texts: the text itself, a .txt file, or - for standard input",
}


def _text_input(arg: str) -> Any:
    if arg == "-":
        return sys.stdin.read()
    if arg.lower().endswith(".txt"):
        if not Path(arg).is_file():
            raise PredictorError(f"text file not found: {arg}")
        return Path(arg)
    return arg


def _shown(arg: str, kind: str) -> str:
    """File names in full; a text given on the command line, shortened to one line."""
    if kind != "text" or arg.lower().endswith(".txt"):
        return arg
    arg = " ".join(arg.split())
    return arg if len(arg) <= 60 else arg[:57] + "..."


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Classify inputs with the model bundled in this SDK (offline).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help=" / ".join(HELP.values()))
    parser.add_argument(
        "-k", "--top-k", type=int, default=None, help="how many labels per input (default: as packaged)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--model", default=None, help="another model directory (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check of the model files")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(args.model, threads=args.threads, verify=not args.no_verify)
        if predictor.kind == "tensor" or predictor.postprocess_config.get("kind") == "raw":
            return _run_raw(predictor, args)
        items = [_text_input(a) for a in args.inputs] if predictor.kind == "text" else args.inputs
        preds = [predictor.predict(item, args.top_k) for item in items]
    except PredictorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if predictor.task == "detection":  # boxes: {"box", "score", "label", "index"} per detection
        if args.json:
            print(json.dumps([{"image": arg, "detections": p} for arg, p in zip(args.inputs, preds)], indent=2))
            return 0
        for arg, p in zip(args.inputs, preds):
            print(arg)
            for d in p:
                print(f"  {d['score']:8.4f}  {d['label']}  [{', '.join(f'{v:.1f}' for v in d['box'])}]")
        return 0
    if args.json:
        key = "image" if predictor.kind == "image" else "input"  # image bundles keep their original key
        print(
            json.dumps(
                [
                    {key: arg, "predictions": [{"label": label, "score": score} for label, score in p]}
                    for arg, p in zip(args.inputs, preds)
                ],
                indent=2,
            )
        )
        return 0
    for arg, p in zip(args.inputs, preds):
        print(_shown(arg, predictor.kind))
        for label, score in p:
            print(f"  {score:8.4f}  {label}")
    return 0


def _run_raw(predictor: Predictor, args) -> int:
    """Models without classes: each INPUT is a .npz of named arrays (or a text, for a text model); print each
    output's shape and first values (all values with --json)."""
    import numpy as np

    docs = []
    for arg in args.inputs:
        if predictor.kind == "tensor":
            with np.load(arg, allow_pickle=False) as z:
                feeds = {k: z[k] for k in z.files}
            out = predictor.run(feeds)
        else:
            out = predictor.run([_text_input(arg)])
        docs.append(
            {"input": arg, "outputs": {k: {"shape": list(v.shape), "values": v.tolist()} for k, v in out.items()}}
        )
    if args.json:
        print(json.dumps(docs))
        return 0
    for d in docs:
        print(_shown(d["input"], predictor.kind))
        for k, v in d["outputs"].items():
            flat = np.asarray(v["values"]).ravel()[:5]
            print(f"  {k}: shape {v['shape']}, first values {np.round(flat, 4).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
