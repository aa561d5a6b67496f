"""`bushu export` as a user runs it: the installed command, its table, its files, its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

BUSHU = str(Path(sys.executable).parent / "bushu")

NET = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(1)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(6, 4)).eval()
""")


def bushu(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([BUSHU, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "cli_export_net.py").write_text(NET)
    proc = bushu("import", "cli_export_net:build", "--input-shape", "1,3,16,16", "-o", "art", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "art"


def test_list_formats():
    proc = bushu("export", "--list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["format"]: r for r in json.loads(proc.stdout)}
    assert rows["ncnn"]["runs_here"] == "ncnn" and rows["aoti"]["in_all"] is False
    assert rows["coreml"]["runs_here"].startswith("no")
    for fmt in ("openvino-int8", "tflite-int8", "mnn-int8", "ncnn-int8"):
        assert rows[fmt]["precision"] == "int8" and rows[fmt]["needs"].endswith("+ --data"), rows[fmt]


def test_export_json_is_clean_and_files_run(art, tmp_path):
    proc = bushu("export", str(art), "--format", "onnx,ncnn,mnn", "-o", str(tmp_path), "--json", "--samples", "4")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = json.loads(proc.stdout)["rows"]  # MNN and pnnx print to stdout; none of it may leak into --json
    assert [(r["format"], r["status"]) for r in rows] == [("onnx", "ok"), ("ncnn", "ok"), ("mnn", "ok")]
    # each exported directory is an artifact the user can hand to other commands
    from bushu.runtime import load_backend
    from bushu.validate import run_model

    x = np.random.default_rng(7).standard_normal((2, 3, 16, 16)).astype(np.float32)
    ref = run_model(art / "model.onnx", {"input": x})
    for fmt, backend, model in (("ncnn", "ncnn", "model.ncnn.param"), ("mnn", "mnn", "model.mnn")):
        with load_backend(tmp_path / fmt / model, backend) as b:
            got = b.infer({"input": x})
        np.testing.assert_allclose(got["output0"], ref["output0"], atol=1e-4, err_msg=fmt)


def test_table_and_next_step(art, tmp_path):
    proc = bushu("export", str(art), "-f", "openvino", "-f", "onnx-fp16", "-o", str(tmp_path), "--no-bench")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "openvino" in proc.stdout and "onnx-fp16" in proc.stdout and "ok" in proc.stdout
    assert "export.md" in proc.stdout and "next: bushu bench" in proc.stdout
    assert (tmp_path / "openvino" / "model.xml").is_file() and (tmp_path / "openvino" / "model.bin").is_file()


def test_bench_reads_an_exported_artifact(art, tmp_path):
    assert bushu("export", str(art), "-f", "ncnn", "-o", str(tmp_path), "--no-bench").returncode == 0
    proc = bushu("bench", str(tmp_path / "ncnn"), "--backend", "ncnn", "--batch", "1", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = json.loads(proc.stdout)
    rows = rows["results"]
    assert rows[0]["backend"] == "ncnn" and rows[0]["status"] == "ok" and rows[0]["p50_ms"] > 0


def test_unknown_format_did_you_mean(art, tmp_path):
    proc = bushu("export", str(art), "--format", "onnx,ncnnn", "-o", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown export format 'ncnnn'; did you mean 'ncnn'" in proc.stderr
    assert not (tmp_path / "onnx").exists()  # nothing was exported before the names were checked


def test_int8_without_data_is_a_one_line_error(art, tmp_path):
    proc = bushu("export", str(art), "--format", "onnx,tflite_int8", "-o", str(tmp_path))
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "tflite-int8 need calibration images" in proc.stderr and "--data DIR" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "onnx").exists()


def test_calib_size_limits_the_calibration_images(art, tmp_path):
    from PIL import Image

    data = tmp_path / "calib"
    data.mkdir()
    rng = np.random.default_rng(3)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "out"
    proc = bushu(
        "export",
        str(art),
        "-f",
        "mnn-int8",
        "-o",
        str(out),
        "--data",
        str(data),
        "--calib-size",
        "3",
        "--no-bench",
        "--json",
    )
    log = (out / "logs" / "mnn-int8.log").read_text()
    assert f"calibration: 3 sample(s) from {data}" in log, proc.stderr + log
    proc = bushu("export", str(art), "-f", "mnn-int8", "-o", str(out), "--data", str(data), "--calib-size", "0")
    assert proc.returncode == 2 and "--calib-size" in proc.stderr


def test_missing_arguments_and_artifact(tmp_path):
    proc = bushu("export", "--format", "onnx")
    assert proc.returncode == 2 and "needs ART" in proc.stderr
    proc = bushu("export", str(tmp_path / "nope"), "--format", "onnx", "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "artifact not found" in proc.stderr


@pytest.mark.slow
def test_format_all(art, tmp_path):
    proc = bushu("export", str(art), "--format", "all", "-o", str(tmp_path), "--json", "--samples", "4")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = {r["format"]: r for r in json.loads(proc.stdout)["rows"]}
    from bushu.export import FORMATS

    assert set(rows) == {n for n, f in FORMATS.items() if f.in_all}
    assert all(r["status"] in ("ok", "exported", "skipped") for r in rows.values()), rows
    assert all(r["reason"] for r in rows.values() if r["status"] != "ok")  # every skip says why
    for fmt in ("openvino-int8", "tflite-int8", "mnn-int8"):  # int8 without --data: skipped, saying what to pass
        assert rows[fmt]["status"] == "skipped" and "--data" in rows[fmt]["reason"], rows[fmt]
    for fmt in ("onnx", "openvino", "ncnn", "mnn", "torchscript", "pt2", "tflite"):
        assert rows[fmt]["status"] == "ok", rows[fmt]
