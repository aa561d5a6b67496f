"""Detection datasets on disk: COCO JSON, YOLO txt and Pascal VOC XML, recognised from the folder.

``read_detection_dataset(path)`` returns one form whatever the layout: per image its path, size,
boxes as ``[x1, y1, x2, y2]`` in the image's pixels and class indices into ``classes``.

- COCO: ``annotations/*.json`` (or a ``*.json`` at the top, or the JSON file itself) with ``images``,
  ``annotations`` (``bbox`` = ``[x, y, w, h]``) and ``categories``; image files next to it or in ``images/``.
- YOLO: ``data.yaml`` (``names``, optional ``val`` folder), ``images/`` and ``labels/`` with one
  ``class cx cy w h`` line per box, normalised to the image size.
- VOC: ``Annotations/*.xml`` and ``JPEGImages/``; ``xmin``/``ymin`` are 1-based and the corners
  inclusive, so ``x1 = xmin - 1``, ``x2 = xmax``. Classes from ``labels.txt`` / ``classes.txt`` if
  present, else the names found, sorted.

Bad annotations never stop the reading: a box outside the image is clipped, an unknown class, a box
of no area, a label file without its image or an image that does not open is left out; each one is
a ``Problem`` in ``dataset.problems``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NotFoundError, UserInputError
from ..model.processing import IMAGE_SUFFIXES

__all__ = ["DetectionDataset", "DetectionSample", "Problem", "detect_format", "read_detection_dataset"]


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str


@dataclass(frozen=True)
class DetectionSample:
    image: Path
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32, x1, y1, x2, y2 in pixels
    classes: np.ndarray  # [N] int64, index into DetectionDataset.classes


@dataclass
class DetectionDataset:
    root: Path
    format: str  # coco, yolo or voc
    classes: list[str]
    samples: list[DetectionSample]
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Boxes per class."""
        n = np.bincount(
            np.concatenate([s.classes for s in self.samples] + [np.zeros(0, np.int64)]), minlength=len(self.classes)
        )
        return dict(zip(self.classes, n.tolist()))


#: a box this many pixels outside the image is clipped without a problem entry: normalised coordinates written
#: with 6 decimals (YOLO) come back a fraction of a pixel off
ROUNDING = 0.5

_LAYOUTS = (
    "COCO: annotations/instances.json + images/; YOLO: data.yaml + images/ + labels/; "
    "VOC: Annotations/*.xml + JPEGImages/"
)


