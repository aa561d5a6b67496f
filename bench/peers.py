"""bushu serve beside LitServe, BentoML and Ray Serve: the same ONNX models, machine, load generator and duration.

    python bench/peers.py [--peer-venv /tmp/peers-venv] [--duration 5] [--repeats 2] [--concurrency 1,16,64]

The peers live in their own virtualenv (never in bushu's):
    python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install litserve bentoml "ray[serve]" \
        python-multipart onnxruntime numpy pillow

Scenarios (each server runs onnxruntime on the CPU with the same intra-op threads, 1 instance/worker,
its own dynamic batching on at the same max batch size and queue delay):
- image: MobileNetV2 (`bushu import mobilenet_v2`), a JPEG posted as multipart/form-data (the same
  bytes to every server), answered with the top-5 labels: bushu `POST /v1/models/m:classify`,
  a LitServe API, a BentoML service and a Ray Serve deployment (@serve.batch) that decode, resize, crop and normalise exactly as bushu does.
- tiny: a [batch, 16] -> [batch, 16] Gemm (per-request overhead, no compute): JSON tensors for all
  (bushu: KServe v2 JSON), plus bushu's KServe v2 binary over HTTP and gRPC.
Load generator: one aiohttp client for every HTTP server (bodies built once, a connection per
concurrent worker), tritonclient.grpc.aio for gRPC; closed loop, bounded in time, loopback only.
Each server is checked against onnxruntime run here before it is measured. Servers run one after the
other; the whole sequence is repeated and medians are reported.
Writes bench/results/peers.json and peers.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402
from serving import start as start_bushu  # noqa: E402

BOUNDARY = "bushu-bench-boundary-7f3a"
COMPARABLE = ("classify (multipart)", "v2 JSON")  # bushu paths with the same kind of body as the peers

# Runs in the peers' virtualenv: onnxruntime session, bushu's image pre-processing (a copy of
# bushu.model.processing.preprocess_image for the default RGB/NCHW case) and top-k.
PEER_COMMON = r"""
import io, json, os
import numpy as np
import onnxruntime as ort
from PIL import Image

CFG = json.loads(os.environ["PEER_CFG"])
LABELS = CFG.get("labels") or []


