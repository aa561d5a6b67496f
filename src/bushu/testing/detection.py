"""A real-photo detection set, offline: Tux Paint photo cut-outs composited onto real backgrounds.

Each scene is a random crop of a photo that scikit-image or scikit-learn ships (the astronaut, the
coffee cup, the cat, the rocket, the Hubble field, the Chinese palace...), resized to ``size``, with a
few photo stamps (``bushu.testing.stamps``: birds, fruit, flowers, ...) pasted on it at random scale,
mirrored half of the time. A stamp's box is exact: the bounding box of its alpha channel (pixels at
least half opaque) after scaling, at the place it was pasted. Objects overlap little (each pair's
intersection is at most ``max_cover`` of either box), so no object is hidden by a later one.

``write_detection_dataset(out, fmt)`` writes the scenes in one of the three annotation formats
``bushu.data.detection`` reads: ``coco`` (``images/`` + ``annotations/instances.json``), ``yolo``
(``images/``, ``labels/``, ``data.yaml``) or ``voc`` (``JPEGImages/`` + ``Annotations/*.xml``).
The same seed gives the same images and boxes in every format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, UnknownNameError

__all__ = ["FORMATS", "OIDV4_STAMPS", "Scene", "generate_scenes", "write_detection_dataset"]

FORMATS = ("coco", "yolo", "voc")

#: background photo -> where it comes from (greyscale ones are made RGB)
BACKGROUNDS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "china",
    "flower",
    "camera",
    "grass",
    "gravel",
    "brick",
)


#: Open Images class -> stamps (under STAMPS_DIR) that MediaPipe's SSD MobileNetV2 (oidv4, 24 classes) finds: for
#: ``categories=OIDV4_STAMPS``, a set a real-weights detector can be scored on. Each stamp alone, 180 px on a 320 px
#: scikit-image ``grass`` photo, came out with this top label and score: Car: beetle 0.80, sedan 0.84, sportscar2
#: 0.75, truck 0.73; Dog: dog 0.85, dingo 0.84, fox 0.41; Mug: mug 0.62; Camera: camera_35mm 0.73. (Its cows and
#: bulls read as Dog first, its cats are lions and tigers: left out.)
OIDV4_STAMPS: dict[str, list[str]] = {
    "Car": [
        "vehicles/auto/beetle.png",
        "vehicles/auto/sedan.png",
        "vehicles/auto/sportscar2.png",
        "vehicles/auto/truck.png",
    ],
    "Dog": ["animals/mammals/dogs/dog.png", "animals/mammals/dogs/dingo.png", "animals/mammals/dogs/fox.png"],
    "Mug": ["household/dishes/mug.png"],
    "Camera": ["hobbies/camera_35mm.png"],
}


@dataclass(frozen=True)
class Scene:
    name: str  # file stem
    image: np.ndarray  # [H, W, 3] uint8 RGB
    boxes: np.ndarray  # [N, 4] float32 x1, y1, x2, y2 in pixels (x2, y2 exclusive: a 1-pixel box is 1 wide)
    classes: np.ndarray  # [N] int64, index into the class names


def _backgrounds() -> dict[str, np.ndarray]:
    try:
        from skimage import data
        from sklearn.datasets import load_sample_images
    except ImportError as e:
        raise MissingDependencyError("the background photos (scikit-image, scikit-learn)", "data") from e
    sk = load_sample_images()
    out = {Path(f).stem: im for f, im in zip(sk.filenames, sk.images, strict=True)}
    for name in BACKGROUNDS:
        if name not in out:
            out[name] = getattr(data, name)()
    return {n: np.stack([out[n]] * 3, axis=-1) if out[n].ndim == 2 else out[n][..., :3] for n in BACKGROUNDS}


def _cover(a: np.ndarray, b: np.ndarray) -> float:
    """The larger of (intersection / area) over the two boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return max(inter / ((a[2] - a[0]) * (a[3] - a[1])), inter / ((b[2] - b[0]) * (b[3] - b[1])))


def _stamp_files(categories: list[str] | Mapping[str, Sequence[str | Path]] | None) -> dict[str, list[Path]]:
    from .stamps import STAMPS_DIR, stamp_categories

    if not isinstance(categories, Mapping):
        return stamp_categories(categories)
    out = {str(name): [STAMPS_DIR / f for f in files] for name, files in categories.items()}
    missing = [str(f) for files in out.values() for f in files if not f.is_file()]
    if missing:
        from ..errors import NotFoundError

        raise NotFoundError(
            f"stamp file(s) not found: {', '.join(missing[:3])}", hint="apt-get install tuxpaint-stamps-default"
        )
    return out


