"""bushu (部署): take a model from a checkpoint or labelled data to a fast, validated deployment.

Public API; everything else is internal and may change.
"""

from .errors import BushuError
from .model.artifact import Artifact
from .runtime import Backend, get_backend, load_backend
from .spec import TensorSpec

__all__ = ["Artifact", "Backend", "BushuError", "TensorSpec", "get_backend", "load_backend"]
__version__ = "0.1.0"
