"""KServe v2 over HTTP: the request handling (an ASGI app too), served by bushu's own HTTP/1.1
front end on asyncio + httptools (serve/httpserver.py: no framework and no ASGI server in the infer path).

Triton's binary tensor extension: the body is a JSON header of ``Inference-Header-Content-Length``
bytes followed by raw tensors; requests may have no Content-Type. Errors are ``{"error": "..."}``
with the exception's HTTP status (503 "busy" answers carry Retry-After).

    curl -s -d '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}' \
        localhost:8000/v2/models/classifier/infer
    curl -s --data-binary @cat.jpg 'localhost:8000/v1/models/resnet18:classify?k=3'
    curl -s --data-binary @cat.jpg 'localhost:8000/v1/models/ssd:detect?score=0.5&iou=0.45&max=20'
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import zlib
from typing import Any
from urllib.parse import parse_qs

from ..errors import BushuError, InferenceInputError, UserInputError
from .core import ModelManager
from .openapi import openapi_document
from .protocol import check_shape, datatype_of, from_json_data, from_raw, output_bytes, requested_outputs, to_json_data
from .shm import SharedMemoryRegions, cuda_unsupported, require, wants_shared_memory

__all__ = ["HttpApp"]

log = logging.getLogger("bushu.serve.http")
access = logging.getLogger("bushu.serve.access")  # one JSON object per request, when enabled
_JSON = [(b"content-type", b"application/json")]


class HttpError(UserInputError):
    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.http_status = status


class HttpApp:
    def __init__(
        self,
        manager: ModelManager,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        max_body_bytes: int = 64 << 20,
        server_name: str = "bushu",
        version: str = "0.1.0",
        access_log: bool = False,
        shm: SharedMemoryRegions | None = None,
    ) -> None:
        self.manager = manager
        self.shm = shm  # None: the shared memory extension is off
        self.access_log = access_log
        self.api_key, self.admin_key = api_key, admin_key
        self.max_body = max_body_bytes
        self.server_meta = {
            "name": server_name,
            "version": version,
            "extensions": [
                "classification",
                "binary_tensor_data",
                "model_repository",
                "statistics",
                "model_configuration",
            ]
            + (["system_shared_memory"] if shm else []),
        }

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
            return
        status, headers, body = await self.respond(scope, receive)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def respond(self, scope: dict, receive=None) -> tuple[int, list, bytes]:
        """(status, headers, body) for one request. ``scope`` is ASGI's; bushu's own front end adds
        ``bushu.body`` (the whole body, already read) and ``bushu.gone`` (a future done when the client
        disconnects), and passes no ``receive``."""
        start = time.perf_counter() if self.access_log else 0.0
        try:
            status, headers, body = await self.route(scope, receive)
        except BushuError as e:
            status, headers = e.http_status, _JSON if e.http_status != 503 else _JSON + [(b"retry-after", b"1")]
            body = json.dumps({"error": e.message, **({"hint": e.hint} if e.hint else {})}).encode()
        except Exception as e:  # a bug must cost one request, not the server
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            status, headers, body = 500, _JSON, json.dumps({"error": f"internal error: {e!r}"}).encode()
        if self.access_log:
            client = scope.get("client") or ("-", 0)
            access.info(
                json.dumps(
                    {
                        "client": client[0],
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "bytes": len(body),
                        "ms": round((time.perf_counter() - start) * 1000, 3),
                    }
                )
            )
        return status, headers, body

    # -- routing ------------------------------------------------------------------------------------
    async def route(self, scope: dict, receive) -> tuple[int, list, bytes]:
        method, path = scope["method"], scope["path"]
        segs = [s for s in path.split("/") if s]
        headers = dict(scope["headers"])
        if segs == ["openapi.json"] and method == "GET":
            return _ok(openapi_document())
        if segs[:1] == ["v2"] and segs[1:2] == ["health"]:
            self._method(method, "GET")
            if segs[2:] == ["live"]:
                return 200, _JSON, b""
            if segs[2:] == ["ready"]:
                return (200 if self.manager.ready else 400), _JSON, b""
            raise HttpError(404, f"no endpoint {path}", hint="health endpoints: /v2/health/live, /v2/health/ready")
        if segs[:2] == ["v2", "repository"]:
            self._auth(headers, self.admin_key or self.api_key, "repository")
            body = await self._body(scope, receive, headers)
            return await self._repository(method, segs[2:], body)
        if segs[:2] in (["v2", "systemsharedmemory"], ["v2", "cudasharedmemory"]):
            self._auth(headers, self.admin_key or self.api_key, "shared memory")
            body = await self._body(scope, receive, headers)
            return self._shared_memory(method, segs[1], segs[2:], body)
        if segs[:1] not in (["v2"], ["v1"]):
            raise HttpError(404, f"no endpoint {path}", hint="see /openapi.json for the endpoints")
        self._auth(headers, self.api_key, "inference")
        if segs == ["v2"]:
            self._method(method, "GET")
            return _ok(self.server_meta)
        if segs == ["v2", "models", "stats"]:
            self._method(method, "GET")
            return _ok({"model_stats": [m.stats.to_dict() for m in self.manager.loaded()]})
        if segs[:2] == ["v1", "models"] and len(segs) == 3 and segs[2].endswith(":detect"):
            self._method(method, "POST")
            return await self._detect_image(segs[2].removesuffix(":detect"), scope, receive, headers)
        if segs[:2] == ["v1", "models"] and len(segs) == 3 and segs[2].endswith(":classify"):
            self._method(method, "POST")
            return await self._classify_image(segs[2].removesuffix(":classify"), scope, receive, headers)
        if segs[:2] != ["v2", "models"] or len(segs) < 3:
            raise HttpError(404, f"no endpoint {path}", hint="see /openapi.json for the endpoints")
        name, rest, version = segs[2], segs[3:], None
        if rest[:1] == ["versions"]:
            if len(rest) < 2:
                raise HttpError(404, f"no endpoint {path}", hint="use /v2/models/{name}/versions/{version}")
            version, rest = rest[1], rest[2:]
        return await self._model(method, name, version, rest, scope, receive, headers)

    async def _model(self, method, name, version, rest, scope, receive, headers) -> tuple[int, list, bytes]:
        if rest == ["ready"]:
            self._method(method, "GET")
            self.manager.get(name, version)  # 404 with did-you-mean when unknown
            return 200, _JSON, b""
        if rest == ["stats"]:
            self._method(method, "GET")
            models = (
                [self.manager.get(name, version)]
                if version
                else [self.manager.get(name, v) for v in self.manager.versions(name)] or [self.manager.get(name)]
            )
            return _ok({"model_stats": [m.stats.to_dict() for m in models]})
        model = self.manager.get(name, version)
        if rest == []:
            self._method(method, "GET")
            return _ok(model.metadata(self.manager.versions(name)))
        if rest == ["config"]:
            self._method(method, "GET")
            return _ok(model.config_dict())
        if rest == ["infer"]:
            self._method(method, "POST")
            with self.manager.arrivals.ticket() as ticket:
                body = await self._body(scope, receive, headers)
                return await _unless_client_leaves(self._infer(model, body, headers, ticket), scope, receive)
        raise HttpError(
            404,
            f"no endpoint {scope['path']}",
            hint="model endpoints: '', /ready, /config, /stats, /infer (see /openapi.json)",
        )

    # -- inference ----------------------------------------------------------------------------------
    async def _infer(self, model, body: bytes, headers: dict, ticket=None) -> tuple[int, list, bytes]:
        hlen = headers.get(b"inference-header-content-length")
        if hlen is not None:
            try:
                n = int(hlen)
            except ValueError:
                raise InferenceInputError(
                    f"Inference-Header-Content-Length is {hlen.decode(errors='replace')!r}, not an integer"
                ) from None
            if not 0 <= n <= len(body):
                raise InferenceInputError(
                    f"Inference-Header-Content-Length {n} is larger than the body ({len(body)} bytes)"
                )
            header, binary = _json(body[:n]), memoryview(body)[n:]
        else:
            header, binary = _json(body), memoryview(b"")
        if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
            raise InferenceInputError(
                "the request must be a JSON object with an 'inputs' list",
                hint='{"inputs": [{"name": ..., "shape": [...], "datatype": "FP32", "data": [...]}]}',
            )
        feeds, offset = {}, 0
        for spec in header["inputs"]:
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise InferenceInputError(f"each input needs a 'name'; got {spec!r}"[:300])
            name = spec["name"]
            if name in feeds:
                raise InferenceInputError(f"input {name!r} is given twice")
            shape = check_shape(name, spec.get("shape"))
            dt = spec.get("datatype")
            if not isinstance(dt, str):
                raise InferenceInputError(f"input {name!r} has no 'datatype' (e.g. \"FP32\")")
            p = spec.get("parameters") or {}
            size = p.get("binary_data_size") if isinstance(p, dict) else None
            if wants_shared_memory(p):
                feeds[name] = from_raw(name, dt, shape, require(self.shm).read(p, f"input {name!r}"))
            elif size is not None:
                if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                    raise InferenceInputError(
                        f"input {name!r}: binary_data_size {size} runs past the end of the body "
                        f"({len(binary) - offset} binary bytes left)"
                    )
                feeds[name] = from_raw(name, dt, shape, binary[offset : offset + size])
                offset += size
            elif "data" in spec:
                feeds[name] = from_json_data(name, dt, shape, spec["data"])
            else:
                raise InferenceInputError(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
        if offset != len(binary):
            raise InferenceInputError(
                f"the body has {len(binary) - offset} bytes after the inputs' binary data; "
                "binary_data_size values do not add up to the body length"
            )
        params = header.get("parameters") or {}
        if not isinstance(params, dict):
            raise InferenceInputError("'parameters' must be an object")
        requested = requested_outputs(header.get("outputs"), model.output_names, bool(params.get("binary_data_output")))
        timeout = params.get("timeout")
        timeout_s = timeout / 1e6 if isinstance(timeout, (int, float)) and timeout > 0 else None
        to_shm = _shm_outputs(header.get("outputs"))
        if to_shm:
            require(self.shm)
        outputs = await model.infer_selected(feeds, requested, timeout_s, ticket)
        return _response(model, header.get("id"), outputs, to_shm, self.shm)

    async def _classify_image(self, name: str, scope, receive, headers) -> tuple[int, list, bytes]:
        model = self.manager.get(name)
        if model.preprocess is None:
            raise UserInputError(
                f"model {name!r} has no pre-processing recorded",
                hint="serve a bushu artifact (bushu.yaml in the version directory), or use /v2 infer",
            )
        with self.manager.arrivals.ticket() as ticket:
            return await self._classify_body(model, name, scope, receive, headers, ticket)

    async def _classify_body(self, model, name, scope, receive, headers, ticket) -> tuple[int, list, bytes]:
        """An image file, a wav clip or a text (text/plain, or JSON {"text": "..."} / {"text": [...]})."""
        from ..model.processing import top_k

        kind = model.preprocess.kind
        what = {"text": "a text", "audio": "a .wav clip"}.get(kind, "an image file")
        example = {
            "text": "-H 'Content-Type: text/plain' --data-binary @note.txt",
            "audio": "--data-binary @clip.wav",
        }.get(kind, "--data-binary @cat.jpg")
        body = await self._body(scope, receive, headers)
        if not body:
            raise UserInputError(
                f"the body is empty; send {what}", hint=f"curl {example} .../v1/models/{name}:classify"
            )
        ctype = headers.get(b"content-type", b"").decode("latin-1")
        if ctype.startswith("multipart/form-data"):
            body = _first_file(body, ctype)
        query = parse_qs(scope.get("query_string", b"").decode())
        try:
            k = int(query.get("k", query.get("top_k", ["5"]))[0])
        except ValueError:
            raise UserInputError("query parameter k must be an integer") from None
        raw: list[Any] | None = [body]
        if kind == "text" and ctype.startswith("application/json"):
            req = _json(body)
            text = req.get("text") if isinstance(req, dict) else None
            raw = [text] if isinstance(text, str) else text if isinstance(text, list) else None
            if not raw or not all(isinstance(t, str) for t in raw):
                raise UserInputError(
                    'a JSON body for a text model is {"text": "..."} (or a list of strings)',
                    hint="or send the text itself with Content-Type: text/plain",
                )
        feeds = await asyncio.to_thread(lambda: model.pipeline(raw))
        logits = (await model.infer(feeds, ticket=ticket))[model.output_names[0]]
        preds = top_k(logits.reshape(logits.shape[0], -1), model.labels, model.postprocess, k=max(1, k))
        answer = [[{"label": lbl, "index": i, "score": s} for i, lbl, s in row] for row in preds]
        out = {"model_name": model.name, "model_version": model.version, "predictions": answer[0]}
        if len(answer) > 1:  # a JSON list of texts: one list of predictions per text
            out["batch"] = answer
        return _ok(out)

    async def _detect_image(self, name: str, scope, receive, headers) -> tuple[int, list, bytes]:
        """An image file (JPEG/PNG...) -> {"detections": [{"box", "score", "label", "index"}]} in its pixels."""
        from ..detection.decode import parse_query

        model = self.manager.get(name)
        model.detection_head  # noqa: B018 - a model that is no detector answers 400 before the body is read
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True).items()}
        options = parse_query(query)
        with self.manager.arrivals.ticket() as ticket:
            body = await self._body(scope, receive, headers)
            if not body:
                raise UserInputError(
                    "the body is empty; send an image file",
                    hint=f"curl --data-binary @cat.jpg '.../v1/models/{name}:detect?score=0.3'",
                )
            ctype = headers.get(b"content-type", b"").decode("latin-1")
            if ctype.startswith("multipart/form-data"):
                body = _first_file(body, ctype)
            dets = await model.detect([body], options, ticket)
        return _ok(
            {"model_name": model.name, "model_version": model.version, "detections": [d.to_dict() for d in dets[0]]}
        )

    # -- repository ---------------------------------------------------------------------------------
    async def _repository(self, method: str, rest: list[str], body: bytes) -> tuple[int, list, bytes]:
        self._method(method, "POST")
        if rest == ["index"]:
            req = _json(body) if body.strip() else {}
            ready = bool(req.get("ready")) if isinstance(req, dict) else False
            return _ok(self.manager.index(ready_only=ready))
        if len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload"):
            if self.manager.control_mode != "explicit":
                raise HttpError(
                    403,
                    f"model {rest[2]} is off: the server runs with --model-control-mode {self.manager.control_mode}",
                    hint="start it with --model-control-mode explicit",
                )
            fn = self.manager.load if rest[2] == "load" else self.manager.unload
            await asyncio.to_thread(fn, rest[1])
            return 200, _JSON, b""
        raise HttpError(
            404,
            f"no repository endpoint {'/'.join(rest)}",
            hint="POST /v2/repository/index, /v2/repository/models/{name}/load or /unload",
        )

    # -- shared memory ------------------------------------------------------------------------------
    def _shared_memory(self, method: str, kind: str, rest: list[str], body: bytes) -> tuple[int, list, bytes]:
        if kind == "cudasharedmemory":
            raise cuda_unsupported()
        shm = require(self.shm)
        name = None
        if rest[:1] == ["region"] and len(rest) == 3:
            name, rest = rest[1], rest[2:]
        if rest == ["status"]:
            self._method(method, "GET")
            return _ok(shm.status(name))
        if rest == ["register"] and name is not None:
            self._method(method, "POST")
            req = _json(body) if body.strip() else {}
            if not isinstance(req, dict):
                raise InferenceInputError('register takes {"key": ..., "offset": ..., "byte_size": ...}')
            shm.register(name, req.get("key"), req.get("offset", 0), req.get("byte_size"))
            return 200, _JSON, b""
        if rest == ["unregister"]:
            self._method(method, "POST")
            shm.unregister(name)
            return 200, _JSON, b""
        raise HttpError(
            404,
            f"no shared memory endpoint {'/'.join(rest)}",
            hint="GET /v2/systemsharedmemory[/region/NAME]/status, POST /v2/systemsharedmemory/region/"
            "NAME/register, POST /v2/systemsharedmemory[/region/NAME]/unregister",
        )

    # -- helpers ------------------------------------------------------------------------------------
    def _auth(self, headers: dict, key: str | None, what: str) -> None:
        if not key:
            return
        given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
        if not hmac.compare_digest(given, key.encode()):
            raise HttpError(
                401,
                f"missing or wrong API key for {what}",
                hint="send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            )

    @staticmethod
    def _method(method: str, want: str) -> None:
        if method != want:
            raise HttpError(405, f"method {method} is not allowed here; use {want}")

    async def _body(self, scope, receive, headers: dict) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise HttpError(
                413,
                f"request body of {int(declared)} bytes is over the {self.max_body}-byte limit",
                hint="send smaller batches, or start the server with a larger --max-body-mb",
            )
        body = scope.get("bushu.body")
        if body is None:
            body = await self._receive_body(receive)
        elif len(body) > self.max_body:  # bushu's front end stops storing a body past the limit
            raise HttpError(
                413,
                f"request body is over the {self.max_body}-byte limit",
                hint="send smaller batches, or start the server with a larger --max-body-mb",
            )
        enc = headers.get(b"content-encoding", b"").lower()
        if enc in (b"gzip", b"deflate"):
            d = zlib.decompressobj(wbits=31 if enc == b"gzip" else 15)
            try:
                body = d.decompress(body, self.max_body + 1)
            except zlib.error as e:
                raise InferenceInputError(f"body is not valid {enc.decode()}: {e}") from None
            if len(body) > self.max_body:
                raise HttpError(413, f"decompressed body is over the {self.max_body}-byte limit")
        elif enc not in (b"", b"identity"):
            raise HttpError(415, f"Content-Encoding {enc.decode()!r} is not supported; use gzip, deflate or none")
        return body

    async def _receive_body(self, receive) -> bytes:
        """The body from ASGI messages (when an ASGI server runs the app)."""
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise HttpError(400, "the client disconnected before sending the whole body")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise HttpError(
                    413,
                    f"request body is over the {self.max_body}-byte limit",
                    hint="send smaller batches, or start the server with a larger --max-body-mb",
                )
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _unless_client_leaves(coro, scope: dict, receive):
    """Await ``coro``, cancelling it when the client disconnects: a request nobody waits for leaves
    the queue without running. bushu's front end says so with a future (no task per request); under
    an ASGI server, a task waits for ``http.disconnect``."""
    task = asyncio.current_task()
    assert task is not None  # both front ends run each request in a task (httpserver: loop.create_task)
    gone = False

    def on_gone(f: asyncio.Future) -> None:
        nonlocal gone
        if not f.cancelled() and f.exception() is None and f.result().get("type") == "http.disconnect":
            gone = True
            task.cancel()

    watch = scope.get("bushu.gone")
    if watch is None:
        watch = asyncio.ensure_future(receive())
    elif watch.done():
        raise HttpError(499, "the client disconnected before the answer was ready")
    watch.add_done_callback(on_gone)
    try:
        return await coro
    except asyncio.CancelledError:
        if gone:
            raise HttpError(499, "the client disconnected before the answer was ready") from None
        raise
    finally:
        if "bushu.gone" in scope:
            watch.remove_done_callback(on_gone)
        else:
            watch.cancel()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json(raw: bytes | memoryview) -> Any:
    try:
        return json.loads(bytes(raw), parse_constant=_no_constants)
    except ValueError as e:
        if not isinstance(e, json.JSONDecodeError) and "JSON number" in str(e):
            raise InferenceInputError(
                f"malformed JSON: {e}", hint="NaN and Infinity are not valid JSON; send such tensors as binary data"
            ) from None
        raise _malformed(e) from None  # JSONDecodeError and UnicodeDecodeError are ValueErrors


def _malformed(e: Exception) -> InferenceInputError:
    return InferenceInputError(
        f"malformed JSON: {e}",
        hint="check the request body (or the Inference-Header-Content-Length header for binary requests)",
    )


def _ok(obj: Any) -> tuple[int, list, bytes]:
    return 200, _JSON, json.dumps(obj).encode()


def _shm_outputs(specs: Any) -> dict[str, dict]:
    """{output name: its shared memory parameters} for outputs the client wants written to shared memory."""
    if not isinstance(specs, list):
        return {}
    return {
        o["name"]: o["parameters"] for o in specs if isinstance(o, dict) and wants_shared_memory(o.get("parameters"))
    }


def _response(
    model, rid: Any, outputs, to_shm: dict[str, dict] | None = None, shm: SharedMemoryRegions | None = None
) -> tuple[int, list, bytes]:
    outs, blobs = [], []
    for name, binary, arr in outputs:
        o: dict[str, Any] = {"name": name, "datatype": datatype_of(arr), "shape": list(arr.shape)}
        if to_shm and name in to_shm:
            o["parameters"] = require(shm).write(to_shm[name], output_bytes(arr), f"output {name!r}")
        elif binary:
            blob = output_bytes(arr)
            o["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            o["data"] = to_json_data(arr)
        outs.append(o)
    header: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outs}
    if rid is not None:
        header["id"] = rid
    head = json.dumps(header).encode()
    if not blobs:
        return 200, _JSON, head
    return (
        200,
        [(b"content-type", b"application/octet-stream"), (b"inference-header-content-length", str(len(head)).encode())],
        b"".join([head, *blobs]),
    )


def _first_file(body: bytes, ctype: str) -> bytes:
    """The first part of a multipart/form-data body (curl -F file=@cat.jpg)."""
    fast = _first_part_fast(body, ctype)
    if fast is not None:
        return fast
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    for part in msg.iter_parts() if msg.is_multipart() else []:
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            return payload
    raise UserInputError("the multipart body has no file part", hint="curl -F file=@cat.jpg URL")


_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;,\s]+))', re.IGNORECASE)


def _first_part_fast(body: bytes, ctype: str) -> bytes | None:
    """The first non-empty part of a plain multipart body, found with bytes.find (the email parser
    took 1.2 ms for a 35 kB upload, 25% of the image endpoint's own work); None sends anything
    unusual (no boundary, a Content-Transfer-Encoding, a truncated body) to the email parser."""
    m = _BOUNDARY.search(ctype)
    if m is None:
        return None
    delim = b"--" + (m[1] or m[2]).encode("latin-1")
    pos = body.find(delim)
    while pos >= 0:
        start = pos + len(delim)
        if body[start : start + 2] == b"--":  # the closing delimiter
            return None
        head_end = body.find(b"\r\n\r\n", start)
        if head_end < 0 or b"content-transfer-encoding" in body[start:head_end].lower():
            return None
        end = body.find(b"\r\n" + delim, head_end + 4)
        if end < 0:
            return None
        if end > head_end + 4:
            return body[head_end + 4 : end]
        pos = end + 2
    return None
