#!/usr/bin/env bash
# Set up .venv with the dev extras and run the whole test suite. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev || exit 1
# The UI's browser test drives Debian's chromium and the audio tests synthesize speech with espeak-ng;
# install them when we can (those tests skip, saying why, without them).
if { ! command -v chromium >/dev/null || ! command -v espeak-ng >/dev/null; } \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver espeak-ng >/dev/null) \
    || echo "could not install chromium/espeak-ng: the browser and audio tests will be skipped" >&2
fi
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
