"""`bushu ui` over HTTP: your own data and model. A data set's images browsed per class, relabelled,
deleted and added (names kept, hostile names refused, linked folders left alone), and a model file
uploaded and imported by the real `bushu import` with the inputs the form states."""

from __future__ import annotations

import io
import json
import sys
import time
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

sys.path.insert(0, str(Path(__file__).parent))
from test_ui import UI, _png, _zip  # noqa: E402

sys.path.pop(0)

q = urllib.parse.quote


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    ws = tmp_path_factory.mktemp("uidata") / "ws"
    ui = UI(ws)
    ui.ws = ws
    try:
        yield ui
    finally:
        ui.stop()


def _upload(ui: UI, name: str, classes: dict[str, dict[str, tuple[int, int, int]]]) -> dict:
    """A data set from {class: {file name: colour}}, uploaded as a zip (as the Datasets tab does)."""
    entries = {f"{name}/{cls}/{f}": _png(colour) for cls, files in classes.items() for f, colour in files.items()}
    status, info = ui.json(f"/api/datasets?name={name}", _zip(entries))
    assert status == 200, info
    return info


def _listing(ui: UI, name: str) -> dict[str, list[str]]:
    status, out = ui.json(f"/api/datasets/{name}/images")
    assert status == 200, out
    return {cls: [f["file"] for f in files] for cls, files in out["classes"].items()}


def _thumb(ui: UI, ds: str, cls: str, file: str, size: int | None = None):
    from PIL import Image

    path = f"/api/datasets/{ds}/image?cls={q(cls)}&file={q(file)}" + (f"&size={size}" if size else "")
    status, body, headers = ui.request(path)
    assert status == 200 and headers["content-type"] == "image/jpeg", body[:300]
    return Image.open(io.BytesIO(body))


RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


def test_browse_lists_each_class_with_the_users_file_names(ui):
    _upload(ui, "browse", {"red": {"kitty 1.png": RED, "kitty_2.PNG": RED}, "blue": {"sky.png": BLUE}})
    status, out = ui.json("/api/datasets/browse/images")
    assert status == 200 and out["editable"] is True, out
    assert _listing(ui, "browse") == {"blue": ["sky.png"], "red": ["kitty_1.png", "kitty_2.PNG"]}
    row = out["classes"]["red"][0]
    assert row["bytes"] == (ui.ws / "datasets" / "browse" / "red" / "kitty_1.png").stat().st_size and row["mtime"] > 0
    img = _thumb(ui, "browse", "red", "kitty_1.png")
    assert max(img.size) <= 128 and img.getpixel((3, 3))[0] > 180  # the red one, scaled to fit 128 px
    assert _thumb(ui, "browse", "blue", "sky.png", size=48).getpixel((3, 3))[2] > 180
    for bad, want in (("&size=5000", "between 16 and 512"), ("&size=big", "integer")):
        status, out = ui.json(f"/api/datasets/browse/image?cls=red&file=kitty_1.png{bad}")
        assert status == 400 and want in out["error"], out
    status, out = ui.json("/api/datasets/browse/image?cls=red&file=nope.png")
    assert status == 404 and "class 'red' has no image 'nope.png'" in out["error"], out
    status, out = ui.json("/api/datasets/browse/image?cls=green&file=kitty_1.png")
    assert status == 404 and "no class 'green'" in out["error"] and "blue, red" in out["hint"], out
    status, out = ui.json("/api/datasets/browse/image?cls=red")
    assert status == 400 and "missing 'file'" in out["error"], out
    status, out = ui.json("/api/datasets/nope/images")
    assert status == 404 and "no dataset 'nope'" in out["error"], out


