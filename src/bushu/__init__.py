"""bushu (部署): take a model from a checkpoint or labelled data to a fast, validated deployment.

    import bushu

    art = bushu.import_model("mobilenet_v2", "mv2")          # or bushu.train("photos/", "mine")
    print(bushu.load(art).predict(["cat.jpg"], k=3))
    print(bushu.evaluate(art, "labelled/").accuracy)
    small = bushu.optimize(art, "mv2-int8", quantize="int8", calib="images/")
    rows = bushu.export(small, "onnx,openvino", "exported/")
    with bushu.serve(small) as server: ...                   # KServe v2 HTTP + gRPC at server.http_url

Public API; everything else is internal and may change. Names are imported on first use, so
``import bushu`` stays light (no torch, no runtime). ``bushu.train`` (and plan, export, serve, evaluate)
is the function; the subpackage of the same name is imported with ``from bushu.train import ...``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Model, evaluate, export, import_model, load, optimize, plan, serve, train
    from .errors import BushuError
    from .model.artifact import Artifact
    from .plan import Constraints
    from .progress import Progress
    from .results import EvalResult, ExportResult, ExportRow, PlanResult, Prediction, TrainResult
    from .runtime import Backend, get_backend, load_backend
    from .spec import TensorSpec

__version__ = "0.1.0"

# name -> "module:attribute", imported on first access (PEP 562)
_LAZY = {
    "import_model": "bushu.api:import_model",
    "load": "bushu.api:load",
    "evaluate": "bushu.api:evaluate",
    "optimize": "bushu.api:optimize",
    "export": "bushu.api:export",
    "plan": "bushu.api:plan",
    "serve": "bushu.api:serve",
    "train": "bushu.api:train",
    "predict": "bushu.predict:predict",
    "Model": "bushu.api:Model",
    "Artifact": "bushu.model.artifact:Artifact",
    "Backend": "bushu.runtime:Backend",
    "BushuError": "bushu.errors:BushuError",
    "Constraints": "bushu.plan:Constraints",
    "EvalResult": "bushu.results:EvalResult",
    "ExportResult": "bushu.results:ExportResult",
    "ExportRow": "bushu.results:ExportRow",
    "PlanResult": "bushu.results:PlanResult",
    "Prediction": "bushu.results:Prediction",
    "Progress": "bushu.progress:Progress",
    "TensorSpec": "bushu.spec:TensorSpec",
    "TrainResult": "bushu.results:TrainResult",
    "get_backend": "bushu.runtime:get_backend",
    "load_backend": "bushu.runtime:load_backend",
}

__all__ = [
    "Artifact",
    "Backend",
    "BushuError",
    "Constraints",
    "EvalResult",
    "ExportResult",
    "ExportRow",
    "Model",
    "PlanResult",
    "Prediction",
    "Progress",
    "TensorSpec",
    "TrainResult",
    "evaluate",
    "export",
    "get_backend",
    "import_model",
    "load",
    "load_backend",
    "optimize",
    "plan",
    "predict",
    "serve",
    "train",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'bushu' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    try:
        value = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        if e.name != module:  # a dependency of the module is missing: its own error says which
            raise
        raise AttributeError(f"bushu.{name} is not available in this build ({module} is missing)") from e
    globals()[name] = value  # cached: the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Bushu(types.ModuleType):
    """Importing a subpackage sets it as an attribute of its parent; where a top-level function has the
    subpackage's name (train, plan, export, serve, evaluate, predict), the function stays ``bushu.<name>``
    (the subpackage is still ``from bushu.train import data`` or ``sys.modules["bushu.train"]``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Bushu
