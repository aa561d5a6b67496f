"""TensorSpec, dtype tables, feed checks and synthetic inputs."""

from __future__ import annotations

import numpy as np
import pytest

from bushu.errors import InferenceInputError
from bushu.spec import (
    DTYPES,
    TensorSpec,
    UnresolvedDimError,
    check_feeds,
    dtype_name,
    from_onnx_elem_type,
    from_v2_datatype,
    np_dtype,
    synthetic_feeds,
    to_v2_datatype,
)

SPECS = [TensorSpec("image", "float32", ("batch", 3, 4, 4)), TensorSpec("mask", "int64", ("batch", "seq"))]


def good(batch=2):
    return {"image": np.zeros((batch, 3, 4, 4), np.float32), "mask": np.zeros((batch, 7), np.int64)}


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_dtype_tables_round_trip(name):
    assert from_v2_datatype(to_v2_datatype(name)) == name
    assert from_onnx_elem_type(DTYPES[name][2]) == name
    assert dtype_name(np_dtype(name)) == name


@pytest.mark.parametrize("name", sorted(set(DTYPES) - {"bytes"}))
def test_dtype_tables_agree_with_onnx_and_triton(name):
    """Independent references: onnx's own enum→numpy table and tritonclient's numpy→v2 table."""
    from onnx import helper

    assert helper.tensor_dtype_to_np_dtype(DTYPES[name][2]) == np_dtype(name)
    tc = pytest.importorskip("tritonclient.utils")
    assert tc.np_to_triton_dtype(np_dtype(name)) == to_v2_datatype(name)


def test_unknown_v2_datatype():
    with pytest.raises(InferenceInputError, match="unknown datatype 'FP99'.*FP32"):
        from_v2_datatype("FP99")
    assert from_onnx_elem_type(16) == "bfloat16" and to_v2_datatype("bfloat16") == "BF16"
    assert from_onnx_elem_type(23) == "onnx:23"  # an element type bushu does not know: kept visible, not guessed


def test_tensor_spec_basics():
    s = TensorSpec.from_dict({"name": "x", "dtype": "float32", "shape": ["batch", 3, 224, 224]})
    assert s.shape == ("batch", 3, 224, 224) and s.has_batch
    assert s.to_dict() == {"name": "x", "dtype": "float32", "shape": ["batch", 3, 224, 224]}
    assert s.concrete_shape(8) == (8, 3, 224, 224)
    assert TensorSpec("y", "int64", ("batch", "seq")).concrete_shape(2, fill=5) == (2, 5)
    assert not TensorSpec("z", "float32", (1, 3)).has_batch
    assert str(s) == "x: float32[batch, 3, 224, 224]"


def test_check_feeds_accepts_any_batch_and_symbolic_dims():
    check_feeds(SPECS, good(1))
    check_feeds(SPECS, good(5))


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        (
            {**good(), "imagee": np.zeros(1)},
            r"has no input 'imagee'; did you mean 'image'\? Expected inputs: \['image', 'mask'\]",
        ),
        ({"image": good()["image"]}, r"missing input 'mask' \(mask: int64\[batch, seq\]\)"),
        ({**good(), "mask": np.zeros((2, 7), np.int32)}, "input 'mask' has dtype int32, expected int64"),
        (
            {**good(), "image": np.zeros((3, 4, 4), np.float32)},
            r"shape \[3, 4, 4\] \(rank 3\), expected \['batch', 3, 4, 4\] \(rank 4\)",
        ),
        ({**good(), "image": np.zeros((2, 1, 4, 4), np.float32)}, r"expected \['batch', 3, 4, 4\] \(dim 1 must be 3\)"),
    ],
)
def test_check_feeds_names_what_is_wrong(feeds, message):
    with pytest.raises(InferenceInputError, match=message) as err:
        check_feeds(SPECS, feeds)
    assert err.value.http_status == 400


def test_synthetic_feeds_match_specs_and_are_deterministic():
    specs = [
        *SPECS,
        TensorSpec("flag", "bool", ("batch",)),
        TensorSpec("text", "bytes", ("batch",)),
        TensorSpec("half", "float16", (2,)),
    ]
    with pytest.raises(UnresolvedDimError, match="input 'mask': dim 1"):  # no size recorded for "seq": never guessed
        synthetic_feeds(specs, batch=3, seed=1)
    sized = {"mask": (3, 1)}
    a, b = synthetic_feeds(specs, batch=3, seed=1, shapes=sized), synthetic_feeds(specs, batch=3, seed=1, shapes=sized)
    check_feeds(specs, a)
    assert a["image"].shape == (3, 3, 4, 4) and a["mask"].shape == (3, 1) and a["half"].shape == (2,)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["image"], synthetic_feeds(specs, batch=3, seed=2, shapes=sized)["image"])