def test_relabel_moves_the_file_and_keeps_its_name(ui):
    _upload(ui, "relabel", {"cat": {"tom.png": RED, "felix.png": RED, "rex.png": BLUE}, "dog": {"rex.png": BLUE}})
    folder = ui.ws / "datasets" / "relabel"
    before = (folder / "cat" / "tom.png").read_bytes()
    status, out = ui.json("/api/datasets/relabel/image/relabel", {"cls": "cat", "file": "tom.png", "to": "dog"})
    assert status == 200 and (out["cls"], out["file"]) == ("dog", "tom.png"), out
    assert (folder / "dog" / "tom.png").read_bytes() == before and not (folder / "cat" / "tom.png").exists()
    assert out["dataset"]["classes"] == {"cat": 2, "dog": 2}  # the counts the Datasets tab shows
    # a name taken in the target class: kept beside it as name-2, never overwritten
    dog_rex = (folder / "dog" / "rex.png").read_bytes()
    status, out = ui.json("/api/datasets/relabel/image/relabel", {"cls": "cat", "file": "rex.png", "to": "dog"})
    assert status == 200 and out["file"] == "rex-2.png", out
    assert (folder / "dog" / "rex.png").read_bytes() == dog_rex
    assert _listing(ui, "relabel") == {"cat": ["felix.png"], "dog": ["rex-2.png", "rex.png", "tom.png"]}
    # to the class it is in: nothing changes
    status, out = ui.json("/api/datasets/relabel/image/relabel", {"cls": "cat", "file": "felix.png", "to": "cat"})
    assert status == 200 and (out["cls"], out["file"]) == ("cat", "felix.png")
    # to an unknown class: a 404 that names the classes there are; the file stays
    status, out = ui.json("/api/datasets/relabel/image/relabel", {"cls": "cat", "file": "felix.png", "to": "bird"})
    assert status == 404 and "no class 'bird' to move the image to" in out["error"] and "cat, dog" in out["hint"], out
    status, out = ui.json("/api/datasets/relabel/image/relabel", {"cls": "cat", "file": "ghost.png", "to": "dog"})
    assert status == 404 and "no image 'ghost.png'" in out["error"], out
    status, out = ui.json("/api/datasets/relabel/image/relabel", {"cls": "cat", "file": "felix.png"})
    assert status == 400 and "the class to move it to" in out["error"], out
    status, out = ui.json("/api/datasets/relabel/image/relabel", b"[1, 2]")
    assert status == 400 and "JSON object" in out["error"], out
    assert (folder / "cat" / "felix.png").is_file()
    # the class's last image moved away: the class is gone (no empty class folder for training to trip on)
    status, out = ui.json("/api/datasets/relabel/image/relabel", {"cls": "cat", "file": "felix.png", "to": "dog"})
    assert status == 200 and not (folder / "cat").exists() and out["dataset"]["classes"] == {"dog": 4}


def test_delete_removes_the_file_and_refuses_the_last_one(ui):
    _upload(ui, "delete", {"a": {"one.png": RED, "two.png": RED}, "b": {"three.png": BLUE}})
    folder = ui.ws / "datasets" / "delete"
    status, out = ui.json("/api/datasets/delete/image?cls=a&file=one.png", method="DELETE")
    assert status == 200 and out["deleted"] == {"cls": "a", "file": "one.png"}, out
    assert not (folder / "a" / "one.png").exists() and out["dataset"]["classes"] == {"a": 1, "b": 1}
    status, out = ui.json("/api/datasets/delete/image?cls=a&file=one.png", method="DELETE")
    assert status == 404 and "no image 'one.png'" in out["error"], out
    status, out = ui.json("/api/datasets/delete/image?cls=b&file=three.png", method="DELETE")
    assert status == 200 and not (folder / "b").exists() and out["dataset"]["classes"] == {"a": 1}
    status, out = ui.json("/api/datasets/delete/image?cls=a&file=two.png", method="DELETE")
    assert status == 400 and "last image" in out["error"] and "delete the whole data set" in out["hint"], out
    assert (folder / "a" / "two.png").is_file()
    # no header, no change: a cross-site page cannot delete
    status, out = ui.json("/api/datasets/delete/image?cls=a&file=two.png", method="DELETE", csrf=False)
    assert status == 403 and (folder / "a" / "two.png").is_file()


