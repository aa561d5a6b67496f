"""`bushu quickstart` end to end, through the real CLI, as a new user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CATS = ("tabby", "tiger cat", "Egyptian cat", "lynx", "Persian cat")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("qs")
    proc = subprocess.run(
        [sys.executable, "-m", "bushu", "quickstart", "-o", str(out), "--duration", "0.3", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{\n") :])
    summary["_out"] = out
    return summary


def test_real_predictions_on_real_photos(quickstart):
    preds = {p["photo"]: p["top-1"] for p in quickstart["predictions"]}
    assert any(c in preds["chelsea"] for c in CATS), preds
    assert "espresso" in preds["coffee"] or "cup" in preds["coffee"], preds


def test_parity_against_pytorch_recorded(quickstart):
    outs = quickstart["parity"]["outputs"]
    assert outs and all(o["max_abs"] < 1e-3 for o in outs)


def test_int8_step_is_smaller_and_agrees(quickstart):
    q = quickstart["int8"]
    assert q["size_ratio"] < 0.35 and q["top1_agreement"] >= 0.8, q
    assert any(r["precision"] == "int8" and r["status"] == "ok" for r in quickstart["bench"])


def test_benchmarked_every_installed_backend(quickstart):
    from bushu.runtime.registry import installed_backends

    rows = quickstart["bench"]
    assert {r["backend"] for r in rows} >= set(installed_backends())
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    assert {r["backend"] for r in ok} >= {"onnxruntime"}
    assert all(r["p50_ms"] > 0 and r["throughput"] > 0 for r in ok)


def test_wrote_triton_layout_repository_and_served_it(quickstart):
    repo = Path(quickstart["repository"])
    model = next(p for p in repo.iterdir() if p.is_dir())
    assert (model / "config.pbtxt").is_file()
    assert (model / "1" / "model.onnx").is_file()
    assert any(c in json.dumps(quickstart["served"]["top1"]) for c in CATS)
