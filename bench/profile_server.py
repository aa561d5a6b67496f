"""Where the server's front-end CPU goes: cProfile on the event-loop thread under load, grouped by phase.

    python bench/profile_server.py [--model conv] [--protocols http,grpc] [--concurrency 16] [--duration 5]

The server (`bushu serve`'s event loop and options, uvloop when installed) runs in a subprocess of
this script, which switches cProfile on in its event-loop thread (SIGUSR1), drives the load with
bench/serving.py's lean client, and switches it off (SIGUSR2): the profile covers the loaded window
only. The profiler's clock is the loop thread's CPU time, so waiting in epoll costs nothing and the
phases add up to that thread's CPU; the rest of the process (batcher threads running onnxruntime,
gRPC's own threads) is reported beside it from /proc. cProfile's own overhead inflates every Python
call, so compare phases within a run, not with bench/serving.py's unprofiled front-end figure.

Phases (each function's own time goes to the first rule its name matches, else to its callers'
phases in proportion to the time they called it for):
- parse: HTTP parsing (httptools callbacks in serve/httpserver.py or uvicorn), routing, the v2 header, tensors from
  JSON or raw bytes, protobuf request decoding;
- copy: bytes joined or copied (request body chunks, response bodies, tobytes);
- queue hand-off: the batcher's queue, futures, tickets, wake-ups between threads, asyncio waits;
- respond: the response header and body, protobuf encoding, writes to the transport;
- event loop: callbacks, tasks and the loop's own Python code;
- unattributed: loop-thread CPU cProfile saw in no Python function (uvloop's C code, the gRPC core
  called from Cython).
Writes bench/results/profile_server.json and .md (phases per request; the top functions in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402

PHASES = ("parse", "copy", "queue hand-off", "respond", "event loop", "other", "unattributed")

# (phase, pattern on "file:function"); the first match wins, builtins included ("~:<method 'join' ...>").
RULES: list[tuple[str, re.Pattern]] = [
    (phase, re.compile(pattern))
    for phase, pattern in [
        ("copy", r"'join' of 'bytes'|tobytes|'__bytes__'|built-in method builtins\.bytes|bytearray|ascontiguous"),
        ("copy", r"'copy' of"),
        (
            "queue hand-off",
            r"serve/batching\.py|threading\.py|asyncio/(tasks|futures|locks)\.py|wait_for|_unless_client_leaves"
            r"|call_soon_threadsafe|create_future|'set_result'|'set_exception'|_release_waiter",
        ),
        (
            "respond",
            r"serve/httpserver\.py:(_answer|_write_error|_status_line)|serve/http\.py:_response|json/encoder\.py|json/__init__\.py:dumps|protocol\.py:(output_bytes|datatype_of"
            r"|_v2_of)|SerializeToString|httptools_impl\.py:send|'write' of|ModelInferResponse|_respond|encode_outputs",
        ),
        (
            "parse",
            r"httptools_impl\.py|httptools|serve/http\.py|serve/httpserver\.py|json/decoder\.py|json/__init__\.py:loads|serve/protocol\.py"
            r"|FromString|ParseFromString|serve/grpc\.py|serve/core\.py|spec\.py|serve/shm\.py|urllib",
        ),
        ("event loop", r"asyncio/|uvloop|'run' of 'Context'|events\.py"),
    ]
]


def child(repo: Path, out: Path) -> None:
    """The server, with cProfile switched on and off in its loop thread by SIGUSR1 / SIGUSR2."""
    import cProfile

    from bushu.serve.app import Server, ServerOptions, new_event_loop

    server = Server(repo, ServerOptions(http_port=0, grpc_port=0, metrics_port=None))
    state: dict = {}

    def on() -> None:
        state["prof"] = cProfile.Profile(time.thread_time)
        state["cpu0"] = time.thread_time()
        state["prof"].enable()

    def off() -> None:
        prof = state.pop("prof")
        prof.disable()
        cpu = time.thread_time() - state["cpu0"]
        prof.dump_stats(str(out))
        (out.parent / (out.name + ".cpu")).write_text(repr(cpu))

    def started(s: Server) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, on)
        loop.add_signal_handler(signal.SIGUSR2, off)
        print(f"HTTP 127.0.0.1:{s.http_port}\ngRPC 127.0.0.1:{s.grpc_port}\nready", flush=True)

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(server.serve(on_started=started, handle_signals=True))
    finally:
        loop.close()


def phase_of(key: tuple, stats: dict, memo: dict, stack: frozenset = frozenset()) -> dict[str, float]:
    """{phase: share} of one function's own time: its rule's phase, or its callers' phases weighted by
    the time each caller spent in it."""
    if key in memo:
        return memo[key]
    name = f"{key[0]}:{key[2]}"
    for phase, pattern in RULES:
        if pattern.search(name):
            memo[key] = {phase: 1.0}
            return memo[key]
    callers = stats[key][4]
    total = sum(c[2] for c in callers.values())
    if not callers or total <= 0 or key in stack:
        return {"other": 1.0}
    share: dict[str, float] = {}
    for caller, c in callers.items():
        if caller not in stats:
            continue
        for phase, f in phase_of(caller, stats, memo, stack | {key}).items():
            share[phase] = share.get(phase, 0.0) + f * c[2] / total
    memo[key] = share or {"other": 1.0}
    return memo[key]


def phases(path: Path) -> tuple[dict[str, float], list[dict]]:
    """Seconds of loop-thread CPU per phase, and the top functions by own time."""
    st = pstats.Stats(str(path)).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    memo: dict = {}
    out = dict.fromkeys(PHASES, 0.0)
    for key, v in st.items():
        for phase, f in phase_of(key, st, memo).items():
            out[phase] += v[2] * f
    top = sorted(st.items(), key=lambda kv: -kv[1][2])[:40]
    functions = [
        {
            "function": f"{_short(k[0])}:{k[1]}:{k[2]}",
            "calls": v[1],
            "own_s": v[2],
            "cumulative_s": v[3],
            "phase": max(phase_of(k, st, memo).items(), key=lambda kv: kv[1])[0],
        }
        for k, v in top
    ]
    return out, functions


def _short(file: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="conv", help="conv (default), cnn, mlp (bench/serving.py's), or an ONNX file")
    ap.add_argument("--protocols", default="http,grpc", help="comma list of http (binary), json, grpc")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of profiled load per protocol")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--delay-us", type=int, default=500)
    ap.add_argument("--keep", type=Path, help="also save each raw profile here as PROTOCOL.prof (pstats, snakeviz)")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # child mode: serve this repository
    ap.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        child(args.serve, args.profile_out)
        return
    with tempfile.TemporaryDirectory(prefix="bushu-profile-") as d:
        run(args, Path(d))


def run(args, tmp: Path) -> None:
    import numpy as np
    import psutil
    from serving import load_lean, model_repository, server_stats

    from bushu.runtime import load_backend

    model, repo = model_repository(args.model, tmp, args.max_batch, args.delay_us)
    with load_backend(model, "onnxruntime") as be:
        spec = be.inputs[0]
    x = np.random.default_rng(0).standard_normal(spec.concrete_shape(1)).astype(np.float32)
    prof = tmp / "loop.prof"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(repo), "--profile-out", str(prof)], stdout=subprocess.PIPE, text=True
    )
    urls = {}
    for line in proc.stdout:
        if m := re.match(r"(HTTP|gRPC) (\S+)", line):
            urls[m[1]] = m[2]
        if line.startswith("ready"):
            break
    rows, details = [], {}
    server = psutil.Process(proc.pid)
    try:
        for proto in [p for p in args.protocols.split(",") if p]:
            url = urls["gRPC"] if proto == "grpc" else urls["HTTP"]
            asyncio.run(load_lean(proto, url, "m", x, args.concurrency, 1.0, spec.name))  # warm up
            n0 = server_stats(urls["HTTP"], "m")["inference_stats"]["success"]["count"]
            main_cpu0, cpu0 = _main_thread_cpu(server), sum(server.cpu_times()[:2])
            for p in (prof, prof.with_name(prof.name + ".cpu")):
                p.unlink(missing_ok=True)
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            r = asyncio.run(load_lean(proto, url, "m", x, args.concurrency, args.duration, spec.name))
            proc.send_signal(signal.SIGUSR2)
            cpu_file = prof.with_name(prof.name + ".cpu")
            for _ in range(300):
                if cpu_file.exists():
                    break
                time.sleep(0.05)
            main_cpu, cpu = _main_thread_cpu(server) - main_cpu0, sum(server.cpu_times()[:2]) - cpu0
            n = server_stats(urls["HTTP"], "m")["inference_stats"]["success"]["count"] - n0
            loop_cpu = float(cpu_file.read_text())
            by_phase, functions = phases(prof)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"{proto}.prof").write_bytes(prof.read_bytes())
            by_phase["unattributed"] = max(0.0, loop_cpu - sum(by_phase.values()))
            row = {
                "protocol": proto,
                "concurrency": args.concurrency,
                "requests": n,
                "rps": r["rps"],
                "loop_thread_ms": loop_cpu * 1e3 / n,
                **{f"{k}_ms": v * 1e3 / n for k, v in by_phase.items()},
                "other_threads_ms": (cpu - main_cpu) * 1e3 / n,
            }
            rows.append(row)
            details[proto] = {"row": row, "top_functions": functions}
            print(
                f"{proto:4s} c={args.concurrency}: loop thread {row['loop_thread_ms']:.3f} ms/req: "
                + ", ".join(f"{k} {v * 1e3 / n:.3f}" for k, v in by_phase.items())
                + f"; other threads {row['other_threads_ms']:.2f} ms/req",
                flush=True,
            )
            for f in functions[:15]:
                print(f"    {f['own_s'] * 1e3 / n:7.3f} ms/req  {f['phase']:15s} {f['function']}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    write_results(
        "profile_server",
        {"profiles": details},
        rows,
        [
            "protocol",
            "concurrency",
            "requests",
            "rps",
            "loop_thread_ms",
            *[f"{p}_ms" for p in PHASES],
            "other_threads_ms",
        ],
        "Where the server's front-end CPU goes (cProfile on the event-loop thread, per request)",
        [
            f"command: `{command_line()}`",
            f"model: {args.model}; load: bench/serving.py's lean client, {args.duration:g} s per protocol",
            "loop_thread_ms: CPU of the event-loop thread per request while profiled (cProfile's overhead "
            "included); the phase columns add up to it; other_threads_ms: the rest of the server process "
            "(onnxruntime in the batcher threads, gRPC's threads)",
            "phases: see the docstring of bench/profile_server.py; the top functions are in the JSON",
        ],
    )


def _main_thread_cpu(p) -> float:
    for t in p.threads():
        if t.id == p.pid:
            return t.user_time + t.system_time
    return 0.0


if __name__ == "__main__":
    main()