def test_undo_puts_a_deleted_image_back_and_moves_a_relabelled_one_back(ui):
    _upload(ui, "undo", {"a": {"one.png": RED, "two.png": RED}, "b": {"three.png": BLUE}})
    folder = ui.ws / "datasets" / "undo"
    before = (folder / "b" / "three.png").read_bytes()
    # the class's last image deleted (its folder goes), then put back: the class is there again, same bytes
    status, out = ui.json("/api/datasets/undo/image?cls=b&file=three.png", method="DELETE")
    assert status == 200 and not (folder / "b").exists() and len(out["undo"]) == 16, out
    token = out["undo"]
    status, out = ui.json("/api/datasets/undo/image/restore", {"undo": token})
    assert status == 200 and (out["cls"], out["file"]) == ("b", "three.png"), out
    assert (folder / "b" / "three.png").read_bytes() == before and out["dataset"]["classes"] == {"a": 2, "b": 1}
    # only once; a made-up token (or a path) finds nothing
    for bad in (token, "0" * 16, "../../datasets/undo"):
        status, out = ui.json("/api/datasets/undo/image/restore", {"undo": bad})
        assert status == 404 and "no deleted image to put back" in out["error"], out
    # only the last delete is kept: the one before is gone for good
    assert ui.json("/api/datasets/undo/image?cls=a&file=one.png", method="DELETE")[0] == 200
    status, out = ui.json("/api/datasets/undo/image?cls=a&file=two.png", method="DELETE")
    assert status == 200
    assert [p.name for p in (ui.ws / ".trash" / "undo").iterdir()] == [out["undo"]]
    assert ui.json("/api/datasets/undo/image/restore", {"undo": out["undo"]})[0] == 200
    assert _listing(ui, "undo") == {"a": ["two.png"], "b": ["three.png"]}
    # a relabel that emptied its class is undone by moving it back with create (the class is made again)
    status, out = ui.json("/api/datasets/undo/image/relabel", {"cls": "a", "file": "two.png", "to": "b"})
    assert status == 200 and not (folder / "a").exists()
    status, out = ui.json("/api/datasets/undo/image/relabel", {"cls": "b", "file": "two.png", "to": "a"})
    assert status == 404, out  # without create, an unknown class is still refused
    status, out = ui.json(
        "/api/datasets/undo/image/relabel", {"cls": "b", "file": "two.png", "to": "a", "create": True}
    )
    assert status == 200 and out["dataset"]["classes"] == {"a": 1, "b": 1}, out
    # deleting the data set removes what it kept for undo
    assert ui.json("/api/datasets/undo/image?cls=a&file=two.png", method="DELETE")[0] == 200
    assert ui.json("/api/datasets/undo", method="DELETE")[0] == 200
    assert not (ui.ws / ".trash" / "undo").exists()


def test_add_keeps_the_users_name_and_refuses_what_is_not_an_image(ui):
    from PIL import Image

    _upload(ui, "add", {"a": {"x.png": RED}, "b": {"y.png": BLUE}})
    folder = ui.ws / "datasets" / "add"

    def add(cls, filename, data, extra=""):
        return ui.json(f"/api/datasets/add/images?cls={q(cls)}&filename={q(filename)}{extra}", data)

    status, out = add("a", "My Photo.PNG", _png(GREEN))
    assert status == 200 and (out["cls"], out["file"]) == ("a", "My_Photo.PNG"), out
    assert Image.open(folder / "a" / "My_Photo.PNG").getpixel((1, 1)) == GREEN
    assert out["dataset"]["classes"] == {"a": 2, "b": 1}
    status, out = add("a", "My Photo.PNG", _png(RED))
    assert status == 200 and out["file"] == "My_Photo-2.PNG", out  # never over the first one
    assert Image.open(folder / "a" / "My_Photo.PNG").getpixel((1, 1)) == GREEN
    # a JPEG from the camera, and a name with no image suffix: the suffix of what the bytes are
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 0)).save(buf, "JPEG")
    status, out = add("b", "capture", buf.getvalue())
    assert status == 200 and out["file"] == "capture.jpg", out
    # only the base name of a path is used: the file lands in the class folder
    status, out = add("b", "../../../escaped.png", _png(GREEN))
    assert status == 200 and (out["cls"], out["file"]) == ("b", "escaped.png"), out
    assert not (ui.ws / "escaped.png").exists() and not (ui.ws / "datasets" / "escaped.png").exists()
    # a new class, when asked for; an unknown one otherwise
    status, out = add("c", "z.png", _png(BLUE))
    assert status == 404 and "no class 'c'" in out["error"] and "new class" in out["hint"], out
    status, out = add("c", "z.png", _png(BLUE), "&create=1")
    assert status == 200 and (folder / "c" / "z.png").is_file(), out
    assert out["dataset"]["classes"] == {"a": 3, "b": 3, "c": 1}
    for bad in ("../c2", ".hidden", "a/b", ""):
        status, out = add(bad, "z.png", _png(BLUE), "&create=1")
        assert status == 400 and ("invalid class name" in out["error"] or "missing 'cls'" in out["error"]), (bad, out)
    # not an image: refused with the reason, nothing left behind (no temporary file, no new class folder)
    for name, data, want in (
        ("notes.txt", b"hello", "not an image we can read"),
        ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 40, "image"),
        ("empty.png", b"", "empty"),
    ):
        status, out = add("a", name, data)
        assert status == 400 and want in out["error"] and "0x" not in out["error"], (name, out)
        status, out = add("d", name, data, "&create=1")
        assert status == 400, out
    assert not (folder / "d").exists()
    assert sorted(p.name for p in (folder / "a").iterdir()) == ["My_Photo-2.PNG", "My_Photo.PNG", "x.png"]
    # over the per-image limit (20 MB): refused from its declared size, before the body is read
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=30)
    conn.putrequest("POST", "/api/datasets/add/images?cls=a&filename=big.png")
    conn.putheader("X-Bushu-UI", "1")
    conn.putheader("Content-Length", str(21 * 10**6))
    conn.endheaders()
    resp = conn.getresponse()
    out = json.loads(resp.read())
    conn.close()
    assert resp.status == 413 and "limit" in out["error"], out


