"""Runs one UI job: ``python -m bushu.ui.runner RC_FILE -- CMD ...``.

The exit status is written to RC_FILE (atomically) when CMD ends, so a restarted UI learns how a job
ended even if it was not running at the time. SIGTERM is passed on to CMD.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m bushu.ui.runner RC_FILE -- CMD ...", file=sys.stderr)
        return 2
    rc_file, cmd = argv[0], argv[2:]
    proc = subprocess.Popen(cmd)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    rc = proc.wait()
    tmp = f"{rc_file}.tmp"
    with open(tmp, "w") as f:
        f.write(str(rc))
    os.replace(tmp, rc_file)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
