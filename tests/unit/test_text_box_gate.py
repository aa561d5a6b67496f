"""The int8 gate for DB-style text detectors: the boxes decoded from the probability maps must agree, and the maps keep
their direction (cosine) where there is text; a photo without text, whose map has no direction, is judged by boxes only."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bushu import validate
from bushu.detection.textmap import (
    MIN_TEXT_BOX_F1,
    db_boxes,
    is_db_map,
    judge_text_boxes,
    text_box_agreement,
)
from bushu.optimize._gate import CANNOT_TELL, FAIL, PASS
from bushu.optimize.quantize import AccuracyDropError, _Job
from bushu.spec import TensorSpec

OUT = "sigmoid_0.tmp_0"


def page(lines: int, size: int = 128, shift: int = 0, seed: int = 0, keep: float = 1.0) -> np.ndarray:
    """A [1, size, size] map: ``lines`` text lines at 0.9 on a 0.01 background (the left ``keep`` of each)."""
    rng = np.random.default_rng(seed)
    m = np.full((1, size, size), 0.01, np.float32)
    for i in range(lines):
        y = 4 + i * (size - 8) // max(lines, 1)
        x2 = int(rng.integers(40, size - 4))
        x2 = 6 + int((x2 - 6) * keep)
        m[0, y + shift : y + 5 + shift, 6 + shift : x2 + shift] = 0.9
    return m


def photo(size: int = 128, level: float = 1e-4) -> np.ndarray:
    return np.full((1, size, size), level, np.float32)


def maps(*images: np.ndarray) -> np.ndarray:
    return np.stack(images)


def job() -> _Job:
    art = SimpleNamespace(
        postprocess=SimpleNamespace(params={"decoder": "db", "output": OUT}),
        outputs=[TensorSpec(OUT, "float32", ("n", 1, "h", "w"))],
        task="raw",
    )
    j = _Job.__new__(_Job)
    j.art, j.settings, j.details, j.name = art, SimpleNamespace(min_cosine=0.98), {}, "int8"
    return j


def test_db_decoder_finds_each_line_and_nothing_on_an_empty_map():
    boxes = db_boxes(page(6)[0])
    assert len(boxes) == 6 and all(d.label == "text" and d.score > 0.5 for d in boxes)
    x1, y1, x2, y2 = boxes[0].box
    assert x1 < 6 and y1 < 4 and y2 > 9  # unclipped beyond the 5-pixel-high blob
    assert db_boxes(photo()[0]) == []
    weak = page(6)
    weak[weak > 0.5] = 0.4  # above the 0.3 binarization, below the 0.5 box score
    assert db_boxes(weak[0]) == []


def test_boxes_that_agree_pass_where_the_photos_map_cosine_would_refuse():
    ref = maps(page(6, seed=1), page(7, seed=2), photo())
    rng = np.random.default_rng(0)
    got = ref + rng.uniform(-0.05, 0.05, ref.shape).astype(np.float32)  # int8-like noise on every pixel
    got[2] = np.where(rng.random(got[2].shape) < 0.01, 0.2, 0.0)  # the photo: int8 steps on a ~0 map, no box
    cos = validate.agreement({OUT: ref[2:]}, {OUT: got[2:]})[OUT]
    assert cos["cosine_min"] < 0.5  # the photo's map has no direction to keep: a plain cosine gate says no
    verdict = judge_text_boxes({OUT: ref}, {OUT: got}, OUT)
    assert verdict["outcome"] == PASS, verdict["detail"]
    tb = verdict["text_boxes"]
    assert tb["fp32_boxes"] == 13 and tb["matched"] == 13 and tb["f1"] == 1.0 and tb["mean_iou"] > 0.8
    assert [p["fp32_boxes"] for p in tb["per_image"]] == [6, 7, 0] and tb["per_image"][2]["f1"] == 1.0
    assert len(tb["map_cosine"]) == 2 and min(tb["map_cosine"]) > 0.99  # the two pages only
    v = job().validate({OUT: ref}, {OUT: got}, refuse=True)  # the quantizer's gate takes the same route
    assert v["gate"]["outcome"] == PASS and "top1_agreement" not in v["outputs"][OUT]


def test_a_map_that_drifts_fails_although_its_boxes_agree_unless_the_floor_is_lowered():
    ref = maps(page(6, seed=1), page(7, seed=2), photo())
    got = ref.copy()
    got[0] = page(6, seed=1, shift=1)  # one page's lines moved by a pixel: the same boxes, a fifth of each line off
    verdict = judge_text_boxes({OUT: ref}, {OUT: got}, OUT)
    tb = verdict["text_boxes"]
    assert tb["f1"] == 1.0 and tb["mean_iou"] > 0.8 and tb["map_cosine"][0] < 0.98 and tb["map_cosine"][1] == 1.0
    assert verdict["outcome"] == FAIL, verdict["detail"]
    assert verdict["detail"].startswith(f"{OUT}: DB text boxes agree, but the map drifts (cosine 0.")
    assert "lowest over the 2 image(s) with text (minimum 0.98)" in verdict["detail"]
    with pytest.raises(AccuracyDropError, match=rf"{OUT}: DB text boxes agree, but the map drifts"):
        job().validate({OUT: ref}, {OUT: got}, refuse=True)
    assert judge_text_boxes({OUT: ref}, {OUT: got}, OUT, min_cosine=0.5)["outcome"] == PASS
    loose = job()
    loose.settings = SimpleNamespace(min_cosine=0.5)  # optimize --min-cosine 0.5
    assert loose.validate({OUT: ref}, {OUT: got}, refuse=True)["gate"]["outcome"] == PASS


def test_lost_lines_fail_and_the_error_names_the_output_with_its_figures():
    ref = maps(page(6, seed=1), page(7, seed=2))
    got = ref.copy()
    got[1, 0, :64] = 0.01  # int8 loses the upper half of the second page's lines
    a = text_box_agreement(ref, got)
    assert a["fp32_boxes"] == 13 and a["matched"] < 13 and a["f1"] < MIN_TEXT_BOX_F1
    verdict = judge_text_boxes({OUT: ref}, {OUT: got}, OUT)
    assert verdict["outcome"] == FAIL and verdict["detail"].startswith(f"{OUT}: DB text boxes disagree")
    assert f"F1 {a['f1']:.3f}" in verdict["detail"] and "per image F1 1.00 (6/6/6)" in verdict["detail"]
    with pytest.raises(AccuracyDropError, match=rf"{OUT}: DB text boxes disagree: .* F1 0\.\d+ \(minimum 0\.95\)"):
        job().validate({OUT: ref}, {OUT: got}, refuse=True)
    kept = job().validate({OUT: ref}, {OUT: got}, refuse=False)  # the fallback search judges it then
    assert kept["gate"]["outcome"] == FAIL and kept["gate"]["score"] == a["f1"]


def test_boxes_that_shrink_fail_on_iou_even_when_every_line_is_found():
    ref = maps(page(6, seed=1), page(7, seed=2))
    got = maps(page(6, seed=1, keep=0.7), page(7, seed=2, keep=0.7))  # every line found, 70% of its length
    a = text_box_agreement(ref, got)
    assert a["matched"] == 13 and a["f1"] == 1.0 and a["mean_iou"] < 0.8
    verdict = judge_text_boxes({OUT: ref}, {OUT: got}, OUT)
    assert verdict["outcome"] == FAIL and "mean IoU" in verdict["detail"], verdict["detail"]


def test_too_few_text_boxes_cannot_tell():
    ref = maps(page(3), photo(), photo())
    verdict = judge_text_boxes({OUT: ref}, {OUT: ref}, OUT)
    assert verdict["outcome"] == CANNOT_TELL and "only 3 text box(es)" in verdict["detail"]
    j = job()
    assert j.validate({OUT: ref}, {OUT: ref}, refuse=True)["gate"]["outcome"] == CANNOT_TELL
    assert "cannot tell" in j.details["validation_warning"]


def test_a_sigmoid_map_graph_is_recognised_and_a_classifier_is_not(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    def graph(last: str, out_shape: list) -> str:
        w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [0.1, 0.2, 0.3])
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node(last, ["c"], ["y"])]
        g = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
            [w],
        )
        p = tmp_path / f"{last}.onnx"
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(p))
        return str(p)

    def art(path: str, out_shape: tuple) -> SimpleNamespace:
        return SimpleNamespace(
            postprocess=None,
            model_path=path,
            inputs=[TensorSpec("x", "float32", ("n", 3, "h", "w"), role="image")],
            outputs=[TensorSpec("y", "float32", out_shape)],
        )

    assert is_db_map(art(graph("Sigmoid", ["n", 1, "h", "w"]), ("n", 1, "h", "w"))) == "y"
    assert is_db_map(art(graph("Relu", ["n", 1, "h", "w"]), ("n", 1, "h", "w"))) is None
    assert is_db_map(art(graph("Sigmoid", ["n", 1, "h", "w"]), ("n", 5))) is None