HOSTILE_CLASSES = ["..", "../..", ".", "/etc", "a/../b", "a/..", "%2e%2e", "a\\..\\..", "a\0"]
HOSTILE_FILES = [
    "../../../bushu-ui.sqlite",
    "../b/in_b.png",
    "/etc/passwd",
    "..",
    "in_a.png/../../b/in_b.png",
    ".hidden.png",
    "sub/../in_a.png",
    "in_a.png\0.png",
    "IN_A.PNG",
]


def test_hostile_names_never_reach_outside_the_folder(ui):
    """Every edit takes class and file names from the request: each of these gets a clear 4xx, and no file
    changes anywhere (the workspace's database beside the data sets included)."""
    from PIL import Image

    _upload(ui, "safe", {"a": {"in_a.png": RED}, "b": {"in_b.png": BLUE}})
    folder = ui.ws / "datasets" / "safe"
    Image.new("RGB", (8, 8), GREEN).save(folder / "a" / ".hidden.png")  # hidden: not part of the data set
    outside = ui.ws / "outside.png"
    outside.write_bytes(_png(GREEN))
    (folder / "b" / "link.png").symlink_to(outside)  # a link out (uploads cannot make one; a folder could)

    def snapshot():
        files = [outside, ui.ws / "bushu-ui.sqlite", *(ui.ws / "datasets").rglob("*")]
        return {p: p.read_bytes() for p in files if p.is_file()}

    def relabel(cls, file, to):
        return json.dumps({"cls": cls, "file": file, "to": to}).encode()

    before = snapshot()
    for cls in [*HOSTILE_CLASSES, "a"]:
        for file in [*HOSTILE_FILES, *(["in_a.png"] if cls != "a" else [])]:
            query = f"cls={q(cls)}&file={q(file)}"
            calls = [
                ("GET", f"/api/datasets/safe/image?{query}", None),
                ("DELETE", f"/api/datasets/safe/image?{query}", None),
                ("POST", "/api/datasets/safe/image/relabel", relabel(cls, file, "b")),
                ("POST", f"/api/datasets/safe/images?cls={q(cls)}&filename={q(file)}", _png(RED)),
            ]
            if cls != "a":
                calls.append(("POST", "/api/datasets/safe/image/relabel", relabel("a", "in_a.png", cls)))
            for method, path, body in calls:
                status, raw, _ = ui.request(path, body, method=method)
                if method == "POST" and "filename=" in path and cls == "a":
                    continue  # an added image goes in as its base name, sanitised (test_add_... checks that)
                assert status in (400, 404), (method, cls, file, status, raw[:200])
                assert "error" in json.loads(raw), raw
            for p in (folder / "a").iterdir():  # the adds into class a: remove them again
                if p.name not in ("in_a.png", ".hidden.png"):
                    p.unlink()
    status, out = ui.json("/api/datasets/safe/image?cls=b&file=link.png")
    assert status == 404 and "not in" in out["error"], out  # its target is outside the data set
    assert snapshot() == before
    for name in ("..", "../datasets/safe", "..%2F..%2Fetc"):
        status, raw, _ = ui.request(f"/api/datasets/{name}/images")
        assert status in (400, 404), (name, status)


