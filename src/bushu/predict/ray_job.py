"""`bushu predict --ray`: the same job as a Ray Data pipeline.

    from_items(inputs) -> map_batches(read + pre-process, tasks) -> map_batches(Infer, actor pool) -> driver

Each actor unpacks the artifact (shipped once through the object store, so cluster nodes need no copy
of it) and holds one bushu backend. The driver writes the rows through the same resumable journal as a
local run. Input paths must be readable where the tasks run (the same machine, or shared storage).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import MissingDependencyError, UserInputError
from ..model.artifact import Artifact, Preprocess
from .inputs import Item
from .runner import Predictor, describe_error, raw_input_preprocess, read_input

LOCAL_OBJECT_STORE_MB = 256  # a Ray started for the run: small, the rows stream through


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingDependencyError("bushu predict --ray (ray[data])", "ray") from e
    return ray


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """A clear error at once when nothing listens at a HOST:PORT or ray://HOST:PORT address."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"ray-gcs://{address}")
    try:
        host, port = parts.hostname, parts.port or (10001 if parts.scheme == "ray" else 6379)
    except ValueError as e:
        raise UserInputError(f"{address!r} is not a Ray address: {e}", hint="HOST:6379 or ray://HOST:10001") from e
    if not host:
        raise UserInputError(f"{address!r} is not a Ray address", hint="HOST:6379 or ray://HOST:10001")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise UserInputError(
            f"no Ray cluster answers at {address} ({e.strerror or e})",
            hint="start one with `ray start --head`, or leave ADDRESS out for a local Ray",
        ) from e


def _connect(ray: Any, address: str | None, cpus: int) -> bool:
    """Join the cluster at ``address``, or start a loopback-only Ray for this run (-> True: shut it down after)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    if address is not None:
        check_address(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="warning")
        except Exception as e:  # Ray's ConnectionError / RuntimeError variants
            raise UserInputError(
                f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}",
                hint="check the address and that the cluster runs the same Ray and Python",
            ) from e
        return False
    ray.init(
        address="local",
        num_cpus=cpus,
        object_store_memory=LOCAL_OBJECT_STORE_MB << 20,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="warning",
    )
    return True


def _pack(art: Artifact) -> dict[str, bytes]:
    """The artifact's files (not its reference model) by relative path."""
    skip = {art.files["reference"]} if "reference" in art.files else set()
    return {
        str(p.relative_to(art.path)): p.read_bytes()
        for p in sorted(art.path.rglob("*"))
        if p.is_file() and str(p.relative_to(art.path)) not in skip
    }


def _prepare_batch(batch: dict[str, np.ndarray], pp: Preprocess, task: str, fast_decode: bool) -> dict[str, list]:
    """Read and pre-process each input: data (np.save bytes, or UTF-8 text), a detector's transform as
    JSON in meta, or an error."""
    data, meta, errors = [], [], []
    for key, value, is_text in zip(batch["input"], batch["value"], batch["is_text"]):
        try:
            x = read_input(pp, Item(str(key), str(value), bool(is_text)), task, fast_decode)
            x, m = x if isinstance(x, tuple) else (x, None)
            if isinstance(x, str):
                data.append(x.encode())
            else:
                buf = io.BytesIO()
                np.save(buf, x, allow_pickle=False)
                data.append(buf.getvalue())
            meta.append("" if m is None else json.dumps([float(v) for v in m]))
            errors.append("")
        except Exception as e:  # noqa: BLE001 - this input's error row
            data.append(b"")
            meta.append("")
            errors.append(describe_error(e))
    return {"input": list(batch["input"]), "data": data, "meta": meta, "error": errors}


class _Infer:
    """A Ray actor holding one bushu backend."""

    def __init__(self, packed: list, backend: str | None, threads: int | None, top_k: int, kind: str):
        import ray

        files = ray.get(packed[0])
        where = tempfile.mkdtemp(prefix="bushu-ray-artifact-")
        try:
            for rel, blob in files.items():
                (Path(where) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(where) / rel).write_bytes(blob)
            self.pred, self.text = Predictor(where, backend, threads, top_k), kind == "text"
        finally:
            # Predictor has read what it needs (a mapped model file outlives its name), and Ray ends actors
            # without running their finalizers: removed now, or every run would leave a copy in /tmp
            shutil.rmtree(where, ignore_errors=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        good, prepared, rows = [], [], []
        for key, blob, meta, err in zip(batch["input"], batch["data"], batch["meta"], batch["error"]):
            if err:
                rows.append({"input": str(key), "error": str(err)})
                continue
            good.append(Item(str(key), ""))
            x = bytes(blob).decode() if self.text else np.load(io.BytesIO(bytes(blob)))
            prepared.append((x, tuple(json.loads(meta))) if meta else x)
        rows = self.pred.finish(good, prepared, rows)
        return {"row": [json.dumps(r, ensure_ascii=False) for r in rows]}


def run_ray(
    artifact: Path,
    items: Sequence[Item],
    batch_size: int,
    backend: str | None,
    threads: int | None,
    top_k: int,
    workers: int,
    address: str | None = None,
    fast_decode: bool = False,
) -> Iterator[list[dict]]:
    """Rows of ``workers`` inference actors, batch by batch as they arrive at the driver."""
    ray = _import_ray()
    if address is None and threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    started = _connect(ray, address, cpus=max(os.cpu_count() or 1, workers + 1))
    try:
        import logging

        import ray.data

        for name in ("ray", "ray.data"):  # bushu's own bar and summary report the run
            logging.getLogger(name).setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # bushu's own bar counts rows at the driver
        art = Artifact.load(artifact)
        pp = raw_input_preprocess(art)
        packed = ray.put(_pack(art))
        ds = ray.data.from_items([{"input": it.key, "value": it.value, "is_text": it.is_text} for it in items])
        ds = ds.map_batches(
            _prepare_batch,
            fn_kwargs={"pp": pp, "task": art.task, "fast_decode": fast_decode},
            batch_size=batch_size,
            num_cpus=0.5,
        )
        ds = ds.map_batches(
            _Infer,
            fn_constructor_args=([packed], backend, threads, top_k, pp.kind),
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield [json.loads(r) for r in batch["row"]]
    finally:
        if started:
            ray.shutdown()
