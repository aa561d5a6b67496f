"""Detectors from import to serving: a YOLOv8n exported by Ultralytics (random weights: the plumbing)
and MediaPipe's SSD MobileNetV2 (real weights: a cat in scikit-image's chelsea, a cup in coffee),
decoded by bushu.detection, served through the real server (:detect, KServe v2 raw tensors, gRPC)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from bushu.detection import Detection, Detector, LayoutError
from bushu.errors import NotFoundError, UserInputError
from bushu.import_.importer import import_model

skdata = pytest.importorskip("skimage.data")

CUPS = {"Coffee cup", "Mug"}


def _encode(arr: np.ndarray, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def yolo_onnx(tmp_path_factory):
    """YOLOv8n from its yaml (random weights), exported by Ultralytics itself with its ONNX metadata.

    In a subprocess: importing ultralytics patches PIL's Image.open for this whole process."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (scripts/setup.sh dev installs it)")
    tmp = tmp_path_factory.mktemp("yolo")
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp / "cfg"), "YOLO_OFFLINE": "1"}
    code = (
        "from ultralytics import YOLO; import shutil\n"
        "YOLO('yolov8n.yaml').export(format='onnx', imgsz=320, simplify=False)\n"
        "shutil.move('yolov8n.onnx', 'plain.onnx')\n"
        "YOLO('yolov8n.yaml').export(format='onnx', imgsz=320, simplify=False, nms=True)\n"
        "shutil.move('yolov8n.onnx', 'nms.onnx')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, check=True, capture_output=True, timeout=600)
    return tmp / "plain.onnx"


@pytest.fixture(scope="module")
def yolo_art(yolo_onnx, tmp_path_factory):
    return import_model(str(yolo_onnx), tmp_path_factory.mktemp("art") / "yolo")


@pytest.fixture(scope="module")
def ssd_art(tmp_path_factory):
    pytest.importorskip("ai_edge_litert", reason="the litert backend is not installed (pip install 'bushu[litert]')")
    from bushu.testing.objectron import objectron_ssd

    tmp = tmp_path_factory.mktemp("ssd")
    try:
        model, labelmap = objectron_ssd(tmp)
    except NotFoundError as e:
        pytest.skip(str(e))
    return import_model(str(model), tmp / "art", labels=labelmap.read_text().splitlines())


@pytest.fixture(scope="module")
def ssd_onnx_art(ssd_art, tmp_path_factory):
    """The same SSD converted by tflite2onnx (checked against LiteRT at import)."""
    pytest.importorskip("tflite2onnx", reason="tflite2onnx is not installed (pip install 'bushu[tflite2onnx]')")
    src = ssd_art.path / "model.tflite"
    return import_model(str(src), tmp_path_factory.mktemp("ssd-onnx") / "art", labels=ssd_art.labels, to_onnx=True)


def test_yolo_decoder_chosen_from_ultralytics_metadata(yolo_art):
    assert yolo_art.task == "detection"
    p = yolo_art.postprocess.params
    assert (p["decoder"], p["layout"], p["classes"], p["matched_by"]) == (
        "yolo",
        "channels_first",
        80,
        "Ultralytics metadata",
    )
    assert yolo_art.preprocess.params["size"] == [320, 320] and yolo_art.preprocess.params["fit"] == "letterbox"
    assert len(yolo_art.labels) == 80
    assert [list(o.shape) for o in yolo_art.outputs] == [[1, 84, 2100]]


def test_yolo_with_nms_in_the_graph_reads_its_rows(yolo_onnx, tmp_path):
    art = import_model(str(yolo_onnx.with_name("nms.onnx")), tmp_path / "nms")
    p = art.postprocess.params
    assert (p["decoder"], p["packed"], p["matched_by"]) == ("boxes", "output0", "Ultralytics metadata")
    assert [list(o.shape) for o in art.outputs] == [[1, 300, 6]]
    with Detector(art) as det:  # random weights: the graph's own threshold leaves only zero padding rows
        assert det.predict([skdata.coffee()], score=0.0) == [[]]


def test_yolo_predict_boxes_in_image_pixels(yolo_art):
    img = skdata.coffee()  # 400 x 600: letterboxed to 320 x 320
    with Detector(yolo_art) as det:
        dets = det.predict([img, skdata.chelsea()], score=0.0, max_det=7)
        again = det.predict([img], score=0.0, iou=1.0, max_det=500)[0]
    assert [len(d) for d in dets] == [7, 7]
    h, w = img.shape[:2]
    for d in dets[0]:
        assert isinstance(d, Detection)
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
    assert [d.score for d in dets[0]] == sorted((d.score for d in dets[0]), reverse=True)
    assert len(again) > len(dets[0])  # iou=1 suppresses nothing


def test_ssd_decoder_chosen_by_anchor_count(ssd_art):
    p = ssd_art.postprocess.params
    assert ssd_art.format == "tflite" and p["decoder"] == "ssd" and p["matched_by"] == "SSD anchor count"
    assert ssd_art.preprocess.layout == "NHWC" and ssd_art.preprocess.params["fit"] == "stretch"


def test_ssd_real_weights_cat_and_cup(ssd_art):
    with Detector(ssd_art) as det:
        cat, coffee = det.predict([skdata.chelsea(), skdata.coffee()])
    assert cat[0].label == "Cat" and cat[0].score > 0.7
    x1, y1, x2, y2 = cat[0].box
    assert (x2 - x1) > 300 and (y2 - y1) > 200  # the cat fills most of the 451 x 300 photo
    assert coffee[0].label in CUPS and coffee[0].score > 0.4
    assert 150 < (coffee[0].box[0] + coffee[0].box[2]) / 2 < 450  # the cup is in the middle of the 600 px width


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_ssd_converted_to_onnx_finds_the_same_boxes(ssd_art, ssd_onnx_art, backend):
    pytest.importorskip(backend)
    assert ssd_onnx_art.format == "onnx" and ssd_onnx_art.metrics["parity"]["passed"]
    assert ssd_onnx_art.preprocess.layout == "NCHW" and ssd_onnx_art.postprocess.params["decoder"] == "ssd"
    images = [skdata.chelsea(), skdata.coffee()]
    with Detector(ssd_art) as ref, Detector(ssd_onnx_art, backend=backend) as det:
        want, got = ref.predict(images), det.predict(images)
    for w, g in zip(want, got, strict=True):
        assert [d.label for d in g] == [d.label for d in w]
        for a, b in zip(g, w, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-3) and a.box == pytest.approx(b.box, abs=0.5)


def test_import_of_a_non_detector_with_task_detection_names_shapes_and_options(tmp_path):
    from bushu.serve.testing import classifier_onnx

    src = classifier_onnx(tmp_path / "clf.onnx")
    with pytest.raises(LayoutError) as e:
        import_model(str(src), tmp_path / "art", task="detection")
    assert "probs ['batch', 3]" in str(e.value) and "match no detection layout" in str(e.value)
    assert "--decoder" in str(e.value)
    plain = import_model(str(src), tmp_path / "plain")  # without --task it stays what it was
    assert plain.task == "raw"


# -- serving ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(yolo_art, ssd_art, tmp_path_factory):
    from bushu.serve import add_to_repository, start_server
    from bushu.serve.testing import classifier_onnx

    repo = tmp_path_factory.mktemp("repo")
    add_to_repository(repo, yolo_art, name="yolo")  # a fixed batch of 1: served without batching
    add_to_repository(repo, ssd_art, name="ssd", backend="litert", max_batch_size=4)
    classifier_onnx(repo / "classifier" / "1" / "model.onnx")
    with start_server(repo) as srv:
        yield srv


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_detect_endpoint_finds_cat_and_cup(server):
    code, out = _post(f"{server.http_url}/v1/models/ssd:detect", _encode(skdata.chelsea()))
    assert code == 200, out
    assert out["detections"][0]["label"] == "Cat" and out["detections"][0]["score"] > 0.7
    code, out = _post(f"{server.http_url}/v1/models/ssd:detect?score=0.3&max=3", _encode(skdata.coffee(), "PNG"))
    assert code == 200, out
    assert out["detections"][0]["label"] in CUPS and len(out["detections"]) <= 3
    assert set(out["detections"][0]) == {"box", "score", "label", "index"}


def test_detect_endpoint_matches_detector(server, yolo_art):
    body = _encode(skdata.coffee())
    code, out = _post(f"{server.http_url}/v1/models/yolo:detect?score=0&iou=0.5&max=5", body)
    assert code == 200, out
    with Detector(yolo_art) as det:
        want = [d.to_dict() for d in det.predict([body], score=0.0, iou=0.5, max_det=5)[0]]
    assert len(out["detections"]) == 5
    for got, ref in zip(out["detections"], want, strict=True):
        assert got["index"] == ref["index"] and got["score"] == pytest.approx(ref["score"], rel=1e-5)
        assert got["box"] == pytest.approx(ref["box"], abs=1e-3)


@pytest.mark.parametrize(
    "query,needle", [("score=abc", "score"), ("iou=2", "IoU"), ("max=0", "max"), ("max=1.5", "max")]
)
def test_detect_bad_query_is_400(server, query, needle):
    code, out = _post(f"{server.http_url}/v1/models/ssd:detect?{query}", _encode(skdata.chelsea()))
    assert code == 400 and needle in out["error"]


def test_detect_bad_bodies_and_models(server):
    code, out = _post(f"{server.http_url}/v1/models/ssd:detect", b"this is not an image")
    assert code == 400 and "decode" in out["error"]
    code, out = _post(f"{server.http_url}/v1/models/ssd:detect", b"")
    assert code == 400 and "empty" in out["error"]
    code, out = _post(f"{server.http_url}/v1/models/classifier:detect", _encode(skdata.chelsea()))
    assert code == 400 and "detect" in out["error"]
    code, out = _post(f"{server.http_url}/v1/models/ssdd:detect", _encode(skdata.chelsea()))
    assert code == 404 and "ssd" in out["error"]
    code, _ = _post(f"{server.http_url}/v1/models/ssd:detect", _encode(skdata.chelsea()))
    assert code == 200  # still serving


def test_raw_tensors_still_work_over_tritonclient(server, yolo_art):
    tritonhttp = pytest.importorskip("tritonclient.http")
    from bushu.detection import prepare
    from bushu.runtime import load_backend

    batch, _ = prepare([skdata.chelsea()], yolo_art.preprocess)
    client = tritonhttp.InferenceServerClient(server.http_url.removeprefix("http://"))
    inp = tritonhttp.InferInput("images", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch, binary_data=True)
    got = client.infer("yolo", [inp]).as_numpy("output0")
    with load_backend(yolo_art.model_path, "onnxruntime") as be:
        want = be.infer({"images": batch})["output0"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_grpc_detect_with_an_encoded_image(server):
    tritongrpc = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    client = tritongrpc.InferenceServerClient(server.grpc_url)
    inp = tritongrpc.InferInput("image", [2], "BYTES")
    inp.set_data_from_numpy(np.array([_encode(skdata.chelsea()), _encode(skdata.coffee())], dtype=object))
    res = client.infer("ssd", [inp], parameters={"detect": True, "score": 0.3})
    rows = [json.loads(b) for b in res.as_numpy("detections")]
    assert rows[0]["detections"][0]["label"] == "Cat" and rows[1]["detections"][0]["label"] in CUPS
    with pytest.raises(InferenceServerException, match="score"):
        client.infer("ssd", [inp], parameters={"detect": True, "score": "abc"})


def test_openapi_describes_detect(server):
    with urllib.request.urlopen(f"{server.http_url}/openapi.json", timeout=30) as r:
        doc = json.loads(r.read())
    op = doc["paths"]["/v1/models/{model}:detect"]["post"]
    assert {p["name"] for p in op["parameters"]} >= {"score", "iou", "max"}
    assert "Detections" in doc["components"]["schemas"]


def test_parse_query_rejects_bad_values():
    from bushu.detection.decode import parse_query

    assert parse_query({"score": "0.5", "max": "3"}) == {"score": 0.5, "max_det": 3}
    with pytest.raises(UserInputError, match="not a number"):
        parse_query({"score": "abc"})


def test_packaged_sdk_predict_returns_the_same_boxes(yolo_art, tmp_path):
    """The SDK (onnxruntime + numpy + Pillow, no torch, no bushu) finds the boxes Detector finds; a
    subprocess that blocks torch and bushu imports proves it needs neither."""
    from bushu.package.bundle import build_bundle

    bundle = build_bundle(yolo_art, tmp_path / "sdk")
    img = tmp_path / "coffee.jpg"
    img.write_bytes(_encode(skdata.coffee()))
    code = (
        "import json, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'bushu'):\n"
        "            raise ImportError(f'{name} is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(bundle.path / 'src')!r})\n"
        f"from {bundle.package} import Predictor\n"
        "p = Predictor()\n"
        f"print(json.dumps(p.detect_batch([{str(img)!r}], score=0.0, iou=0.5, max_det=5)[0]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    with Detector(yolo_art) as det:
        want = [d.to_dict() for d in det.predict([img], score=0.0, iou=0.5, max_det=5)[0]]
    assert [d["index"] for d in got] == [d["index"] for d in want]
    for g, w in zip(got, want, strict=True):
        assert g["box"] == pytest.approx(w["box"], abs=1e-3) and g["score"] == pytest.approx(w["score"], rel=1e-5)


def test_bench_with_postprocess_times_decoding(yolo_art, tmp_path):
    from bushu.bench.bench import benchmark
    from bushu.serve.testing import classifier_onnx

    (row,) = benchmark(
        yolo_art,
        backends=["onnxruntime"],
        batch_sizes=[1],
        warmup=1,
        repeats=2,
        duration_s=0,
        isolate=False,
        progress=False,
        record=False,
        with_postprocess=True,
    )
    assert row["status"] == "ok", row["reason"]
    assert row["postprocess_ms"] > 0 and row["postprocess"].startswith("yolo decode + class-wise NMS")
    plain = import_model(str(classifier_onnx(tmp_path / "c.onnx")), tmp_path / "c")
    with pytest.raises(UserInputError, match="not a detection artifact"):
        benchmark(plain, backends=["onnxruntime"], with_postprocess=True, progress=False, record=False)


def test_yolo_decoding_agrees_with_ultralytics_own_nms(yolo_art, tmp_path):
    """Our decode + class-wise NMS against Ultralytics' non_max_suppression on the same [1, 84, 2100]
    tensor: the model's real box rows, with distinct class scores (random weights give near-equal ones). The
    IoU threshold is no simple fraction: these boxes lie on an 8 px grid, and an IoU exactly at the threshold
    would be decided by float32 rounding in torchvision."""
    from bushu.detection import prepare
    from bushu.runtime import load_backend

    batch, _ = prepare([skdata.coffee()], yolo_art.preprocess)
    with load_backend(yolo_art.model_path, "onnxruntime") as be:
        out = be.infer({"images": batch})["output0"].copy()
    out[:, 4:, :] = np.random.default_rng(0).uniform(0, 1, out[:, 4:, :].shape) ** 64  # few strong scores
    np.save(tmp_path / "out.npy", out)
    code = (
        "import json, numpy as np, torch\n"
        "from ultralytics.utils.nms import non_max_suppression\n"
        f"p = non_max_suppression(torch.from_numpy(np.load({str(tmp_path / 'out.npy')!r})), conf_thres=0.9, "
        "iou_thres=0.4637, max_det=300)[0]\n"
        "print(json.dumps(p.tolist()))\n"
    )
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "cfg"), "YOLO_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    if proc.returncode and "No module named 'ultralytics'" in proc.stderr:
        pytest.skip("ultralytics is not installed")
    assert proc.returncode == 0, proc.stderr
    want = np.asarray(json.loads(proc.stdout.strip().splitlines()[-1]))  # x1 y1 x2 y2 score class
    from bushu.detection.detector import head_for

    # shifted by 1000 px so that no box is clipped at the image's edge (Ultralytics clips later, in scale_boxes)
    (got,) = head_for(yolo_art)(
        {"output0": out}, [(1.0, 1.0, -1000.0, -1000.0, 10**6, 10**6)], score=0.9, iou=0.4637, max_det=300
    )
    assert 20 < len(got) == len(want) < 300  # under max_det: the same set, not a cut among near-ties
    rows = np.asarray([[*(np.asarray(d.box) - 1000), d.score, d.index] for d in got])

    def ordered(a):  # boxes with scores equal in float32 may come in either order
        return a[np.lexsort((a[:, 0], a[:, 1], a[:, 5], np.round(a[:, 4], 5)))]

    np.testing.assert_allclose(ordered(rows), ordered(want), atol=1e-3, rtol=1e-6)
