"""`bushu ui` over HTTP, as its pages use it: models, try-it, SDK download, dataset upload (with hostile
zips), background jobs that survive a killed UI, and the security rules."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
from test_package import _artifact, _images  # noqa: E402

sys.path.pop(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UI:
    """`bushu ui` in a subprocess (its own session, so a test can kill it like a crash)."""

    def __init__(self, workspace: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bushu", "ui", "-w", str(workspace), "--port", str(self.port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stdout.read())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)

    def request(
        self, path: str, data: bytes | None = None, method: str | None = None, headers=None, csrf: bool = True
    ) -> tuple[int, bytes, dict]:
        h = {"X-Bushu-UI": "1"} if csrf else {}
        h.update(headers or {})
        req = urllib.request.Request(
            self.url + path, data=data, method=method or ("POST" if data is not None else "GET"), headers=h
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def json(self, path: str, data: bytes | dict | None = None, **kw) -> tuple[int, dict]:
        if isinstance(data, dict):
            data = json.dumps(data).encode()
        status, body, _ = self.request(path, data, **kw)
        return status, json.loads(body)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    art = _artifact(tmp)
    ws = tmp / "ws"
    (ws / "models").mkdir(parents=True)
    import shutil

    shutil.copytree(art.path, ws / "models" / "pets")
    ui = UI(ws)
    try:
        yield {"ui": ui, "ws": ws, "art": art, "images": _images(tmp), "tmp": tmp}
    finally:
        ui.stop()


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _png(color: tuple[int, int, int], size=(24, 24)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_page_and_static_files(env):
    ui = env["ui"]
    status, body, headers = ui.request("/")
    assert status == 200 and b"<title>bushu</title>" in body and b"/static/app.js" in body
    assert "default-src 'self'" in headers["content-security-policy"]
    for name in ("app.js", "results.js", "deploy.js", "style.css"):
        assert ui.request(f"/static/{name}")[0] == 200
        assert f"/static/{name}".encode() in body
    for name in ("../app.py", "app.py", "index.html", "nope.js", "..%2Fapp.py"):
        assert ui.request(f"/static/{name}")[0] == 404, name


def test_models_and_try_it_match_bushu(env):
    from bushu.model.processing import preprocess_images, top_k
    from bushu.validate import run_model

    ui, art, images = env["ui"], env["art"], env["images"]
    status, models = ui.json("/api/models")
    assert status == 200
    (m,) = models["models"]
    assert m["name"] == "pets" and m["labels"] == art.labels and m["can_classify"]
    logits = run_model(art.model_path, {"image": preprocess_images(images, art.preprocess)})["logits"]
    want = top_k(logits, art.labels, art.postprocess, k=3)
    for image, w in zip(images, want):
        status, out = ui.json("/api/models/pets/classify?k=3", image.read_bytes())
        assert status == 200, out
        assert [p["label"] for p in out["predictions"]] == [lbl for _, lbl, _ in w]
        np.testing.assert_allclose([p["score"] for p in out["predictions"]], [s for _, _, s in w], rtol=1e-5)
    status, out = ui.json("/api/models/pets/classify", b"not an image")
    assert status == 400 and "not an image we can read (JPEG, PNG" in out["error"], out
    assert " object at 0x" not in out["error"]  # no Python repr reaches the page
    status, out = ui.json("/api/models/nope/classify", images[0].read_bytes())
    assert status == 404 and "no model 'nope'" in out["error"]


def test_sdk_download_is_the_bundle(env):
    status, body, headers = env["ui"].request("/api/models/pets/sdk")
    assert status == 200 and headers["content-type"] == "application/zip"
    assert 'filename="pets-sdk.zip"' in headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
        model = zf.read("tiny-pets-sdk-1.0.0/src/tiny_pets_sdk/model/model.onnx")
    assert "tiny-pets-sdk-1.0.0/deploy/kserve/inferenceservice.yaml" in names
    assert model == env["art"].model_path.read_bytes()


def test_dataset_upload_counts_thumbnails_and_warnings(env):
    ui = env["ui"]
    entries = {f"shapes/red/{i}.png": _png((200 + i, 0, 0)) for i in range(6)}
    entries.update({f"shapes/blue/{i}.jpg": _png((0, 0, 200 + i)) for i in range(3)})
    entries["shapes/README.txt"] = b"ignored"
    entries["__MACOSX/shapes/._x.png"] = b"ignored"
    status, info = ui.json("/api/datasets?name=shapes", _zip(entries))
    assert status == 200, info
    assert info["classes"] == {"blue": 3, "red": 6}
    assert any("fewer than 5 images in blue" in w for w in info["warnings"])
    status, body, headers = ui.request("/api/datasets/shapes/thumb?cls=red&i=0")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    from PIL import Image

    assert Image.open(io.BytesIO(body)).getpixel((5, 5))[0] > 150  # a red thumbnail
    assert ui.request("/api/datasets/shapes/thumb?cls=../../etc&i=0")[0] == 404
    assert ui.json("/api/datasets?name=shapes", _zip(entries))[0] == 409  # no silent overwrite
    status, listed = ui.json("/api/datasets")
    assert [d["name"] for d in listed["datasets"]] == ["shapes"]
    # a folder on this machine can be linked instead of uploaded
    folder = env["tmp"] / "linked"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(5):
            (folder / cls / f"{i}.png").write_bytes(_png((i * 40, 100, 0)))
    status, info = ui.json("/api/datasets/link", {"name": "linked", "path": str(folder)})
    assert status == 200 and info["classes"] == {"a": 5, "b": 5} and info["warnings"] == []


def test_upload_reports_every_file_it_left_out_and_keeps_names(env):
    """A .txt file, a damaged JPEG and an empty class folder: all three reported at once, at upload time;
    the readable images keep the user's own file names."""
    ui, ws = env["ui"], env["ws"]
    entries = {f"mixed/cats/kitty {i}.png": _png((200, 10 * i, 0)) for i in range(3)}
    entries.update({f"mixed/dogs/rex_{i}.PNG": _png((0, 10 * i, 200)) for i in range(3)})
    entries["mixed/dogs/notes.txt"] = b"not a picture"
    entries["mixed/dogs/broken.jpg"] = b"\xff\xd8\xff\xe0" + b"\x00garbage" * 20
    entries["mixed/birds/"] = b""  # an empty class folder
    status, info = ui.json("/api/datasets?name=mixed", _zip(entries))
    assert status == 200, info
    assert info["classes"] == {"cats": 3, "dogs": 3}
    skipped = {s["file"]: s["reason"] for s in info["skipped"]}
    assert set(skipped) == {"mixed/dogs/notes.txt", "mixed/dogs/broken.jpg"}, skipped
    assert skipped["mixed/dogs/notes.txt"].startswith("not an image")
    assert "image" in skipped["mixed/dogs/broken.jpg"] and "0x" not in skipped["mixed/dogs/broken.jpg"]
    assert info["empty_classes"] == ["birds"]
    folder = ws / "datasets" / "mixed"
    assert sorted(p.name for p in (folder / "cats").iterdir()) == [f"kitty_{i}.png" for i in range(3)]
    assert sorted(p.name for p in (folder / "dogs").iterdir()) == [f"rex_{i}.PNG" for i in range(3)]
    # the report stays with the dataset
    status, again = ui.json("/api/datasets/mixed")
    assert again["skipped"] == info["skipped"] and again["empty_classes"] == ["birds"]


