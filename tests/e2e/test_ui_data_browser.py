"""Your own data and model in a real headless browser (the harness of test_ui_browser.py): browse a data
set's images, fix a label, delete and add images; capture images from the camera into a class (Chromium's
fake camera, allowed without a prompt); upload a model file through the form and import it with the
inputs stated. Screenshots go to $BUSHU_SCREENSHOTS (or the test's temporary folder)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_ui import UI, _png, _zip  # noqa: E402
from test_ui_browser import (  # noqa: E402
    _capture_two,
    _chrome,
    _click,
    _figure,
    _files,
    _open_browser,
    _select,
    _wait,
)
from test_ui_data import _open_dims_onnx  # noqa: E402

sys.path.pop(0)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


@pytest.fixture
def shots(tmp_path):
    d = Path(os.environ.get("BUSHU_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def browser():
    """test_ui_browser's headless Chromium, with its fake camera."""
    with _chrome() as driver:
        yield driver


RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


@pytest.fixture
def ui(tmp_path):
    """A UI over a workspace with one uploaded data set (cat, dog; rex.png is a dog filed under cat)."""
    entries = {f"pets/cat/{n}.png": _png(RED) for n in ("tom", "felix", "garfield")}
    entries["pets/cat/rex.png"] = _png(BLUE)
    entries.update({f"pets/dog/{n}.png": _png(BLUE) for n in ("fido", "lassie", "blurry")})
    ui = UI(tmp_path / "ws")
    ui.ws = tmp_path / "ws"
    try:
        status, info = ui.json("/api/datasets?name=pets", _zip(entries))
        assert status == 200, info
        yield ui
    finally:
        ui.stop()


def _thumbnails_loaded(driver) -> bool:
    imgs = driver.find_elements(By.CSS_SELECTOR, "#dataset-browser img")
    return bool(imgs) and all(i.get_attribute("naturalWidth") not in (None, "0") for i in imgs)


def test_browse_fix_a_label_delete_and_add_images(tmp_path, ui, browser, shots):
    folder = ui.ws / "datasets" / "pets"
    _open_browser(browser, ui, "pets")
    assert browser.find_element(By.ID, "db-title").text == "Images of pets: 7 in 2 classes"
    assert _files(browser, "cat") == ["felix.png", "garfield.png", "rex.png", "tom.png"]  # the user's own names
    assert _files(browser, "dog") == ["blurry.png", "fido.png", "lassie.png"]
    _wait(browser).until(_thumbnails_loaded)
    browser.save_screenshot(str(shots / "dataset-browse.png"))

    # rex is a dog: move it, under its own name, and see the counts follow
    # (not _select: the figure leaves the cat section as soon as the choice is made)
    Select(browser.find_element(By.CSS_SELECTOR, _figure("cat", "rex.png") + " select.relabel")).select_by_value("dog")
    _wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, _figure("dog", "rex.png"))))
    assert "rex.png" not in _files(browser, "cat")
    assert (folder / "dog" / "rex.png").read_bytes() == _png(BLUE) and not (folder / "cat" / "rex.png").exists()
    assert browser.find_element(By.ID, "db-status").text == "moved rex.png from cat to dog"
    box = browser.find_element(By.CSS_SELECTOR, "div[data-dataset=pets]")
    assert "(7 images, 2 classes)" in box.text and "cat (3)" in box.text and "dog (4)" in box.text, box.text

    # a bad photo: delete it
    _click(browser, _figure("dog", "blurry.png") + " button.delete")
    _wait(browser).until(lambda d: "blurry.png" not in _files(d, "dog"))
    assert not (folder / "dog" / "blurry.png").exists()
    assert browser.find_element(By.ID, "db-status").text == "deleted blurry.png from dog"

    # add two files to cat: the photo goes in under its name, the text file is reported, not added
    kitten, notes = tmp_path / "new kitten.png", tmp_path / "notes.txt"
    kitten.write_bytes(_png(GREEN))
    notes.write_text("not a picture")
    _select(browser, "#db-class", "cat")
    browser.find_element(By.ID, "db-files").send_keys(f"{kitten}\n{notes}")
    _wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, _figure("cat", "new_kitten.png"))))
    err = _wait(browser).until(EC.visibility_of_element_located((By.ID, "error")))
    assert "1 of 2 file(s) not added: notes.txt:" in err.text and "not an image we can read" in err.text, err.text
    assert (folder / "cat" / "new_kitten.png").read_bytes() == _png(GREEN)
    assert sorted(p.name for p in (folder / "cat").iterdir()) == [
        "felix.png",
        "garfield.png",
        "new_kitten.png",
        "tom.png",
    ]
    _wait(browser).until(_thumbnails_loaded)
    browser.execute_script("document.getElementById('dataset-browser').scrollIntoView()")
    browser.save_screenshot(str(shots / "dataset-edited.png"))

    # a folder linked from this machine is shown, never changed: no edit controls
    linked = tmp_path / "mine"
    for cls in ("a", "b"):
        (linked / cls).mkdir(parents=True)
        (linked / cls / "1.png").write_bytes(_png(RED))
    assert ui.json("/api/datasets/link", {"name": "mine", "path": str(linked)})[0] == 200
    _open_browser(browser, ui, "mine")
    assert browser.find_element(By.ID, "db-readonly").is_displayed()
    assert not browser.find_element(By.ID, "db-tools").is_displayed()
    assert _files(browser, "a") == ["1.png"] and not browser.find_elements(By.CSS_SELECTOR, "select.relabel")


