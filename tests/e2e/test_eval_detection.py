"""`bushu eval ART --data DIR` on a detection artifact, through the real CLI and bushu.detection.Detector.

The detector is a small ONNX graph that really finds the object: the box around the pixels that differ from
the image's corner (the background) by more than a quarter of the largest difference, scored by how much of
that box they fill, with its outputs named boxes / scores / classes so that ``bushu import`` picks the
NMS-in-graph decoder by itself. The data: one Tux Paint fruit photo per image on a plain background, written
as YOLO, COCO and VOC by bushu.testing.detection; every format must give the same mAP.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bushu.testing.stamps import STAMPS_DIR

pytest.importorskip("pycocotools")
try:
    from bushu.detection import Detector  # noqa: F401  (the detection decoders; merged from their own branch)
except ImportError:
    pytest.skip("needs bushu.detection.Detector (the detection task's decoders)", allow_module_level=True)
pytestmark = pytest.mark.skipif(not STAMPS_DIR.is_dir(), reason="apt-get install tuxpaint-stamps-default")

H, W = 240, 320


def bushu(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bushu", *args], capture_output=True, text=True, timeout=timeout)


def foreground_box_onnx() -> bytes:
    n = helper.make_node

    def c(name, v, dtype=np.float32):
        return numpy_helper.from_array(np.asarray(v, dtype), name)

    nodes = [
        n("Slice", ["image", "zero4", "one4"], ["corner"]),  # [1, 3, 1, 1]: the top-left pixel
        n("Sub", ["image", "corner"], ["diff"]),
        n("Abs", ["diff"], ["adiff"]),
        n("ReduceSum", ["adiff", "ax1"], ["d"], keepdims=0),  # [1, H, W]
        n("ReduceMax", ["d"], ["dmax"], keepdims=1),
        n("Mul", ["dmax", "quarter"], ["thr"]),
        n("Greater", ["d", "thr"], ["fg"]),
        n("Cast", ["fg"], ["mask"], to=1),
        n("ReduceMax", ["mask", "ax1"], ["cols"], keepdims=0),  # [1, W]: a column with foreground
        n("ReduceMax", ["mask", "ax2"], ["rows"], keepdims=0),  # [1, H]
        n("ArgMax", ["cols"], ["x1"], axis=1, keepdims=1),
        n("ArgMax", ["cols"], ["xl"], axis=1, keepdims=1, select_last_index=1),
        n("ArgMax", ["rows"], ["y1"], axis=1, keepdims=1),
        n("ArgMax", ["rows"], ["yl"], axis=1, keepdims=1, select_last_index=1),
        n("Add", ["xl", "one"], ["x2"]),
        n("Add", ["yl", "one"], ["y2"]),
        n("Concat", ["x1", "y1", "x2", "y2"], ["xyxy"], axis=1),
        n("Cast", ["xyxy"], ["fbox"], to=1),
        n("Unsqueeze", ["fbox", "ax1"], ["boxes"]),  # [1, 1, 4]
        n("ReduceSum", ["mask", "ax12"], ["area"], keepdims=0),  # [1]: foreground pixels
        n("Sub", ["x2", "x1"], ["bw"]),
        n("Sub", ["y2", "y1"], ["bh"]),
        n("Mul", ["bw", "bh"], ["barea"]),
        n("Cast", ["barea"], ["fbarea"], to=1),
        n("Reshape", ["fbarea", "shape1"], ["fba"]),
        n("Div", ["area", "fba"], ["fill"]),
        n("Unsqueeze", ["fill", "ax1"], ["scores"]),  # [1, 1]
        n("Shape", ["scores"], ["sshape"]),
        n("ConstantOfShape", ["sshape"], ["classes"], value=helper.make_tensor("z", TensorProto.INT64, [1], [0])),
    ]
    inits = [
        c("zero4", [0, 0, 0, 0], np.int64),
        c("one4", [1, 3, 1, 1], np.int64),
        c("ax1", [1], np.int64),
        c("ax2", [2], np.int64),
        c("ax12", [1, 2], np.int64),
        c("quarter", 0.25),
        c("one", 1, np.int64),
        c("shape1", [1], np.int64),
    ]
    graph = helper.make_graph(
        nodes,
        "foreground_box",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 1, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, [1, 1]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])  # 18: ReduceMax takes axes as input
    model.ir_version = 9
    return model.SerializeToString()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from bushu.testing.detection import FORMATS, write_detection_dataset

    root = tmp_path_factory.mktemp("evaldet")
    (root / "fg.onnx").write_bytes(foreground_box_onnx())
    proc = bushu("import", str(root / "fg.onnx"), "-o", str(root / "art"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = {
        f: write_detection_dataset(
            root / f, f, n_images=12, seed=5, categories=["fruit"], objects=(1, 1), plain=(250, 250, 250)
        )
        for f in FORMATS
    }
    (data["yolo"] / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return root, data


def test_eval_detection_json_and_report(setup):
    root, data = setup
    meta = (root / "art" / "bushu.yaml").read_text()
    assert "task: detection" in meta
    proc = bushu("eval", str(root / "art"), "--data", str(data["yolo"]), "--json", "--report", str(root / "r.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert {"map50", "map", "per_class"} <= set(res)
    assert res["n_images"] == 12 and res["n_boxes"] == 12 and res["format"] == "yolo"
    # the graph finds each fruit: its box is the alpha box of the stamp up to the faint edge pixels
    assert res["map50"] == pytest.approx(1.0, abs=0.02) and res["map"] > 0.6
    assert [p["class"] for p in res["per_class"]] == ["fruit"] and res["per_class"][0]["n_gt"] == 12
    assert any("orphan.txt" in p["path"] for p in res["problems"])
    html = (root / "r.html").read_text()
    assert 'alt="precision-recall curves"' in html and "r.bad_cases.html" in html
    assert (root / "r.bad_cases.html").is_file()

    for fmt in ("coco", "voc"):  # the same images and boxes in the other two formats: the same numbers
        other = json.loads(bushu("eval", str(root / "art"), "--data", str(data[fmt]), "--json", "--no-record").stdout)
        assert round(other["map"], 3) == round(res["map"], 3) and other["format"] == fmt

    text = bushu("eval", str(root / "art"), "--data", str(data["voc"]))
    assert text.returncode == 0 and "mAP@0.5 " in text.stdout and "fruit" in text.stdout
    info = bushu("info", str(root / "art")).stdout  # the recorded eval
    assert f"eval on {data['voc']}: mAP@0.5 " in info


def test_eval_detection_bad_input(setup):
    root, data = setup
    proc = bushu("eval", str(root / "art"), "--data", str(root))
    assert proc.returncode != 0 and "data.yaml" in proc.stderr and "Traceback" not in proc.stderr
    proc = bushu("eval", str(root / "art"), "--data", str(data["yolo"]), "--score", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def ssd(tmp_path_factory):
    """MediaPipe's SSD MobileNetV2 (real Open Images weights) and 24 composited scenes of the stamps it knows."""
    pytest.importorskip("ai_edge_litert", reason="the litert backend is not installed (pip install 'bushu[litert]')")
    from bushu.errors import NotFoundError
    from bushu.testing.detection import OIDV4_STAMPS, write_detection_dataset

    objectron = pytest.importorskip("bushu.testing.objectron")
    root = tmp_path_factory.mktemp("ssd")
    try:
        model, labelmap = objectron.objectron_ssd(root)
    except NotFoundError as e:
        pytest.skip(str(e))
    proc = bushu("import", str(model), "-o", str(root / "art"), "--labels", str(labelmap))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = write_detection_dataset(
        root / "coco",
        "coco",
        n_images=24,
        seed=0,
        categories=OIDV4_STAMPS,
        size=(320, 320),
        scale=(90, 180),
        objects=(1, 3),
    )
    return root / "art", data


def test_real_weights_ssd_map_equals_pycocotools(ssd):
    """The issue's check: bushu eval's mAP on a composited set equals pycocotools' own on the same detections."""
    import contextlib
    import io

    from PIL import Image
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    art, data = ssd
    proc = bushu("eval", str(art), "--data", str(data), "--json", "--no-record")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["map50"] > 0.6, res["per_class"]  # 0.879 on 40 such scenes when this test was written

    ann_file = data / "annotations" / "instances.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
    label_to_cat = {c["name"]: c["id"] for c in gt.dataset["categories"]}
    with Detector(art) as det:
        dets = [
            {
                "image_id": im["id"],
                "category_id": label_to_cat[d.label],
                "score": d.score,
                "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]],
            }
            for im in gt.dataset["images"]
            for d in det.predict(
                [Image.open(data / "images" / im["file_name"]).convert("RGB")], score=0.001, max_det=100
            )[0]
            if d.label in label_to_cat
        ]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert round(res["map"], 3) == round(ev.stats[0], 3) and round(res["map50"], 3) == round(ev.stats[1], 3)
