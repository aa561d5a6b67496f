"""Serve (tritonclient over HTTP) and package (SDK) any-model artifacts; compare each with onnxruntime.

    python bench/anymodel_e2e.py NAME=ART:INPUTS.npz [...] [--workdir DIR]

For every artifact: `bushu serve` answers tritonclient with the .npz arrays (INT64/INT32/BOOL/FP32 tensors,
dynamic dims), compared with onnxruntime on the same model file; the packaged SDK's Predictor.run on the
same arrays is compared with the server. Prints one JSON line per model.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def serve(repo: Path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bushu",
            "serve",
            str(repo),
            "--http-port",
            "0",
            "--grpc-port",
            "-1",
            "--metrics-port",
            "-1",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines, url, deadline = [], None, time.monotonic() + 300
    while time.monotonic() < deadline and "ready" not in "".join(lines[-1:]):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.match(r"HTTP\s+(\S+)", line):
            url = m[1]
    if url is None:
        proc.kill()
        raise RuntimeError("".join(lines) + proc.stderr.read())
    return proc, url.removeprefix("http://").removesuffix("/v2")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    import onnxruntime as ort
    import tritonclient.http as th

    from bushu.model.artifact import Artifact
    from bushu.serve.repository import add_to_repository
    from bushu.spec import dtype_name, to_v2_datatype

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bushu-anymodel-"))
    repo = work / "repo"
    jobs = []
    for item in args.models:
        name, _, rest = item.partition("=")
        art_dir, _, npz = rest.partition(":")
        art = Artifact.load(art_dir)
        add_to_repository(repo, art, name)
        with np.load(npz) as z:
            jobs.append((name, art, {k: z[k] for k in z.files}))
    proc, url = serve(repo)
    try:
        client = th.InferenceServerClient(url)
        for name, art, feeds in jobs:
            ins = []
            for k, v in feeds.items():
                i = th.InferInput(k, list(v.shape), to_v2_datatype(dtype_name(v.dtype)))
                i.set_data_from_numpy(v)
                ins.append(i)
            res = client.infer(name, ins)
            served = {o.name: res.as_numpy(o.name) for o in art.outputs}
            sess = ort.InferenceSession(str(art.model_path), providers=["CPUExecutionProvider"])
            local = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
            sdk_dir = work / f"{name}-sdk"
            r = subprocess.run(
                [sys.executable, "-m", "bushu", "package", str(art.path), "-o", str(sdk_dir), "--name", name],
                capture_output=True,
                text=True,
            )
            if r.returncode:
                sdk = {"error": r.stderr.strip().splitlines()[-1]}
            else:
                sys.path.insert(0, str(sdk_dir / "src"))
                pkg = importlib.import_module(f"{name.replace('-', '_')}_sdk")
                got = pkg.Predictor().run(feeds)
                sdk = {k: float(np.abs(got[k].astype(np.float64) - served[k]).max()) for k in served}
            print(
                json.dumps(
                    {
                        "model": name,
                        "inputs": {k: [list(v.shape), dtype_name(v.dtype)] for k, v in feeds.items()},
                        "serve_vs_onnxruntime_max_abs": {
                            k: float(np.abs(served[k].astype(np.float64) - local[k]).max()) for k in served
                        },
                        "sdk_vs_serve_max_abs": sdk,
                    }
                ),
                flush=True,
            )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