def test_undo_the_last_relabel_or_delete(ui, browser, shots):
    folder = ui.ws / "datasets" / "pets"
    _open_browser(browser, ui, "pets")
    assert not browser.find_element(By.ID, "db-undo").is_displayed()  # nothing to undo yet
    Select(browser.find_element(By.CSS_SELECTOR, _figure("cat", "rex.png") + " select.relabel")).select_by_value("dog")
    _wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, _figure("dog", "rex.png"))))
    undo = browser.find_element(By.ID, "db-undo")
    assert undo.is_displayed() and undo.get_attribute("title") == "Move rex.png back from dog to cat"
    _click(browser, "#db-undo")
    _wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, _figure("cat", "rex.png"))))
    assert browser.find_element(By.ID, "db-status").text == "undone: rex.png is back in cat"
    assert (folder / "cat" / "rex.png").read_bytes() == _png(BLUE) and not (folder / "dog" / "rex.png").exists()
    assert not browser.find_element(By.ID, "db-undo").is_displayed()  # one step: nothing more to undo

    _click(browser, _figure("dog", "fido.png") + " button.delete")
    _wait(browser).until(lambda d: "fido.png" not in _files(d, "dog"))
    assert not (folder / "dog" / "fido.png").exists()
    browser.save_screenshot(str(shots / "dataset-undo.png"))
    _click(browser, "#db-undo")
    _wait(browser).until(lambda d: "fido.png" in _files(d, "dog"))
    assert browser.find_element(By.ID, "db-status").text == "undone: fido.png is back in dog"
    assert (folder / "dog" / "fido.png").read_bytes() == _png(BLUE)
    box = browser.find_element(By.CSS_SELECTOR, "div[data-dataset=pets]")
    assert "cat (4)" in box.text and "dog (3)" in box.text, box.text


def test_camera_capture_into_a_class(ui, browser, shots):
    from PIL import Image

    folder = ui.ws / "datasets" / "pets"
    _capture_two(browser, ui, "pets", "cat")
    browser.save_screenshot(str(shots / "camera-capture.png"))
    shots_taken = sorted((folder / "cat").glob("camera-*.jpg"))
    assert len(shots_taken) == 2, sorted(p.name for p in (folder / "cat").iterdir())
    assert browser.find_element(By.ID, "db-status").text == f"captured {shots_taken[-1].name} into cat"
    for p in shots_taken:
        with Image.open(p) as img:
            assert img.format == "JPEG" and img.size[0] >= 320, (img.format, img.size)
            assert np.asarray(img.convert("L")).std() > 5  # the test pattern, not a blank frame
    # into a new class, typed in
    browser.find_element(By.ID, "db-new-class").send_keys("hamster")
    _click(browser, "#db-capture")
    _wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".db-class[data-class=hamster] figure")))
    assert len(list((folder / "hamster").glob("camera-*.jpg"))) == 1
    assert browser.find_element(By.ID, "db-class").get_attribute("value") == "hamster"
    status, info = ui.json("/api/datasets/pets")
    assert info["classes"] == {"cat": 6, "dog": 3, "hamster": 1}, info
    # leaving the tab turns the camera off
    browser.get(ui.url + "/#models")
    _wait(browser).until(lambda d: d.execute_script("return document.getElementById('db-video').srcObject === null"))