def session():
    so = ort.SessionOptions()
    so.intra_op_num_threads = CFG["threads"]
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(CFG["model"], so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    shape = [CFG["max_batch"] if not isinstance(d, int) else d for d in s.get_inputs()[0].shape]
    for n in (1, CFG["max_batch"]):  # warm-up, as bushu does
        s.run(None, {name: np.zeros([n] + shape[1:], np.float32)})
    return s, name


def preprocess(img):
    pp = CFG["preprocess"]
    img = img.convert("RGB")
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[pp["interpolation"]]
    w, h = img.size
    s = pp["resize"] / min(w, h)
    img = img.resize((max(1, round(w * s)), max(1, round(h * s))), resample)
    w, h = img.size
    c = pp["crop"]
    left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
    img = img.crop((left, top, left + c, top + c))
    x = np.asarray(img, dtype=np.float32) * np.float32(pp["scale"])
    x = (x - np.asarray(pp["mean"], np.float32)) / np.asarray(pp["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def decode(data: bytes):
    return preprocess(Image.open(io.BytesIO(data)))


def top5(logits):
    z = logits - logits.max()
    p = np.exp(z) / np.exp(z).sum()
    idx = np.argsort(-p)[:5]
    return {"predictions": [{"label": LABELS[i] if i < len(LABELS) else str(i), "index": int(i),
                             "score": float(p[i])} for i in idx]}
"""

LITSERVE_APP = r"""
import sys
import numpy as np
import litserve as ls
from peer_common import CFG, session, decode, top5


class API(ls.LitAPI):
    def setup(self, device):
        self.s, self.name = session()

    def decode_request(self, request):
        if CFG["kind"] == "image":
            f = request["file"]
            return decode(f.file.read() if hasattr(f, "file") else f)
        return np.asarray(request["x"], np.float32)[0]

    def batch(self, xs):
        return np.stack(xs)

    def predict(self, x):
        if x.ndim == len(self.s.get_inputs()[0].shape) - 1:  # an unbatched single request
            return self.s.run(None, {self.name: x[None]})[0][0]
        return self.s.run(None, {self.name: x})[0]

    def unbatch(self, y):
        return list(y)

    def encode_response(self, y):
        return top5(y) if CFG["kind"] == "image" else {"y": [y.tolist()]}


if __name__ == "__main__":
    api = API(max_batch_size=CFG["max_batch"], batch_timeout=CFG["delay_s"])
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=120)
    server.run(host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", generate_client_file=False)
"""

BENTOML_APP = r"""
import numpy as np
import bentoml
from PIL.Image import Image as PILImage
from peer_common import CFG, session, preprocess, top5


@bentoml.service(workers=1, traffic={"timeout": 120})
class Peer:
    def __init__(self):
        self.s, self.name = session()

    @bentoml.api(batchable=True, max_batch_size=CFG["max_batch"], max_latency_ms=60000)
    def classify(self, file: list[PILImage]) -> list[dict]:
        x = np.stack([preprocess(im) for im in file])
        return [top5(row) for row in self.s.run(None, {self.name: x})[0]]

    @bentoml.api(batchable=True, max_batch_size=CFG["max_batch"], max_latency_ms=60000)
    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.s.run(None, {self.name: x.astype(np.float32)})[0]
"""

RAY_APP = r"""
import sys, time
from pathlib import Path
import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse
from peer_common import CFG, session, decode, top5


@serve.deployment(num_replicas=1, max_ongoing_requests=1024, ray_actor_options={"num_cpus": 0})
class Peer:
    def __init__(self):
        self.s, self.name = session()

    @serve.batch(max_batch_size=CFG["max_batch"], batch_wait_timeout_s=CFG["delay_s"])
    async def run(self, xs):
        return list(self.s.run(None, {self.name: np.stack(xs)})[0])

    async def __call__(self, request: Request):
        if CFG["kind"] == "image":
            form = await request.form()
            return JSONResponse(top5(await self.run(decode(await form["file"].read()))))
        x = np.asarray((await request.json())["x"], np.float32)[0]
        return JSONResponse({"y": [(await self.run(x)).tolist()]})


if __name__ == "__main__":
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    serve.run(Peer.bind(), route_prefix="/predict")  # returns once the replica is up
    Path(sys.argv[2]).write_text("ready")
    while True:
        time.sleep(3600)
"""


# -- models and reference answers ------------------------------------------------------------------
def tiny_onnx(path: Path, n: int = 16) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((n, n)) / 4).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(n, np.float32), "B")
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        initializer=[w, b],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def photo_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def multipart(data: bytes, field: str = "file", filename: str = "cat.jpg") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def image_reference(art_dir: Path, jpeg: bytes) -> list[dict]:
    from bushu.model.artifact import Artifact
    from bushu.model.processing import load_image, preprocess_image, top_k
    from bushu.runtime import load_backend

    art = Artifact.load(art_dir)
    x = preprocess_image(load_image(jpeg), art.preprocess)[None]
    with load_backend(art.model_path, "onnxruntime") as be:
        logits = be.infer({be.inputs[0].name: x})[be.outputs[0].name]
    return [{"label": lbl, "index": i, "score": s} for i, lbl, s in top_k(logits, art.labels, art.postprocess, k=5)[0]]


# -- load generation -------------------------------------------------------------------------------
def _stats(lat: list[float], elapsed: float, errors: int, first_error: str | None) -> dict:
    if not lat:
        return {"rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": errors, "requests": 0, "first_error": first_error}
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "errors": errors,
        "requests": len(lat),
        "first_error": first_error,
    }


async def http_load(url: str, body: bytes, headers: dict, concurrency: int, duration: float) -> dict:
    """Closed loop: ``concurrency`` workers each POST the same prepared body, back to back."""
    import aiohttp

    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    lat: list[float] = []
    errors, first_error = 0, None
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:

        async def one() -> None:
            async with s.post(url, data=body, headers=headers) as r:
                data = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")

        await asyncio.gather(*(one() for _ in range(max(concurrency, 8))))  # open the connections, warm up
        stop = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors, first_error
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    await one()
                    lat.append(time.perf_counter() - t)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    errors += 1
                    first_error = first_error or repr(e)[:300]

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return _stats(lat, elapsed, errors, first_error)


async def grpc_load(url: str, model: str, x: np.ndarray, name: str, concurrency: int, duration: float) -> dict:
    import tritonclient.grpc.aio as client

    c = client.InferenceServerClient(url)
    inp = client.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    lat: list[float] = []
    errors, first_error = 0, None
    await asyncio.gather(*(c.infer(model, [inp]) for _ in range(max(concurrency, 8))))
    stop = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors, first_error
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                await c.infer(model, [inp])
                lat.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors += 1
                first_error = first_error or repr(e)[:300]

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await c.close()
    return _stats(lat, elapsed, errors, first_error)


def post(url: str, body: bytes, headers: dict, timeout: float = 60) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


# -- servers ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path, n: int = 400) -> str:
    try:
        return " ".join(log.read_text(errors="replace")[-n:].split())
    except OSError:
        return ""


def stop_proc(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)  # the group this script started (peers fork workers)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


class Peer:
    """A peer server in the peers' venv, started in its own process group."""

    def __init__(self, kind: str, venv: Path, workdir: Path, cfg: dict) -> None:
        self.kind, self.venv, self.workdir, self.cfg = kind, venv, workdir, cfg
        self.port = free_port()
        self.log = workdir / f"{kind}-{cfg['kind']}-{self.port}.log"
        env = {
            **os.environ,
            "PEER_CFG": json.dumps(cfg),
            "BENTOML_DO_NOT_TRACK": "True",
            "PYTHONPATH": str(workdir),
            "OMP_NUM_THREADS": str(cfg["threads"]),
        }
        self.marker = None
        if kind == "litserve":
            cmd = [str(venv / "bin" / "python"), str(workdir / "litserve_app.py"), str(self.port)]
            ready = f"http://127.0.0.1:{self.port}/health"
        elif kind == "ray":
            self.marker = workdir / f"ray-ready-{self.port}"
            env.update(RAY_USAGE_STATS_ENABLED="0", RAY_SERVE_LOG_TO_STDERR="0")
            cmd = [str(venv / "bin" / "python"), str(workdir / "ray_app.py"), str(self.port), str(self.marker)]
            ready = f"http://127.0.0.1:{self.port}/-/healthz"
        else:
            cmd = [
                str(venv / "bin" / "bentoml"),
                "serve",
                "bentoml_app:Peer",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ]
            ready = f"http://127.0.0.1:{self.port}/readyz"
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_http(ready, self.proc, 180, self.log)
            t0 = time.time()
            while self.marker is not None and not self.marker.exists():  # Ray: the proxy is up before the app
                if self.proc.poll() is not None or time.time() - t0 > 180:
                    raise RuntimeError(f"Ray Serve app not deployed: {_tail(self.log)}")
                time.sleep(0.5)
        except Exception:
            self.close()
            raise

    def endpoint(self) -> str:
        path = {
            "litserve": "/predict",
            "ray": "/predict",
            "bentoml": "/classify" if self.cfg["kind"] == "image" else "/infer",
        }[self.kind]
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        stop_proc(self.proc)
        if self.kind == "ray":  # ray.init's daemons (GCS, raylet, workers) outlive the driver's group
            subprocess.run([str(self.venv / "bin" / "ray"), "stop", "--force"], capture_output=True, timeout=60)


def peer_version(venv: Path, pkg: str) -> str | None:
    py = venv / "bin" / "python"
    if not py.exists():
        return None
    r = subprocess.run(
        [str(py), "-c", f"import importlib.metadata as m; print(m.version({pkg!r}))"], capture_output=True, text=True
    )
    return r.stdout.strip() if r.returncode == 0 else None


# -- checks ----------------------------------------------------------------------------------------
def check_image(got: bytes, ref: list[dict]) -> str:
    obj = json.loads(got)
    preds = (obj[0] if isinstance(obj, list) else obj)["predictions"]  # BentoML answers a batchable API with a list
    if [p["index"] for p in preds[:5]] != [r["index"] for r in ref] or max(
        abs(p["score"] - r["score"]) for p, r in zip(preds, ref)
    ) > 1e-3:
        return f"mismatch: got {[(p['label'], round(p['score'], 4)) for p in preds]}"
    return "ok"


def _peer_tensor(obj):
    return obj["y"] if isinstance(obj, dict) else obj  # LitServe: {"y": ...}; BentoML: the array itself


def check_tensor(y: np.ndarray, ref: np.ndarray) -> str:
    y = np.asarray(y, np.float32).reshape(ref.shape)
    err = float(np.max(np.abs(y - ref)))
    return "ok" if err < 1e-4 else f"mismatch: max abs error {err:.3g}"


# -- the run ---------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-venv", default="/tmp/peers-venv", help="virtualenv with litserve, bentoml, onnxruntime")
    ap.add_argument(
        "--image-model",
        default="/tmp/peers/mv2",
        help="a bushu artifact directory with image pre-processing (bushu import mobilenet_v2 -o DIR)",
    )
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, every server")
    ap.add_argument("--max-batch", type=int, default=64, help="max batch size, every server")
    ap.add_argument(
        "--delay-ms",
        type=float,
        default=2.0,
        help="queue delay: bushu max_queue_delay, LitServe batch_timeout (BentoML adapts its own)",
    )
    ap.add_argument("--servers", default="bushu,litserve,bentoml,ray")
    ap.add_argument("--scenarios", default="image,tiny")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bushu-peers-") as d:
        run(args, Path(d))


def run(args, tmp: Path) -> None:
    from tritonclient.http import InferenceServerClient, InferInput

    from bushu.model.artifact import Artifact
    from bushu.serve.config import write_config

    venv = Path(args.peer_venv)
    concs = [int(c) for c in args.concurrency.split(",")]
    servers = args.servers.split(",")
    scenarios = args.scenarios.split(",")
    (tmp / "peer_common.py").write_text(PEER_COMMON)
    (tmp / "litserve_app.py").write_text(LITSERVE_APP)
    (tmp / "bentoml_app.py").write_text(BENTOML_APP)
    (tmp / "ray_app.py").write_text(RAY_APP)
    versions = {p: peer_version(venv, p) for p in ("litserve", "bentoml", "ray", "onnxruntime")}
    import onnxruntime

    # models, repository, requests and reference answers
    art_dir = Path(args.image_model)
    art = Artifact.load(art_dir)
    tiny = tiny_onnx(tmp / "tiny.onnx")
    repo = tmp / "repo"
    for name, src in (("m", art_dir), ("tiny", None)):
        (repo / name / "1").mkdir(parents=True)
        if src is not None:
            for f in src.iterdir():
                if f.name != "model.pt2":
                    shutil.copy(f, repo / name / "1" / f.name)
        else:
            shutil.copy(tiny, repo / name / "1" / "model.onnx")
        write_config(
            repo / name / "config.pbtxt",
            name,
            "onnxruntime",
            args.max_batch,
            int(args.delay_ms * 1000),
            1,
            args.threads,
        )
    jpeg = photo_jpeg()
    img_body = multipart(jpeg)
    img_headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    img_ref = image_reference(art_dir, jpeg)
    x_tiny = np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)
    import onnxruntime as ort

    y_tiny = ort.InferenceSession(str(tiny), providers=["CPUExecutionProvider"]).run(None, {"x": x_tiny})[0]
    peer_json = json.dumps({"x": x_tiny.tolist()}).encode()
    v2_json = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x_tiny.ravel().tolist()}]}
    ).encode()
    inp = InferInput("x", [1, 16], "FP32")
    inp.set_data_from_numpy(x_tiny, binary_data=True)
    v2_bin, json_size = InferenceServerClient.generate_request_body([inp])
    v2_bin_headers = {"Inference-Header-Content-Length": str(json_size)}
    peer_cfg = {
        "threads": args.threads,
        "max_batch": args.max_batch,
        "delay_s": args.delay_ms / 1000,
        "labels": list(art.labels or []),
        "preprocess": {
            k: getattr(art.preprocess, k) for k in ("resize", "crop", "interpolation", "scale", "mean", "std")
        },
    }
    assert art.preprocess.layout == "NCHW" and art.preprocess.color == "RGB", "peers copy the RGB/NCHW case only"

    load_before = os.getloadavg()
    cells: dict[tuple, list[dict]] = {}
    status: dict[tuple, str] = {}

    def record(key: tuple, r: dict) -> None:
        cells.setdefault(key, []).append(r)
        print(
            f"{key[0]:5s} {key[1]:9s} {key[2]:22s} c={key[3]:3d}: {r['rps']:8.1f} req/s  p50 {r['p50_ms'] or 0:8.2f} ms"
            f"  p99 {r['p99_ms'] or 0:8.2f} ms  errors {r['errors']}",
            flush=True,
        )

    for rep in range(args.repeats):
        print(f"-- repeat {rep + 1}/{args.repeats}, load {os.getloadavg()}", flush=True)
        for scen in scenarios:
            for server in servers:
                if server == "bushu":
                    proc, http_url, grpc_url = start_bushu(repo)
                    base = f"http://{http_url}"
                    if scen == "image":
                        paths = [
                            (
                                "classify (multipart)",
                                "http",
                                f"{base}/v1/models/m:classify?k=5",
                                img_body,
                                img_headers,
                                lambda b: check_image(b, img_ref),
                            )
                        ]
                    else:
                        paths = [
                            (
                                "v2 JSON",
                                "http",
                                f"{base}/v2/models/tiny/infer",
                                v2_json,
                                {},
                                lambda b: check_tensor(json.loads(b)["outputs"][0]["data"], y_tiny),
                            ),
                            ("v2 binary", "http", f"{base}/v2/models/tiny/infer", v2_bin, v2_bin_headers, None),
                            ("v2 gRPC", "grpc", grpc_url, None, None, None),
                        ]
                    closer = lambda p=proc: (p.send_signal(signal.SIGINT), p.wait(30))  # noqa: E731
                else:
                    path_name = "multipart" if scen == "image" else "JSON"
                    if versions.get(server) is None:
                        status[(scen, server, path_name)] = f"not installed in {venv}"
                        continue
                    try:
                        peer = Peer(
                            server,
                            venv,
                            tmp,
                            {**peer_cfg, "kind": scen, "model": str(art.model_path if scen == "image" else tiny)},
                        )
                    except Exception as e:  # noqa: BLE001 - the row says why
                        status[(scen, server, path_name)] = f"failed to start: {e}"[:400]
                        print(f"{server} {scen}: {status[(scen, server, path_name)]}", flush=True)
                        continue
                    checker = (
                        (lambda b: check_image(b, img_ref))
                        if scen == "image"
                        else (lambda b: check_tensor(_peer_tensor(json.loads(b)), y_tiny))
                    )
                    paths = [
                        (
                            path_name,
                            "http",
                            peer.endpoint(),
                            img_body if scen == "image" else peer_json,
                            img_headers if scen == "image" else {"Content-Type": "application/json"},
                            checker,
                        )
                    ]
                    closer = peer.close
                try:
                    for path_name, proto, url, body, headers, checker in paths:
                        key0 = (scen, server, path_name)
                        if checker is not None:
                            code, got, _ = post(url, body, headers)
                            status[key0] = checker(got) if code == 200 else f"HTTP {code}: {got[:200]!r}"
                        elif proto == "http":
                            code, got, hdr = post(url, body, headers)
                            n = int({k.lower(): v for k, v in hdr.items()}.get("inference-header-content-length", 0))
                            status[key0] = (
                                check_tensor(np.frombuffer(got[n:], np.float32), y_tiny)
                                if code == 200
                                else f"HTTP {code}"
                            )
                        else:
                            import tritonclient.grpc as grpcclient

                            gi = grpcclient.InferInput("x", [1, 16], "FP32")
                            gi.set_data_from_numpy(x_tiny)
                            res = grpcclient.InferenceServerClient(grpc_url).infer("tiny", [gi])
                            status[key0] = check_tensor(res.as_numpy("y"), y_tiny)
                        for conc in concs:
                            if proto == "http":
                                r = asyncio.run(http_load(url, body, headers, conc, args.duration))
                            else:
                                r = asyncio.run(grpc_load(url, "tiny", x_tiny, "x", conc, args.duration))
                            record((*key0, conc), r)
                finally:
                    closer()
    load_after = os.getloadavg()

    rows = []
    firsts = list(dict.fromkeys([k[:3] for k in cells] + list(status)))  # the order they ran in
    for key0 in firsts:
        if not any(k[:3] == key0 for k in cells):
            rows.append({"scenario": key0[0], "server": key0[1], "path": key0[2], "status": status.get(key0, "")})
            continue
        for conc in concs:
            rs = cells.get((*key0, conc), [])
            if not rs:
                continue
            med = {
                m: statistics.median([r[m] for r in rs if r[m] is not None] or [float("nan")])
                for m in ("rps", "p50_ms", "p99_ms")
            }
            rows.append(
                {
                    "scenario": key0[0],
                    "server": key0[1],
                    "path": key0[2],
                    "concurrency": conc,
                    **med,
                    "errors": sum(r["errors"] for r in rs),
                    "requests": sum(r["requests"] for r in rs),
                    "repeats": len(rs),
                    "status": status.get(key0, ""),
                    "first_error": next((r["first_error"] for r in rs if r["first_error"]), None),
                    "rps_each": [round(r["rps"], 1) for r in rs],
                }
            )
    for row in rows:  # throughput against bushu's path that takes the same request body as the peers
        ref = next(
            (
                r
                for r in rows
                if r["server"] == "bushu"
                and r["scenario"] == row["scenario"]
                and r["path"] in COMPARABLE
                and r.get("concurrency") == row.get("concurrency")
            ),
            None,
        )
        if ref and "rps" in row and ref["rps"]:
            row["rps_vs_bushu"] = row["rps"] / ref["rps"]
    notes = [
        f"command: `{command_line()}`",
        f"machine: {os.cpu_count()} CPUs, shared; load average before {load_before[0]:.1f}, after "
        f"{load_after[0]:.1f} (1-min)",
        f"peers: litserve {versions['litserve']}, bentoml {versions['bentoml']}, ray {versions['ray']}, onnxruntime "
        f"{versions['onnxruntime']} (peers venv {venv}); bushu's onnxruntime {onnxruntime.__version__}",
        f"every server: onnxruntime CPU, {args.threads} intra-op thread(s), 1 instance/worker, max batch "
        f"{args.max_batch}; bushu max_queue_delay {args.delay_ms:g} ms, LitServe batch_timeout "
        f"{args.delay_ms:g} ms, BentoML batchable=True max_batch_size {args.max_batch} (adaptive delay, "
        "max_latency_ms 60000), Ray Serve @serve.batch max_batch_size "
        f"{args.max_batch} batch_wait_timeout {args.delay_ms:g} ms, 1 replica",
        "image: MobileNetV2, a 451x300 JPEG (skimage chelsea) as multipart/form-data, top-5 labels back; every "
        "server decodes/resizes/crops/normalises with PIL+numpy the same way; status 'ok' = the server's top-5 "
        "matched onnxruntime run here",
        "tiny: [1,16] Gemm; JSON tensors for all, bushu also KServe v2 binary and gRPC (tritonclient.grpc.aio)",
        f"{args.duration:g} s per cell after warm-up, closed loop; medians over {args.repeats} repeats "
        "(rps_each lists every repeat); rps_vs_bushu: against bushu's path with the same kind of body "
        "(classify multipart / v2 JSON) at the same concurrency",
    ]
    write_results(
        "peers",
        {"load_before": load_before, "load_after": load_after, "versions": versions, "args": vars(args)},
        rows,
        ["scenario", "server", "path", "concurrency", "rps", "p50_ms", "p99_ms", "rps_vs_bushu", "errors", "status"],
        "bushu serve vs LitServe, BentoML and Ray Serve (same models, machine and load generator)",
        notes,
    )
    print((Path(__file__).resolve().parent / "results" / "peers.md").read_text())


if __name__ == "__main__":
    main()