def detect_format(path: str | Path) -> str:
    """``coco``, ``yolo`` or ``voc`` from what the folder holds; a UserInputError naming the layouts if none."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"detection dataset not found: {path}", hint=_LAYOUTS)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        if path.suffix.lower() in (".yaml", ".yml"):
            return "yolo"
        raise UserInputError(f"{path} is a file, expected a detection dataset folder or a COCO .json", hint=_LAYOUTS)
    if _yolo_yaml(path) or ((path / "labels").is_dir() and (path / "images").is_dir()):
        return "yolo"
    if (path / "Annotations").is_dir() or any(path.glob("*.xml")):
        return "voc"
    if _coco_json(path, required=False):
        return "coco"
    raise UserInputError(f"{path} is not a detection dataset in a layout bushu reads", hint=_LAYOUTS)


def read_detection_dataset(path: str | Path, fmt: str | None = None) -> DetectionDataset:
    """Read a COCO, YOLO or VOC dataset (``fmt``, or recognised from the folder) into one form."""
    fmt = fmt or detect_format(path)
    readers = {"coco": _read_coco, "yolo": _read_yolo, "voc": _read_voc}
    if fmt not in readers:
        from ..errors import UnknownNameError

        raise UnknownNameError("annotation format", fmt, list(readers))
    return readers[fmt](Path(path))


class _Builder:
    """Collects samples and problems; clips boxes, drops empty ones."""

    def __init__(self, root: Path, fmt: str, classes: list[str]):
        self.ds = DetectionDataset(root, fmt, classes, [])

    def problem(self, path: Path | str, reason: str) -> None:
        self.ds.problems.append(Problem(str(path), reason))

    def image_size(self, path: Path, label: Path | str | None = None) -> tuple[int, int] | None:
        if not path.is_file():
            self.problem(label or path, f"its image {path} is missing")
            return None
        from PIL import Image

        try:
            with Image.open(path) as im:
                im.load()  # decode now: an image that does not decode is left out of the evaluation
                return im.size
        except Exception as e:
            self.problem(path, f"image does not decode: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            return None

    def add(
        self,
        image: Path,
        size: tuple[int, int],
        boxes: Iterable[tuple[float, float, float, float, int]],
        where: Path | str,
    ) -> None:
        w, h = size
        kept_b, kept_c = [], []
        for x1, y1, x2, y2, c in boxes:
            if not 0 <= c < len(self.ds.classes):
                self.problem(
                    where,
                    f"class id {c} is not one of the {len(self.ds.classes)} classes "
                    f"(0..{len(self.ds.classes) - 1}); box left out",
                )
                continue
            clipped = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                self.problem(
                    where,
                    f"box {_fmt((x1, y1, x2, y2))} of {self.ds.classes[c]!r} has no area inside "
                    f"the {w}x{h} image; box left out",
                )
                continue
            if max(abs(a - b) for a, b in zip(clipped, (x1, y1, x2, y2))) > ROUNDING:
                self.problem(
                    where,
                    f"box {_fmt((x1, y1, x2, y2))} of {self.ds.classes[c]!r} lies outside the "
                    f"{w}x{h} image; clipped to {_fmt(clipped)}",
                )
            kept_b.append(clipped)
            kept_c.append(c)
        self.ds.samples.append(
            DetectionSample(image, w, h, np.asarray(kept_b, np.float32).reshape(-1, 4), np.asarray(kept_c, np.int64))
        )

    def done(self) -> DetectionDataset:
        if not self.ds.samples:
            raise UserInputError(
                f"no image of {self.ds.root} could be read ({len(self.ds.problems)} problems: "
                + "; ".join(f"{p.path}: {p.reason}" for p in self.ds.problems[:3])
                + ")",
                hint=_LAYOUTS,
            )
        return self.ds


def _fmt(box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


# --- COCO -------------------------------------------------------------------------------------------------------


def _coco_json(root: Path, required: bool = True) -> Path | None:
    candidates = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    for p in candidates:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and {"images", "annotations", "categories"} <= set(doc):
            return p
    if required:
        raise UserInputError(
            f"no COCO annotation file in {root} (a .json with images, annotations and categories)", hint=_LAYOUTS
        )
    return None


def _read_coco(path: Path) -> DetectionDataset:
    ann_file = path if path.is_file() else _coco_json(path)
    assert ann_file is not None  # required=True raises instead of returning None
    try:
        doc = json.loads(ann_file.read_text(encoding="utf-8"))
        cats = sorted(doc["categories"], key=lambda c: c["id"])
        images, anns = doc["images"], doc["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserInputError(
            f"cannot read COCO annotations {ann_file}: {type(e).__name__}: {e}",
            hint="a JSON object with images, annotations and categories lists",
        ) from e
    root = ann_file.parent.parent if ann_file.parent.name == "annotations" else ann_file.parent
    b = _Builder(root, "coco", [str(c["name"]) for c in cats])
    index = {c["id"]: i for i, c in enumerate(cats)}
    by_image: dict = {}
    for a in anns:
        by_image.setdefault(a.get("image_id"), []).append(a)
    known = {im.get("id") for im in images}
    for image_id in by_image.keys() - known:
        b.problem(
            ann_file,
            f"{len(by_image[image_id])} annotation(s) for image id {image_id!r}, which is not "
            "in the images list; left out",
        )
    for im in images:
        name = str(im.get("file_name", ""))
        file = next(
            (d / name for d in (root / "images", root, ann_file.parent) if (d / name).is_file()), root / "images" / name
        )
        size = b.image_size(file, f"{ann_file} (image id {im.get('id')!r})")
        if size is None:
            continue
        boxes = []
        for a in by_image.get(im.get("id"), []):
            if a.get("iscrowd"):
                continue  # crowd regions are neither found nor missed (COCO's own rule)
            x, y, w, h = (float(v) for v in a["bbox"])
            cid = a.get("category_id")
            if cid not in index:
                b.problem(
                    f"{ann_file} (annotation {a.get('id')!r})",
                    f"category id {cid!r} is not among the categories {sorted(index)}; box left out",
                )
                continue
            boxes.append((x, y, x + w, y + h, index[cid]))
        b.add(file, size, boxes, f"{ann_file} (image {name})")
    return b.done()


# --- YOLO -------------------------------------------------------------------------------------------------------


def _yolo_yaml(root: Path) -> Path | None:
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (root / name).is_file():
            return root / name
    return None


def _read_yolo(path: Path) -> DetectionDataset:
    import yaml

    cfg_file = path if path.is_file() else _yolo_yaml(path)
    root = path.parent if path.is_file() else path
    cfg: dict[str, Any] = {}
    if cfg_file:
        try:
            cfg = yaml.safe_load(cfg_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise UserInputError(f"cannot read {cfg_file}: {e}") from e
    names = cfg.get("names") if isinstance(cfg, dict) else None
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names, key=int)]
    if not isinstance(names, list) or not names:
        raise UserInputError(
            f"{cfg_file or root / 'data.yaml'} has no class names",
            hint="data.yaml needs names: a list, or a map from class id to name",
        )
    base = (
        root / str(cfg.get("path") or ".") if not Path(str(cfg.get("path") or ".")).is_absolute() else Path(cfg["path"])
    )
    val = cfg.get("val") or cfg.get("test") or "images"
    img_dir = base / val if isinstance(val, str) and (base / val).is_dir() else root / "images"
    b = _Builder(root, "yolo", [str(n) for n in names])
    label_dir = _label_dir(img_dir)
    images = _images(img_dir)
    seen = set()
    for img in images:
        label = label_dir / img.relative_to(img_dir).with_suffix(".txt")
        seen.add(label)
        size = b.image_size(img)
        if size is None:
            continue
        w, h = size
        boxes = []
        if label.is_file():
            for n, line in enumerate(label.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    c = int(parts[0])
                    cx, cy, bw, bh = (float(v) for v in parts[1:5])
                    if len(parts) != 5:
                        raise ValueError
                except ValueError:
                    b.problem(f"{label}:{n}", f"expected 'class cx cy w h' (normalised), got {line.strip()[:80]!r}")
                    continue
                boxes.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, c))
        b.add(img, size, boxes, label)  # no label file: an image with no objects, as YOLO reads it
    for label in sorted(set(label_dir.rglob("*.txt")) - seen):
        b.problem(label, f"label file without its image (no {label.stem}.* under {img_dir}); left out")
    return b.done()


def _label_dir(img_dir: Path) -> Path:
    """YOLO's rule: the labels of ``.../images/x`` are in ``.../labels/x``."""
    parts = list(img_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return img_dir.parent / "labels"


# --- VOC --------------------------------------------------------------------------------------------------------


def _voc_coordinate(bndbox: Any, key: str) -> float:
    text = bndbox.findtext(key)
    if text is None:
        raise ValueError(f"<bndbox> without <{key}>")
    return float(text)


def _read_voc(path: Path) -> DetectionDataset:
    import xml.etree.ElementTree as ET

    ann_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    img_dir = path / "JPEGImages" if (path / "JPEGImages").is_dir() else ann_dir
    parsed = []
    names: set[str] = set()
    problems = []
    for xml in sorted(ann_dir.glob("*.xml")):
        try:
            tree = ET.parse(xml).getroot()
            objs = []
            for o in tree.iter("object"):
                bb = o.find("bndbox")
                if bb is None:
                    raise ValueError("an <object> without <bndbox>")
                corners = [_voc_coordinate(bb, k) for k in ("xmin", "ymin", "xmax", "ymax")]
                objs.append((str(o.findtext("name", "")).strip(), corners))
        except (ET.ParseError, TypeError, ValueError, AttributeError) as e:
            problems.append(Problem(str(xml), f"not a VOC annotation ({type(e).__name__}: {e}); left out"))
            continue
        names.update(n for n, _ in objs)
        parsed.append((xml, tree.findtext("filename"), objs))
    listed = next((path / f for f in ("labels.txt", "classes.txt") if (path / f).is_file()), None)
    classes = [s.strip() for s in listed.read_text().splitlines() if s.strip()] if listed else sorted(names)
    b = _Builder(path, "voc", classes)
    b.ds.problems += problems
    index = {n: i for i, n in enumerate(classes)}
    for xml, filename, objs in parsed:
        img = (
            img_dir / filename
            if filename and (img_dir / filename).is_file()
            else next((p for p in img_dir.glob(xml.stem + ".*") if p.suffix.lower() in IMAGE_SUFFIXES), None)
        )
        if img is None:
            b.problem(xml, f"label file without its image ({filename or xml.stem + '.*'} not in {img_dir}); left out")
            continue
        size = b.image_size(img, xml)
        if size is None:
            continue
        boxes = []
        for name, (x1, y1, x2, y2) in objs:
            if name not in index:
                from ..errors import did_you_mean

                close = did_you_mean(name, classes, n=1)
                b.problem(
                    xml,
                    f"class {name!r} is not in {listed.name if listed else 'the classes'}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                    + "; box left out",
                )
                continue
            boxes.append((x1 - 1, y1 - 1, x2, y2, index[name]))
        b.add(img, size, boxes, xml)
    return b.done()