def test_model_upload_form_runs_the_import(tmp_path, ui, browser, shots):
    bad, model = tmp_path / "broken.onnx", tmp_path / "relu.onnx"
    bad.write_bytes(b"this is not a model at all \x00\x01\x02" * 10)
    model.write_bytes(_open_dims_onnx())
    browser.get(ui.url + "/#models")
    form = _wait(browser).until(EC.presence_of_element_located((By.ID, "model-upload-form")))

    # a damaged file: refused on the spot, in plain words
    form.find_element(By.NAME, "file").send_keys(str(bad))
    _click(browser, "#model-upload-form button[type=submit]")
    err = _wait(browser).until(EC.visibility_of_element_located((By.ID, "error")))
    assert "broken.onnx is not a readable ONNX model" in err.text and "0x" not in err.text, err.text
    assert browser.execute_script("return location.hash") == "#models"

    # a model whose input size is left open: the import says which size to state, in the form's words
    form = browser.find_element(By.ID, "model-upload-form")
    form.find_element(By.NAME, "file").send_keys(str(model))
    form.find_element(By.NAME, "name").clear()
    form.find_element(By.NAME, "name").send_keys("relu")
    _click(browser, "#model-upload-form button[type=submit]")
    _wait(browser).until(EC.text_to_be_present_in_element((By.ID, "job-title"), "#1 import relu.onnx → relu"))
    _wait(browser, 120).until(lambda d: d.find_element(By.CSS_SELECTOR, "#job-title span").text == "failed")
    reason = _wait(browser).until(EC.visibility_of_element_located((By.ID, "job-reason"))).text
    assert "has no known size" in reason and "x:1xK:float32 in the inputs box" in reason and "--" not in reason, reason
    browser.save_screenshot(str(shots / "model-upload-needs-inputs.png"))

    # back on the form, the file and the name are still there (#24): the retry only states the input
    _click(browser, "nav a[data-tab=models]")
    form = _wait(browser).until(EC.visibility_of_element_located((By.ID, "model-upload-form")))
    assert browser.execute_script("return arguments[0].file.files[0].name", form) == "relu.onnx"
    assert form.find_element(By.NAME, "name").get_attribute("value") == "relu"
    form.find_element(By.NAME, "inputs").send_keys("x:1x4")
    browser.save_screenshot(str(shots / "model-upload-form.png"))
    _click(browser, "#model-upload-form button[type=submit]")
    _wait(browser).until(EC.text_to_be_present_in_element((By.ID, "job-title"), "#2 import relu.onnx → relu"))
    _wait(browser, 120).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#job-title span").text not in ("queued", "running")
    )
    assert browser.find_element(By.CSS_SELECTOR, "#job-title span").text == "succeeded"
    # imported: the form is cleared for the next model
    form = browser.find_element(By.ID, "model-upload-form")
    _wait(browser).until(lambda d: d.execute_script("return arguments[0].file.files.length", form) == 0)
    assert form.find_element(By.NAME, "name").get_attribute("value") == ""
    _click(browser, "#job-links a.job-model")
    _wait(browser).until(EC.text_to_be_present_in_element((By.ID, "md-name"), "relu"))
    assert "x: float32[n, k]" in browser.find_element(By.ID, "md-info").text
    assert browser.find_element(By.CSS_SELECTOR, "tr[data-model=relu]")
    browser.save_screenshot(str(shots / "model-uploaded.png"))
