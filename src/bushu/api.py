"""The Python API behind ``bushu.<name>``: thin wrappers over the functions the commands call.

Every function takes the model as ``artifact`` (an artifact directory, or an Artifact) and returns a
typed result (bushu.results); options are the commands' flags as keywords (``calib_size`` for
``--calib-size``). Errors are the commands' errors, naming the keyword in backticks.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .model.artifact import Artifact, Preprocess
    from .plan import Constraints
    from .progress import Progress
    from .results import EvalResult, ExportResult, PlanResult, Prediction, TrainResult
    from .serve.app import ServerHandle

    PathLike = str | Path
    ArtifactLike = str | Path | Artifact

__all__ = ["Model", "evaluate", "export", "import_model", "load", "optimize", "plan", "serve", "train"]


def _artifact(artifact: ArtifactLike) -> Artifact:
    from .model.artifact import Artifact

    return artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)


def import_model(
    source: str,
    out: PathLike,
    *,
    input_shape: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    preprocess: Preprocess | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    simplify: bool = True,
) -> Artifact:
    """`bushu import SOURCE -o OUT`: a zoo name, .onnx, .pt2, TorchScript .pt or ``module:callable`` -> an
    artifact, checked against the source (a ToleranceError lists every output that differs)."""
    from .import_.importer import Tolerance
    from .import_.importer import import_model as _import

    return _import(
        source,
        out,
        input_shape=input_shape,
        labels=labels,
        preprocess=preprocess,
        tolerance=Tolerance(atol, rtol),
        simplify=simplify,
    )


class Model:
    """An artifact loaded for inference (onnxruntime), from raw inputs: images (paths, bytes, PIL images or
    uint8 arrays), strings for text models, .wav/.flac clips for audio models."""

    def __init__(self, artifact: ArtifactLike):
        from .model.predict import Classifier

        self._clf = Classifier(artifact)
        self.artifact: Artifact = self._clf.art

    @property
    def labels(self) -> list[str] | None:
        return self.artifact.labels

    def predict(self, inputs: Sequence[Any], k: int = 1) -> list[list[Prediction]]:
        """The top ``k`` labels with scores, per input."""
        from .results import predictions

        return predictions(self._clf.predict(list(inputs), k=k))

    def logits(self, inputs: Sequence[Any]) -> np.ndarray:
        return self._clf.logits(list(inputs))

    def close(self) -> None:
        self._clf.close()

    def __enter__(self) -> Model:  # noqa: PYI034 - as Classifier and ServerHandle
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load(artifact: ArtifactLike) -> Model:
    """The artifact ready to predict: ``bushu.load("mv2").predict(["cat.jpg"], k=3)``."""
    return Model(artifact)


def evaluate(
    artifact: ArtifactLike,
    data: PathLike,
    *,
    backend: str | None = None,
    batch_size: int = 16,
    top_k: int = 5,
    label_map: Mapping[str, str | int] | None = None,
    report: PathLike | None = None,
    plot: PathLike | None = None,
    record: bool = True,
    progress: bool | Progress = False,
) -> EvalResult:
    """`bushu eval ARTIFACT --data DIR`: accuracy on a folder per class (named as the model's labels)."""
    from .eval_ import evaluate as _evaluate
    from .results import EvalResult

    return EvalResult.from_dict(
        _evaluate(
            artifact,
            data,
            backend=backend,
            batch_size=batch_size,
            top_k=top_k,
            label_map=label_map,
            report=report,
            plot=plot,
            record=record,
            progress=progress,
        )
    )


def optimize(
    artifact: ArtifactLike, out: PathLike, *, log: Callable[[str], None] | None = None, **options: Any
) -> Artifact:
    """`bushu optimize ARTIFACT -o OUT`: options as the flags (quantize="int8", calib=DIR, prune=0.3, data=DIR,
    max_accuracy_drop=1, backend="openvino", ...); returns the new artifact (its metrics["optimize"] holds
    the before/after rows)."""
    from .optimize import optimize as _optimize
    from .optimize.options import optimize_config

    art = _artifact(artifact)
    return _optimize(art, out, optimize_config(art, **options), log=log)


def export(artifact: ArtifactLike, formats: str | Sequence[str], out: PathLike, **options: Any) -> ExportResult:
    """`bushu export ARTIFACT --format F[,F...] -o OUT`: each format validated against the ONNX model (and
    timed, unless bench=False); options as the flags (samples, data, opset, threads, calib_size)."""
    from .export import export as _export
    from .results import ExportResult, ExportRow

    rows = _export(artifact, formats, out, **options)
    return ExportResult(Path(out), tuple(ExportRow.from_dict(r) for r in rows))


def plan(
    artifact: ArtifactLike, data: PathLike, out: PathLike, constraints: Constraints | None = None, **options: Any
) -> PlanResult:
    """`bushu plan ARTIFACT --data DIR -o OUT`: the served configuration that meets ``constraints``
    (bushu.plan.Constraints; default: none), written as OUT/repository and verified under load."""
    from .plan import Constraints
    from .plan import plan as _plan
    from .results import PlanResult

    return PlanResult.from_dict(_plan(artifact, data, out, constraints or Constraints(), **options))


def serve(
    artifact: ArtifactLike | None = None,
    *,
    repository: PathLike | None = None,
    http_port: int | None = 0,
    grpc_port: int | None = 0,
    metrics_port: int | None = 0,
    host: str = "127.0.0.1",
    **options: Any,
) -> ServerHandle:
    """Serve an artifact (in a repository of its own, removed on stop) or a model ``repository`` in a
    background thread, over KServe v2 HTTP and gRPC; returns once the models are loaded. Port 0 picks a
    free port, None turns that front end off. ``with bushu.serve("mv2") as server: server.http_url``."""
    from .errors import UserInputError
    from .serve.app import start_server

    if (artifact is None) == (repository is None):
        raise UserInputError("give either `artifact` or `repository`", hint='serve("ART") or serve(repository="REPO")')
    tmp = None
    if artifact is not None:
        from .serve.repository import add_to_repository

        tmp = Path(tempfile.mkdtemp(prefix="bushu-serve-"))
        add_to_repository(tmp, _artifact(artifact))
    repo = tmp if tmp is not None else Path(repository)  # type: ignore[arg-type]  # one of the two, checked above
    try:
        handle = start_server(
            repo, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, host=host, **options
        )
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if tmp is not None:
        stop = handle.stop

        def stop_and_clean() -> None:
            stop()
            shutil.rmtree(tmp, ignore_errors=True)

        handle.stop = stop_and_clean  # type: ignore[method-assign]
    return handle


def train(
    data: PathLike,
    out: PathLike,
    *,
    budget: str | float | None = "5m",
    echo: Callable[[str], None] | None = None,
    progress: bool | Progress = False,
    **options: Any,
) -> TrainResult:
    """`bushu train DATA -o OUT`: transfer learning with a model search on labelled examples (a folder per
    class, or a text,label CSV) within ``budget`` ("90s", "5m", seconds, or None); other options as
    bushu.train.TrainConfig (trials, kind, sources, heads, image_size, finetune, ...)."""
    from .model.artifact import Artifact
    from .results import TrainResult
    from .train import TrainConfig, parse_budget
    from .train import train as _train

    cfg = TrainConfig(data=Path(data), out=Path(out), budget_s=parse_budget(budget), progress=progress, **options)
    summary = _train(cfg, echo=echo)
    return TrainResult.from_dict(summary, Artifact.load(out))
