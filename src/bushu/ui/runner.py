"""Runs one UI job: ``python -m bushu.ui.runner RC_FILE [--stdout FILE] -- CMD ...``.

The exit status is written to RC_FILE (atomically) when CMD ends, so a restarted UI learns how a job
ended even if it was not running at the time. SIGTERM is passed on to CMD. With ``--stdout FILE``,
CMD's standard output (e.g. ``--json`` results) goes to FILE, which appears only if CMD succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    stdout = None
    if len(argv) >= 3 and argv[1] == "--stdout":
        stdout, argv = argv[2], argv[:1] + argv[3:]
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m bushu.ui.runner RC_FILE [--stdout FILE] -- CMD ...", file=sys.stderr)
        return 2
    rc_file, cmd = argv[0], argv[2:]
    out = open(f"{stdout}.tmp", "wb") if stdout else None  # noqa: SIM115 - closed in the finally below
    try:
        proc = subprocess.Popen(cmd, stdout=out)
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        rc = proc.wait()
    finally:
        if out:
            out.close()
    if stdout:
        if rc == 0:
            os.replace(f"{stdout}.tmp", stdout)
        else:
            os.unlink(f"{stdout}.tmp")
    tmp = f"{rc_file}.tmp"
    with open(tmp, "w") as f:
        f.write(str(rc))
    os.replace(tmp, rc_file)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