def test_hostile_zips_are_refused_and_write_nothing(env):
    ui, ws = env["ui"], env["ws"]
    outside = ws.parent / "escaped.png"
    cases = {
        "slip": (_zip({"c/ok.png": _png((1, 2, 3)), "../../escaped.png": _png((1, 2, 3))}), 400, "outside"),
        "absolute": (_zip({"/tmp/abs.png": _png((1, 2, 3))}), 400, "outside"),
        # 200 MB of zeros in a ~200 kB member, named like an image
        "bomb": (_zip({"c/bomb.png": b"\0" * (200 << 20)}), 400, "limit"),
        "notzip": (b"PK\x03\x04 this is not a zip", 400, "not a readable zip"),
        "empty": (_zip({"notes.txt": b"no images here"}), 400, "no images"),
    }
    link = zipfile.ZipInfo("c/link.png")
    link.external_attr = 0o120777 << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    cases["symlink"] = (buf.getvalue(), 400, "link")
    for name, (body, status_want, msg) in cases.items():
        status, out = ui.json(f"/api/datasets?name={name}", body)
        assert status == status_want and msg in out["error"], (name, out)
        assert not (ws / "datasets" / name).exists(), name
    assert not outside.exists() and not Path("/tmp/abs.png").exists()
    assert list((ws / "uploads").iterdir()) == []  # temporary upload files are removed


def test_upload_limit_names_csrf_and_host(env, tmp_path):
    ui = env["ui"]
    # a 201 MB upload is refused from its Content-Length, before any byte of the body is read
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=30)
    conn.putrequest("POST", "/api/datasets?name=big")
    conn.putheader("X-Bushu-UI", "1")
    conn.putheader("Content-Length", str(201 * 10**6))
    conn.endheaders()
    resp = conn.getresponse()
    out = json.loads(resp.read())
    conn.close()
    assert resp.status == 413 and "limit" in out["error"] and "--max-upload-mb" in out["hint"]
    assert not (env["ws"] / "datasets" / "big").exists()
    status, out = ui.json("/api/datasets?name=..", _zip({"c/a.png": _png((1, 1, 1))}))
    assert status == 400 and "invalid dataset name" in out["error"]
    # no X-Bushu-UI header: a cross-site form post is refused
    status, out = ui.json("/api/jobs", {"kind": "import", "source": "mobilenet_v2"}, csrf=False)
    assert status == 403 and "x-bushu-ui" in out["error"]
    # DNS rebinding: a foreign Host header is refused even on loopback
    status, out = ui.json("/api/models", headers={"Host": "attacker.example:8080"})
    assert status == 403 and "loopback" in out["error"]


