"""optimize's torch work runs with OMP_WAIT_POLICY=PASSIVE unless the user chose a policy (or torch already loaded)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

SNIPPET = (
    "import os, sys\n"
    "{pre}"
    "from bushu.optimize._torch import _torch\n"
    "torch = _torch()\n"
    "print(os.environ.get('OMP_WAIT_POLICY'))\n"
)


@pytest.mark.parametrize(
    ("pre", "given", "expected"),
    [
        ("", None, "PASSIVE"),  # nothing chosen: idle threads sleep
        ("", "ACTIVE", "ACTIVE"),  # the user's choice stands
        ("import torch\n", None, "None"),  # too late to matter once libgomp has loaded: left alone
    ],
)
def test_wait_policy(pre, given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(pre=pre)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == expected
