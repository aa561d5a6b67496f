"""The top-level Python API: `import bushu` stays light, the names are lazy, and the README's Python
section (which uses only `bushu.*` names) runs as written."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bushu

ROOT = Path(__file__).resolve().parents[2]


def readme_python_section() -> str:
    """The one ```python block of the README's "## Python" section (tests/e2e/test_readme.py runs the others)."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Python\n(.*?)(?=^## )", text, flags=re.DOTALL | re.MULTILINE)
    assert section, "README has no '## Python' section"
    blocks = re.findall(r"```python\n(.*?)```", section[1], flags=re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def test_import_bushu_is_light():
    code = (
        "import bushu, sys; [getattr(bushu, n) for n in ('load', 'evaluate', 'optimize', 'export', 'plan', "
        "'serve', 'train', 'import_model', 'Artifact', 'Constraints')]; "
        "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tritonclient') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_names_are_lazy_and_unknown_names_are_attribute_errors():
    assert {"import_model", "load", "evaluate", "optimize", "export", "plan", "serve", "train"} <= set(bushu.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        bushu.nonexistent  # noqa: B018
    if importlib.util.find_spec("bushu.predict") is None:
        with pytest.raises(AttributeError, match="bushu.predict is not available"):
            bushu.predict  # noqa: B018
    else:
        assert callable(bushu.predict)


def test_functions_keep_their_names_after_the_subpackages_are_imported():
    from bushu.plan import Constraints  # noqa: F401
    from bushu.serve import app  # noqa: F401
    from bushu.train import data  # noqa: F401

    for name in ("train", "plan", "export", "serve", "evaluate"):
        assert callable(getattr(bushu, name)) and getattr(bushu, name).__module__ == "bushu.api"
    assert sys.modules["bushu.train"].TrainConfig  # the subpackage is still importable


def test_readme_python_section_uses_only_top_level_names():
    code = readme_python_section()
    assert not re.search(r"^\s*(from bushu[.\w]* import|import bushu\.)", code, flags=re.MULTILINE)
    used = set(re.findall(r"\bbushu\.(\w+)", code))
    assert used and used <= set(bushu.__all__), used - set(bushu.__all__)


def test_serve_takes_an_artifact_or_a_repository():
    with pytest.raises(bushu.BushuError, match="either `artifact` or `repository`"):
        bushu.serve()
    with pytest.raises(bushu.BushuError, match="either `artifact` or `repository`"):
        bushu.serve("art", repository="repo")


def test_readme_python_section_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(readme_python_section(), "README.md#python", "exec"), ns)  # noqa: S102 - the README is ours
    out = capsys.readouterr().out.splitlines()
    assert float(out[0]) < 1e-3  # parity
    assert "label='Egyptian cat'" in out[1]
    assert float(out[2]) == 1.0  # accuracy on the one photo
    assert 0 < float(out[3]) < ns["art"].model_path.stat().st_size / 1e6  # fp16 is smaller than the fp32 model
    assert out[4].startswith("ok ")  # the onnx export validated
    assert out[5].startswith("http://127.0.0.1:")
    assert isinstance(ns["exported"], bushu.ExportResult) and isinstance(ns["fp16"], bushu.Artifact)
    assert not ns["server"].server.repo.exists()  # the artifact's own repository is removed on stop