def test_a_linked_folder_is_browsed_but_never_changed(ui, tmp_path):
    folder = tmp_path / "mine"
    for cls, colour in (("a", RED), ("b", BLUE)):
        (folder / cls / "nested").mkdir(parents=True)
        for i in range(2):
            (folder / cls / f"{i}.png").write_bytes(_png(colour))
        (folder / cls / "nested" / "deep.png").write_bytes(_png(colour))
    status, out = ui.json("/api/datasets/link", {"name": "mine", "path": str(folder)})
    assert status == 200, out
    status, out = ui.json("/api/datasets/mine/images")
    assert status == 200 and out["editable"] is False
    assert _listing(ui, "mine") == {
        "a": ["0.png", "1.png", "nested/deep.png"],
        "b": ["0.png", "1.png", "nested/deep.png"],
    }
    assert _thumb(ui, "mine", "b", "nested/deep.png").getpixel((2, 2))[2] > 180
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for method, path, body in (
        ("DELETE", "/api/datasets/mine/image?cls=a&file=0.png", None),
        ("POST", "/api/datasets/mine/image/relabel", json.dumps({"cls": "a", "file": "0.png", "to": "b"}).encode()),
        ("POST", "/api/datasets/mine/images?cls=a&filename=new.png", _png(RED)),
    ):
        status, raw, _ = ui.request(path, body, method=method)
        out = json.loads(raw)
        assert status == 409 and "linked from this machine" in out["error"] and "upload it as a zip" in out["hint"], out
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


# -- your own model -------------------------------------------------------------------------------------
def _wait_job(ui: UI, job_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job = ui.json(f"/api/jobs/{job_id}")
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['status']}")


def _open_dims_onnx() -> bytes:
    """y = relu(x), x: float32[n, k]: k has no size the importer can find, so it must be stated."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "k"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "k"])],
    )
    return onnx.helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _post_model(ui: UI, filename: str, data: bytes, name: str | None = None, inputs=()) -> tuple[int, dict]:
    params = [("filename", filename)] + ([("name", name)] if name else []) + [("input", s) for s in inputs]
    return ui.json(f"/api/uploads/model?{urllib.parse.urlencode(params)}", data)


def test_uploaded_onnx_is_imported_with_the_stated_inputs(ui):
    """Without its open size stated, the real import fails and says what to state, in the form's words;
    with it, the model is imported, records the size, and is listed."""
    import yaml

    status, job = _post_model(ui, "relu.onnx", _open_dims_onnx(), name="relu")
    assert status == 200 and job["kind"] == "import" and job["title"] == "import relu.onnx → relu", job
    job = _wait_job(ui, job["id"])
    assert job["status"] == "failed", job
    assert "dim 1 ('k') has no known size" in job["reason"] and "x:1xK:float32 in the inputs box" in job["reason"]
    assert "--" not in job["reason"], job["reason"]
    assert not (ui.ws / "models" / "relu").exists()

    status, job = _post_model(ui, "relu.onnx", _open_dims_onnx(), name="relu", inputs=["x:2x5", ""])
    assert status == 200, job
    assert job["argv"][-2:] == ["--input", "x:2x5"]
    job = _wait_job(ui, job["id"])
    assert job["status"] == "succeeded" and job["links"] == {"model": "relu"}, job
    meta = yaml.safe_load((ui.ws / "models" / "relu" / "bushu.yaml").read_text())
    assert meta["inputs"][0]["ranges"]["k"]["typical"] == 5 and meta["metrics"]["parity"]["passed"]
    assert (ui.ws / "sources" / "relu" / "relu.onnx").read_bytes() == _open_dims_onnx()  # kept: a retry works
    status, models = ui.json("/api/models")
    assert "relu" in [m["name"] for m in models["models"]]
    status, out = _post_model(ui, "relu.onnx", _open_dims_onnx(), name="relu")
    assert status == 409 and "already exists" in out["error"]


def test_uploaded_pt2_is_imported_and_matches_torch(ui, tmp_path):
    torch = pytest.importorskip("torch")
    from torch.export import Dim

    from bushu.runtime import load_backend

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(1)).eval()
    x = torch.randn(2, 3, 8, 8)
    prog = torch.export.export(net, (x,), dynamic_shapes=({0: Dim("batch", min=1, max=64)},))
    torch.export.save(prog, str(tmp_path / "my net.pt2"))
    status, job = _post_model(ui, "my net.pt2", (tmp_path / "my net.pt2").read_bytes())
    assert status == 200, job
    job = _wait_job(ui, job["id"])
    assert job["status"] == "succeeded", job["log_tail"]
    art = ui.ws / "models" / "my_net"
    with torch.no_grad():
        want = net(x).numpy()
    with load_backend(art / "model.onnx", "onnxruntime") as be:
        got = be.infer({be.inputs[0].name: x.numpy()})[be.outputs[0].name]
    np.testing.assert_allclose(got, want, atol=1e-5)


def _tiny_hf_folder(d: Path) -> Path:
    """A 1-layer BERT with a 15-word vocabulary, saved as Hugging Face saves a model (no download)."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")

    d.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "film", "great", "awful", "the", "a"]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(d)
    cfg = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(d)
    return d


