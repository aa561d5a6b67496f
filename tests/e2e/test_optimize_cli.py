"""`bushu optimize` through the real CLI on a real-weights face classifier (MobileNetV2 + lfw_subset head)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest


def _builders():
    path = Path(__file__).parents[1] / "integration" / "test_quantize.py"
    spec = importlib.util.spec_from_file_location("_quantize_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bushu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bushu", "optimize", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return _builders().build_face_classifier(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def int8_json(faces, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("o") / "faces-int8"
    proc = bushu(
        faces["artifact"],
        "-o",
        out,
        "--quantize",
        "int8",
        "--calib",
        faces["calib"],
        "--calib-size",
        40,
        "--data",
        faces["heldout"],
        "--max-accuracy-drop",
        1,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_json_has_before_after_rows(int8_json):
    rows = {r["model"]: r for r in int8_json["rows"]}
    assert set(rows) == {"fp32", "int8"}
    for r in rows.values():
        assert r["params"] > 1_000_000 and r["size_mb"] > 0 and r["p50_ms"] > 0 and r["throughput_b8"] > 0
    assert rows["int8"]["size_mb"] <= 0.3 * rows["fp32"]["size_mb"]
    assert rows["fp32"]["accuracy"] - rows["int8"]["accuracy"] <= 1.0
    assert "conv net" in int8_json["reason"] and "U8S8" in int8_json["reason"]
    assert Path(int8_json["artifact"], "model.onnx").is_file()


def test_table_and_next_command(faces, tmp_path):
    proc = bushu(
        faces["artifact"], "-o", tmp_path / "fp16", "--quantize", "fp16", "--calib", faces["heldout"], "--no-bench"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "before → after" in proc.stdout and "fp16" in proc.stdout and "size_mb" in proc.stdout
    assert f"bushu bench {tmp_path / 'fp16'}" in proc.stdout.replace("\n", "")


def _fails(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and lines[-1].startswith("Hint: "), proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "case", ["empty-calib", "no-calib", "dynamic-conv", "prune", "same-dir", "bad-npy", "drop-without-data"]
)
def test_bad_input_one_line_exit_2_input_untouched(faces, tmp_path, case):
    import numpy as np

    art, before = faces["artifact"], {p.name: p.read_bytes() for p in faces["artifact"].iterdir()}
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 64, 64), np.float32))
    args, needles = {
        "empty-calib": (
            ["--quantize", "int8", "--calib", tmp_path / "empty"],
            ["no images", "float32[batch, 3, 112, 112]"],
        ),
        "no-calib": (["--quantize", "int8"], ["needs calibration data", "--calib"]),
        "dynamic-conv": (["--quantize", "dynamic"], ["conv net"]),
        "prune": (["--quantize", "int8", "--prune", "0.3"], ["no PyTorch module structure"]),
        "same-dir": (["--quantize", "fp16"], ["new directory"]),
        "bad-npy": (["--quantize", "int8", "--calib", tmp_path / "wrong.npy"], ["shape [4, 3, 64, 64]"]),
        "drop-without-data": (
            ["--quantize", "int8", "--calib", faces["calib"], "--max-accuracy-drop", "1"],
            ["--data"],
        ),
    }[case]
    target = art if case == "same-dir" else out
    _fails(bushu(art, "-o", target, *args), *needles)
    assert not out.exists()
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before


def test_missing_artifact(tmp_path):
    _fails(bushu(tmp_path / "nope", "-o", tmp_path / "out", "--quantize", "fp16"), "not found")
