"""`bushu export`: one artifact → many deployment formats, each validated against the artifact's ONNX model.

    from bushu.export import export, FORMATS
    rows = export("art/", "onnx,openvino,ncnn", "exported/")   # also writes exported/export.{json,md}

The formats are a table (formats.py); each has one small exporter module (``_onnx``, ``_openvino``,
``_torch``, ``_tflite``, ``_ncnn``, ``_mnn``, ``_coreml``, ``_tensorrt``) imported only when used.
"""

from .core import ROW_KEYS, export, markdown_table
from .formats import FORMATS, Format, get_format, list_formats, resolve_formats

__all__ = ["FORMATS", "ROW_KEYS", "Format", "export", "get_format", "list_formats", "markdown_table", "resolve_formats"]
