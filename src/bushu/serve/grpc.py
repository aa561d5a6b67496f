"""KServe v2 over gRPC (package ``inference``) with the stubs that ship in tritonclient.

Detection (the HTTP ``:detect`` endpoint's twin): a ModelInfer request with the request parameter
``detect: true`` (optional ``score`` / ``iou`` double and ``max`` int64 parameters) and one BYTES input,
of any name, whose elements are encoded images (JPEG/PNG); the response has one BYTES output
``detections`` with, per image, the JSON ``{"detections": [{"box", "score", "label", "index"}, ...]}``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from ..errors import BushuError, InferenceInputError
from .core import ModelManager
from .protocol import check_shape, datatype_of, from_raw, output_bytes
from .shm import SharedMemoryRegions, cuda_unsupported, require, wants_shared_memory

__all__ = ["GrpcService", "make_grpc_server"]

log = logging.getLogger("bushu.serve.grpc")

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# typed contents field per v2 datatype (FP16 travels only as raw bytes)
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _param(p: pb.InferParameter) -> Any:
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def _params(params) -> dict[str, Any]:
    return {k: _param(v) for k, v in params.items()} if params else {}


class GrpcService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        manager: ModelManager,
        http_meta: dict,
        api_key: str | None = None,
        admin_key: str | None = None,
        shm: SharedMemoryRegions | None = None,
    ) -> None:
        self.manager, self.meta = manager, http_meta
        self.api_key, self.admin_key = api_key, admin_key
        self.shm = shm  # None: the shared memory extension is off

    async def _guard(self, context, fn, key: str | None):
        if key:
            md = dict(context.invocation_metadata() or ())
            given = md.get("x-api-key") or md.get("authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), key.encode()):
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing or wrong API key (send metadata 'authorization: Bearer KEY' or 'x-api-key: KEY')",
                )
        try:
            return await fn()
        except BushuError as e:
            msg = e.message + (f" (hint: {e.hint})" if e.hint else "")
            await context.abort(_CODES.get(e.http_status, grpc.StatusCode.INTERNAL), msg)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as e:
            log.exception("internal error in gRPC handler")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {e!r}")

    # -- health and metadata ------------------------------------------------------------------------
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.manager.ready)

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.manager.is_ready(request.name, request.version or None))

    async def ServerMetadata(self, request, context):
        async def run():
            return pb.ServerMetadataResponse(**self.meta)

        return await self._guard(context, run, self.api_key)

    async def ModelMetadata(self, request, context):
        async def run():
            m = self.manager.get(request.name, request.version or None)
            md = m.metadata(self.manager.versions(request.name))
            return json_format.ParseDict(md, pb.ModelMetadataResponse())

        return await self._guard(context, run, self.api_key)

    async def ModelConfig(self, request, context):
        async def run():
            return pb.ModelConfigResponse(config=self.manager.get(request.name, request.version or None).config)

        return await self._guard(context, run, self.api_key)

    async def ModelStatistics(self, request, context):
        async def run():
            if request.name:
                models = (
                    [self.manager.get(request.name, request.version)]
                    if request.version
                    else [self.manager.get(request.name, v) for v in self.manager.versions(request.name)]
                )
            else:
                models = self.manager.loaded()
            resp = pb.ModelStatisticsResponse()
            for m in models:
                json_format.ParseDict(m.stats.to_dict(), resp.model_stats.add(), ignore_unknown_fields=True)
            return resp

        return await self._guard(context, run, self.api_key)

    # -- repository ---------------------------------------------------------------------------------
    async def RepositoryIndex(self, request, context):
        async def run():
            resp = pb.RepositoryIndexResponse()
            for row in self.manager.index(ready_only=request.ready):
                resp.models.add(
                    name=row["name"], version=row.get("version", ""), state=row["state"], reason=row.get("reason", "")
                )
            return resp

        return await self._guard(context, run, self.admin_key or self.api_key)

    async def RepositoryModelLoad(self, request, context):
        return await self._guard(
            context, lambda: self._control(request.model_name, "load"), self.admin_key or self.api_key
        )

    async def RepositoryModelUnload(self, request, context):
        return await self._guard(
            context, lambda: self._control(request.model_name, "unload"), self.admin_key or self.api_key
        )

    async def _control(self, name: str, action: str):
        if self.manager.control_mode != "explicit":
            from .http import HttpError

            raise HttpError(
                403,
                f"model {action} is off: the server runs with --model-control-mode {self.manager.control_mode}",
                hint="start it with --model-control-mode explicit",
            )
        await asyncio.to_thread(self.manager.load if action == "load" else self.manager.unload, name)
        return pb.RepositoryModelLoadResponse() if action == "load" else pb.RepositoryModelUnloadResponse()

    # -- inference ----------------------------------------------------------------------------------
    async def ModelInfer(self, request, context):
        with self.manager.arrivals.ticket() as ticket:
            return await self._guard(context, lambda: self._infer(request, ticket), self.api_key)

    async def _infer(self, request: pb.ModelInferRequest, ticket=None) -> pb.ModelInferResponse:
        model = self.manager.get(request.model_name, request.model_version or None)
        if "detect" in request.parameters and _param(request.parameters["detect"]):
            return await self._detect(model, request, ticket)
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise InferenceInputError(
                f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; give one per input, in order"
            )
        feeds: dict[str, np.ndarray] = {}
        for i, t in enumerate(request.inputs):
            if t.name in feeds:
                raise InferenceInputError(f"input {t.name!r} is given twice")
            shape = check_shape(t.name, list(t.shape))
            params = _params(t.parameters)
            if wants_shared_memory(params):
                feeds[t.name] = from_raw(t.name, t.datatype, shape, require(self.shm).read(params, f"input {t.name!r}"))
            elif raw:
                feeds[t.name] = from_raw(t.name, t.datatype, shape, raw[i])
            else:
                feeds[t.name] = _from_contents(t, shape)
        requested, to_shm = [], {}
        for o in request.outputs:
            params = _params(o.parameters)
            if wants_shared_memory(params):
                to_shm[o.name] = params
                require(self.shm)
            k = params.get("classification", 0)
            if not isinstance(k, int) or k < 0:
                raise InferenceInputError(f"output {o.name!r}: classification must be a non-negative integer")
            requested.append((o.name, True, k))
        if not requested:
            requested = [(n, True, 0) for n in model.output_names]
        timeout = _param(request.parameters["timeout"]) if "timeout" in request.parameters else None
        timeout_s = timeout / 1e6 if isinstance(timeout, (int, float)) and timeout > 0 else None
        outputs = await model.infer_selected(feeds, requested, timeout_s, ticket)
        resp = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for name, _, arr in outputs:
            out = resp.outputs.add(name=name, datatype=datatype_of(arr), shape=arr.shape)
            blob = output_bytes(arr)
            if name in to_shm:
                for key, value in require(self.shm).write(to_shm[name], blob, f"output {name!r}").items():
                    setattr(out.parameters[key], "string_param" if isinstance(value, str) else "int64_param", value)
                blob = b""  # keeps raw_output_contents aligned with outputs
            resp.raw_output_contents.append(blob)
        return resp

    async def _detect(self, model, request: pb.ModelInferRequest, ticket=None) -> pb.ModelInferResponse:
        import json

        from ..detection.decode import parse_query

        model.detection_head  # noqa: B018 - a model that is no detector fails before the input is decoded
        params = _params(request.parameters)
        options = parse_query({k: str(params[k]) for k in ("score", "iou", "max") if k in params})
        if len(request.inputs) != 1 or request.inputs[0].datatype != "BYTES":
            raise InferenceInputError(
                "a detect request has one BYTES input holding the encoded images (JPEG/PNG), "
                f"got {[(t.name, t.datatype) for t in request.inputs]}"
            )
        t = request.inputs[0]
        shape = check_shape(t.name, list(t.shape))
        if request.raw_input_contents:
            images = list(from_raw(t.name, "BYTES", shape, request.raw_input_contents[0]).reshape(-1))
        else:
            images = list(_from_contents(t, shape).reshape(-1))
        if not images:
            raise InferenceInputError(f"input {t.name!r} holds no image")
        dets = await model.detect([bytes(b) for b in images], options, ticket)
        arr = np.array([json.dumps({"detections": [d.to_dict() for d in row]}).encode() for row in dets], dtype=object)
        resp = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        resp.outputs.add(name="detections", datatype="BYTES", shape=arr.shape)
        resp.raw_output_contents.append(output_bytes(arr))
        return resp

    # -- system shared memory -----------------------------------------------------------------------
    async def SystemSharedMemoryStatus(self, request, context):
        async def run():
            resp = pb.SystemSharedMemoryStatusResponse()
            for r in require(self.shm).status(request.name or None):
                resp.regions[r["name"]].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(**r))
            return resp

        return await self._guard(context, run, self.admin_key or self.api_key)

    async def SystemSharedMemoryRegister(self, request, context):
        async def run():
            require(self.shm).register(request.name, request.key, request.offset, request.byte_size)
            return pb.SystemSharedMemoryRegisterResponse()

        return await self._guard(context, run, self.admin_key or self.api_key)

    async def SystemSharedMemoryUnregister(self, request, context):
        async def run():
            require(self.shm).unregister(request.name or None)
            return pb.SystemSharedMemoryUnregisterResponse()

        return await self._guard(context, run, self.admin_key or self.api_key)

    async def CudaSharedMemoryRegister(self, request, context):
        async def run():
            raise cuda_unsupported()

        return await self._guard(context, run, self.admin_key or self.api_key)


def _from_contents(t, shape: tuple[int, ...]) -> np.ndarray:
    from ..spec import from_v2_datatype, np_dtype

    field = _CONTENTS.get(t.datatype)
    if field is None:
        from_v2_datatype(t.datatype)  # unknown datatype: precise error
        raise InferenceInputError(f"input {t.name!r}: {t.datatype} must be sent in raw_input_contents")
    values = getattr(t.contents, field)
    n = int(np.prod(shape)) if shape else 1
    if len(values) != n:
        raise InferenceInputError(
            f"input {t.name!r} has {len(values)} elements in {field}, but shape {list(shape)} needs {n}"
        )
    if t.datatype == "BYTES":
        return np.array(list(values), dtype=object).reshape(shape)
    dt = np_dtype(from_v2_datatype(t.datatype))
    return np.asarray(values, dtype=dt).reshape(shape)


def make_grpc_server(service: GrpcService, max_message_bytes: int) -> grpc.aio.Server:
    opts = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=opts)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(service, _GenericHandlersOnly(server))
    return server


class _GenericHandlersOnly:
    """Hands the service's handlers to the server as one generic handler, not as registered methods.

    grpc.aio's server keeps one pending call future per registered method (20 for this service) plus
    one for generic calls, and each accepted call goes through ``asyncio.wait`` over all of them: the
    biggest cost in the gRPC event loop's profile (bench/profile_server.py). With the generic handler
    alone it waits on one future; the method is found by name in a dict."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers) -> None:
        pass  # the generic handler given just before serves these methods
