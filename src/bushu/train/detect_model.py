"""The detector `bushu train` builds on a pretrained backbone: an anchor-free FCOS-style head on two levels.

Why this head: with a few dozen images there is too little data for anchors to be tuned or for a deep
neck to learn, and a CPU budget of minutes rules out training the whole backbone. An anchor-free head (one
prediction per feature-map cell, FCOS / YOLOX style) has nothing to tune but its weights:

- levels: the backbone's stride-16 and stride-32 feature maps (MobileNetV2 blocks 13 / 17, EfficientNet-Lite
  stages 4 / 6), each reduced to ``width`` channels, the coarse one upsampled and added to the fine one (a
  two-level FPN), then one shared tower of two 3x3 convolutions;
- assignment: center sampling, a cell is positive for a box when its centre lies inside the box and within
  ``RADIUS`` strides of the box centre, on the level(s) whose size range holds the box's longer side
  (stride 16: up to 128 px, stride 32: from 64 px; the overlap gives mid-sized boxes positives on both);
  a cell inside two boxes takes the smaller; a box too small to hold any cell centre takes the cell nearest
  its centre on stride 16;
- losses: sigmoid focal loss on the per-class scores (normalised by the positives), GIoU loss on the box,
  which is four distances (left, top, right, bottom) from the cell centre, ``exp(x * scale) * stride``;
- export: the same network with the decode in the graph, ``[batch, 4 + classes, cells]``: cx, cy, w, h in
  input pixels and per-class sigmoid scores, the Ultralytics YOLOv8 layout; the ImageNet normalisation is in
  the graph too, so the model takes a letterboxed RGB image in [0, 1] as Ultralytics models do, and bushu's
  YOLO decoder, NMS, ``:detect``, ``eval`` and the SDK use it unchanged.

What trains: the backbone up to stride 16 stays frozen: its stride-16 map is computed once per (augmented)
training image and cached. The stride-32 blocks (MobileNetV2 features 14-17, EfficientNet-Lite stages 5-6) are
fine-tuned with the head, at ``TOP_LR`` (0.1) of its learning rate and with their batch norm frozen (statistics
and affine weights as pretrained, eval mode: batches of a few dozen images would only make them noisy). They
live in the head network as its ``top`` module, so the exported graph is the same: frozen stride-16 part, then
``top``, the FPN and the tower. Measured on the 5-category composited scenes (seed-0 training set, 100 fresh
scenes of seed 12345; MobileNetV2 @256 px, 3 views, lr 5e-3, 30 epochs, one run each, shared 2-core CPU):
fresh mAP@0.5 0.375 with ``TOP_LR`` 0 (the blocks frozen), 0.575 with 0.1, 0.542 with 0.3 (8 views, 12
epochs; 0.1 gave 0.593 there). The full 10-minute run is in the README.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "LEVELS",
    "DetectionHeadNet",
    "ExportedDetector",
    "assign",
    "augment_view",
    "backbone_levels",
    "cell_centers",
    "detection_head",
    "detection_loss",
    "freeze_batchnorm",
    "letterbox_boxes",
    "object_pool",
    "paste_objects",
]

LEVELS = (16, 32)  # strides
SIZE_RANGES = ((0.0, 128.0), (64.0, float("inf")))  # longer box side (input pixels) each level predicts
RADIUS = 1.5  # center sampling, in strides
TOP_LR = 0.1  # the fine-tuned stride-32 backbone blocks learn at this fraction of the head's learning rate
PAD = 114  # letterbox grey, as Ultralytics
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the backbones' ImageNet normalisation


def backbone_levels(name: str) -> tuple[Any, Any, int, int]:
    """(stride-16 part, stride-32 part, channels of each) of a pretrained backbone; frozen, eval mode."""
    from torch import nn

    from .features import backbone_module

    m = backbone_module(name)
    if hasattr(m, "blocks"):  # timm EfficientNet-Lite: stages 0-4 end at stride 16, 5-6 at stride 32
        c4 = nn.Sequential(m.conv_stem, m.bn1, *m.blocks[:5])
        c5 = nn.Sequential(*m.blocks[5:])
        ch = (m.blocks[4][-1].bn3.num_features, m.blocks[6][-1].bn3.num_features)
    else:  # torchvision MobileNetV2: features 0-13 stride 16, 14-17 stride 32 (18, the 1280-channel conv, unused)
        c4, c5 = nn.Sequential(*m.features[:14]), nn.Sequential(*m.features[14:18])
        ch = (m.features[13].out_channels, m.features[17].out_channels)
    for part in (c4, c5):
        part.requires_grad_(False).eval()
    return c4, c5, int(ch[0]), int(ch[1])


def cell_centers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres [A, 2] (x, y, input pixels) of every cell of both levels, stride 16 first, row-major; strides [A]."""
    pts, strides = [], []
    for s in LEVELS:
        n = math.ceil(size / s)
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        pts.append(np.stack([xs.ravel(), ys.ravel()], 1) * s + s // 2)
        strides.append(np.full(n * n, s))
    return np.concatenate(pts).astype(np.float32), np.concatenate(strides).astype(np.float32)


def assign(
    boxes: np.ndarray, classes: np.ndarray, centers: np.ndarray, strides: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: the class of the box it predicts (-1: background) [A] and that box, x1 y1 x2 y2 [A, 4]."""
    a = len(centers)
    cls = np.full(a, -1, np.int64)
    target = np.zeros((a, 4), np.float32)
    if len(boxes) == 0:
        return cls, target
    x, y = centers[:, 0:1], centers[:, 1:2]
    inside = (x > boxes[:, 0]) & (x < boxes[:, 2]) & (y > boxes[:, 1]) & (y < boxes[:, 3])  # [A, G]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    r = RADIUS * strides[:, None]
    near = (np.abs(x - cx) < r) & (np.abs(y - cy) < r)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    in_range = np.zeros_like(inside)
    for s, (lo, hi) in zip(LEVELS, SIZE_RANGES):
        in_range |= (strides[:, None] == s) & (side >= lo) & (side <= hi)
    ok = inside & near & in_range
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for g in np.flatnonzero(~ok.any(0)):  # a box no cell centre falls in: the nearest stride-16 cell
        d = np.where(strides == LEVELS[0], (x[:, 0] - cx[g]) ** 2 + (y[:, 0] - cy[g]) ** 2, np.inf)
        ok[int(np.argmin(d)), g] = True
    cost = np.where(ok, area[None, :], np.inf)
    best = cost.argmin(1)
    pos = np.isfinite(cost[np.arange(a), best])
    cls[pos] = classes[best[pos]]
    target[pos] = boxes[best[pos]]
    return cls, target


def letterbox_boxes(boxes: np.ndarray, t: tuple[float, float, float, float]) -> np.ndarray:
    """Boxes in an image's pixels -> the model input's, for fit_image's transform (sx, sy, px, py)."""
    sx, sy, px, py = t
    return (boxes * np.asarray([sx, sy, sx, sy], np.float32) + np.asarray([px, py, px, py], np.float32)).astype(
        np.float32
    )


def augment_view(
    img,
    boxes: np.ndarray,
    classes: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.6, 1.4),
    min_visible: float = 0.4,
):
    """A random box-aware view of a PIL image on a ``size`` x ``size`` grey canvas: scale jitter around the
    letterbox fit, a random placement (parts may fall off: a crop), a horizontal flip half the time and a
    colour jitter. Boxes follow; a box with less than ``min_visible`` of its area left is dropped.
    Returns (image, boxes [N, 4] in the canvas' pixels, classes [N])."""
    from PIL import Image, ImageEnhance

    iw, ih = img.size
    s = size / max(iw, ih) * rng.uniform(*scale)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    px = int(rng.integers(min(0, size - nw), max(0, size - nw) + 1))
    py = int(rng.integers(min(0, size - nh), max(0, size - nh) + 1))
    canvas = Image.new("RGB", (size, size), (PAD, PAD, PAD))
    canvas.paste(img.resize((nw, nh), Image.Resampling.BILINEAR), (px, py))
    b = letterbox_boxes(boxes, (nw / iw, nh / ih, px, py))
    clipped = np.clip(b, 0, size)

    def area(v):
        return np.clip(v[:, 2] - v[:, 0], 0, None) * np.clip(v[:, 3] - v[:, 1], 0, None)

    keep = (
        (area(clipped) >= min_visible * np.maximum(area(b), 1e-6))
        & (clipped[:, 2] - clipped[:, 0] >= 2)
        & (clipped[:, 3] - clipped[:, 1] >= 2)
    )
    b, c = clipped[keep], classes[keep]
    if rng.random() < 0.5:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        b = np.stack([size - b[:, 2], b[:, 1], size - b[:, 0], b[:, 3]], 1) if len(b) else b
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        canvas = enhance(canvas).enhance(float(rng.uniform(0.7, 1.3)))
    return canvas, b.reshape(-1, 4).astype(np.float32), c


def object_pool(images, boxes_list, classes_list, size: int, limit: int = 4096) -> list:
    """(crop, class) of every box of the training images, each crop scaled as the letterbox fit scales its image:
    what ``paste_objects`` pastes. ``images`` may be a generator (one decoded image at a time: the pool keeps only
    the small crops); past ``limit`` crops a seeded reservoir sample of them is kept."""
    from PIL import Image

    pool: list = []
    seen = 0
    rng = np.random.default_rng(0)
    for img, boxes, classes in zip(images, boxes_list, classes_list):
        s = size / max(img.size)
        for b, c in zip(np.asarray(boxes, np.float32).reshape(-1, 4), classes):
            x1, y1, x2, y2 = (int(round(v)) for v in b)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            seen += 1
            slot = len(pool) if len(pool) < limit else int(rng.integers(seen))
            if slot >= limit:
                continue
            crop = img.crop((x1, y1, x2, y2))
            w, h = max(1, round(crop.width * s)), max(1, round(crop.height * s))
            item = (crop.resize((w, h), Image.Resampling.BILINEAR), int(c))
            if slot == len(pool):
                pool.append(item)
            else:
                pool[slot] = item
    return pool


def paste_objects(
    canvas,
    boxes: np.ndarray,
    classes: np.ndarray,
    pool: list,
    rng: np.random.Generator,
    n: int,
    scale: tuple[float, float] = (0.6, 1.4),
    max_overlap: float = 0.1,
    tries: int = 10,
):
    """Copy-paste: up to ``n`` objects of ``pool`` (box crops of other training images, ``object_pool``) pasted on
    the canvas at random places, scaled by ``scale`` and mirrored half of the time, where they cover at most
    ``max_overlap`` of any box already there (and of themselves). Returns (canvas, boxes, classes)."""
    from PIL import Image

    if not pool or n <= 0:
        return canvas, boxes, classes
    canvas = canvas.copy()
    size_w, size_h = canvas.size
    out_b, out_c = [np.asarray(boxes, np.float32).reshape(-1, 4)], [np.asarray(classes, np.int64)]
    for _ in range(n):
        crop, c = pool[int(rng.integers(len(pool)))]
        f = float(rng.uniform(*scale))
        w, h = max(2, round(crop.width * f)), max(2, round(crop.height * f))
        if w >= size_w or h >= size_h:
            continue
        have = np.concatenate(out_b)
        for _ in range(tries):
            x, y = int(rng.integers(0, size_w - w + 1)), int(rng.integers(0, size_h - h + 1))
            nb = np.asarray([x, y, x + w, y + h], np.float32)
            iw = np.clip(np.minimum(have[:, 2], nb[2]) - np.maximum(have[:, 0], nb[0]), 0, None)
            ih = np.clip(np.minimum(have[:, 3], nb[3]) - np.maximum(have[:, 1], nb[1]), 0, None)
            inter = iw * ih
            areas = (have[:, 2] - have[:, 0]) * (have[:, 3] - have[:, 1])
            if not len(have) or (inter <= max_overlap * np.minimum(areas, w * h)).all():
                break
        else:
            continue
        patch = crop.resize((w, h), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        canvas.paste(patch, (x, y))
        out_b.append(nb[None])
        out_c.append(np.asarray([c], np.int64))
    return canvas, np.concatenate(out_b).astype(np.float32), np.concatenate(out_c)


def freeze_batchnorm(module) -> None:
    """Batch-norm layers of ``module`` keep their pretrained statistics and affine weights: not trained, eval mode."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.requires_grad_(False).eval()


def _head_module(c4: int, c5: int, n_classes: int, width: int, top):
    import torch
    from torch import nn

    class DetectionHeadNet(nn.Module):
        """stride-16 map -> (class logits [B, A, C], box distances l t r b in pixels [B, A, 4]).

        ``top`` is the backbone's stride-32 part (stride-16 map -> stride-32 map), fine-tuned with the head at a
        lower learning rate (``TOP_LR``); its batch norm stays frozen in eval mode whatever mode the net is in."""

        def __init__(self):
            super().__init__()
            self.top = top.requires_grad_(True)
            freeze_batchnorm(self.top)
            self.lat4, self.lat5 = nn.Conv2d(c4, width, 1), nn.Conv2d(c5, width, 1)
            self.tower = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()
            )
            self.cls = nn.Conv2d(width, n_classes, 3, padding=1)
            self.reg = nn.Conv2d(width, 4, 3, padding=1)
            self.scales = nn.Parameter(torch.ones(len(LEVELS)))
            nn.init.constant_(self.cls.bias, -math.log(99.0))  # start at p = 0.01: focal loss' prior
            nn.init.normal_(self.reg.weight, std=0.01)
            nn.init.constant_(self.reg.bias, math.log(4.0))  # a 8-stride-wide box at the start

        def train(self, mode: bool = True):
            super().train(mode)
            self.top.eval()  # batch-norm statistics stay the pretrained ones (and no stochastic depth)
            return self

        def param_groups(self, lr: float) -> list[dict]:
            """The optimizer's groups: the head at ``lr``, the fine-tuned backbone blocks at ``lr * TOP_LR``."""
            top = [p for p in self.top.parameters() if p.requires_grad]
            ids = {id(p) for p in self.top.parameters()}
            rest = [p for p in self.parameters() if id(p) not in ids]
            return [{"params": rest, "lr": lr}, {"params": top, "lr": lr * TOP_LR}]

        def forward(self, f4):
            p5 = self.lat5(self.top(f4))
            p4 = self.lat4(f4) + nn.functional.interpolate(p5, size=f4.shape[-2:], mode="nearest")
            logits, dists = [], []
            for i, (p, s) in enumerate(zip((p4, p5), LEVELS)):
                t = self.tower(p)
                logits.append(self.cls(t).flatten(2).transpose(1, 2))
                reg = (self.reg(t) * self.scales[i]).clamp(max=8.0)  # exp(8) * 32 px: larger than any input
                dists.append((reg.exp() * s).flatten(2).transpose(1, 2))
            return torch.cat(logits, 1), torch.cat(dists, 1)

    return DetectionHeadNet()


DetectionHeadNet = _head_module  # the factory: DetectionHeadNet(c4 channels, c5 channels, n_classes, width, top)


def detection_head(backbone: str, n_classes: int, width: int):
    """A fresh DetectionHeadNet on ``backbone``: its pretrained stride-32 blocks as ``top``, a new head."""
    _, c5, ch4, ch5 = backbone_levels(backbone)
    return DetectionHeadNet(ch4, ch5, n_classes, width, c5)


def detection_loss(
    logits, dists, centers, cls_t, box_t, alpha: float = 0.25, gamma: float = 2.0, box_weight: float = 2.0
):
    """Focal loss (per class, sigmoid) + GIoU loss on the positives; cls_t [B, A] (-1 background), box_t [B, A, 4]."""
    import torch
    from torch.nn.functional import binary_cross_entropy_with_logits as bce

    pos = cls_t >= 0
    n_pos = max(float(pos.sum()), 1.0)
    onehot = torch.zeros_like(logits)
    onehot[pos] = torch.nn.functional.one_hot(cls_t[pos], logits.shape[-1]).to(logits.dtype)
    p = logits.sigmoid()
    pt = p * onehot + (1 - p) * (1 - onehot)
    w = (alpha * onehot + (1 - alpha) * (1 - onehot)) * (1 - pt) ** gamma
    cls_loss = (w * bce(logits, onehot, reduction="none")).sum() / n_pos
    if not pos.any():
        return cls_loss
    c = centers.expand(len(cls_t), -1, -1)[pos]
    d = dists[pos]
    pred = torch.cat([c - d[:, :2], c + d[:, 2:]], 1)
    return cls_loss + box_weight * (1 - giou(pred, box_t[pos])).mean()


def giou(a, b):
    import torch

    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(1), (b[:, 2:] - b[:, :2]).prod(1)
    union = area_a + area_b - inter
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).prod(1)
    return inter / union - (hull - union) / hull


def decode(logits, dists, centers):
    """-> [B, 4 + C, A]: cx, cy, w, h in input pixels, then per-class scores (the YOLOv8 layout)."""
    import torch

    x1y1, x2y2 = centers - dists[..., :2], centers + dists[..., 2:]
    return torch.cat([(x1y1 + x2y2) / 2, x2y2 - x1y1, logits.sigmoid()], -1).transpose(1, 2)


def ExportedDetector(backbone: str, head, size: int):  # builds a module; named as the class it returns
    """Image [B, 3, size, size] RGB in [0, 1] -> [B, 4 + C, A] (the graph that is exported): the frozen stride-16
    part of ``backbone``, then ``head`` (its fine-tuned stride-32 blocks, the FPN, the tower) and the decode."""
    import torch
    from torch import nn

    c4, _, _, _ = backbone_levels(backbone)
    centers = torch.from_numpy(cell_centers(size)[0])

    class Exported(nn.Module):
        def __init__(self):
            super().__init__()
            self.c4, self.head = c4, head
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
            self.register_buffer("centers", centers[None])

        def forward(self, images):
            logits, dists = self.head(self.c4((images - self.mean) / self.std))
            return decode(logits, dists, self.centers)

    return Exported().eval()
