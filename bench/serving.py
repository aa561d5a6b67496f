"""Serving efficiency: served throughput ÷ raw in-process throughput of the same backend, same run.

    python bench/serving.py [--model conv|cnn|mlp|M.onnx] [--protocols http,json,grpc] [--duration 5]
        [--concurrency 1,16,64] [--variants before=/tmp/base/src,after=src --repeats 3]
    python bench/serving.py --soak 600      # concurrency 64 over gRPC, a model swap half-way

Raw: the model in this process with onnxruntime at batch 1..64; with --instances N, also N sessions
run side by side (the served configuration without the server). The best of all = the reference.
Served: `bushu serve` in a subprocess, driven by an asyncio load generator on tritonclient's aio
clients (binary KServe v2 over HTTP, and gRPC), bounded in time, loopback only. At concurrency 1
the figure of merit is the latency the server adds over raw batch-1 inference (p50).
Front-end CPU per request: the server process's CPU time (from /proc) per request answered, minus
onnxruntime's own CPU per sample at the batch sizes the batcher formed in that run (measured here
afterwards, alone); bench/profile_server.py says where it goes. With --variants, servers from other
checkouts run in turn in each round (side by side on the same load generator), medians over rounds.
Writes bench/results/serving.json and .md (soak: serving_soak.json and .md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402


def mlp_onnx(path: Path, sizes=(256, 1024, 1024, 256)) -> Path:
    """A small MLP (about 1.6 MMAC per row): enough compute that batching matters."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits.append(numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"W{i}"))
        inits.append(numpy_helper.from_array(np.zeros(b, np.float32), f"B{i}"))
        out = "y" if i == len(sizes) - 2 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [out if out == "y" else out + "_"]))
        if out != "y":
            nodes.append(helper.make_node("Relu", [out + "_"], [out]))
        prev = out
    g = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def cnn_onnx(path: Path) -> Path:
    """A small image CNN, [batch, 3, 64, 64] -> [batch, 10] (about 41 MMAC per image): compute-bound
    like the classifiers bushu serves, small enough for a 2-core machine."""
    return _conv_net(path, "cnn", 64, [32, 64, 128], 11)


def conv_onnx(path: Path) -> Path:
    """The issue-21 conv net: [batch, 3, 112, 112] (150,528 bytes of float32 per request) -> [batch, 10],
    four 3x3 convolutions (3->32 stride 1, then 32->64->128->256 stride 2) and a linear head:
    184 MMAC, 0.37 GFLOP per image. Enough compute per request that the front end's share is what
    a real classifier's would be, small enough for a 2-core machine."""
    return _conv_net(path, "conv", 112, [32, 64, 128, 256], 16)


