"""`bushu plan` as a user runs it: the real CLI in a subprocess, the written repository served by
`bushu serve` in another, queried with the stock tritonclient."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FAST = [
    "--backend",
    "onnxruntime",
    "--precision",
    "fp32",
    "--precision",
    "int8",
    "--threads",
    "1",
    "--batch-sizes",
    "1,4",
    "--duration",
    "0.6",
    "--bench-duration",
    "0.15",
    "--serve-top",
    "2",
    "--budget",
    "4m",
]


def _tiny(root: Path, with_module: bool = False) -> dict[str, Path]:
    path = Path(__file__).parents[1] / "integration" / "test_plan.py"
    spec = importlib.util.spec_from_file_location("_plan_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_tiny_classifier(root, with_module=with_module)


def bushu(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bushu", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return _tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def planned(tiny, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("p") / "plan"
    proc = bushu(
        "plan",
        tiny["artifact"],
        "--data",
        tiny["data"],
        "-o",
        out,
        "--concurrency",
        2,
        "--max-p99-ms",
        5000,
        "--max-accuracy-drop",
        5,
        *FAST,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"json": json.loads(proc.stdout), "out": out}


def test_json_has_plain_keys(planned):
    j = planned["json"]
    assert j["met"] is True and j["verification"]["passed"] is True
    for k in (
        "config",
        "backend",
        "precision",
        "threads",
        "instances",
        "max_batch_size",
        "max_queue_delay_us",
        "p50_ms",
        "p99_ms",
        "throughput",
        "size_mb",
        "accuracy",
    ):
        assert j["chosen"][k] is not None, k
    assert j["env"]["physical_cores"] >= 1 and j["constraints"]["max_p99_ms"] == 5000
    # the leaders were served again; the choice says how sure it is
    conf = j["confidence"]
    assert conf["level"] == "high" and conf["samples"] >= 299 and conf["p99_bound_ms"] < 5000
    assert j["confirmation"]["chosen"] == j["chosen"]["config"]
    assert Path(j["report"]).is_file() and Path(j["repository"]).is_dir()


def test_bushu_serve_runs_the_repository_as_is(planned):
    import tritonclient.grpc as grpcclient

    j = planned["json"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bushu",
            "serve",
            j["repository"],
            "--http-port",
            "-1",
            "--grpc-port",
            "0",
            "--metrics-port",
            "-1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        for line in proc.stdout:
            if m := re.match(r"gRPC\s+(\S+)", line):
                url = m[1]
            if line.startswith("ready"):
                break
        assert url, "the server did not start"
        c = grpcclient.InferenceServerClient(url)
        name = Path(j["model_dir"]).name
        cfg = c.get_model_config(name, as_json=True)["config"]
        assert int(cfg["max_batch_size"]) == j["chosen"]["max_batch_size"]
        x = np.zeros((1, 3, 32, 32), np.float32)
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        assert c.infer(name, [inp]).as_numpy("logits").shape == (1, 2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        proc.stdout.close()


def test_table_output_and_unmet_constraints_exit_1(tiny, planned):
    proc = bushu(
        "plan",
        tiny["artifact"],
        "--data",
        tiny["data"],
        "-o",
        planned["out"],
        "--concurrency",
        2,
        "--max-p99-ms",
        0.001,
        *FAST,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())
    assert "Pareto front" in out and "nothing meets the constraints" in out and "--max-p99-ms" in out
    assert "relax to --max-p99-ms" in out


def test_concurrency_1_serves_only_what_can_help_and_says_how_sure(tiny, planned):
    """At one client a batch never holds two requests and a queue delay only waits: neither is served,
    nor a second instance; the table output ends with how sure the choice is."""
    proc = bushu(
        "plan", tiny["artifact"], "--data", tiny["data"], "-o", planned["out"], "--concurrency", 1,
        "--max-p99-ms", 5000, *FAST,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    j = json.loads((planned["out"] / "plan.json").read_text())
    served = [c for c in j["candidates"] if c["status"] == "ok"]
    assert served and all(c["max_batch_size"] == 1 and c["max_queue_delay_us"] == 0 for c in served)
    assert all(c["instances"] == 1 for c in served) and {r["batch"] for r in j["in_process"]} == {1}
    assert "cannot help at concurrency 1" in j["search"]["skipped"]
    out = " ".join(proc.stdout.split())
    assert "how sure: high:" in out and "under the 5000 ms target" in out


@pytest.mark.parametrize(
    "target, words", [("gpu", "not available here"), ("edge-tflite", "not available here"), ("tpu", "unknown target")]
)
def test_targets_other_than_cpu_fail_clearly(tiny, tmp_path, target, words):
    gpu_here = subprocess.run(["which", "nvidia-smi"], capture_output=True).returncode == 0
    if target == "gpu" and gpu_here:
        words = "CPU deployments only"
    proc = bushu("plan", tiny["artifact"], "--data", tiny["data"], "-o", tmp_path / "o", "--target", target)
    assert proc.returncode == 2
    assert words in proc.stderr and "Hint:" in proc.stderr


def test_bad_constraint_is_a_clear_error(tiny, tmp_path):
    proc = bushu("plan", tiny["artifact"], "--data", tiny["data"], "-o", tmp_path / "o", "--min-accuracy", 150)
    assert proc.returncode == 2 and "percentage" in proc.stderr


def test_compress_on_an_onnx_only_artifact_says_why_it_is_skipped(tiny, planned):
    proc = bushu(
        "plan",
        tiny["artifact"],
        "--data",
        tiny["data"],
        "-o",
        planned["out"],
        "--concurrency",
        2,
        "--max-p99-ms",
        5000,
        "--compress",
        "prune0.3",
        *FAST,
        "--no-verify",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = " ".join(proc.stdout.split())
    assert "Variants (size, accuracy)" in out and "onnxruntime/fp32+prune0.3: skipped:" in out
    assert "no PyTorch module" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["--compress", "quant0.5"], "not a compression spec"),
        (["--compress", "prune2"], "between 0 and 1"),
        (["--train", "."], "no --compress spec"),
    ],
)
def test_bad_compress_options_are_clear_errors(tiny, tmp_path, args, words):
    proc = bushu("plan", tiny["artifact"], "--data", tiny["data"], "-o", tmp_path / "o", *args)
    assert proc.returncode == 2 and words in proc.stderr and "Hint:" in proc.stderr, proc.stderr[-2000:]


def test_compressed_model_wins_a_size_bound(tmp_path):
    """--compress prune0.5 --train: the pruned model is the only one under --max-size-mb; it is
    chosen, written and verified, and the repository serves the pruned model file."""
    pytest.importorskip("torch_pruning")
    m = _tiny(tmp_path, with_module=True)
    out = tmp_path / "plan"
    fast = FAST[:4] + FAST[6:]  # fp32 only: the pruned fp32 model is what meets the size bound
    proc = bushu(
        "plan",
        m["artifact"],
        "--data",
        m["data"],
        "-o",
        out,
        "--concurrency",
        2,
        "--max-p99-ms",
        5000,
        "--max-size-mb",
        0.05,
        "--compress",
        "prune0.5",
        "--train",
        m["train"],
        "--epochs",
        1,
        *fast,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    j = json.loads(proc.stdout)
    assert j["chosen"]["variant"] == "onnxruntime/fp32+prune0.5" and j["chosen"]["compression"] == "prune0.5"
    assert j["verification"]["passed"] and j["search"]["finetune"]["epochs"] == 1
    by = {v["variant"]: v for v in j["variants"]}
    assert by["onnxruntime/fp32"]["size_mb"] > 0.05 >= by["onnxruntime/fp32+prune0.5"]["size_mb"]
    served = (Path(j["model_dir"]) / "1" / "model.onnx").read_bytes()
    assert served == Path(by["onnxruntime/fp32+prune0.5"]["file"]).read_bytes()


def test_accuracy_bound_on_a_sample_npz_is_agreement_with_fp32(tiny, tmp_path):
    """--sample arrays have no images to pseudo-label: int8 is bounded by its top-1 agreement with the
    fp32 model on the arrays (the plan's own figure), not sent to an image-folder scan."""
    from bushu.model.artifact import Artifact
    from bushu.model.processing import preprocess_images

    art = Artifact.load(tiny["artifact"])
    sample = tmp_path / "sample.npz"
    np.savez(sample, **{art.inputs[0].name: preprocess_images(sorted(tiny["data"].rglob("*.png")), art.preprocess)})
    proc = bushu("plan", tiny["artifact"], "--sample", sample, "-o", tmp_path / "o", "--max-accuracy-drop", 5, *FAST)
    out = proc.stdout + proc.stderr
    assert "folder not found" not in out
    assert proc.returncode == 0, out[-3000:]
    result = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert result["accuracy_metric"] == "agreement"
    int8 = next(v for v in result["variants"] if v["variant"] == "onnxruntime/int8")
    assert int8["status"] == "ok", int8
    assert int8["accuracy_drop"] is not None and int8["accuracy_drop"] <= 5