def test_token_required_when_asked(tmp_path):
    ui = UI(tmp_path / "ws", "--token", "s3cret")
    try:
        assert ui.request("/api/models")[0] == 401
        assert ui.request("/api/models", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert ui.request("/api/models", headers={"Authorization": "Bearer s3cret"})[0] == 200
        status, _, headers = ui.request("/?token=s3cret")
        assert status == 200 and "bushu_token=s3cret" in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"]
        assert ui.request("/api/models", headers={"Cookie": "bushu_token=s3cret"})[0] == 200
    finally:
        ui.stop()


def test_jobs_survive_a_killed_ui(env, tmp_path):
    """A bench job keeps running while the UI is killed; the restarted UI reports how it ended and the
    model page shows the recorded numbers."""
    import shutil

    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    shutil.copytree(env["art"].path, ws / "models" / "pets")
    ui = UI(ws)
    try:
        status, job = ui.json("/api/models/pets/bench", {"duration": 2})
        assert status == 200 and job["status"] == "running", job
        ui.stop(signal.SIGKILL)  # a crash: no shutdown hooks run
    finally:
        ui.stop()
    ui = UI(ws)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status, job = ui.json(f"/api/jobs/{job['id']}")
            if job["status"] != "running":
                break
            time.sleep(0.5)
        assert job["status"] == "succeeded" and job["returncode"] == 0, job
        assert any("onnxruntime" in line for line in job["log_tail"])
        status, model = ui.json("/api/models/pets")
        rows = [r for r in model["bench"] if r["backend"] == "onnxruntime"]
        assert rows and rows[0]["p50_ms"] > 0 and rows[0]["throughput"] > 0
        # a job whose process vanished without an exit status is marked interrupted, and can be retried
        import sqlite3

        db = sqlite3.connect(ws / "bushu-ui.sqlite")
        db.execute(
            "INSERT INTO jobs (kind, title, argv, status, pid, created, started) VALUES "
            "('bench', 'lost', '[\"bench\", \"x\"]', 'running', 999999999, 0, 0)"
        )
        db.commit()
        db.close()
        time.sleep(1.5)
        status, jobs = ui.json("/api/jobs")
        lost = next(j for j in jobs["jobs"] if j["title"] == "lost")
        assert lost["status"] == "interrupted"
        status, again = ui.json(f"/api/jobs/{lost['id']}/retry", b"")
        assert status == 200 and again["argv"] == ["bench", "x"] and again["id"] != lost["id"]
    finally:
        ui.stop()


def _wait_job(ui: UI, job_id: int, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job = ui.json(f"/api/jobs/{job_id}")
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['status']}")


@pytest.fixture(scope="module")
def pets_data(env):
    """A linked folder named after the model's labels: real photos plus plain colours (some will be wrong)."""
    import shutil

    folder = env["tmp"] / "pets-data"
    for i, cls in enumerate(env["art"].labels):
        (folder / cls).mkdir(parents=True)
        shutil.copy(env["images"][i], folder / cls / f"photo{env['images'][i].suffix}")
        for j in range(3):
            (folder / cls / f"{j}.png").write_bytes(_png((60 * i, 80 * j, 255 - 60 * i), size=(30, 20)))
    status, info = env["ui"].json("/api/datasets/link", {"name": "petsdata", "path": str(folder)})
    assert status == 200, info
    return folder


def test_evaluation_job_matches_bushu_eval(env, pets_data):
    from bushu.eval_ import evaluate
    from bushu.model.artifact import Artifact

    ui = env["ui"]
    status, job = ui.json("/api/evals", {"model": "pets", "dataset": "petsdata"})
    assert status == 200 and job["kind"] == "eval" and job["key"] == "pets@petsdata", job
    job = _wait_job(ui, job["id"])
    assert job["status"] == "succeeded", job["log_tail"]
    assert job["links"] == {"eval": "pets@petsdata"} and job["progress"]["percent"] == 100
    status, got = ui.json("/api/evals/pets@petsdata")
    assert status == 200, got
    want = evaluate(env["art"].path, pets_data, record=False, progress=False)
    assert got["accuracy"] == pytest.approx(want["accuracy"]) and got["n_images"] == want["n_images"] == 16
    assert got["accuracy_note"].startswith(f"{want['accuracy']:.2f} on 16 images — 95% interval ")
    assert got["confusion"] == want["confusion"]
    assert [(c["class"], c["precision"], c["recall"], c["f1"]) for c in got["per_class"]] == [
        (c["class"], c["precision"], c["recall"], c["f1"]) for c in want["per_class"]
    ]
    assert [(m["true"], m["pred"]) for m in got["mistakes"]] == [(m["true"], m["pred"]) for m in want["mistakes"]]
    assert got["mistakes"] and "path" not in got["mistakes"][0]  # file paths stay on the server
    status, body, headers = ui.request("/api/evals/pets@petsdata/mistakes/0")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert ui.request(f"/api/evals/pets@petsdata/mistakes/{len(got['mistakes'])}")[0] == 404
    assert ui.request("/api/evals/..@..%2Fetc")[0] in (400, 404)
    status, listed = ui.json("/api/evals")
    assert [(e["key"], e["n_images"]) for e in listed["evals"]] == [("pets@petsdata", 16)]
    # the UI's evaluation does not overwrite the model's recorded accuracy
    assert "eval" not in Artifact.load(env["ws"] / "models" / "pets").metrics
    status, out = ui.json("/api/evals", {"model": "pets", "dataset": "nope"})
    assert status == 404 and "no dataset 'nope'" in out["error"]


def test_optimize_and_export_jobs_add_variants(env, pets_data):
    from bushu.model.artifact import Artifact

    ui = env["ui"]
    status, out = ui.json("/api/models/pets/optimize", {"quantize": "int8"})
    assert status == 400 and "choose a dataset" in out["error"]
    status, job = ui.json("/api/models/pets/optimize", {"quantize": "int8", "dataset": "petsdata"})
    assert status == 200 and job["kind"] == "optimize", job
    assert _wait_job(ui, job["id"])["status"] == "succeeded", ui.json(f"/api/jobs/{job['id']}")[1]["log_tail"]
    status, job = ui.json("/api/models/pets/export", {"format": "onnx"})
    assert status == 200, job
    job = _wait_job(ui, job["id"])
    assert job["status"] == "succeeded" and any("onnx" in ln for ln in job["log_tail"]), job
    assert ui.json("/api/models/pets/optimize", {"quantize": "int8", "dataset": "petsdata"})[0] == 409
    assert ui.json("/api/models/pets/export", {"format": "nope"})[0] == 400

    new = Artifact.load(env["ws"] / "models" / "pets-int8")
    assert "QuantizeLinear" in {n.op_type for n in __import__("onnx").load(str(new.model_path)).graph.node}
    status, model = ui.json("/api/models/pets")
    rows = {r["name"]: r for r in model["variants"]}
    assert set(rows) == {"pets", "pets-int8", "pets (onnx)"}, rows
    assert rows["pets-int8"]["size_mb"] == pytest.approx(new.size_bytes / 1e6, abs=1e-3)
    assert rows["pets-int8"]["size_mb"] < rows["pets"]["size_mb"]
    assert rows["pets-int8"]["p50_ms"] > 0 and rows["pets-int8"]["top1_agreement"] is not None
    assert rows["pets (onnx)"]["kind"] == "export: ok" and rows["pets (onnx)"]["p50_ms"] is not None
    # every export downloads: the exported artifact and its report, zipped
    status, body, headers = ui.request(rows["pets (onnx)"]["download"])
    assert status == 200 and headers["content-type"] == "application/zip", body[:200]
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
    assert "pets-onnx/export.json" in names and any(n.endswith(".onnx") for n in names), names
    assert ui.request("/api/models/pets/exports/tflite.zip")[0] == 404
    # the optimized model is a model of its own: listed, and it classifies
    status, out = ui.json("/api/models/pets-int8/classify?k=1", env["images"][0].read_bytes())
    assert status == 200 and out["predictions"][0]["label"] in env["art"].labels


def test_skipped_export_is_not_succeeded_and_speaks_plainly(env):
    """An export whose format cannot be built is 'skipped' with its reason, never a green 'succeeded'; an
    int8 format without a calibration set is refused up front, in the page's words (no CLI flags)."""
    ui = env["ui"]
    status, out = ui.json("/api/models/pets/export", {"format": "tflite-int8"})
    assert status == 400 and "choose a calibration data set" in out["error"] and "--" not in out["error"] + out["hint"]
    status, job = ui.json("/api/models/pets/export", {"format": "pt2"})  # an ONNX-only artifact has no PyTorch model
    assert status == 200, job
    job = _wait_job(ui, job["id"])
    report = json.loads((env["ws"] / "exports" / "pets" / "pt2" / "export.json").read_text())
    assert report["rows"][0]["status"] == "skipped", report
    assert job["status"] == "skipped" and job["reason"].startswith("pt2: "), job
    assert "--" not in job["reason"]
    status, listed = ui.json("/api/jobs")
    assert next(j for j in listed["jobs"] if j["id"] == job["id"])["status"] == "skipped"
    status, model = ui.json("/api/models/pets")
    row = next(r for r in model["variants"] if r["name"] == "pets (pt2)")
    assert row["kind"] == "export: skipped" and row["download"] is None  # nothing to download


def test_compare_models_and_variants_on_the_same_data(env, pets_data):
    """The comparison table measures every row on the same data set: what is missing is queued as jobs
    (evaluations of the model, its int8 copy and its ONNX export; a speed measurement), and then every row
    has its accuracy on the same 16 images, its size and its speed; the best of each column is named."""
    from bushu.eval_ import evaluate

    ui = env["ui"]
    assert ui.json("/api/compare")[0] == 400  # no data set: nothing to compare on
    assert ui.json("/api/compare?dataset=nope")[0] == 404
    assert ui.json("/api/compare?dataset=petsdata&model=nope")[0] == 404
    status, table = ui.json("/api/compare?dataset=petsdata&model=pets")
    assert status == 200, table
    rows = {r["name"]: r for r in table["rows"]}
    assert set(rows) == {"pets", "pets-int8", "pets (onnx)"}, rows  # the skipped pt2 export has nothing to compare
    assert rows["pets-int8"]["kind"].startswith("optimized") and rows["pets-int8"]["from"] == "pets"
    assert rows["pets (onnx)"]["kind"] == "export: onnx" and rows["pets (onnx)"]["download"].endswith("/onnx.zip")
    assert table["missing"] > 0 and rows["pets (onnx)"]["accuracy"] is None

    status, queued = ui.json("/api/compare/measure", {"dataset": "petsdata", "model": "pets"})
    assert status == 200 and queued["jobs"], queued
    titles = {j["title"] for j in queued["jobs"]}
    assert {"evaluate pets-int8 on petsdata", "evaluate pets (onnx) on petsdata"} <= titles, titles
    assert ui.json("/api/compare/measure", {"dataset": "petsdata", "model": "pets"})[1]["jobs"] == []  # queued once
    for j in queued["jobs"]:
        assert _wait_job(ui, j["id"])["status"] == "succeeded", ui.json(f"/api/jobs/{j['id']}")[1]["log_tail"]

    status, table = ui.json("/api/compare?dataset=petsdata&model=pets")
    rows = {r["name"]: r for r in table["rows"]}
    assert table["missing"] == 0, table
    want = evaluate(env["art"].path, pets_data, record=False, progress=False)["accuracy"]
    assert rows["pets"]["accuracy"] == pytest.approx(want) == rows["pets (onnx)"]["accuracy"]  # the same model
    assert all(
        r["n_images"] == 16 and r["accuracy_note"].startswith(f"{r['accuracy']:.2f} on 16 images")
        for r in rows.values()
    )
    assert all(r["p50_ms"] and r["size_mb"] for r in rows.values()), rows
    assert table["best"]["size_mb"] == "pets-int8" and not any(r["stale"] for r in rows.values())
    assert table["best"]["accuracy"] in rows and table["best"]["p50_ms"] in rows
    # an export's evaluation is an evaluation like the others: listed, with its details
    status, ev = ui.json(f"/api/evals/{rows['pets (onnx)']['eval']}")
    assert status == 200 and ev["model"] == "pets~onnx" and ev["n_images"] == 16, ev
    # across models: every model, each on the same data
    status, table = ui.json("/api/compare?dataset=petsdata")
    assert {"pets", "pets-int8"} <= {r["name"] for r in table["rows"]}
    assert not any(r["kind"].startswith("export") for r in table["rows"])
    # an evaluation older than its model is stale: marked, not counted as the best, and measured again
    ev_file = env["ws"] / "evals" / "pets-int8@petsdata.json"
    mtime = ev_file.stat().st_mtime
    os.utime(ev_file, (mtime - 3600, mtime - 3600))
    try:
        status, table = ui.json("/api/compare?dataset=petsdata&model=pets")
        assert next(r for r in table["rows"] if r["name"] == "pets-int8")["stale"] and table["missing"] == 1
    finally:
        os.utime(ev_file, (mtime, mtime))


def test_export_formats_say_what_this_model_cannot_be_exported_to(env, tmp_path):
    """The PyTorch-based formats need the model's torch.export program: a model without one is told so (and
    offered the rest); a model that has one is offered them."""
    from bushu.model.artifact import Artifact, write_artifact

    ui = env["ui"]
    status, out = ui.json("/api/models/pets/export-formats")
    assert status == 200, out
    rows = {f["format"]: f for f in out["formats"]}
    for fmt in ("pt2", "torchscript", "tflite", "tflite-int8", "coreml"):
        assert not rows[fmt]["available"] and "PyTorch program" in rows[fmt]["why"], rows[fmt]
    assert rows["onnx"]["available"] and rows["openvino-int8"]["available"] and rows["onnx"]["why"] is None
    art = Artifact.load(env["ws"] / "models" / "pets")
    (tmp_path / "model.pt2").write_bytes(b"a stand-in: only its presence is read here")
    art.files["reference"] = "model.pt2"
    write_artifact(
        env["ws"] / "models" / "pets-ref",
        {"model.onnx": art.model_path, "model.pt2": tmp_path / "model.pt2"},
        art,
        labels=art.labels,
    )
    try:
        rows = {f["format"]: f for f in ui.json("/api/models/pets-ref/export-formats")[1]["formats"]}
        assert rows["tflite"]["available"] and rows["pt2"]["available"]
    finally:
        import shutil

        shutil.rmtree(env["ws"] / "models" / "pets-ref")
    assert ui.json("/api/models/nope/export-formats")[0] == 404


def test_delete_models_datasets_and_jobs(env, tmp_path):
    """Deleting a model takes its exports, downloads, evaluations and remembered deployment with it, never while
    it is served or a job uses it; a linked data set is unlinked (the folder stays); only ended jobs are deleted."""
    import shutil

    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    shutil.copytree(env["art"].path, ws / "models" / "pets")
    shutil.copytree(env["art"].path, ws / "models" / "other")
    folder = tmp_path / "mine"
    for i, cls in enumerate(("cat", "dog")):
        (folder / cls).mkdir(parents=True)
        for j in range(2):
            (folder / cls / f"{j}.png").write_bytes(_png((90 * i, 50 * j, 20)))
    ui = UI(ws)
    try:
        assert ui.json("/api/datasets/link", {"name": "linked", "path": str(folder)})[0] == 200
        upload = _zip({f"up/{c}/{j}.png": _png((80 * i, 60 * j, 9)) for i, c in enumerate("ab") for j in range(2)})
        assert ui.request("/api/datasets?name=up", upload)[0] == 200
        # a model that is served cannot be deleted; stopped (and remembered), it can, with all that hangs on it
        status, dep = ui.json("/api/deployments", {"model": "pets"})
        assert status == 200, dep
        status, out = ui.json("/api/evals", {"model": "pets", "dataset": "linked"})
        assert _wait_job(ui, out["id"])["status"] == "succeeded"
        status, job = ui.json("/api/models/pets/export", {"format": "onnx"})
        assert _wait_job(ui, job["id"])["status"] == "succeeded"
        assert (
            ui.request("/api/models/pets/exports/onnx.zip")[0] == 200 and ui.request("/api/models/pets/sdk")[0] == 200
        )
        status, out = ui.json("/api/models/pets", method="DELETE")
        assert status == 409 and "being served" in out["error"] and "Deploy" in out["hint"], out
        assert ui.json("/api/models/pets", method="DELETE", csrf=False)[0] == 403
        assert ui.json("/api/deployments/pets/stop", b"")[0] == 200
        status, out = ui.json("/api/models/pets", method="DELETE")
        assert status == 200 and out == {"deleted": "pets"}, out
        assert not (ws / "models" / "pets").exists() and not (ws / "exports" / "pets").exists()
        assert not list((ws / "evals").glob("pets@*")) and not list((ws / "bundles").glob("pets-*"))
        assert [d["name"] for d in ui.json("/api/deployments")[1]["deployments"]] == []  # forgotten with it
        assert [m["name"] for m in ui.json("/api/models")[1]["models"]] == ["other"]
        assert ui.json("/api/models/pets", method="DELETE")[0] == 404
        # a model a job is using is kept until the job ends; a running job cannot be deleted, an ended one can
        status, job = ui.json("/api/models/other/bench", {"duration": 20})
        assert status == 200 and job["status"] == "running", job
        status, out = ui.json("/api/models/other", method="DELETE")
        assert status == 409 and f"job #{job['id']}" in out["error"], out
        assert ui.json(f"/api/jobs/{job['id']}", method="DELETE")[0] == 409
        assert ui.json(f"/api/jobs/{job['id']}/cancel", b"")[0] == 200
        assert (ws / "jobs" / f"{job['id']}.log").exists()
        status, out = ui.json(f"/api/jobs/{job['id']}", method="DELETE")
        assert status == 200 and out == {"deleted": job["id"]}
        assert not (ws / "jobs" / f"{job['id']}.log").exists() and ui.json(f"/api/jobs/{job['id']}")[0] == 404
        assert job["id"] not in [j["id"] for j in ui.json("/api/jobs")[1]["jobs"]]
        assert ui.json("/api/models/other", method="DELETE")[0] == 200
        # data sets: a linked folder is only unlinked; an uploaded one is removed
        status, out = ui.json("/api/datasets/linked", method="DELETE")
        assert status == 200 and "untouched" in out["note"] and len(list(folder.rglob("*.png"))) == 4, out
        assert ui.json("/api/datasets/up", method="DELETE")[0] == 200
        assert not (ws / "datasets" / "up").exists() and not (ws / "datasets" / "up.upload.json").exists()
        assert ui.json("/api/datasets")[1]["datasets"] == []
        assert ui.json("/api/datasets/up", method="DELETE")[0] == 404
        assert list((ws / "evals").iterdir()) == []
    finally:
        ui.stop()


def test_zoo_picker_lists_the_zoo(env):
    from bushu.model import zoo

    ui = env["ui"]
    status, out = ui.json("/api/zoo")
    assert status == 200 and [m["name"] for m in out["models"]] == list(zoo.ZOO)
    assert all(isinstance(m["installed"], bool) and m["params_m"] > 0 for m in out["models"])
    status, out = ui.json("/api/jobs", {"kind": "import", "source": "mobilenet_v3"})
    assert status == 404 and "mobilenet_v2" in out["error"] + (out["hint"] or ""), out  # did you mean


def test_progress_file_feeds_the_job_progress(tmp_path, monkeypatch):
    """Training's progress bars write their phase to $BUSHU_PROGRESS_FILE; the job list turns it into step of
    total, percent, ETA (by the time budget for training), best score so far and the score of each trial."""
    from bushu.train.runner import PROGRESS_FILE_ENV, progress_bar
    from bushu.ui.jobs import JobStore

    store = JobStore(tmp_path)
    try:
        monkeypatch.setenv(PROGRESS_FILE_ENV, str(store.dir / "7.progress.json"))
        with progress_bar(False, "features", 10) as advance:
            advance(10)
        with progress_bar(False, "search", 4) as advance:
            advance(1, best=0.5, score=0.5)
            advance(1, best=0.75, score=0.75)
            job = {"id": 7, "kind": "bench", "status": "running", "argv": [], "elapsed_s": 3.0}
            p = store._progress(job)
        with progress_bar(False, "fine-tune", 20) as advance:
            for e in range(2):
                advance(10)
                advance(0, epoch={"epoch": e, "val_accuracy": 0.5 + e / 4, "val_loss": 1.0 - e / 4, "train_loss": 0.9})
        # each chart's data survives the phase changes: the search's scores, then fine-tuning's epochs
        epochs = store._progress(job)
        assert epochs["scores"] == [0.5, 0.75] and [e["val_accuracy"] for e in epochs["epochs"]] == [0.5, 0.75]
        assert epochs["epochs"][1] == {"epoch": 1, "val_accuracy": 0.75, "val_loss": 0.75, "train_loss": 0.9}
        assert (p["phase"], p["step"], p["total"], p["percent"], p["best"], p["scores"]) == (
            "search",
            2,
            4,
            50.0,
            0.75,
            [0.5, 0.75],
        )
        assert p["eta_s"] >= 0
        train = store._progress({**job, "kind": "train", "argv": ["train", "D", "--budget", "1m"], "elapsed_s": 15.0})
        assert (train["percent"], train["eta_s"]) == (25.0, 45.0)
        assert store._progress({**job, "status": "succeeded"})["percent"] == 100
        assert store._progress({**job, "id": 8})["percent"] is None  # nothing reported yet: an indeterminate bar
        model = tmp_path / "models" / "m"
        model.mkdir(parents=True)
        (model / "bushu.yaml").write_text("name: m\n")
        (model / "report.html").write_text("<html></html>")
        done = {**job, "kind": "train", "status": "succeeded", "output": str(model)}
        assert store._links(done) == {"model": "m", "report": "/api/models/m/report"}
        assert store._links({**done, "status": "failed"}) == {}
    finally:
        store.close()


def test_accuracy_carries_its_sample_size_and_interval():
    from bushu.ui._http import plain
    from bushu.ui.workspace import accuracy_note

    assert accuracy_note(1.0, 2) == "1.00 on 2 images — 95% interval 0.34–1.00"  # Wilson, z = 1.96
    assert accuracy_note(0.9, 100) == "0.90 on 100 images — 95% interval 0.83–0.94"
    assert accuracy_note(None, 5) is None and accuracy_note(0.5, 0) is None
    assert plain("cannot identify image file <_io.BytesIO object at 0x7f00deadbeef>") == "cannot identify image file"
    from bushu.export.core import DATA_HINT

    assert "--" not in plain(f"int8 needs calibration images: {DATA_HINT}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_deployment_serves_measures_and_stops(env):
    ui, images = env["ui"], env["images"]
    status, dep = ui.json("/api/deployments", {"model": "pets"})
    assert status == 200 and dep["running"], dep
    try:
        urls = dep["urls"]
        assert all(u.startswith(("http://127.0.0.1:", "127.0.0.1:")) for u in urls.values()), urls
        port = int(urls["classify"].split(":")[2].split("/")[0])
        assert any("--data-binary @image.jpg" in c and urls["classify"] in c for c in dep["curl"])
        assert ui.json("/api/deployments", {"model": "pets"})[0] == 400  # already served
        tops = []
        for image in images[:3]:  # through the UI's proxy: the same answer as the in-process try-it
            status, via = ui.json("/api/deployments/pets/classify", image.read_bytes())
            tops.append(via["predictions"][0]["label"])
            assert status == 200 and via["via"].startswith(urls["classify"]), via
            status, direct = ui.json("/api/models/pets/classify?k=5", image.read_bytes())
            assert [p["label"] for p in via["predictions"]] == [p["label"] for p in direct["predictions"]]
            np.testing.assert_allclose(
                [p["score"] for p in via["predictions"]], [p["score"] for p in direct["predictions"]], rtol=1e-5
            )
        # an independent client straight to the server
        req = urllib.request.Request(urls["classify"] + "?k=1", data=images[0].read_bytes(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["predictions"][0]["label"] == tops[0]
        with urllib.request.urlopen(urls["http"], timeout=30) as r:
            assert json.loads(r.read())["name"] == "pets"
        status, info = ui.json("/api/deployments/pets")
        assert status == 200 and info["metrics"]["success"] == 4 and info["metrics"]["failure"] == 0, info
        assert info["metrics"]["mean_latency_ms"] > 0
        status, listed = ui.json("/api/deployments")
        assert [d["name"] for d in listed["deployments"]] == ["pets"]
    finally:
        status, out = ui.json("/api/deployments/pets/stop", b"")
    assert status == 200 and out["running"] is False
    assert not _port_open(port)
    listed = ui.json("/api/deployments")[1]["deployments"]  # remembered, stopped: to start again or forget
    assert [(d["name"], d["state"], d["running"]) for d in listed] == [("pets", "stopped", False)]
    assert ui.json("/api/deployments/pets/forget", b"") == (200, {"name": "pets", "forgotten": True})
    assert ui.json("/api/deployments")[1]["deployments"] == []
    status, out = ui.json("/api/deployments/pets/classify", images[0].read_bytes())
    assert status == 404 and "not being served" in out["error"]


def test_deployment_with_api_key_beyond_loopback_charts_and_remembered(env, tmp_path):
    """Served for other machines: it listens on every address with an API key (made up when none is given),
    the page gives the address to call from another machine, a request without the key is refused and the
    UI's own requests carry it; the metrics history feeds the charts; a restarted UI lists it as stopped,
    starts it again with the same key on the same port, or forgets it."""
    import shutil

    from bushu.ui.deploy import outward_addresses

    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    shutil.copytree(env["art"].path, ws / "models" / "pets")
    image = env["images"][0].read_bytes()
    ui = UI(ws)
    try:
        status, out = ui.json("/api/deployments", {"model": "pets", "api_key": "short"})
        assert status == 400 and "8 characters" in out["error"], out
        status, dep = ui.json("/api/deployments", {"model": "pets", "expose": True})
        assert status == 200 and dep["running"] and dep["expose"] and dep["host"] == "0.0.0.0", dep
        key, urls = dep["api_key"], dep["urls"]
        assert key and len(key) >= 20
        assert all(f"Authorization: Bearer {key}" in c for c in dep["curl"] if c.startswith("curl"))
        req = urllib.request.Request(urls["classify"] + "?k=1", data=image, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 401
        req.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
        hosts = outward_addresses()
        if hosts:  # the address another machine calls, and the server answers there
            remote = dep["remote"]["urls"]["classify"]
            assert remote.startswith(f"http://{hosts[0]}:") and remote.endswith("/v1/models/pets:classify")
            assert any(remote in c for c in dep["curl"])
            req = urllib.request.Request(remote + "?k=1", data=image, method="POST", headers={"X-API-Key": key})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert json.loads(r.read())["predictions"]
        else:
            assert dep["remote"] == {"hosts": [], "urls": None}
        status, via = ui.json("/api/deployments/pets/classify", image)  # the UI sends the key itself
        assert status == 200 and via["predictions"], via
        # the charts' history: requests per second and mean latency per sampled interval; the first look is
        # taken at readiness (no interval yet, so no rates), the requests after it count from the next one
        first = dep["history"][0]
        assert first["rps"] is None and first["failed_rps"] is None and first["latency_ms"] is None, dep["history"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ui.json("/api/deployments/pets/classify", image)
            history = ui.json("/api/deployments/pets")[1]["history"]
            if any((p["rps"] or 0) > 0 for p in history):
                break
            time.sleep(0.5)
        busy = [p for p in history if (p["rps"] or 0) > 0]
        assert busy and all(p["latency_ms"] > 0 and p["failed_rps"] == 0 for p in busy), history
        assert all(set(p) == {"t", "rps", "failed_rps", "latency_ms", "queue_ms"} for p in history)
        saved = ws / "serve" / "deployments.json"
        assert saved.stat().st_mode & 0o077 == 0  # it holds the key: the owner's only
        assert json.loads(saved.read_text())["deployments"]["pets"]["api_key"] == key
        port = urls["http"].split(":")[2].split("/")[0]
    finally:
        ui.stop()  # the UI's shutdown stops the server
    assert not _port_open(int(port))
    ui = UI(ws)
    try:
        (listed,) = ui.json("/api/deployments")[1]["deployments"]
        assert (listed["name"], listed["state"], listed["expose"], listed["api_key"]) == ("pets", "stopped", True, key)
        status, dep = ui.json("/api/deployments/pets/start", b"")
        assert status == 200 and dep["running"] and dep["api_key"] == key, dep
        assert dep["urls"]["http"].split(":")[2].split("/")[0] == port  # the same address as before
        assert ui.json("/api/deployments/pets/classify", image)[0] == 200
        assert ui.json("/api/deployments/pets/forget", b"")[0] == 200
        assert not _port_open(int(port)) and ui.json("/api/deployments")[1]["deployments"] == []
        assert json.loads((ws / "serve" / "deployments.json").read_text())["deployments"] == {}
        assert ui.json("/api/deployments/pets/start", b"")[0] == 404
    finally:
        ui.stop()


def test_deployments_stop_with_the_ui(env, tmp_path):
    """A clean UI shutdown stops its servers; so does a UI that is killed outright."""
    import shutil

    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    shutil.copytree(env["art"].path, ws / "models" / "pets")
    shutil.copytree(env["art"].path, ws / "models" / "broken")
    (ws / "models" / "broken" / "model.onnx").write_bytes(b"not onnx")
    for how in ("terminate", "kill"):
        ui = UI(ws)
        try:
            if how == "terminate":  # a model the server cannot load: the reason, and no deployment left over
                status, out = ui.json("/api/deployments", {"model": "broken"})
                assert status == 500 and "could not load 'broken'" in out["error"] and "ONNX" in out["error"], out
                assert ui.json("/api/deployments")[1]["deployments"] == []
            status, dep = ui.json("/api/deployments", {"model": "pets"})
            assert status == 200, dep
            pid, port = dep["pid"], int(dep["urls"]["http"].split(":")[2].split("/")[0])
            assert _port_open(port)
            os.kill(ui.proc.pid, signal.SIGTERM if how == "terminate" else signal.SIGKILL)  # the UI alone
            ui.proc.wait(30)
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
            ):
                time.sleep(0.2)
            assert not _port_open(port), how
        finally:
            ui.stop()


def _text_artifact(out: Path):
    """A TF-IDF text classifier built by hand: vocabulary good/bad/movie -> positive/negative."""
    from onnx import TensorProto, helper, numpy_helper

    from bushu.model.artifact import Artifact, Preprocess, write_artifact
    from bushu.spec import TensorSpec

    w = numpy_helper.from_array(np.array([[2, 0], [0, 2], [0, 0]], np.float32), "W")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["logits"])],
        "reviews",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    features = {
        "kind": "tfidf",
        "vocabulary": {"good": 0, "bad": 1, "movie": 2},
        "idf": [1.0, 1.0, 1.0],
        "token_pattern": r"(?u)\b\w\w+\b",
        "lowercase": True,
        "sublinear_tf": True,
    }
    art = Artifact(
        path=out,
        model_file="model.onnx",
        format="onnx",
        name="reviews",
        inputs=[TensorSpec("x", "float32", ("batch", 3))],
        outputs=[TensorSpec("logits", "float32", ("batch", 2))],
        preprocess=Preprocess(
            kind="text",
            resize=None,
            crop=None,
            params={"features": "text_features.json", "files": ["text_features.json"]},
        ),
    )
    files = {"model.onnx": m.SerializeToString(), "text_features.json": json.dumps(features).encode()}
    return write_artifact(out, files, art, labels=["positive", "negative"])


def test_text_model_try_it_and_served(tmp_path):
    """A text model takes text in the try-it panel and through its served endpoint."""
    pytest.importorskip("bushu.model.predict")
    ws = tmp_path / "ws"
    _text_artifact(ws / "models" / "reviews")
    # independent reference: "a GOOD good Movie" -> tf (1 + ln 2, 0, 1), l2-normalised, times W
    v = np.array([1 + np.log(2), 0, 1])
    v /= np.linalg.norm(v)
    logits = np.array([2 * v[0], 2 * v[1]])
    want = np.exp(logits) / np.exp(logits).sum()
    ui = UI(ws)
    try:
        status, model = ui.json("/api/models/reviews")
        assert status == 200 and model["input_kind"] == "text" and model["can_classify"], model
        status, out = ui.json(
            "/api/models/reviews/classify?k=2",
            b"a GOOD good Movie",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        assert status == 200, out
        assert [p["label"] for p in out["predictions"]] == ["positive", "negative"]
        np.testing.assert_allclose([p["score"] for p in out["predictions"]], want, rtol=1e-5)
        status, dep = ui.json("/api/deployments", {"model": "reviews"})
        assert status == 200, dep
        status, out = ui.json(
            "/api/deployments/reviews/classify", b"bad bad movie", headers={"Content-Type": "text/plain;charset=UTF-8"}
        )
        assert status == 200 and out["predictions"][0]["label"] == "negative", out
        status, _ = ui.json("/api/deployments/reviews/stop", b"")
        assert status == 200
    finally:
        ui.stop()


def test_training_mistakes_are_shown_from_the_training_data(env, tmp_path):
    """A trained model's worst validation mistakes: labels in the model page, thumbnails read from its
    training folder only (the paths are recorded relative to it)."""
    import shutil

    from PIL import Image

    from bushu.model.artifact import Artifact

    data = tmp_path / "photos"
    for cls in ("cat", "dog"):
        (data / cls).mkdir(parents=True)
    Image.new("RGB", (40, 30), (250, 10, 10)).save(data / "cat" / "red.png")
    ws = tmp_path / "ws"
    shutil.copytree(env["art"].path, ws / "models" / "trained")
    art = Artifact.load(ws / "models" / "trained")
    art.add_step("train", data=str(data))
    art.metrics["train"] = {
        "val_accuracy": 0.5,
        "mistakes": [
            {"path": "cat/red.png", "true": "cat", "pred": "dog", "score": 0.9},
            {"path": "../../../etc/passwd", "true": "dog", "pred": "cat", "score": 0.8},
        ],
    }
    art.save()
    (ws / "datasets").mkdir()
    (ws / "datasets" / "photos.link").write_text(str(data))
    ui = UI(ws)
    try:
        status, model = ui.json("/api/models/trained")
        assert status == 200 and model["dataset"] == "photos", model
        assert model["mistakes"][0] == {"true": "cat", "pred": "dog", "score": 0.9}
        status, body, headers = ui.request("/api/models/trained/mistakes/0")
        assert status == 200 and headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(body)).getpixel((3, 3))[0] > 200  # the red image
        status, body, _ = ui.request("/api/models/trained/mistakes/1")
        assert status == 404 and b"root" not in body  # outside the training folder: refused
        assert ui.request("/api/models/trained/mistakes/2")[0] == 404
        # its training report, from the job's "Training report" link
        assert ui.request("/api/models/trained/report")[0] == 404
        (ws / "models" / "trained" / "report.html").write_text("<html><body>trained on photos</body></html>")
        status, body, headers = ui.request("/api/models/trained/report")
        assert status == 200 and b"trained on photos" in body and headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in headers["content-security-policy"]
    finally:
        ui.stop()


def test_try_it_on_a_detector_answers_with_boxes(env):
    """A detection artifact in Try it: boxes, exactly what bushu.detection.Detector finds (a graph that
    boxes whatever differs from the top-left pixel), in the image's own pixels."""
    from PIL import Image
    from test_eval_detection import H, W, foreground_box_onnx

    from bushu.detection import Detector

    ui, tmp = env["ui"], env["tmp"]
    (tmp / "fg.onnx").write_bytes(foreground_box_onnx())
    proc = subprocess.run(
        [sys.executable, "-m", "bushu", "import", str(tmp / "fg.onnx"), "-o", str(env["ws"] / "models" / "fg")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = Image.new("RGB", (W, H), (250, 250, 250))
    img.paste((200, 30, 30), (100, 60, 180, 140))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    status, out = ui.json("/api/models/fg/classify", buf.getvalue())
    assert status == 200, out
    with Detector(env["ws"] / "models" / "fg") as det:
        want = [d.to_dict() for d in det.predict([img])[0]]
    assert out["detections"] == want and len(want) == 1
    assert want[0]["box"] == pytest.approx([100, 60, 180, 140], abs=2)
    status, out = ui.json("/api/models/fg/classify", b"not an image")
    assert status == 400 and "not an image we can read" in out["error"]
