"""The data layer (bushu.data): one scan of labelled folders, one image opener, targets from class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bushu.data.arrays import labelled_arrays
from bushu.data.folders import LabelledFolder, read_text, scan_folder
from bushu.data.images import open_image
from bushu.data.reader import READERS, Reader, create_reader
from bushu.data.suffixes import IMAGE_SUFFIXES, SUFFIXES
from bushu.errors import NotFoundError, UnknownNameError, UserInputError
from bushu.model.artifact import Preprocess
from bushu.spec import TensorSpec


def photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).resize((48, 48))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """cat/ (2 photos, a note, a hidden file), cup/ (1 photo + a corrupt one), a loose photo."""
    root = tmp_path_factory.mktemp("data")
    for cls, name, n in (("cat", "chelsea", 2), ("cup", "coffee", 1)):
        (root / cls).mkdir()
        for i in range(n):
            photo(name).rotate(10 * i).save(root / cls / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"x")
    (root / "cup" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / ".git").mkdir()
    photo("astronaut").save(root / "loose.png")
    return root


def test_scan_finds_classes_items_loose_files_and_counts_the_rest(folder):
    scan = scan_folder(folder, IMAGE_SUFFIXES)
    assert scan.classes == ["cat", "cup"]
    assert [(p.parent.name, p.name, i) for p, i in scan.items] == [
        ("cat", "0.png", 0),
        ("cat", "1.png", 0),
        ("cup", "0.png", 1),
        ("cup", "broken.jpg", 1),
    ]
    assert [p.name for p in scan.loose] == ["loose.png"]
    assert scan.ignored == 2  # notes.txt, .hidden.png


def test_labelled_folder_decodes_lazily_and_lists_what_does_not_decode(folder):
    ds = LabelledFolder.scan(folder)
    assert isinstance(ds, Reader) and len(ds) == 4 and ds[0][1] == 0 and ds.counts() == {"cat": 2, "cup": 2}
    batches = list(ds.batches(lambda p: np.asarray(open_image(p).convert("RGB")), 2))
    assert [len(xs) for xs, _, _ in batches] == [2, 1]
    assert batches[0][1].tolist() == [0, 0] and batches[1][1].tolist() == [1]
    assert [Path(s.path).name for s in ds.skipped] == ["broken.jpg"]
    assert "cannot decode" in ds.skipped[0].reason


@pytest.mark.parametrize(
    ("kind", "layout", "error", "needle"),
    [
        ("image", "missing", NotFoundError, "dataset directory not found"),
        ("image", "file", UserInputError, "is a file"),
        ("image", "loose", UserInputError, "images directly in it (a.png) but no class sub-folders"),
        ("text", "empty", UserInputError, "no class sub-folders with texts (txt)"),
    ],
)
def test_labelled_folder_errors_say_what_to_do(tmp_path, kind, layout, error, needle):
    root = tmp_path / "d"
    if layout == "file":
        root.write_text("x")
    elif layout != "missing":
        root.mkdir()
        if layout == "loose":
            photo("coffee").save(root / "a.png")
    with pytest.raises(error) as e:
        LabelledFolder.scan(root, kind)
    assert needle in e.value.message and e.value.hint


def test_open_image_composites_transparency_on_white_and_types_its_errors(tmp_path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert open_image(tmp_path / "clear.png").convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserInputError, match="cannot decode .*bad.png as an image"):
        open_image(tmp_path / "bad.png")


def test_read_text(tmp_path):
    (tmp_path / "ok.txt").write_bytes("\ufeff  hello \n".encode())
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("  \n")
    assert read_text(tmp_path / "ok.txt") == "hello"
    with pytest.raises(UserInputError, match=r"not UTF-8 text \(byte 3"):
        read_text(tmp_path / "latin.txt")
    with pytest.raises(UserInputError, match="empty text"):
        read_text(tmp_path / "empty.txt")


class _Art:  # what labelled_arrays reads from an artifact
    inputs = (TensorSpec("input", "float32", ("batch", 3, 32, 32)),)
    outputs = (TensorSpec("logits", "float32", ("batch", 3)),)
    preprocess = Preprocess(resize=32, crop=32)
    labels = ("tabby cat", "cup", "dog")


def test_labelled_arrays_map_class_folders_to_outputs(tmp_path):
    for cls, name in (("tabby_cat", "chelsea"), ("Cup", "coffee")):
        (tmp_path / "ok" / cls).mkdir(parents=True)
        photo(name).save(tmp_path / "ok" / cls / "a.png")
    ds = labelled_arrays(tmp_path / "ok", _Art())
    assert ds.x.shape == (2, 3, 32, 32) and ds.targets.tolist() == [1, 0] and ds.unlabelled == ""
    assert ds.take(1).targets.tolist() == [1]


def test_labelled_arrays_without_usable_labels(tmp_path):
    (tmp_path / "flat").mkdir()
    photo("chelsea").save(tmp_path / "flat" / "a.png")
    (tmp_path / "other" / "zebra").mkdir(parents=True)
    photo("chelsea").save(tmp_path / "other" / "zebra" / "a.png")
    assert labelled_arrays(tmp_path / "flat", _Art()).targets is None
    with pytest.raises(UserInputError, match="has no class folders, so accuracy cannot be measured"):
        labelled_arrays(tmp_path / "flat", _Art(), require="accuracy")
    with pytest.raises(UserInputError, match="'zebra'"):
        labelled_arrays(tmp_path / "other", _Art())
    proxy = labelled_arrays(tmp_path / "other", _Art(), allow_unmatched=True)
    assert proxy.targets is None and "not among the model's 3 labels" in proxy.unlabelled


def test_create_reader_by_kind_and_unknown_layouts(folder):
    assert set(SUFFIXES) <= set(READERS)
    assert create_reader("image", folder).classes == ["cat", "cup"]
    with pytest.raises(UnknownNameError, match="did you mean 'image'"):
        create_reader("imgae", folder)