def _conv_net(path: Path, name: str, side: int, widths: list[int], head_scale: float) -> Path:
    """[batch, 3, side, side] -> [batch, 10]: 3x3 conv + ReLU per width (the first stride 1, the others
    stride 2), global average pool, linear head; fixed random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i, (cin, cout) in enumerate(zip([3, *widths[:-1]], widths)):
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"C{i}"), numpy_helper.from_array(np.zeros(cout, np.float32), f"c{i}")]
        stride = 1 if i == 0 else 2
        nodes += [
            helper.make_node("Conv", [prev, f"C{i}", f"c{i}"], [f"v{i}"], pads=[1, 1, 1, 1], strides=[stride] * 2),
            helper.make_node("Relu", [f"v{i}"], [f"r{i}"]),
        ]
        prev = f"r{i}"
    inits += [
        numpy_helper.from_array((rng.standard_normal((widths[-1], 10)) / head_scale).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(10, np.float32), "B"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "W", "B"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def raw_throughput(model: Path, duration: float, threads: int | None, batches, instances: int = 1) -> list[dict]:
    """Rows/s of onnxruntime in this process at each batch size: one session, or ``instances`` sessions
    run side by side from as many threads (what the server's instance workers do, without the server)."""
    import threading

    from bushu.runtime import load_backend
    from bushu.spec import synthetic_feeds

    rows = []
    opts = {"threads": threads} if threads else {}
    backends = [load_backend(model, "onnxruntime", **opts) for _ in range(instances)]
    try:
        for batch in batches:
            feeds = synthetic_feeds(backends[0].inputs, batch=batch)
            for be in backends:
                be.infer(feeds)
            lats: list[list[float]] = [[] for _ in backends]
            t0 = time.perf_counter()

            def loop(be, lat: list[float], feeds=feeds, t0=t0) -> None:
                while time.perf_counter() - t0 < duration:
                    t = time.perf_counter()
                    be.infer(feeds)
                    lat.append(time.perf_counter() - t)

            workers = [threading.Thread(target=loop, args=(be, lat)) for be, lat in zip(backends, lats)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            elapsed = time.perf_counter() - t0
            lat = [v for part in lats for v in part]
            rows.append(
                {
                    "mode": "raw" if instances == 1 else f"raw {instances} sessions",
                    "batch": batch,
                    "instances": instances,
                    "threads": threads,
                    "rps": batch * len(lat) / elapsed,
                    "p50_ms": float(np.percentile(lat, 50) * 1e3),
                    "p99_ms": float(np.percentile(lat, 99) * 1e3),
                }
            )
    finally:
        for be in backends:
            be.close()
    return rows


async def load(
    protocol: str,
    url: str,
    model: str,
    x: np.ndarray,
    concurrency: int,
    duration: float,
    name: str = "x",
    shared_memory: bool = False,
    output: str = "y",
) -> dict:
    """tritonclient's aio clients (protocol http: binary KServe v2 over HTTP, json: JSON tensors both
    ways, grpc); with ``shared_memory`` the input goes through a system shared memory region (as
    perf_analyzer --shared-memory system sends it) instead of the request body."""
    outputs = None
    if protocol in ("http", "json"):
        import tritonclient.http.aio as client

        c = client.InferenceServerClient(url, conn_limit=concurrency)
        if protocol == "json":
            outputs = [client.InferRequestedOutput(output, binary_data=False)]
    else:
        import tritonclient.grpc.aio as client

        c = client.InferenceServerClient(url)
    inp = client.InferInput(name, list(x.shape), "FP32")
    region = None
    if shared_memory:
        import tritonclient.utils.shared_memory as shm

        key = f"/bushu_bench_{os.getpid()}"
        region = shm.create_shared_memory_region("bench_input", key, x.nbytes)
        shm.set_shared_memory_region(region, [x])
        await c.register_system_shared_memory("bench_input", key, x.nbytes)
        inp.set_shared_memory("bench_input", x.nbytes)
    else:
        inp.set_data_from_numpy(x, **({"binary_data": False} if protocol == "json" else {}))
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration

    async def worker():
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                await c.infer(model, [inp], outputs=outputs)
                lat.append(time.perf_counter() - t)
            except Exception:  # noqa: BLE001 - counted and reported
                errors += 1

    try:
        for _ in range(20):  # warm the connections
            await c.infer(model, [inp], outputs=outputs)
        t0 = time.perf_counter()
        stop = t0 + duration
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        if region is not None:
            await c.unregister_system_shared_memory("bench_input")
            shm.destroy_shared_memory_region(region)
        await c.close()
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "mean_ms": float(np.mean(lat) * 1e3),
        "errors": errors,
        "requests": len(lat),
    }


async def load_lean(
    protocol: str, url: str, model: str, x: np.ndarray, concurrency: int, duration: float, name: str = "x"
) -> dict:
    """The same requests as `load`, built once and sent as bytes, as perf_analyzer sends them: KServe v2
    (binary, or JSON tensors both ways for protocol json) written whole to keep-alive sockets and
    answers parsed by httptools (what uvicorn parses with), and a bytes-in/bytes-out gRPC method for
    ModelInfer. A load generator that leaves more of the shared cores to the server. The first answer
    is decoded and checked against onnxruntime by the caller."""
    import json

    from tritonclient.grpc import service_pb2

    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    if protocol in ("http", "json"):
        if protocol == "json":
            header = json.dumps(
                {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
            ).encode()
            head_lines, blob = "Content-Type: application/json\r\n", b""
        else:
            header = json.dumps(
                {
                    "inputs": [
                        {
                            "name": name,
                            "shape": list(x.shape),
                            "datatype": "FP32",
                            "parameters": {"binary_data_size": x.nbytes},
                        }
                    ],
                    "parameters": {"binary_data_output": True},
                }
            ).encode()
            head_lines = f"Inference-Header-Content-Length: {len(header)}\r\nContent-Type: application/octet-stream\r\n"
            blob = x.tobytes()
        host, _, port = url.rpartition(":")
        request = (
            (
                f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {url}\r\n{head_lines}"
                f"Content-Length: {len(header) + len(blob)}\r\n\r\n"
            ).encode()
            + header
            + blob
        )
        loop = asyncio.get_running_loop()
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(concurrency):  # one keep-alive connection per worker, as perf_analyzer opens them
            pool.put_nowait((await loop.create_connection(_HttpConnection, host, int(port)))[1])

        async def call() -> bytes:
            conn = await pool.get()
            try:
                status, head, out = await conn.send(request)
            finally:
                pool.put_nowait(conn)
            if status != 200:
                raise RuntimeError(out[:200])
            if protocol == "json":
                return np.asarray(json.loads(out)["outputs"][0]["data"], np.float32).tobytes()
            return out[int(head[b"inference-header-content-length"]) :]  # the first output's bytes

        async def close() -> None:
            while not pool.empty():
                pool.get_nowait().close()

    else:
        import grpc

        req = service_pb2.ModelInferRequest(model_name=model)
        t = req.inputs.add(name=name, datatype="FP32", shape=list(x.shape))
        req.raw_input_contents.append(x.tobytes())
        del t
        body = req.SerializeToString()
        channel = grpc.aio.insecure_channel(
            url, options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        )
        method = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out

        async def call() -> bytes:
            return service_pb2.ModelInferResponse.FromString(await method(body)).raw_output_contents[0]

        close = channel.close

    async def worker():
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                await call()
                lat.append(time.perf_counter() - t)
            except Exception:  # noqa: BLE001 - counted and reported
                errors += 1

    for _ in range(20):
        first = await call()
    t0 = time.perf_counter()
    stop = t0 + duration  # after the warm-up (slow JSON requests could take the whole window)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await close()
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "mean_ms": float(np.mean(lat) * 1e3),
        "errors": errors,
        "requests": len(lat),
        "first_output": np.frombuffer(first, np.float32),
    }


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending one request at a time."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the server closed the connection: {exc}"))

    def close(self) -> None:
        self.transport.close()

    async def send(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.waiter.set_result((self.parser.get_status_code(), self.headers, b"".join(self.body)))


def server_stats(http_url: str, model: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats", timeout=10) as r:
        return json.load(r)["model_stats"][0]


def measured_load(server_pid: int, http_url: str, *args, client: str = "tritonclient", output: str = "y") -> dict:
    """`load` plus where the CPU went: cores used by the server process and by this load generator
    (they share the machine's cores, which bounds the efficiency reachable here), and where a request's
    time went inside the server, from its statistics as perf_analyzer reports them: queue and compute
    per request, rows per backend run, and the rest of the client-side mean (front end, transport, client)."""
    import resource

    import psutil

    server = psutil.Process(server_pid)

    def cpu():
        s, c = server.cpu_times(), resource.getrusage(resource.RUSAGE_SELF)
        return s.user + s.system, c.ru_utime + c.ru_stime, time.perf_counter()

    def loop_cpu() -> float:  # the server's main thread runs its event loop: HTTP and gRPC handlers
        return next((t.user_time + t.system_time for t in server.threads() if t.id == server_pid), 0.0)

    model = args[2]
    st0 = server_stats(http_url, model)
    m0 = loop_cpu()
    s0, c0, t0 = cpu()
    r = asyncio.run(load_lean(*args) if client == "lean" else load(*args, shared_memory=client == "shm", output=output))
    s1, c1, t1 = cpu()
    m1 = loop_cpu()
    st1 = server_stats(http_url, model)
    served = st1["inference_stats"]["success"]["count"] - st0["inference_stats"]["success"]["count"]
    r.update(
        server_cores=(s1 - s0) / (t1 - t0),
        client_cores=(c1 - c0) / (t1 - t0),
        # every request the server answered in the window (the warm-up ones too) shares its CPU time
        server_cpu_ms=(s1 - s0) * 1e3 / max(1, served),
        loop_cpu_ms=(m1 - m0) * 1e3 / max(1, served),
        batches=batch_histogram(st0, st1),
    )

    def per_request(key: str) -> float:  # ms per request over this run (the warm-up requests included)
        a, b = st0["inference_stats"][key], st1["inference_stats"][key]
        return (b["ns"] - a["ns"]) / max(1, b["count"] - a["count"]) / 1e6

    r.update(
        srv_queue_ms=per_request("queue"),
        srv_compute_ms=per_request("compute_infer"),
        outside_ms=r["mean_ms"] - per_request("success"),
        rows_per_run=(st1["inference_count"] - st0["inference_count"])
        / max(1, st1["execution_count"] - st0["execution_count"]),
    )
    return r


def batch_histogram(st0: dict, st1: dict) -> dict[int, int]:
    """{rows in a backend run: runs} formed between two statistics snapshots (Triton's batch_stats)."""
    before = {b["batch_size"]: b["compute_infer"]["count"] for b in st0.get("batch_stats", [])}
    hist = {
        b["batch_size"]: b["compute_infer"]["count"] - before.get(b["batch_size"], 0)
        for b in st1.get("batch_stats", [])
    }
    return {b: n for b, n in sorted(hist.items()) if n > 0}


class ModelCpu:
    """CPU time onnxruntime alone spends per sample at a batch size: the model run in this process with
    the served model's options (threads, no memory pattern, no intra-op spinning: serve/core.py's
    serving defaults), timed by the process's CPU clock over back-to-back runs. Measured once per
    batch size, on demand."""

    def __init__(self, model: Path, threads: int | None, seconds: float = 1.0) -> None:
        self.model, self.threads, self.seconds = model, threads, seconds
        self.per_sample: dict[int, float] = {}
        self._backend = None

    def at(self, batch: int) -> float:
        if batch not in self.per_sample:
            from bushu.runtime import load_backend
            from bushu.spec import synthetic_feeds

            if self._backend is None:
                opts = {"mem_pattern": False, "spinning": False, **({"threads": self.threads} if self.threads else {})}
                self._backend = load_backend(self.model, "onnxruntime", **opts)
            feeds = synthetic_feeds(self._backend.inputs, batch=batch)
            for _ in range(3):
                self._backend.infer(feeds)
            runs, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < self.seconds or runs < 5:
                self._backend.infer(feeds)
                runs += 1
            self.per_sample[batch] = (time.process_time() - c0) * 1e3 / (runs * batch)
        return self.per_sample[batch]

    def per_request(self, hist: dict[int, int]) -> float | None:
        """Model CPU ms per 1-row request over the batches of ``hist`` ({rows: runs})."""
        rows = sum(b * n for b, n in hist.items())
        return sum(b * n * self.at(b) for b, n in hist.items()) / rows if rows else None

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def start(repo: Path, *extra: str, src: str | None = None) -> tuple[subprocess.Popen, str, str]:
    """`bushu serve` in a subprocess; ``src`` puts another checkout's src/ first on its path (a variant
    measured side by side with this one)."""
    env = None
    if src:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
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
            "0",
            "--metrics-port",
            "-1",
            "--log-level",
            "warning",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    urls = {}
    for line in proc.stdout:
        if m := re.match(r"(HTTP|gRPC)\s+(\S+)", line):
            urls[m[1]] = m[2]
        if "ready" in line:
            break
    return proc, urls["HTTP"].removeprefix("http://").removesuffix("/v2"), urls["gRPC"]


def soak(repo: Path, x: np.ndarray, seconds: float, concurrency: int = 64, name: str = "x") -> None:
    """Sustained gRPC load with a new model version dropped in half-way (poll mode): count failed
    requests and follow the server's resident memory."""
    import threading

    import psutil
    import tritonclient.grpc as grpcclient

    proc, _, grpc_url = start(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    rss: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    done = threading.Event()

    def sample():
        p = psutil.Process(proc.pid)
        while not done.wait(1.0):
            rss.append((time.perf_counter() - t0, p.memory_info().rss / 2**20))

    def swap():
        if not done.wait(seconds / 2):
            v2 = repo / "m" / "2"
            tmp = repo / "m" / ".2.tmp"
            tmp.mkdir()
            (tmp / "model.onnx").write_bytes((repo / "m" / "1" / "model.onnx").read_bytes())
            tmp.rename(v2)  # appears whole: the poller never sees a half-written version

    threads = [threading.Thread(target=sample), threading.Thread(target=swap)]
    for t in threads:
        t.start()
    try:
        r = asyncio.run(load("grpc", grpc_url, "m", x, concurrency, seconds, name))
        versions = list(grpcclient.InferenceServerClient(grpc_url).get_model_metadata("m").versions)
    finally:
        done.set()
        for t in threads:
            t.join()
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    warm = [m for t, m in rss if t >= min(30.0, seconds * 0.1)] or [m for _, m in rss]
    growth = (warm[-1] - warm[0]) / warm[0]
    settled = [m for t, m in rss if t >= seconds / 2 + min(15.0, seconds * 0.1)] or warm
    first_min = [m for t, m in rss if min(30.0, seconds * 0.1) <= t < min(30.0, seconds * 0.1) + 60] or warm
    last_min = [m for t, m in rss if t >= seconds - 60] or warm
    growth_medians = (float(np.median(last_min)) - float(np.median(first_min))) / float(np.median(first_min))
    row = {
        **r,
        "seconds": seconds,
        "concurrency": concurrency,
        "versions_after": ",".join(versions),
        "rss_after_warmup_mb": warm[0],
        "rss_end_mb": warm[-1],
        "rss_max_mb": max(warm),
        "rss_growth": growth,
        "rss_growth_after_swap": (settled[-1] - settled[0]) / settled[0],
        "rss_growth_medians": growth_medians,
    }
    print(row)
    write_results(
        "serving_soak",
        {"rss_samples": rss},
        [row],
        [
            "seconds",
            "concurrency",
            "requests",
            "errors",
            "rps",
            "p50_ms",
            "p99_ms",
            "versions_after",
            "rss_after_warmup_mb",
            "rss_end_mb",
            "rss_max_mb",
            "rss_growth",
            "rss_growth_medians",
            "rss_growth_after_swap",
        ],
        "Soak: sustained gRPC load with a model swap half-way",
        [
            f"command: `{command_line()}`",
            "server in poll mode (1 s); version 2 appears at half time",
            "rss_growth = (last − first sample after warm-up) ÷ first sample after warm-up (warm-up: "
            "the first 10% of the run, at most 30 s); rss_growth_medians: median of the last 60 s ÷ median of the "
            "first 60 s after warm-up − 1 (less sensitive to in-flight batches); rss_growth_after_swap: "
            "rss_growth from 15 s after the swap",
        ],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        default="cnn",
        help="cnn (default, 3x64x64), conv (the 0.37 GFLOP net, 150 KB per request), mlp, or an ONNX file "
        "with one float32 input [batch, ...]",
    )
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument(
        "--protocols",
        default="http,grpc",
        help="comma list of http (binary KServe v2), json (KServe v2 JSON tensors both ways), grpc",
    )
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads per served instance")
    ap.add_argument(
        "--raw-threads",
        type=int,
        default=None,
        help="intra-op threads of the raw reference (default: onnxruntime's, all cores)",
    )
    ap.add_argument("--instances", type=int, default=1, help="instance_group count of the served model")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--preferred", default="", help="preferred_batch_size list of the served model, e.g. 4 or 2,4")
    ap.add_argument("--delay-us", type=int, default=500, help="max_queue_delay_microseconds of the served model")
    ap.add_argument(
        "--client",
        choices=("tritonclient", "lean", "shm"),
        default="tritonclient",
        help="load generator: tritonclient's aio clients; the same requests pre-built and sent as "
        "bytes (less client CPU on the shared cores); or tritonclient with the input in a system "
        "shared memory region (same-host clients, as perf_analyzer --shared-memory system)",
    )
    ap.add_argument(
        "--variants",
        default="",
        help="side by side: NAME=SRC[,NAME=SRC...], each a server run with SRC (another checkout's src/) "
        "first on its path, e.g. before=/tmp/base/src,after=src; default: the installed bushu alone",
    )
    ap.add_argument("--repeats", type=int, default=1, help="rounds over every variant; the table has medians")
    ap.add_argument("--soak", type=float, default=0, help="run the soak test for this many seconds instead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bushu-bench-") as d:
        run(args, Path(d))


SUMMARY = (
    "efficiency",
    "added_p50_ms",
    "frontend_cpu_ms",
    "loop_cpu_ms",
    "server_cpu_ms",
    "model_cpu_ms",
    "rps",
    "p50_ms",
    "p99_ms",
    "rows_per_run",
    "outside_ms",
    "server_cores",
    "client_cores",
)


BUILTIN = {"cnn": cnn_onnx, "mlp": mlp_onnx, "conv": conv_onnx}


def model_repository(
    model: str, tmp: Path, max_batch: int, delay_us: int, instances: int = 1, threads=None, preferred=()
) -> tuple[Path, Path]:
    """(the ONNX file, a repository serving it as model "m"): a built-in net by name, or a file."""
    from bushu.serve.config import write_config

    path = BUILTIN[model](tmp / f"{model}.onnx") if model in BUILTIN else Path(model)
    repo = tmp / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "1" / "model.onnx").write_bytes(path.read_bytes())
    write_config(
        repo / "m" / "config.pbtxt", "m", "onnxruntime", max_batch, delay_us, instances, threads, list(preferred)
    )
    return path, repo


def run(args, tmp: Path) -> None:
    from bushu.runtime import load_backend

    model, repo = model_repository(
        args.model,
        tmp,
        args.max_batch,
        args.delay_us,
        args.instances,
        args.threads,
        [int(b) for b in args.preferred.split(",") if b],
    )
    with load_backend(model, "onnxruntime") as be:
        spec, out_name = be.inputs[0], be.outputs[0].name
        x = np.random.default_rng(0).standard_normal(spec.concrete_shape(1)).astype(np.float32)
        expected = next(iter(be.infer({spec.name: x}).values()))

    if args.soak:
        soak(repo, x, args.soak, name=spec.name)
        return
    protocols = [p for p in args.protocols.split(",") if p]
    if unknown := set(protocols) - {"http", "json", "grpc"}:
        raise SystemExit(f"unknown protocol(s) {sorted(unknown)}: use http, json, grpc")
    variants = [(v.partition("=")[0], v.partition("=")[2] or None) for v in args.variants.split(",") if v] or [
        ("bushu", None)
    ]
    batches = [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= args.max_batch]
    raw_rows = raw_throughput(model, min(args.duration, 2.0), args.raw_threads, batches)
    if args.instances > 1:  # the served configuration without the server: the reference must not be weaker
        raw_rows += raw_throughput(model, min(args.duration, 2.0), args.threads, batches, args.instances)
    best = max(raw_rows, key=lambda r: r["rps"])
    raw1 = raw_rows[0]
    served: list[dict] = []
    for rep in range(args.repeats):
        for variant, src in variants:
            proc, http_url, grpc_url = start(repo, src=src)
            try:
                for proto in protocols:
                    url = grpc_url if proto == "grpc" else http_url
                    for conc in (int(c) for c in args.concurrency.split(",")):
                        r = served_run(args, model, best, proc, http_url, proto, url, x, conc, spec.name, out_name)
                        if "first_output" in r:  # the lean client decodes only the first answer: check it
                            got = r.pop("first_output")[: expected.size]
                            if not np.allclose(got, expected.ravel(), atol=1e-4, rtol=1e-3):
                                raise SystemExit(
                                    f"{variant} {proto}: served output differs from onnxruntime "
                                    f"(max abs {np.abs(got - expected.ravel()).max():.3g})"
                                )
                        r.update(variant=variant, round=rep + 1)
                        served.append(r)
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)
    cpu = attribute_cpu(served, model, args.threads)
    summary = summarize(served, variants, protocols, [int(c) for c in args.concurrency.split(",")])
    notes = [
        f"command: `{command_line()}`",
        f"load generator: {args.client}; protocols: {', '.join(protocols)}; variants: "
        + ", ".join(f"{v} ({src or 'installed bushu'})" for v, src in variants)
        + f"; {args.repeats} round(s), medians",
        f"model: {args.model} ({'built by bench/serving.py' if args.model in BUILTIN else 'file'}); "
        f"served with max_batch_size "
        f"{args.max_batch}, max_queue_delay {args.delay_us} µs, {args.instances} instance(s) × "
        f"{args.threads or 'default'} threads",
        f"raw best: {best['mode']} at batch {best['batch']}, {best['rps']:.0f} rows/s; "
        f"raw batch 1 p50 {raw1['p50_ms']:.3f} ms",
        "efficiency = served req/s (1 row each) ÷ raw rows/s of the best raw configuration (one session, or "
        "the served instances × threads side by side) at its best batch, measured just before that served run "
        "(raw_ref_rps); the load generator shares the machine's cores",
        "added_p50_ms = served p50 at concurrency 1 − raw batch-1 p50 measured just before",
        "server_cpu_ms = CPU time of the server process (user + system, all threads, from /proc) over the run "
        "÷ requests it answered; model_cpu_ms = onnxruntime alone in this process, CPU ms per sample at each "
        "batch size the batcher formed in that run (batch_sizes: rows×runs), weighted by the samples run at it; "
        "frontend_cpu_ms = server_cpu_ms − model_cpu_ms: HTTP/gRPC front end, queue and hand-offs, idle threads; "
        "loop_cpu_ms = CPU of the server's event-loop thread alone per request (the HTTP and gRPC handlers; "
        "gRPC's core threads and the batcher threads not included)",
        "srv_queue_ms / srv_compute_ms (JSON): mean per request from the server's statistics; outside_ms = "
        "client-side mean latency − the server's mean request duration (front end, loopback transport and the "
        "load generator); rows_per_run = mean batch formed",
        f"server_cores / client_cores: CPU seconds per second used by the server process and by the load "
        f"generator during the run (this machine has {os.cpu_count()} cores)",
    ]
    write_results(
        "serving",
        {
            "best_raw": best,
            "raw_batch1": raw1,
            "raw": raw_rows,
            "runs": served,
            "model_cpu_per_sample_ms": cpu.per_sample,
        },
        summary,
        ["variant", "protocol", "concurrency", *SUMMARY, "batch_sizes"],
        "Serving efficiency and front-end CPU (bushu serve vs raw onnxruntime, same run)",
        notes,
    )


def attribute_cpu(served: list[dict], model: Path, threads: int | None) -> ModelCpu:
    """Model CPU at the batch sizes the batcher formed, measured after every served run (no load beside
    it), and the rest of the server's CPU per request: the front end's."""
    cpu = ModelCpu(model, threads)
    try:
        for r in served:
            r["model_cpu_ms"] = cpu.per_request(r["batches"])
            r["frontend_cpu_ms"] = r["server_cpu_ms"] - r["model_cpu_ms"] if r["model_cpu_ms"] is not None else None
            r["batch_sizes"] = " ".join(f"{b}×{n}" for b, n in r["batches"].items())
            print(
                f"{r['variant']} round {r['round']} {r['protocol']:4s} c={r['concurrency']:3d}: server CPU "
                f"{r['server_cpu_ms']:.2f} ms/req, model {r['model_cpu_ms']:.2f}, front end "
                f"{r['frontend_cpu_ms']:.2f}; batches {r['batch_sizes']}",
                flush=True,
            )
    finally:
        cpu.close()
    return cpu


def summarize(served: list[dict], variants, protocols: list[str], concurrencies: list[int]) -> list[dict]:
    """One row per variant, protocol and concurrency: medians over the rounds, batch sizes summed."""
    import statistics

    summary = []
    for variant, _ in variants:
        for proto in protocols:
            for conc in concurrencies:
                runs = [r for r in served if (r["variant"], r["protocol"], r["concurrency"]) == (variant, proto, conc)]
                row: dict = {"variant": variant, "protocol": proto, "concurrency": conc, "rounds": len(runs)}
                for k in SUMMARY:
                    vals = [r[k] for r in runs if r.get(k) is not None]
                    row[k] = statistics.median(vals) if vals else None
                hist: dict[int, int] = {}
                for r in runs:
                    for b, n in r["batches"].items():
                        hist[b] = hist.get(b, 0) + n
                row["batch_sizes"] = " ".join(f"{b}×{n}" for b, n in sorted(hist.items()))
                summary.append(row)
    return summary


def served_run(args, model, best, proc, http_url, proto, url, x, conc, name, out_name) -> dict:
    # The machine is shared: measure the raw reference right before each served run.
    ref = (
        raw_throughput(model, min(args.duration, 2.0), args.raw_threads, [1])[0]
        if conc == 1
        else raw_throughput(model, min(args.duration, 2.0), best["threads"], [best["batch"]], best["instances"])[0]
    )
    r = measured_load(
        proc.pid, http_url, proto, url, "m", x, conc, args.duration, name, client=args.client, output=out_name
    )
    r.update(
        protocol=proto,
        concurrency=conc,
        raw_ref_rps=ref["rps"],
        efficiency=r["rps"] / ref["rps"] if conc > 1 else None,
        added_p50_ms=r["p50_ms"] - ref["p50_ms"] if conc == 1 else None,
    )
    print(
        f"{proto:4s} c={conc:3d}: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
        + (f"  added p50 {r['added_p50_ms']:.2f} ms" if conc == 1 else f"  efficiency {r['efficiency']:.2f}")
        + f"  (server: queue {r['srv_queue_ms']:.2f} + compute {r['srv_compute_ms']:.2f} ms, "
        f"{r['rows_per_run']:.1f} rows/run; outside {r['outside_ms']:.2f} ms; server CPU "
        f"{r['server_cpu_ms']:.2f} ms/req)",
        flush=True,
    )
    return r


if __name__ == "__main__":
    main()
