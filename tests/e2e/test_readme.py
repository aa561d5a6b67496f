"""The README is executable: its first screen, its `console` examples and its Python examples run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def test_first_screen_has_the_two_commands():
    first_lang, first = BLOCKS[0]
    lines = [ln.split("#")[0].strip() for ln in first.splitlines() if ln.strip()]
    assert lines == ["make quickstart", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^quickstart:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "bushu quickstart" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _console_commands() -> list[str]:
    cmds = []
    for lang, body in BLOCKS:
        if lang == "console":
            cmds += [ln[2:] for ln in body.splitlines() if ln.startswith("$ ")]
    return cmds


@pytest.mark.slow
def test_console_examples_run(tmp_path):
    """Each `$ bushu ...` line of the README runs, in order, in one scratch directory."""
    cmds = _console_commands()
    assert cmds, "README has no console examples"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for cmd in cmds:
        argv = shlex.split(cmd)
        if argv[:2] == ["bushu", "serve"] or argv[0] == "curl":
            continue  # long-running / needs a server: covered by the server tests
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


def test_python_examples_run(tmp_path, monkeypatch):
    """Every ```python block but the "## Python" section's, which tests/integration/test_api.py runs."""
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    api_section = re.search(r"^## Python\n(.*?)(?=^## )", README, flags=re.S | re.M)
    for lang, body in BLOCKS:
        if lang == "python" and not (api_section and body in api_section[1]):
            exec(compile(body, "README.md", "exec"), ns)