def generate_scenes(
    n_images: int = 20,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    categories: list[str] | Mapping[str, Sequence[str | Path]] | None = None,
    objects: tuple[int, int] = (1, 4),
    scale: tuple[int, int] = (40, 110),
    max_cover: float = 0.25,
    plain: tuple[int, int, int] | None = None,
) -> tuple[list[str], list[Scene]]:
    """``(class names, scenes)``: ``n_images`` scenes of ``size`` (width, height) with ``objects`` (min, max)
    stamps each, whose longer side is ``scale`` (min, max) pixels. Deterministic for a seed.

    ``categories``: names of ``bushu.testing.stamps.PHOTO_CATEGORIES`` (default: all ten), or class name -> stamp
    files (relative to the stamps folder), such as ``OIDV4_STAMPS``. ``plain``: an RGB colour to paste on instead
    of the photos (a set that simple image arithmetic can solve)."""
    from PIL import Image

    stamps = _stamp_files(categories)
    classes = list(stamps)
    rng = np.random.default_rng(seed)
    backgrounds = _backgrounds()
    bg_names = list(backgrounds)
    width, height = size
    cache: dict[Path, Image.Image] = {}
    scenes = []
    for i in range(n_images):
        bg = backgrounds[bg_names[int(rng.integers(len(bg_names)))]]
        h, w = bg.shape[:2]
        s = rng.uniform(0.5, 1.0)
        ch, cw = int(h * s), int(min(w, h * s * width / height))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        canvas = Image.fromarray(np.ascontiguousarray(bg[y : y + ch, x : x + cw])).resize(
            (width, height), Image.Resampling.BILINEAR
        )
        if rng.random() < 0.5:
            canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if plain is not None:
            canvas = Image.new("RGB", (width, height), tuple(plain))
        boxes: list[np.ndarray] = []
        labels: list[int] = []
        for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
            c = int(rng.integers(len(classes)))
            files = stamps[classes[c]]
            path = files[int(rng.integers(len(files)))]
            if path not in cache:
                with Image.open(path) as im:
                    rgba = im.convert("RGBA")
                cache[path] = rgba.crop(rgba.getchannel("A").getbbox())  # drop the transparent margin
            stamp = cache[path]
            longer = int(rng.integers(scale[0], scale[1] + 1))
            f = longer / max(stamp.size)
            stamp = stamp.resize(
                (max(1, round(stamp.width * f)), max(1, round(stamp.height * f))), Image.Resampling.BILINEAR
            )
            if rng.random() < 0.5:
                stamp = stamp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            opaque = stamp.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox()
            if opaque is None or stamp.width > width or stamp.height > height:
                continue
            for _try in range(20):  # a place that overlaps the others little, else leave this object out
                px, py = int(rng.integers(0, width - stamp.width + 1)), int(rng.integers(0, height - stamp.height + 1))
                box = np.array([px + opaque[0], py + opaque[1], px + opaque[2], py + opaque[3]], np.float32)
                if all(_cover(box, b) <= max_cover for b in boxes):
                    canvas.paste(stamp, (px, py), stamp)
                    boxes.append(box)
                    labels.append(c)
                    break
        scenes.append(
            Scene(
                f"scene_{i:04d}",
                np.asarray(canvas),
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(labels, np.int64),
            )
        )
    return classes, scenes


def write_detection_dataset(out: str | Path, fmt: str = "yolo", n_images: int = 20, seed: int = 0, **options) -> Path:
    """Write ``generate_scenes(n_images, seed, **options)`` to ``out`` in ``fmt`` (coco, yolo or voc)."""
    if fmt not in FORMATS:
        raise UnknownNameError("annotation format", fmt, list(FORMATS))
    classes, scenes = generate_scenes(n_images, seed, **options)
    out = Path(out)
    {"coco": write_coco, "yolo": write_yolo, "voc": write_voc}[fmt](out, classes, scenes)
    return out


def _save(scene: Scene, folder: Path) -> str:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    name = f"{scene.name}.jpg"
    Image.fromarray(scene.image).save(folder / name, quality=92)
    return name


def write_coco(out: Path, classes: list[str], scenes: list[Scene]) -> None:
    """``images/*.jpg`` and ``annotations/instances.json`` (category ids from 1, boxes ``[x, y, w, h]``)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, sc in enumerate(scenes, 1):
        name = _save(sc, out / "images")
        h, w = sc.image.shape[:2]
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        for (x1, y1, x2, y2), c in zip(sc.boxes.tolist(), sc.classes.tolist()):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": c + 1,
                    "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                }
            )
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)],
    }
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / "instances.json").write_text(json.dumps(doc), encoding="utf-8")


def write_yolo(out: Path, classes: list[str], scenes: list[Scene]) -> None:
    """``images/*.jpg``, ``labels/*.txt`` (``class cx cy w h``, normalised) and ``data.yaml``."""
    import yaml

    (out / "labels").mkdir(parents=True, exist_ok=True)
    for sc in scenes:
        name = _save(sc, out / "images")
        h, w = sc.image.shape[:2]
        lines = [
            f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for (x1, y1, x2, y2), c in zip(sc.boxes.tolist(), sc.classes.tolist())
        ]
        (out / "labels" / Path(name).with_suffix(".txt")).write_text("".join(s + "\n" for s in lines))
    (out / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": ".", "train": "images", "val": "images", "nc": len(classes), "names": dict(enumerate(classes))},
            sort_keys=False,
        )
    )


def write_voc(out: Path, classes: list[str], scenes: list[Scene]) -> None:
    """``JPEGImages/*.jpg``, ``Annotations/*.xml`` (1-based inclusive pixel corners, as VOC writes them) and
    ``labels.txt`` (the class names in order; VOC itself has no class list)."""
    from xml.sax.saxutils import escape

    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text("".join(c + "\n" for c in classes))
    for sc in scenes:
        name = _save(sc, out / "JPEGImages")
        h, w = sc.image.shape[:2]
        objs = "".join(
            f"<object><name>{escape(classes[c])}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1:g}</xmin>"
            f"<ymin>{y1 + 1:g}</ymin><xmax>{x2:g}</xmax><ymax>{y2:g}</ymax></bndbox></object>"
            for (x1, y1, x2, y2), c in zip(sc.boxes.tolist(), sc.classes.tolist())
        )
        (out / "Annotations" / Path(name).with_suffix(".xml")).write_text(
            f"<annotation><folder>JPEGImages</folder><filename>{name}</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>\n"
        )
