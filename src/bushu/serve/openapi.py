"""The server's OpenAPI 3.1 document (served at /openapi.json)."""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["openapi_document"]

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR, "413": _ERROR, "503": _ERROR}
_JSON_OK = {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}, **_ERRORS}
_NAME = {
    "name": "model",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"},
}
_REGION = {"name": "region", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "pattern": r"^[0-9]+$"}}


def _get(summary: str, params: list | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params or [], "responses": _JSON_OK}}


def _infer_op() -> dict[str, Any]:
    """POST .../infer: a KServe v2 inference request."""
    return {
        "post": {
            "summary": "KServe v2 inference (JSON, or Triton's binary tensor extension with Inference-Header-Content-Length)",
            "parameters": [_NAME],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}},
            },
            "responses": _JSON_OK,
        }
    }


def _classify_op() -> dict[str, Any]:
    """POST /v1/models/{model}:classify: raw input (an image, a clip, a text) -> top-k labels."""
    return {
        "post": {
            "summary": "classify raw input, as the model's bushu.yaml preprocess.kind says: an image file, a .wav "
            'clip (audio) or a text (text/plain, or JSON {"text": str or [str]}); top-k labels',
            "parameters": [_NAME, {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1}}],
            "requestBody": {
                "required": True,
                "content": {
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["text"],
                            "properties": {
                                "text": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
                            },
                        }
                    },
                    "multipart/form-data": {
                        "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "top-k labels",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Predictions"}}},
                },
                **_ERRORS,
            },
        }
    }


def _detect_op() -> dict[str, Any]:
    """POST /v1/models/{model}:detect: an image file -> boxes."""
    return {
        "post": {
            "summary": "detect objects in an image file with a detection artifact (bushu.yaml task detection): "
            "boxes [x1, y1, x2, y2] in the image's own pixels, after the score threshold and class-wise "
            "NMS. Over gRPC: ModelInfer with the request parameter detect=true and one BYTES input of "
            "encoded images; the BYTES output 'detections' holds this JSON per image",
            "parameters": [
                _NAME,
                {
                    "name": "score",
                    "in": "query",
                    "description": "score threshold (default: bushu.yaml)",
                    "schema": {"type": "number", "minimum": 0, "maximum": 1},
                },
                {
                    "name": "iou",
                    "in": "query",
                    "description": "NMS IoU threshold (default: bushu.yaml)",
                    "schema": {"type": "number", "minimum": 0, "maximum": 1},
                },
                {
                    "name": "max",
                    "in": "query",
                    "description": "most detections returned",
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "detections, best score first",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detections"}}},
                },
                **_ERRORS,
            },
        }
    }


def _register_region_op() -> dict[str, Any]:
    """POST /v2/systemsharedmemory/region/{region}/register."""
    return {
        "post": {
            "summary": "register a window onto POSIX shared memory KEY; inputs and outputs may then name the region "
            "(parameters shared_memory_region, shared_memory_byte_size, shared_memory_offset)",
            "parameters": [_REGION],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["key", "byte_size"],
                            "properties": {
                                "key": {"type": "string"},
                                "offset": {"type": "integer", "minimum": 0},
                                "byte_size": {"type": "integer", "minimum": 0},
                            },
                        }
                    }
                },
            },
            "responses": _JSON_OK,
        }
    }


def _paths() -> dict[str, Any]:
    infer = _infer_op()
    return {
        "/v2/health/live": {"get": {"summary": "liveness", "responses": {"200": {"description": "live"}}}},
        "/v2/health/ready": {
            "get": {
                "summary": "readiness (every model loaded)",
                "responses": {"200": {"description": "ready"}, "400": {"description": "not ready"}},
            }
        },
        "/v2": _get("server metadata"),
        "/v2/models/stats": _get("statistics of every loaded model (Triton's format)"),
        "/v2/models/{model}": _get("model metadata: versions, platform, inputs, outputs", [_NAME]),
        "/v2/models/{model}/ready": _get("model readiness", [_NAME]),
        "/v2/models/{model}/config": _get("the model's completed config (Triton's ModelConfig as JSON)", [_NAME]),
        "/v2/models/{model}/stats": _get("the model's statistics", [_NAME]),
        "/v2/models/{model}/infer": infer,
        "/v2/models/{model}/versions/{version}": _get("metadata of one version", [_NAME, _VERSION]),
        "/v2/models/{model}/versions/{version}/infer": {"post": {**infer["post"], "parameters": [_NAME, _VERSION]}},
        "/v1/models/{model}:classify": _classify_op(),
        "/v1/models/{model}:detect": _detect_op(),
        "/v2/repository/index": {
            "post": {"summary": "models in the repository and their state", "responses": _JSON_OK}
        },
        "/v2/repository/models/{model}/load": {
            "post": {
                "summary": "load or reload (--model-control-mode explicit)",
                "parameters": [_NAME],
                "responses": _JSON_OK,
            }
        },
        "/v2/repository/models/{model}/unload": {
            "post": {"summary": "unload (--model-control-mode explicit)", "parameters": [_NAME], "responses": _JSON_OK}
        },
        "/v2/systemsharedmemory/status": _get(
            "registered system shared memory regions (Triton's extension; "
            "on by default on loopback, else --shared-memory)"
        ),
        "/v2/systemsharedmemory/region/{region}/status": _get("one registered region", [_REGION]),
        "/v2/systemsharedmemory/region/{region}/register": _register_region_op(),
        "/v2/systemsharedmemory/region/{region}/unregister": {
            "post": {"summary": "forget one region", "parameters": [_REGION], "responses": _JSON_OK}
        },
        "/v2/systemsharedmemory/unregister": {"post": {"summary": "forget every region", "responses": _JSON_OK}},
    }


def _tensor_schema() -> dict[str, Any]:
    """One input tensor of an inference request (JSON data, or binary / shared-memory parameters)."""
    return {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {
                "type": "string",
                "enum": [
                    "BOOL",
                    "UINT8",
                    "UINT16",
                    "UINT32",
                    "UINT64",
                    "INT8",
                    "INT16",
                    "INT32",
                    "INT64",
                    "FP16",
                    "FP32",
                    "FP64",
                    "BYTES",
                ],
            },
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    }


def _schemas() -> dict[str, Any]:
    """The components' schemas: errors, inference requests, predictions and detections."""
    tensor = _tensor_schema()
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}, "hint": {"type": "string"}},
        },
        "InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": tensor},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                    },
                },
            },
        },
        "Predictions": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                "batch": {
                    "type": "array",
                    "description": "for a JSON list of texts: the predictions of each",
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
                },
            },
        },
        "Detections": {
            "type": "object",
            "required": ["detections"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "detections": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "box": {
                                "type": "array",
                                "items": {"type": "number"},
                                "minItems": 4,
                                "maxItems": 4,
                                "description": "x1, y1, x2, y2 in the image's pixels",
                            },
                            "score": {"type": "number"},
                            "label": {"type": "string"},
                            "index": {"type": "integer"},
                        },
                    },
                },
            },
        },
        "Prediction": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "index": {"type": "integer"},
                "score": {"type": "number"},
            },
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bushu inference server",
            "version": "0.1.0",
            "description": "KServe v2 / Open Inference Protocol with Triton's extensions, plus an image endpoint.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
        },
    }
