"""bushu's HTTP/1.1 front end: an asyncio Protocol parsing with httptools and answering through
HttpApp.respond, with no ASGI server between the socket and the request handling.

Measured against uvicorn running the same app (bench/serving.py, bench/profile_server.py; numbers in
docs/notes.md): uvicorn's per-request ASGI messages, its task per request plus a second task per
inference to watch for the client leaving, and its send() coroutines were most of the HTTP event
loop's time outside bushu's own code. Here a request is parsed by httptools callbacks, its body kept
as the bytes httptools hands over (one chunk: no copy; several: one join), answered by one task,
and written with one writelines (status line and headers, then the body as it is).

What it keeps of an HTTP/1.1 server: keep-alive (idle connections closed after
``keep_alive_s``), pipelined requests answered in order, ``Expect: 100-continue``, chunked
request bodies, HTTP/1.0 and ``Connection: close``, a 400 and a closed connection on malformed
HTTP, bodies over the limit answered 413 at once and discarded as they arrive,
requests whose client left cancelled (HttpApp turns that into a 499 nobody reads), and a graceful
stop that lets answers in progress finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from http import HTTPStatus
from urllib.parse import unquote

import httptools

from .http import HttpApp

__all__ = ["HttpServer"]

log = logging.getLogger("bushu.serve.http")

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS[499] = b"Client Closed Request"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_PIPELINE_LIMIT = 16  # pipelined requests queued on one connection before it stops reading


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


class _Request:
    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive")

    def __init__(self, method: str, path: str, query: bytes, headers: list, body: bytes, keep_alive: bool) -> None:
        self.method, self.path, self.query, self.headers = method, path, query, headers
        self.body, self.keep_alive = body, keep_alive


class _Connection(asyncio.Protocol):
    """One client connection: httptools callbacks build requests, answered one at a time in order."""

    transport: asyncio.Transport  # set by connection_made, before any other call

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.max_body = server.app.max_body
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple | None = None
        self.gone: asyncio.Future = self.loop.create_future()  # done when the client disconnects
        self.pending: deque[_Request] = deque()  # complete requests waiting for the one being answered
        self.task: asyncio.Task | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.paused = False
        self._new_message()

    def _new_message(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.length: int | None = None
        self.expect_continue = False
        self.dropped = False  # body over the limit: answered already, the rest is discarded

    # -- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client = transport.get_extra_info("peername")
        self.server.connections.add(self)
        self._idle_timer()

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        self.pending.clear()
        if not self.gone.done():
            self.gone.set_result({"type": "http.disconnect"})

    def data_received(self, data: bytes) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no protocol upgrades here: the request was answered as plain HTTP
        except httptools.HttpParserError:
            if self.task is None:
                self._write_error(400, b'{"error": "invalid HTTP request"}')
            else:
                self.pending.clear()
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    # -- httptools callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._new_message()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        if name == b"content-length" and value.isdigit():
            self.length = int(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        if self.length is not None and self.length > self.max_body:
            self._drop()  # HttpApp answers 413 from the declared length, without the body
        elif self.expect_continue and self.parser.get_http_version() == "1.1":
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.dropped:
            return
        self.size += len(body)
        self.chunks.append(body)
        if self.size > self.max_body:  # chunked, or more than declared: over the limit
            self._drop()

    def on_message_complete(self) -> None:
        if self.dropped:
            return
        c = self.chunks
        self._dispatch(c[0] if len(c) == 1 else b"".join(c), self.parser.should_keep_alive())

    # -- requests -----------------------------------------------------------------------------------
    def _drop(self) -> None:
        """Answer a request whose body is over the limit now; the rest of its body is read and discarded."""
        body = b"".join(self.chunks)
        self.chunks = []
        self.dropped = True
        self._dispatch(body, self.parser.should_keep_alive())

    def _dispatch(self, body: bytes, keep_alive: bool) -> None:
        url = httptools.parse_url(self.url)
        req = _Request(
            self.parser.get_method().decode("ascii"),
            unquote(url.path.decode("ascii", "replace")),
            url.query or b"",
            self.headers,
            body,
            keep_alive,
        )
        if self.task is None:
            self.task = self.loop.create_task(self._answer(req))
        else:
            self.pending.append(req)
            if len(self.pending) >= _PIPELINE_LIMIT and not self.paused:
                self.paused = True
                self.transport.pause_reading()

    async def _answer(self, req: _Request) -> None:
        while True:
            scope = {
                "type": "http",
                "method": req.method,
                "path": req.path,
                "query_string": req.query,
                "headers": req.headers,
                "client": self.client,
                "bushu.body": req.body,
                "bushu.gone": self.gone,
            }
            try:
                status, headers, body = await self.app.respond(scope)
            except asyncio.CancelledError:  # the server is stopping
                self.transport.close()
                raise
            if self.transport.is_closing():
                return
            head = [_status_line(status)]
            head += [b"%s: %s\r\n" % kv for kv in headers]
            head.append(b"content-length: %d\r\n" % len(body))
            if not req.keep_alive:
                head.append(b"connection: close\r\n")
            head.append(b"\r\n")
            self.transport.writelines([b"".join(head), body] if req.method != "HEAD" else [b"".join(head)])
            if not req.keep_alive:
                self.transport.close()
                return
            if not self.pending:
                break
            req = self.pending.popleft()
            if self.paused and len(self.pending) < _PIPELINE_LIMIT // 2:
                self.paused = False
                self.transport.resume_reading()
        self.task = None
        self._idle_timer()
        if self.server.stopping:
            self.transport.close()

    def _write_error(self, status: int, body: bytes) -> None:
        self.transport.write(
            _status_line(status)
            + b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()

    def _idle_timer(self) -> None:
        if self.server.keep_alive_s:
            self.idle = self.loop.call_later(self.server.keep_alive_s, self._close_idle)

    def _close_idle(self) -> None:
        if self.task is None and not self.transport.is_closing():
            self.transport.close()


class HttpServer:
    """Listens on a bound socket and serves ``app`` until ``close()``."""

    def __init__(self, app: HttpApp, keep_alive_s: float = 30.0) -> None:
        self.app = app
        self.keep_alive_s = keep_alive_s
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None

    async def start(self, sock) -> None:
        self._server = await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=2048)

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop listening, close idle connections, let answers in progress finish (at most ``grace_s``)."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            if c.task is None:
                c.transport.close()
        busy = [c.task for c in self.connections if c.task is not None]
        if busy:
            _, late = await asyncio.wait(busy, timeout=grace_s)
            for t in late:
                t.cancel()
        for c in list(self.connections):
            c.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
