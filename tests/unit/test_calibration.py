"""Calibration readers: real images and arrays in, batches out; bad data → UserInputError naming the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bushu.errors import UserInputError
from bushu.model.artifact import Preprocess
from bushu.optimize.calibration import calibration_reader, from_arrays, from_image_folder, scan_images
from bushu.spec import TensorSpec

SPEC = [TensorSpec("input", "float32", ("batch", 3, 32, 32))]
PP = Preprocess(resize=32, crop=32)


class _Art:  # what calibration_reader reads from an artifact
    inputs = SPEC
    preprocess = PP


def photo(name: str = "chelsea") -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)())


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cls")
    for cls, name in (("cat", "chelsea"), ("cup", "coffee")):
        (root / cls).mkdir()
        for i in range(3):
            photo(name).rotate(i * 10).save(root / cls / f"{i}.png")
    return root


def test_folder_per_class_gives_batches_and_labels(class_folders):
    r = from_image_folder(class_folders, SPEC, PP, limit=None, batch_size=4)
    assert len(r) == 6 and r.labels == ["cat"] * 3 + ["cup"] * 3
    first = r.get_next()
    assert first["input"].shape == (4, 3, 32, 32) and first["input"].dtype == np.float32
    assert r.get_next()["input"].shape == (2, 3, 32, 32) and r.get_next() is None
    r.rewind()
    assert r.get_next() is not None


def test_preprocessing_matches_the_artifacts(class_folders):
    from bushu.model.processing import preprocess_image

    r = from_image_folder(class_folders, SPEC, PP, limit=None)
    expected = preprocess_image(Image.open(class_folders / "cat" / "0.png"), PP)
    np.testing.assert_array_equal(r.feeds["input"][0], expected)


def test_limit_spreads_over_classes(class_folders):
    r = from_image_folder(class_folders, SPEC, PP, limit=2)
    assert len(r) == 2 and set(r.labels) == {"cat", "cup"}


def test_flat_folder_has_no_labels(tmp_path):
    photo().save(tmp_path / "a.jpg")
    photo("coffee").save(tmp_path / "b.png")
    r = from_image_folder(tmp_path, SPEC, PP)
    assert len(r) == 2 and r.labels is None
    assert [p.name for p, _ in scan_images(tmp_path)] == ["a.jpg", "b.png"]


def test_empty_folder_names_the_expected_input(tmp_path):
    with pytest.raises(UserInputError, match=r"no images in .*") as e:
        from_image_folder(tmp_path, SPEC, PP)
    assert "input: float32[batch, 3, 32, 32]" in str(e.value)


def test_unreadable_images_only(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "b.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(UserInputError, match="none of the 2 image file"):
        from_image_folder(tmp_path, SPEC, PP)


def test_unreadable_images_are_skipped_and_reported(tmp_path):
    photo().save(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    r = from_image_folder(tmp_path, SPEC, PP)
    assert len(r) == 1 and r.skipped == ["bad.jpg"]


def test_npy_batch_and_single_sample(tmp_path):
    np.save(tmp_path / "b.npy", np.zeros((5, 3, 32, 32), np.float32))
    np.save(tmp_path / "one.npy", np.zeros((3, 32, 32)))  # float64, no batch dim: both fine
    assert len(from_arrays(tmp_path / "b.npy", SPEC)) == 5
    one = from_arrays(tmp_path / "one.npy", SPEC)
    assert len(one) == 1 and one.feeds["input"].dtype == np.float32


@pytest.mark.parametrize("shape", [(5, 3, 64, 64), (5, 32, 32, 3), (5, 3, 32)])
def test_wrong_shape(tmp_path, shape):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    with pytest.raises(UserInputError, match=r"has shape .* expected \['batch', 3, 32, 32\]"):
        from_arrays(tmp_path / "x.npy", SPEC)


def test_wrong_dtype(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 32, 32), np.int64))
    with pytest.raises(UserInputError, match="dtype int64, expected float32"):
        from_arrays(tmp_path / "x.npy", SPEC)


def test_npz_names_must_match_inputs(tmp_path):
    specs = [TensorSpec("a", "float32", ("batch", 4)), TensorSpec("b", "int64", ("batch", 4))]
    np.savez(tmp_path / "x.npz", a=np.zeros((2, 4), np.float32), c=np.zeros((2, 4), np.int64))
    with pytest.raises(UserInputError, match=r"needs \['b'\]"):
        from_arrays(tmp_path / "x.npz", specs)
    np.savez(tmp_path / "y.npz", a=np.zeros((2, 4), np.float32), b=np.zeros((3, 4), np.int64))
    with pytest.raises(UserInputError, match="different numbers of samples"):
        from_arrays(tmp_path / "y.npz", specs)


def test_corrupt_array_file_and_unknown_sources(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"nope")
    with pytest.raises(UserInputError, match="cannot read"):
        calibration_reader(tmp_path / "x.npy", _Art)
    with pytest.raises(UserInputError, match="not found"):
        calibration_reader(tmp_path / "missing", _Art)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(UserInputError, match="cannot use x.txt"):
        calibration_reader(tmp_path / "x.txt", _Art)


def test_empty_array(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((0, 3, 32, 32), np.float32))
    with pytest.raises(UserInputError, match="no samples"):
        from_arrays(tmp_path / "x.npy", SPEC)


def test_image_folder_for_a_non_image_model(class_folders):
    with pytest.raises(UserInputError, match="no image pre-processing"):
        from_image_folder(class_folders, SPEC, None)
