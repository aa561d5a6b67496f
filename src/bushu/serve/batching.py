"""Dynamic batching: one bounded queue per model version, one worker thread per instance.

A worker takes the oldest request, then gathers requests whose non-batch dims match until the batch
holds the largest preferred size (Triton's ``preferred_batch_size``; else ``max_batch_size``) or the
oldest has waited ``max_queue_delay``. Requests are validated before they are queued, and a batch that fails is re-run
request by request, so each request gets its own response or its own error.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import numpy as np

from ..errors import BackendError, BushuError, ServerBusyError
from .config import Settings
from .stats import Stats

__all__ = ["Arrivals", "Batcher", "QueueTimeoutError"]


class QueueTimeoutError(ServerBusyError):
    """A request waited in the queue longer than its timeout."""


class Arrivals:
    """Requests the front ends have accepted but not yet queued (counted on the event loop thread).

    A worker waits ``max_queue_delay`` for batch-mates only while some are on their way: with none
    arriving (one client at a time, say) waiting would only add latency, so it runs at once.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def ticket(self) -> Ticket:
        self.value += 1
        return Ticket(self)


class Ticket:
    __slots__ = ("_arrivals",)

    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals: Arrivals | None = arrivals

    def release(self) -> None:
        if self._arrivals is not None:
            self._arrivals.value -= 1
            self._arrivals = None

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Request:
    __slots__ = ("feeds", "rows", "sig", "future", "loop", "enqueued", "deadline")

    def __init__(self, feeds, rows, sig, future, loop, deadline):
        self.feeds, self.rows, self.sig, self.future, self.loop = feeds, rows, sig, future, loop
        self.enqueued = time.perf_counter_ns()
        self.deadline = deadline


def _signature(feeds: Mapping[str, np.ndarray], batched: bool) -> tuple:
    return tuple((k, a.shape[1:] if batched else a.shape) for k, a in feeds.items())


def _resolve(fut: asyncio.Future, result, error) -> None:
    if fut.done():  # cancelled: the client went away or timed out
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class Batcher:
    def __init__(
        self,
        name: str,
        settings: Settings,
        instances: list[Callable[[dict], dict]],
        stats: Stats,
        arrivals: Arrivals | None = None,
    ):
        self.name, self.settings, self.stats = name, settings, stats
        self.arrivals = arrivals
        self._queue: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(run,), name=f"bushu-{name}-{i}", daemon=True)
            for i, run in enumerate(instances)
        ]
        for t in self._threads:
            t.start()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def infer(
        self, feeds: dict[str, np.ndarray], timeout_s: float | None = None, ticket: Ticket | None = None
    ) -> dict[str, np.ndarray]:
        """Queue one validated request and wait for its outputs."""
        s = self.settings
        batched = s.max_batch_size > 0
        rows = next(iter(feeds.values())).shape[0] if batched and feeds else 1
        timeout_s = timeout_s if (timeout_s is not None and s.allow_timeout_override) else s.default_timeout_s
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        deadline = time.perf_counter_ns() + int(timeout_s * 1e9) if timeout_s else None
        req = _Request(feeds, rows, _signature(feeds, batched), fut, loop, deadline)
        with self._cv:
            if self._closed:
                raise ServerBusyError(f"model {self.name!r} is being unloaded", hint="retry the request")
            if len(self._queue) >= s.max_queue_size:
                raise ServerBusyError(
                    f"model {self.name!r} has {len(self._queue)} requests queued (the limit)",
                    hint="retry later, or raise max_queue_size / instance_group count",
                )
            self._queue.append(req)
            if ticket is not None:
                ticket.release()
            self._cv.notify()
        if timeout_s is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            raise QueueTimeoutError(
                f"request to {self.name!r} timed out after {timeout_s * 1000:g} ms", hint="retry, or raise the timeout"
            ) from None

    def close(self, wait: bool = True) -> None:
        """Stop taking requests; workers finish what is queued, then exit."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if wait:
            for t in self._threads:
                t.join(timeout=60)

    # -- worker side --------------------------------------------------------------------------------
    def _take(self) -> list[_Request] | None:
        s = self.settings
        with self._cv:
            while True:
                while not self._queue:
                    if self._closed:
                        return None
                    self._cv.wait()
                first = self._pop_live()
                if first is not None:
                    break
            batch, rows = [first], first.rows
            if not s.dynamic:
                return batch
            # Triton forms the largest preferred size it can: more rows than that would only run slower per row.
            limit = max(s.preferred_batch_sizes) if s.preferred_batch_sizes else s.max_batch_size
            until = first.enqueued + int(s.max_queue_delay_s * 1e9)
            while rows < limit:
                rows = self._gather(batch, rows, limit)
                wait = (until - time.perf_counter_ns()) / 1e9
                if (
                    rows >= limit
                    or wait <= 0
                    or self._closed
                    or (self.arrivals is not None and self.arrivals.value <= 0)
                ):
                    break
                self._cv.wait(wait)
            if self._queue:  # leftovers (other shapes, over the limit): wake another instance
                self._cv.notify()
            return batch

    def _pop_live(self) -> _Request | None:
        req = self._queue.popleft()
        if req.future.done():
            return None
        if req.deadline is not None and time.perf_counter_ns() > req.deadline:
            self._fail([req], QueueTimeoutError(f"request to {self.name!r} timed out in the queue"))
            return None
        return req

    def _gather(self, batch: list[_Request], rows: int, limit: int) -> int:
        sig = batch[0].sig
        keep: deque[_Request] = deque()
        while self._queue:
            r = self._queue.popleft()
            if r.future.done():
                continue
            if r.sig == sig and rows + r.rows <= limit:
                batch.append(r)
                rows += r.rows
            else:
                keep.append(r)
        self._queue.extendleft(reversed(keep))
        return rows

    def _work(self, run: Callable[[dict], dict]) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._execute(run, batch)
            except BaseException as e:  # never let a worker die: answer everyone in the batch
                self._fail(batch, e if isinstance(e, BushuError) else BackendError(f"inference failed: {e!r}"))

    def _execute(self, run: Callable[[dict], dict], batch: list[_Request]) -> None:
        start = time.perf_counter_ns()
        if len(batch) == 1:
            feeds = batch[0].feeds
        else:
            feeds = {k: np.concatenate([r.feeds[k] for r in batch]) for k in batch[0].feeds}
        t_in = time.perf_counter_ns()
        try:
            outputs = run(feeds)
        except Exception as e:  # noqa: BLE001 - every request must get an answer
            if len(batch) == 1:
                self._fail(batch, e if isinstance(e, BushuError) else BackendError(f"inference failed: {e!r}"))
                return
            for r in batch:  # find the request at fault; its batch-mates still get answers
                self._execute(run, [r])
            return
        t_infer = time.perf_counter_ns()
        if len(batch) == 1:
            results = [outputs]
        else:
            results, offset = [], 0
            for r in batch:
                results.append({k: v[offset : offset + r.rows] for k, v in outputs.items()})
                offset += r.rows
        end = time.perf_counter_ns()
        self.stats.record_execution(batch, start, t_in, t_infer, end)
        for r, res in zip(batch, results):
            r.loop.call_soon_threadsafe(_resolve, r.future, res, None)

    def _fail(self, batch: list[_Request], error: BaseException) -> None:
        now = time.perf_counter_ns()
        for r in batch:
            self.stats.record_failure(now - r.enqueued)
            r.loop.call_soon_threadsafe(_resolve, r.future, None, error)
