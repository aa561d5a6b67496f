"""The real server in a subprocess (``bushu serve``), and a closed-loop load generator on tritonclient's
gRPC aio client: ``concurrency`` clients, each sending one request and waiting for its answer.

Both run on this machine, so the client's CPU time competes with the server's, as it would for a
co-located caller; the figures are what such a client sees end to end.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, MissingDependencyError

__all__ = ["ServedProcess", "replay"]


class ServedProcess:
    """``bushu serve REPO`` (gRPC only) in a subprocess; a context manager that always stops it."""

    def __init__(self, repo: Path, timeout_s: float = 300) -> None:
        self.repo = Path(repo)
        env = {**os.environ, "COLUMNS": "200"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bushu",
                "serve",
                str(repo),
                "--http-port",
                "-1",
                "--grpc-port",
                "0",
                "--metrics-port",
                "-1",
                "--log-level",
                "error",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.states: dict[str, str] = {}
        url: str | None = None
        lines: list[str] = []
        timer = threading.Timer(timeout_s, self.proc.kill)
        timer.start()
        try:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                lines.append(line)
                if m := re.match(r"\s*model (\S+) version \S+: (.*)", line):
                    self.states[m[1]] = m[2].strip()
                elif m := re.match(r"gRPC\s+(\S+)", line):
                    url = m[1]
                elif line.startswith("ready"):
                    break
        finally:
            timer.cancel()
        if url is None:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            self.stop()
            last = (err.strip().splitlines() or ["".join(lines[-3:]) or "no output"])[-1]
            raise BackendError(f"bushu serve {repo} did not start: {last[:300]}")
        self.url: str = url
        # keep reading so a full pipe never blocks the server
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                for _ in stream:  # type: ignore[union-attr]
                    pass
            except (ValueError, OSError):
                return

    def ready(self, name: str) -> bool:
        return self.states.get(name, "").startswith("READY")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        drain = getattr(self, "_drain", None)
        if drain is not None:
            drain.join(5)  # the pipes reach EOF once the server has exited
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ServedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _client():
    try:
        import tritonclient.grpc.aio as client
    except ImportError as e:
        raise MissingDependencyError("the plan load generator (tritonclient[grpc])", "serve") from e
    return client


async def _load(
    url: str,
    model: str,
    samples: Sequence[dict[str, np.ndarray]],
    concurrency: int,
    duration_s: float,
    keep_outputs: str | None,
    warmup: int,
    keep_latencies: bool = False,
) -> dict[str, Any]:
    from ..spec import dtype_name, to_v2_datatype

    client = _client()
    c = client.InferenceServerClient(url)
    requests = []
    for s in samples:
        inputs = []
        for name, arr in s.items():
            i = client.InferInput(name, list(arr.shape), to_v2_datatype(dtype_name(arr.dtype)))
            i.set_data_from_numpy(arr)
            inputs.append(i)
        requests.append(inputs)
    lat: list[float] = []
    outputs: dict[int, np.ndarray] = {}
    errors: list[str] = []
    try:
        for k in range(max(1, warmup)):
            await c.infer(model, requests[k % len(requests)])
        stop = time.perf_counter() + duration_s
        counter = 0

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < stop:
                k = counter
                counter += 1
                t = time.perf_counter()
                try:
                    r = await c.infer(model, requests[k % len(requests)])
                except Exception as e:  # noqa: BLE001 - counted and reported, the load goes on
                    errors.append(str(e).splitlines()[0][:200])
                    continue
                lat.append(time.perf_counter() - t)
                if keep_outputs and k < len(requests) and k not in outputs:
                    outputs[k] = r.as_numpy(keep_outputs)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        await c.close()
    if not lat:
        raise BackendError(f"no request to {model!r} succeeded: {errors[0] if errors else 'no answer'}")
    ms = np.asarray(lat) * 1000
    out = {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "avg_ms": float(ms.mean()),
        "throughput": len(lat) / elapsed,
        "requests": len(lat),
        "errors": len(errors),
        "error_sample": errors[:3],
        "seconds": round(elapsed, 2),
        "_outputs": outputs,
    }
    if keep_latencies:
        out["_latencies_ms"] = ms
    return out


def replay(
    url: str,
    model: str,
    samples: Sequence[dict[str, np.ndarray]],
    concurrency: int,
    duration_s: float,
    keep_outputs: str | None = None,
    warmup: int = 0,
    keep_latencies: bool = False,
) -> dict[str, Any]:
    """Closed-loop load: ``concurrency`` clients send ``samples`` (cycled, one request each) for
    ``duration_s`` seconds; returns p50/p99/avg latency in ms, throughput in requests/s, errors
    (``keep_latencies``: and every request's latency in ms, as "_latencies_ms")."""
    return asyncio.run(
        _load(url, model, samples, concurrency, duration_s, keep_outputs, warmup or 2 * concurrency, keep_latencies)
    )
