"""Labelled data for `bushu train`: scan, check, de-duplicate and split.

Layouts (images ``.jpg/.png/.bmp/.webp/...``, texts ``.txt``, audio clips ``.wav/.flac``):

    DATA/<class>/<file>                         split here, stratified by class: first a test part
                                                (``test_fraction``, default 0.2), then validation (``val_fraction``)
    DATA/train/<class>/<file> + DATA/val/<class>/<file>   the given split is kept
    DATA/train/... [+ DATA/val/...] + DATA/test/<class>/<file>   the given test part is kept
    DATA.csv  with columns text,label           (text only)

The test part is never seen by the search, fine-tuning or early stopping: it only measures the
exported model at the end. With a given train/val split and no test folder there is no test part
unless ``test_fraction`` is given explicitly (then it comes out of the validation folder).

The check lists every class with its count, the imbalance ratio, exact duplicates (byte-identical
files, also across classes), unreadable files (skipped with the reason, never fatal) and classes
with too few examples. Audio in other formats (.mp3, .ogg, ...) is listed as skipped, with a hint.
Input that cannot train a sound model (no classes, one class, a class with no usable file) raises a
UserInputError that says what to do.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.folders import read_text, reason_of, scan_folder
from ..data.images import open_image
from ..data.suffixes import AUDIO_SUFFIXES, IMAGE_SUFFIXES, SUFFIXES, TEXT_SUFFIXES, UNSUPPORTED_AUDIO
from ..errors import NotFoundError, UserInputError

__all__ = ["MIN_RECOMMENDED", "DataCheck", "Dataset", "Item", "load_dataset", "split_stratified"]

MIN_RECOMMENDED = 5  # fewer usable examples per class than this draws a warning
IMBALANCE_WARN = 3.0  # largest / smallest class count above this draws a warning


@dataclass(frozen=True)
class Item:
    source: str  # file path (or "file.csv:row")
    label: int
    text: str | None = None  # text examples carry their text
    seconds: float | None = None  # audio examples carry their duration


@dataclass
class DataCheck:
    kind: str
    root: str
    classes: list[str]
    counts: dict[str, int] = field(default_factory=dict)  # usable examples per class (train + val)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # {"kept", "dropped", "classes"}
    ignored: int = 0  # files with other suffixes / hidden files
    warnings: list[str] = field(default_factory=list)

    @property
    def imbalance(self) -> float:
        c = [v for v in self.counts.values() if v]
        return round(max(c) / min(c), 2) if c else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "root": self.root,
            "classes": self.classes,
            "counts": self.counts,
            "n_examples": sum(self.counts.values()),
            "imbalance": self.imbalance,
            "n_skipped": len(self.skipped),
            "skipped": self.skipped,
            "n_duplicates": len(self.duplicates),
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "warnings": self.warnings,
        }


@dataclass
class Dataset:
    kind: str  # "image" | "text" | "audio"
    classes: list[str]
    train: list[Item]
    val: list[Item]
    check: DataCheck
    split: str  # "given" | "stratified"
    test: list[Item] = field(default_factory=list)  # held out: only the final model sees it
    test_split: str = "none"  # "given" | "stratified" | "none"

    def fingerprint(self) -> str:
        """Stable id of the data and its train/val split (file names, sizes, mtimes / texts); the test part is
        left out on purpose: nothing the search caches or records depends on it."""
        h = hashlib.sha1()
        for part, items in (("train", self.train), ("val", self.val)):
            for it in items:
                h.update(f"{part}|{it.source}|{it.label}|".encode())
                if it.text is not None:
                    h.update(it.text.encode("utf-8", "replace"))
                else:
                    st = Path(it.source).stat()
                    h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
        h.update("|".join(self.classes).encode())
        return h.hexdigest()[:16]


# -- entry point --------------------------------------------------------------------------------------
def load_dataset(
    data: str | Path,
    *,
    kind: str = "auto",
    val: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    test: str | Path | None = None,
    test_fraction: float | None = None,
) -> Dataset:
    """``test_fraction`` None: 0.2 when DATA is split here, none with a given validation folder; 0: no test part."""
    data = Path(data)
    kind = _check_arguments(data, kind, val_fraction, test_fraction)
    train_root, given_val, given_test = _layout(data, val, test)
    check = DataCheck(kind=kind, root=str(data), classes=[])
    seen: dict[str, tuple[str, str]] = {}  # content hash -> (kept source, class)
    classes, train = _read(train_root, kind, check, seen, None)
    val_items: list = []
    if given_val is not None:
        if not given_val.exists():
            raise NotFoundError(f"validation data not found: {given_val}")
        _, val_items = _read(given_val, kind, check, seen, classes)
    test_items: list[Item] = []
    test_split = "none"
    if given_test is not None:
        if not given_test.exists():
            raise NotFoundError(f"test data not found: {given_test}")
        _, test_items = _read(given_test, kind, check, seen, classes)  # `seen`: copies of training files dropped
        test_split = "given"
    check.classes = classes
    counts = Counter(it.label for it in [*train, *val_items, *test_items])
    check.counts = {c: counts.get(i, 0) for i, c in enumerate(classes)}
    _validate_counts(check, kind)
    if given_test is None:
        fraction = test_fraction if test_fraction is not None else (0.0 if given_val is not None else 0.2)
        if fraction > 0:
            pool = val_items if given_val is not None else train  # a given training folder stays whole
            keep, test_items = split_test(pool, fraction, 1 if given_val is not None else 2, seed, classes, check)
            if given_val is not None:
                val_items = keep
            else:
                train = keep
            test_split = "stratified"
    train, val_items, split = _split_validation(train, val_items, given_val, train_root, val_fraction, seed, classes)
    return Dataset(
        kind=kind,
        classes=classes,
        train=train,
        val=val_items,
        check=check,
        split=split,
        test=test_items,
        test_split=test_split if test_items else "none",
    )


def _check_arguments(data: Path, kind: str, val_fraction: float, test_fraction: float | None) -> str:
    """The data kind, after checking the arguments that need no reading."""
    if not data.exists():
        raise NotFoundError(
            f"training data not found: {data}",
            hint="pass a folder with one sub-folder of examples per class (or a text,label CSV)",
        )
    if not 0 < val_fraction < 1:
        raise UserInputError(f"`val_fraction` must be between 0 and 1, got {val_fraction}")
    if test_fraction is not None and not 0 <= test_fraction < 1:
        raise UserInputError(
            f"--test-size (test_fraction) must be between 0 and 1 (0 = no test part), got {test_fraction}"
        )
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise UserInputError(
                f"{data} is a file; expected a folder with one sub-folder per class, or a .csv with columns text,label"
            )
        return "text"
    if kind == "auto":
        kind = _guess_kind(data)
    if kind not in ("image", "text", "audio"):
        raise UserInputError(f"unknown data kind {kind!r}", hint="use `kind` image, text or audio")
    return kind


def _layout(data: Path, val: str | Path | None, test: str | Path | None) -> tuple[Path, Path | None, Path | None]:
    """(training root, validation folder, test folder): DATA/train with DATA/val and/or DATA/test, or DATA itself."""
    given_val = Path(val) if val else None
    given_test = Path(test) if test else None
    if data.is_dir() and (data / "train").is_dir() and ((data / "val").is_dir() or (data / "test").is_dir()):
        if given_val is None and (data / "val").is_dir():
            given_val = data / "val"
        if given_test is None and (data / "test").is_dir():
            given_test = data / "test"
        return data / "train", given_val, given_test
    return data, given_val, given_test


def _split_validation(
    train: list,
    val_items: list,
    given_val: Path | None,
    train_root: Path,
    val_fraction: float,
    seed: int,
    classes: list[str],
) -> tuple[list, list, str]:
    """(train, validation, how it was split): stratified from train, or the given folder checked."""
    if given_val is None:
        train, val_items = split_stratified(train, val_fraction, seed)
        missing = [classes[i] for i in range(len(classes)) if not any(it.label == i for it in val_items)]
        if missing:
            raise UserInputError(
                f"class(es) {', '.join(missing)} have only one usable example: one is needed "
                "for training and one for validation",
                hint="add examples to these classes",
            )
        return train, val_items, "stratified"
    missing = [classes[i] for i in range(len(classes)) if not any(it.label == i for it in train)]
    if missing:
        raise UserInputError(
            f"class(es) {', '.join(missing)} have no usable training example",
            hint=f"add examples under {train_root}/<class>/",
        )
    if not val_items:
        raise UserInputError(f"the validation folder {given_val} has no usable example")
    return train, val_items, "given"


def _guess_kind(root: Path) -> str:
    suffixes = Counter(p.suffix.lower() for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    n_img = sum(n for s, n in suffixes.items() if s in IMAGE_SUFFIXES)
    n_txt = sum(n for s, n in suffixes.items() if s in TEXT_SUFFIXES)
    n_wav = sum(n for s, n in suffixes.items() if s in AUDIO_SUFFIXES + UNSUPPORTED_AUDIO)
    if not n_img and not n_txt and not n_wav:
        if not any(root.iterdir()):
            raise UserInputError(f"{root} is empty", hint=_layout_hint(root))
        raise UserInputError(
            f"{root} has no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES[:5])}), "
            "no .txt files and no .wav/.flac clips",
            hint=_layout_hint(root),
        )
    return max((n_img, 2, "image"), (n_txt, 1, "text"), (n_wav, 0, "audio"))[2]


def _layout_hint(root: Path) -> str:
    return f"lay the data out as {root}/<class name>/<file>, with at least two classes"


# -- reading ------------------------------------------------------------------------------------------
def _read(
    root: Path, kind: str, check: DataCheck, seen: dict, classes: list[str] | None
) -> tuple[list[str], list[Item]]:
    if root.is_file():
        return _read_csv(root, check, seen, classes)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        if not found:
            loose = [p.name for p in root.iterdir() if p.is_file()][:3]
            what = (
                f"files directly in it ({', '.join(loose)}) but no class sub-folders"
                if loose
                else "no class sub-folders"
                if any(root.iterdir())
                else "nothing in it (empty folder)"
            )
            raise UserInputError(f"{root} has {what}", hint=_layout_hint(root))
        classes = found
    else:
        extra = [c for c in found if c not in classes]
        if extra:
            raise UserInputError(
                f"validation folder {root} has classes not in the training data: {', '.join(extra)}",
                hint="use the same class folder names in train/ and val/",
            )
    scan = scan_folder(root, SUFFIXES[kind], classes)
    check.ignored += scan.ignored
    items = []
    for f, i in scan.items:
        item = _read_one(f, i, kind, check)
        if item is not None and not _duplicate(item, f.read_bytes(), classes[i], check, seen):
            items.append(item)
    return classes, items


def _read_one(f: Path, label: int, kind: str, check: DataCheck) -> Item | None:
    if kind == "image":
        try:
            open_image(f)
        except Exception as e:  # noqa: BLE001 - any decode failure: list and skip
            check.skipped.append({"path": str(f), "reason": reason_of(e)})
            return None
        return Item(str(f), label)
    if kind == "audio":
        from ..model.audio import load_audio

        try:
            x, sr = load_audio(f)
        except Exception as e:  # noqa: BLE001 - unsupported format, corrupt or empty file: list and skip
            hint = getattr(e, "hint", None)  # bushu's own errors carry one
            check.skipped.append({"path": str(f), "reason": reason_of(e) + (f"; {hint}" if hint else "")})
            return None
        return Item(str(f), label, seconds=round(len(x) / sr, 4))
    try:
        text = read_text(f)
    except UserInputError as e:
        check.skipped.append({"path": str(f), "reason": e.message})
        return None
    return Item(str(f), label, text)


def _read_csv(path: Path, check: DataCheck, seen: dict, classes: list[str] | None) -> tuple[list[str], list[Item]]:
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserInputError(f"{path} is not UTF-8 text (byte {e.start})", hint="re-save the CSV as UTF-8") from e
    rows = list(csv.reader(io.StringIO(raw, newline="")))
    if not rows:
        raise UserInputError(f"{path} is empty", hint="a CSV with a header line text,label and one row per example")
    header = [h.strip().lower() for h in rows[0]]
    if "text" not in header or "label" not in header:
        raise UserInputError(
            f"{path} needs the columns text and label; its header is {rows[0]}", hint="first line: text,label"
        )
    ti, li = header.index("text"), header.index("label")
    pairs = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) <= max(ti, li) or not row[ti].strip() or not row[li].strip():
            check.skipped.append({"path": f"{path}:{n}", "reason": "missing text or label"})
            continue
        pairs.append((n, row[ti].strip(), row[li].strip()))
    names = sorted({lbl for _, _, lbl in pairs})
    if classes is None:
        classes = names
    else:
        extra = [c for c in names if c not in classes]
        if extra:
            raise UserInputError(f"validation CSV {path} has labels not in the training data: {', '.join(extra)}")
    index = {c: i for i, c in enumerate(classes)}
    items = []
    for n, text, lbl in pairs:
        item = Item(f"{path}:{n}", index[lbl], text)
        if not _duplicate(item, text.encode(), lbl, check, seen):
            items.append(item)
    return classes, items


def _duplicate(item: Item, content: bytes, cls: str, check: DataCheck, seen: dict) -> bool:
    key = hashlib.sha1(content).hexdigest()
    if key in seen:
        kept, kept_cls = seen[key]
        check.duplicates.append({"kept": kept, "dropped": item.source, "classes": sorted({kept_cls, cls})})
        return True
    seen[key] = (item.source, cls)
    return False


# -- checks and split ---------------------------------------------------------------------------------
def _validate_counts(check: DataCheck, kind: str) -> None:
    noun = {"image": "images", "text": "texts", "audio": "clips"}[kind]
    if len(check.classes) < 2:
        only = f" (only {check.classes[0]!r})" if check.classes else ""
        raise UserInputError(
            f"training needs at least 2 classes; {check.root} has {len(check.classes)}{only}",
            hint="add a folder per class; to detect 'anything else', add a class of other examples",
        )
    empty = [c for c, n in check.counts.items() if n == 0]
    if empty:
        bad = Counter(Path(s["path"]).parent.name for s in check.skipped)
        detail = ", ".join(f"{c!r}" + (f" ({bad[c]} unreadable)" if bad.get(c) else "") for c in empty)
        raise UserInputError(
            f"class(es) with no usable {noun}: {detail}", hint=f"add {noun} to these folders or remove them"
        )
    few = {c: n for c, n in check.counts.items() if n < MIN_RECOMMENDED}
    if few:
        check.warnings.append(
            f"few examples: {', '.join(f'{c} ({n})' for c, n in few.items())}; at least "
            f"{MIN_RECOMMENDED} per class are needed for a usable model, 20+ for a good one"
        )
    if check.imbalance > IMBALANCE_WARN:
        check.warnings.append(
            f"imbalanced classes: the largest has {check.imbalance}x the smallest; "
            "accuracy will favour the large classes (check per-class recall)"
        )
    conflicts = [d for d in check.duplicates if len(d["classes"]) > 1]
    if conflicts:
        check.warnings.append(
            f"{len(conflicts)} identical file(s) appear under different classes "
            f"(e.g. {conflicts[0]['dropped']} = {conflicts[0]['kept']}); only the first is kept"
        )
    if check.skipped:
        check.warnings.append(f"{len(check.skipped)} unreadable file(s) skipped")


def split_stratified(items: list[Item], val_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Per class: round(n * val_fraction) to validation, at least 1 when n >= 2, and at least 1 kept for training."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Item]] = {}
    for it in items:
        by_class.setdefault(it.label, []).append(it)
    train, val = [], []
    for label in sorted(by_class):
        group = by_class[label]
        order = rng.permutation(len(group))
        n_val = min(max(1, round(len(group) * val_fraction)), len(group) - 1) if len(group) >= 2 else 0
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return train, val


def split_test(
    items: list[Item], fraction: float, keep_min: int, seed: int, classes: list[str], check: DataCheck
) -> tuple[list[Item], list[Item]]:
    """Per class: round(n * fraction) (at least 1) to the test part, leaving ``keep_min`` for training/validation;
    classes too small for that keep all their examples and are named in a warning."""
    rng = np.random.default_rng(seed + 7919)  # not the validation split's stream: the two parts stay independent
    by_class: dict[int, list[Item]] = {}
    for it in items:
        by_class.setdefault(it.label, []).append(it)
    keep, test, small = [], [], []
    for label in sorted(by_class):
        group = by_class[label]
        n_test = min(max(1, round(len(group) * fraction)), len(group) - keep_min)
        if n_test < 1:
            small.append(classes[label])
            n_test = 0
        order = rng.permutation(len(group))
        test += [group[i] for i in order[:n_test]]
        keep += [group[i] for i in order[n_test:]]
    if small:
        check.warnings.append(
            f"no test example for {', '.join(small)}: too few examples to hold one out; the test "
            "accuracy covers the other classes only"
        )
    return keep, test


# -- the "other" class ----------------------------------------------------------------------------------
OTHER_CLASS = "other"
_OTHER_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "immunohistochemistry",
    "hubble_deep_field",
    "page",
    "text",
    "clock",
    "moon",
    "coins",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "horse",
)


def add_other_class(ds: Dataset, work: Path, seed: int = 0) -> Dataset:
    """Add a none-of-the-above class of generic photos (scikit-image's bundled images, random crops).

    As many examples as the median class, split like the rest; written under WORK/other/ so they
    go through the same decoding and pre-processing as the user's files.
    """
    if ds.kind != "image":
        raise UserInputError("`other` works for images only", hint="for texts, add a folder of unrelated texts")
    if OTHER_CLASS in ds.classes:
        raise UserInputError(
            f"the data already has a class named {OTHER_CLASS!r}", hint="drop --other, or rename that folder"
        )
    try:
        from skimage import data as skdata
    except ImportError as e:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("--other (generic photos from scikit-image)", "train") from e
    from PIL import Image

    n = max(MIN_RECOMMENDED * 2, int(np.median(list(ds.check.counts.values()))))
    folder = work / "other"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = []
    for name in _OTHER_PHOTOS:
        arr = np.asarray(getattr(skdata, name)())
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        photos.append(Image.fromarray(arr.astype(np.uint8)).convert("RGB"))
    label = len(ds.classes)
    items = []
    for i in range(n):
        img = photos[i % len(photos)]
        w, h = img.size
        side = int(min(w, h) * rng.uniform(0.3, 1.0))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        path = folder / f"other_{i:04d}.png"
        if not path.exists():
            img.crop((x0, y0, x0 + side, y0 + side)).save(path)
        items.append(Item(str(path), label))
    train, val = split_stratified(items, max(0.2, len(ds.val) / max(1, len(ds.val) + len(ds.train))), seed)
    check = ds.check
    check.classes = [*ds.classes, OTHER_CLASS]
    check.counts = {**check.counts, OTHER_CLASS: n}
    check.warnings.append(f"added class {OTHER_CLASS!r}: {n} crops of generic photos (scikit-image samples)")
    return Dataset(
        kind=ds.kind,
        classes=check.classes,
        train=ds.train + train,
        val=ds.val + val,
        check=check,
        split=ds.split,
        test=ds.test,
        test_split=ds.test_split,
    )
