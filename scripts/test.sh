#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole test suite. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev || exit 1
# Debian packages the tests use, installed when we can (the tests that need one skip, saying why,
# without it): chromium + chromium-driver drive the UI's browser test, espeak-ng synthesizes speech
# for the audio tests, tuxpaint-stamps-default ships real photo cut-outs (bushu.testing.stamps) and
# dataset-fashion-mnist real 28x28 photos of clothes.
apt_pkgs="chromium chromium-driver espeak-ng tuxpaint-stamps-default dataset-fashion-mnist"
missing=""
for p in $apt_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq $missing >/dev/null) \
    || echo "could not install$missing: the tests that need them will be skipped" >&2
fi
# MediaPipe's SSD MobileNetV2 (real weights) for the detection tests, from npm into a git-ignored
# cache (bushu.testing.objectron extracts it; the tests skip, saying why, without it).
npm_pkg="@mediapipe/objectron@0.4.1675468480"
if [ ! -f .cache/npm/mediapipe-objectron-0.4.1675468480.tgz ] && command -v npm >/dev/null; then
  mkdir -p .cache/npm && (cd .cache/npm && npm pack --silent "$npm_pkg" >/dev/null) \
    || echo "could not fetch $npm_pkg: the tests that need it will be skipped" >&2
fi
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
