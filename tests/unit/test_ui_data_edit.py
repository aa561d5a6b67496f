"""The web UI's own-data and own-model helpers, without a server: bushu.ui.dataset_edit (names looked up,
never joined; no overwrite; empty classes removed) and bushu.ui.model_upload (files checked before an
import; zips extracted safely; inputs parsed up front), and the page's words for --input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from bushu.errors import NotFoundError, UserInputError
from bushu.ui import dataset_edit, model_upload
from bushu.ui._http import plain
from bushu.ui.safety import UnsafeArchiveError


def _png(colour=(200, 10, 10)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "ds"
    for cls, names in {"a": ["1.png", "2.png"], "b": ["3.png"]}.items():
        (root / cls).mkdir(parents=True)
        for n in names:
            (root / cls / n).write_bytes(_png())
    (root / "a" / ".hidden.png").write_bytes(_png())
    (root / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "secret.png").write_bytes(_png())
    return root


def test_listing_is_what_the_trainer_reads(data):
    listed = {c: [f["file"] for f in files] for c, files in dataset_edit.list_images(data).items()}
    assert listed == {"a": ["1.png", "2.png"], "b": ["3.png"]}  # no hidden file, no .txt


@pytest.mark.parametrize(
    "cls, file",
    [
        ("a", "../b/3.png"),
        ("a", "../../secret.png"),
        ("..", "secret.png"),
        ("a/..", "b/3.png"),
        ("a", "/etc/passwd"),
        ("a", ".hidden.png"),
        ("a", "notes.txt"),
        ("a", "./1.png"),
        ("", "1.png"),
        (".", "a/1.png"),
    ],
)
def test_names_are_looked_up_never_joined(data, cls, file):
    with pytest.raises(NotFoundError):
        dataset_edit.find_image(data, cls, file)
    with pytest.raises(NotFoundError):
        dataset_edit.delete_image(data, cls, file)
    with pytest.raises(NotFoundError):
        dataset_edit.relabel_image(data, cls, file, "b")
    assert (data.parent / "secret.png").is_file() and (data / "b" / "3.png").is_file()


def test_relabel_and_add_never_overwrite(data):
    (data / "b" / "1.png").write_bytes(_png((0, 0, 200)))
    ref = dataset_edit.relabel_image(data, "a", "1.png", "b")
    assert ref == dataset_edit.ImageRef("b", "1-2.png")
    assert (data / "b" / "1.png").read_bytes() == _png((0, 0, 200))
    with pytest.raises(NotFoundError, match="no class 'c' to move"):
        dataset_edit.relabel_image(data, "a", "2.png", "c")
    assert dataset_edit.add_image(data, "b", "1.png", _png()).file == "1-3.png"
    assert dataset_edit.add_image(data, "b", "C:\\Users\\me\\cat photo.JPG", _png()).file == "cat_photo.JPG"
    assert dataset_edit.add_image(data, "new", "x.png", _png(), create=True) == dataset_edit.ImageRef("new", "x.png")
    with pytest.raises(UserInputError, match="invalid class name"):
        dataset_edit.add_image(data, "new/../../x", "x.png", _png(), create=True)
    with pytest.raises(UserInputError, match="not an image we can read"):
        dataset_edit.add_image(data, "b", "x.png", b"hello, not a picture")
    assert not [p for p in (data / "b").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_an_emptied_class_goes_and_the_last_image_stays(data):
    dataset_edit.relabel_image(data, "b", "3.png", "a")
    assert not (data / "b").exists()
    dataset_edit.delete_image(data, "a", "1.png")
    dataset_edit.delete_image(data, "a", "2.png")
    with pytest.raises(UserInputError, match="last image"):
        dataset_edit.delete_image(data, "a", "3.png")


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in entries.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def test_model_zip_extraction_refuses_what_data_set_zips_refuse(tmp_path):
    src = tmp_path / "up.zip"
    src.write_bytes(_zip({"m/config.json": b"{}", "../../evil.json": b"{}"}))
    with pytest.raises(UnsafeArchiveError, match="outside") as e:
        model_upload.place_model(src, "m.zip", tmp_path / "dest")
    assert "model folder" in e.value.hint
    link = zipfile.ZipInfo("m/weights.bin")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("m/config.json", "{}")
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="link"):
        model_upload.place_model(src, "m.zip", tmp_path / "dest")
    src.write_bytes(_zip({"m/config.json": b"{}", "m/model.safetensors": b"\0" * (4 << 20)}))
    limits = model_upload.ZipLimits(max_member_bytes=1 << 20)
    with pytest.raises(UnsafeArchiveError, match="limit"):
        model_upload.extract_zip(src, tmp_path / "dest", limits)
    assert not (tmp_path / "dest").exists() and not (tmp_path.parent / "evil.json").exists()
    src.write_bytes(_zip({"top/m/config.json": b"{}"}))  # config.json two folders down: not a model folder
    with pytest.raises(UserInputError, match="no config.json"):
        model_upload.place_model(src, "m.zip", tmp_path / "dest")
    src.write_bytes(_zip({"m/config.json": b"{}", "m/__MACOSX/x": b"", "m/.DS_Store": b""}))
    assert model_upload.place_model(src, "m.zip", tmp_path / "dest") == tmp_path / "dest" / "m"
    assert sorted(p.name for p in (tmp_path / "dest" / "m").iterdir()) == ["config.json"]


def test_inputs_are_parsed_up_front_in_the_forms_words():
    assert model_upload.check_inputs(["x:1x4", " ", "ids:1x16:int64 "]) == ["x:1x4", "ids:1x16:int64"]
    for bad in ("x", "x:1xK", "x:1x2:complex7"):
        with pytest.raises(UserInputError) as e:
            model_upload.check_inputs([bad])
        assert type(e.value) is UserInputError and f"input '{bad}'" in plain(e.value.message)
        assert "--" not in plain(e.value.message)
    with pytest.raises(UserInputError, match="given twice"):
        model_upload.check_inputs(["x:1x4", "x:1x8"])
    assert plain("pass it, e.g. --input x:1xK:float32") == "pass it, e.g. x:1xK:float32 in the inputs box"
    assert plain("state each input: --input NAME:SHAPE[:DTYPE] (repeatable)") == (
        "state each input: NAME:SHAPE[:DTYPE] in the inputs box, one per line"
    )
    assert "--" not in plain("state the sizes it takes: --input NAME:SHAPE[:DTYPE], or real arrays: --sample FILE.npz")
    for name in ("model.pt", "weights.pth", "model", "a.onnx.txt"):
        with pytest.raises(UserInputError, match="bushu imports an .onnx file"):
            model_upload.model_kind(name)
    assert model_upload.model_kind("My Model.ONNX") == ".onnx"
