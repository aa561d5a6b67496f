"""What grpcio alone costs per call on this machine: a server that echoes bytes, no bushu, no model.

    python bench/grpc_floor.py                            # aio and sync servers, 64 B to 602 KB
    python bench/grpc_floor.py --modes aio --sizes 150528 --duration 5

Issue 21 asks for gRPC to add at most 0.5 ms to the p50 at concurrency 1 with 150 KB requests. This is
the floor under that figure: one unary call carrying N bytes to a server that sends 64 bytes back (as an
inference answer would), the client a plain blocking stub with one call in flight, the same bytes
every call. The server runs in its own process; its CPU time per call comes from /proc (psutil), the
client's from its own process clock.

Modes: ``aio`` (grpc.aio, the server bushu uses), ``aio-hop`` (the same, each answer made on a worker
thread and awaited, as an inference hand-off is), ``sync`` (grpc.server with a thread pool),
``sync-hop`` (sync, plus a hand-off to a second pool). Writes bench/results/grpc-floor.json and .md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, write_results  # noqa: E402

METHOD = "/floor.Echo/Call"
ANSWER = b"\0" * 64


def _serve(mode: str, port_out, stop) -> None:
    import grpc

    pool = ThreadPoolExecutor(max_workers=2) if mode.endswith("hop") else None

    if mode.startswith("aio"):
        import asyncio

        async def call(request: bytes, context) -> bytes:
            if pool is not None:
                return await asyncio.get_running_loop().run_in_executor(pool, lambda: ANSWER)
            return ANSWER

        async def main() -> None:
            server = grpc.aio.server()
            handler = grpc.method_handlers_generic_handler(
                "floor.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
            )
            server.add_generic_rpc_handlers((handler,))
            port_out.send(server.add_insecure_port("127.0.0.1:0"))
            await server.start()
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
            await server.stop(None)

        asyncio.run(main())
        return

    def sync_call(request: bytes, context) -> bytes:
        return pool.submit(lambda: ANSWER).result() if pool is not None else ANSWER

    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "floor.Echo", {"Call": grpc.unary_unary_rpc_method_handler(sync_call)}
    )
    server.add_generic_rpc_handlers((handler,))
    port_out.send(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    stop.wait()
    server.stop(None)


def measure(mode: str, sizes: list[int], duration: float) -> list[dict]:
    import grpc
    import psutil

    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(mode, send, stop), daemon=True)
    proc.start()
    rows = []
    try:
        port = recv.recv()
        server = psutil.Process(proc.pid)
        opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
            call = ch.unary_unary(METHOD)
            for size in sizes:
                body = b"\1" * size
                for _ in range(200):
                    call(body)
                lat = []
                s0, c0 = server.cpu_times(), time.process_time()
                end = time.perf_counter() + duration
                while time.perf_counter() < end:
                    t = time.perf_counter()
                    call(body)
                    lat.append((time.perf_counter() - t) * 1000)
                s1, c1 = server.cpu_times(), time.process_time()
                n = len(lat)
                lat.sort()
                rows.append(
                    {
                        "mode": mode,
                        "bytes": size,
                        "calls": n,
                        "p50_ms": round(statistics.median(lat), 3),
                        "p99_ms": round(lat[min(n - 1, int(0.99 * n))], 3),
                        "server_cpu_ms": round(((s1.user + s1.system) - (s0.user + s0.system)) * 1000 / n, 3),
                        "client_cpu_ms": round((c1 - c0) * 1000 / n, 3),
                    }
                )
                print(rows[-1], flush=True)
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="aio,aio-hop,sync,sync-hop")
    ap.add_argument("--sizes", default="64,16384,65536,150528,602112", help="request bytes, comma list")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per size")
    ap.add_argument("--repeats", type=int, default=2, help="rounds over every mode; the table has medians")
    args = ap.parse_args()
    import grpc

    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - {"aio", "aio-hop", "sync", "sync-hop"}:
        raise SystemExit(f"unknown mode(s) {sorted(unknown)}: use aio, aio-hop, sync, sync-hop")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    runs = [r for _ in range(args.repeats) for m in modes for r in measure(m, sizes, args.duration)]
    keys = ("p50_ms", "p99_ms", "server_cpu_ms", "client_cpu_ms")
    rows = []
    for m in modes:
        for size in sizes:
            same = [r for r in runs if r["mode"] == m and r["bytes"] == size]
            row = {"mode": m, "bytes": size} | {k: round(statistics.median(r[k] for r in same), 3) for k in keys}
            row["p50_rounds"] = " / ".join(f"{r['p50_ms']:.2f}" for r in same)
            rows.append(row)
    write_results(
        "grpc-floor",
        {"args": vars(args), "runs": runs},
        rows,
        ["mode", "bytes", *keys, "p50_rounds"],
        "grpcio alone: one unary call, concurrency 1, an echo server with no work",
        [
            f"command: `{command_line()}`",
            f"grpcio {grpc.__version__}; medians of {args.repeats} round(s) of {args.duration:g} s",
            "p50/p99: the client's wall time per call; CPU: per call, server process (psutil) and client process",
        ],
    )
    print(Path(__file__).resolve().parent / "results" / "grpc-floor.md")


if __name__ == "__main__":
    main()