def test_uploaded_hugging_face_zip_is_imported(ui, tmp_path):
    folder = _tiny_hf_folder(tmp_path / "tiny-bert")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"tiny-bert/{p.name}")  # as zipping the folder gives: one top folder
        zf.writestr("__MACOSX/tiny-bert/._config.json", b"junk")
    # one input stated: its [batch, seq] sizes attention_mask and token_type_ids too
    inputs = ["input_ids:1x8:int64"]
    status, job = _post_model(ui, "tiny-bert.zip", buf.getvalue(), inputs=inputs)
    assert status == 200, job
    job = _wait_job(ui, job["id"], timeout=400)
    assert job["status"] == "succeeded", job["log_tail"]
    status, model = ui.json("/api/models/tiny-bert")
    assert status == 200 and model["input_kind"] == "text", model
    assert [s.split(":")[0] for s in model["inputs"]][:2] == ["input_ids", "attention_mask"], model["inputs"]
    assert not (ui.ws / "sources" / "tiny-bert" / "__MACOSX").exists()


def test_bad_model_uploads_are_refused_at_once_in_plain_words(ui):
    def slip_zip():
        return _zip({"hf/config.json": b"{}", "../../evil.txt": b"x"})

    cases = [
        ("model.pt", b"x", 400, "bushu imports an .onnx file"),
        ("weights.pth", b"x", 400, "bushu imports an .onnx file"),
        ("readme", b"x", 400, "bushu imports an .onnx file"),
        ("bad.onnx", b"this is not a model at all \x00\x01\x02" * 10, 400, "not a readable ONNX model"),
        ("empty.onnx", b"", 400, "is empty"),
        ("bad.pt2", b"PK\x03\x04 not a zip", 400, "not a torch.export program"),
        ("zip.pt2", _zip({"a.txt": b"x"}), 400, "not a torch.export program"),
        ("bad.zip", b"PK\x03\x04 truncated", 400, "not a readable zip"),
        ("noconfig.zip", _zip({"hf/weights.bin": b"x"}), 400, "no config.json"),
        ("slip.zip", slip_zip(), 400, "outside"),
    ]
    for filename, data, want_status, want in cases:
        status, out = _post_model(ui, filename, data, name="bad")
        assert status == want_status and want in out["error"], (filename, out)
        assert "0x" not in out["error"] and "--" not in out["error"] + (out["hint"] or ""), out
    for spec, want in (
        ("x", "expected NAME:SHAPE[:DTYPE]"),
        ("x:1xKx3", "is not a shape"),
        ("x:1x0", "positive"),
        ("x:1x2:complex7", "complex7"),
    ):
        status, out = _post_model(ui, "relu.onnx", _open_dims_onnx(), name="bad", inputs=[spec])
        assert status == 400 and want in out["error"] and f"input '{spec}'" in out["error"], (spec, out)
        assert "--input" not in out["error"], out
    status, out = _post_model(ui, "relu.onnx", _open_dims_onnx(), name="..")
    assert status == 400 and "invalid model name" in out["error"]
    assert not (ui.ws / "models" / "bad").exists() and not (ui.ws.parent / "evil.txt").exists()
    assert not (ui.ws / "sources" / "bad").exists() and list((ui.ws / "uploads").iterdir()) == []
