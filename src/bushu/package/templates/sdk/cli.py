"""The SDK's command line: ``NAME-predict IMAGE [IMAGE ...] [-k N] [--json]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .predictor import Predictor, PredictorError


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Classify images with the model bundled in this SDK (offline).")
    parser.add_argument("images", nargs="+", help="image files (jpg, png, bmp, webp, ...)")
    parser.add_argument("-k", "--top-k", type=int, default=None, help="how many labels per image (default: as packaged)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--model", default=None, help="another model directory (default: the bundled one)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check of the model files")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(args.model, threads=args.threads, verify=not args.no_verify)
        results = [(image, predictor.predict(image, args.top_k)) for image in args.images]
    except PredictorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{"image": image, "predictions": [{"label": label, "score": score} for label, score in preds]}
                          for image, preds in results], indent=2))
        return 0
    for image, preds in results:
        print(image)
        for label, score in preds:
            print(f"  {score:8.4f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
