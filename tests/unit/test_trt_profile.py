"""TensorRT's optimization profile from the IO spec's dim ranges (bushu.export._tensorrt.profile_shapes):
a pure function, checked here without a GPU or the tensorrt package."""

from __future__ import annotations

import pytest

from bushu.export._tensorrt import MAX_BATCH, profile_shapes
from bushu.spec import TensorSpec, UnresolvedDimError


def test_image_classifier_spans_the_batch_only():
    spec = TensorSpec("input", "float32", ("batch", 3, 224, 224), role="image", ranges={"batch": {"min": 1}})
    assert profile_shapes([spec]) == {"input": ((1, 3, 224, 224), (1, 3, 224, 224), (MAX_BATCH, 3, 224, 224))}
    assert profile_shapes([spec], max_batch=32)["input"][2] == (32, 3, 224, 224)


def test_token_inputs_share_the_sequence_range():
    """MiniLM: the range is recorded on input_ids; the mask and token types share the symbol, so their
    profiles must be the same (TensorRT refuses inputs whose shared dims disagree)."""
    seq = {"min": 1, "typical": 128, "max": 512}
    specs = [
        TensorSpec("input_ids", "int64", ("batch", "sequence_length"), ranges={"sequence_length": seq}),
        TensorSpec("attention_mask", "int64", ("batch", "sequence_length")),
        TensorSpec("token_type_ids", "int64", ("batch", "sequence_length")),
    ]
    got = profile_shapes(specs)
    assert set(got.values()) == {((1, 1), (1, 128), (MAX_BATCH, 512))}


def test_typical_only_dims_are_fixed_and_unknown_dims_name_the_input():
    det = TensorSpec(
        "images",
        "float32",
        ("batch", 3, "height", "width"),
        role="image",
        ranges={"height": {"typical": 640, "max": 1280}, "width": {"typical": 480}},
    )
    lo, opt, hi = profile_shapes([det])["images"]
    assert (lo, opt, hi) == ((1, 3, 640, 480), (1, 3, 640, 480), (MAX_BATCH, 3, 1280, 480))
    with pytest.raises(UnresolvedDimError, match="input 'images': dim 2") as e:
        profile_shapes([det.with_(ranges={})])
    assert "--input images:1x3xHxW:float32" in (e.value.hint or "")
