"""Everything known about a model without running it: IO, params, FLOPs, size, provenance, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, UserInputError
from ..model.artifact import Artifact
from ..spec import TensorSpec, from_onnx_elem_type

__all__ = ["model_info", "onnx_io"]


def onnx_io(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (initializers excluded) and outputs of an ONNX ModelProto as TensorSpecs."""
    inits = {t.name for t in model.graph.initializer}

    def spec(vi) -> TensorSpec:
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        return TensorSpec(vi.name, from_onnx_elem_type(tt.elem_type), tuple(dims))

    return [spec(v) for v in model.graph.input if v.name not in inits], [spec(v) for v in model.graph.output]


def _size(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def model_info(target: str | Path | Artifact, flops: bool = True, inputs=None) -> dict[str, Any]:
    """A plain dict (the `bushu info --json` document) for an artifact directory or an .onnx file.

    FLOPs are counted at the input sizes ``inputs`` (an InputRequest) states, else at the recorded
    typical sizes of the dynamic dims; ``flops_inputs`` says which."""
    from .bench import resolve_model

    art, main = resolve_model(target)
    info: dict[str, Any] = {"path": str(art.path if art else main), "kind": "artifact" if art else "file"}
    onnx_file = main if main.suffix.lower() == ".onnx" else None
    if art is not None:
        info.update(
            name=art.name,
            task=art.task,
            format=art.format,
            model_file=art.model_file,
            inputs=[s.to_dict() for s in art.inputs],
            outputs=[s.to_dict() for s in art.outputs],
            size_bytes=art.size_bytes,
            files={
                role: {"file": f, "size_bytes": _size(art.path / f) if (art.path / f).is_file() else None}
                for role, f in art.files.items()
            },
            preprocess=art.preprocess.to_dict() if art.preprocess else None,
            postprocess=art.postprocess.to_dict() if art.postprocess else None,
            labels={"count": len(art.labels), "first": art.labels[:5]} if art.labels else None,
            provenance=art.provenance,
            metrics=art.metrics,
        )
    else:
        if onnx_file is None:
            raise UserInputError(
                f"{main.name} is neither a bushu artifact nor an .onnx file",
                hint="pass an artifact directory (bushu import SRC -o ART) or a .onnx file",
            )
        info.update(name=main.stem, format="onnx", model_file=main.name, size_bytes=_size(main))
    if onnx_file is not None:
        import onnx

        try:
            proto = onnx.load(str(onnx_file), load_external_data=False)
        except Exception as e:
            raise ModelLoadError(
                f"{onnx_file.name} is not a readable ONNX model: {str(e)[:300]}",
                hint="check the file is complete (not truncated), or re-export it",
            ) from e
        if art is None:
            from ..import_.signature import annotate

            ins, outs = onnx_io(proto)
            ins = annotate(proto, ins)
            info.update(inputs=[s.to_dict() for s in ins], outputs=[s.to_dict() for s in outs])
        specs = art.inputs if art is not None else ins
        info["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        info["producer"] = f"{proto.producer_name} {proto.producer_version}".strip() or None
        if flops:
            from ..inputs import InputRequest
            from ..spec import UnresolvedDimError
            from .flops import count_flops

            req = inputs or InputRequest()
            try:
                shapes = req.shapes_at(specs, batch=None if req else 1)
            except UnresolvedDimError as e:
                if req:
                    raise
                shapes, info["flops_note"] = None, f"{e.message}: unknown dims counted as 1 ({e.hint})"
            rep = count_flops(proto, shapes=shapes)
            if shapes:
                info["flops_inputs"] = " ".join(f"{n}:{'x'.join(map(str, v))}" for n, v in shapes.items())
            info.update(
                params=rep.params,
                param_bytes=rep.param_bytes,
                flops=rep.flops,
                macs=rep.macs,
                flops_batch=rep.batch,
                flops_by_op=rep.by_op,
                flops_not_counted=rep.not_counted,
                flops_notes=rep.notes,
            )
    return info
