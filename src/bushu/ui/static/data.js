// bushu web UI: your own data and model. A data set's images per class (relabel, delete, add files,
// capture from the camera) and the model upload form. Uses app.js's helpers ($, el, api, fillSelect,
// showError, loadDatasets, datasets, watching); the API is ui/routes/images.py and ui/routes/uploads.py.
"use strict";

const enc = encodeURIComponent;
const SHOWN_PER_CLASS = 120;  // thumbnails drawn per class before a "show all" button

let browsing = null;    // {name, editable, classes: {cls: [{file, bytes, mtime}]}, all: Set of classes shown whole}
let lastChange = null;  // what "Undo" takes back: {kind: "relabel", cls, file, from} or {kind: "delete", cls, file, undo}
let cameraStream = null;

// -- the image browser ------------------------------------------------------------------------------
function imageUrl(ds, cls, f) {
  return `/api/datasets/${enc(ds)}/image?cls=${enc(cls)}&file=${enc(f.file)}&v=${f.mtime}`;
}

function status(text) { const s = $("#db-status"); if (s) s.textContent = text; }

async function openDataset(name) {
  stopCamera();  // its <video> is drawn anew below
  browsing = {name, all: new Set()};
  lastChange = null;
  const box = $("#dataset-browser");
  box.dataset.dataset = name;
  box.replaceChildren(
    el("div", {class: "row db-head"}, el("h3", {id: "db-title", text: name}),
      el("button", {type: "button", class: "secondary", id: "db-close", text: "Close"})),
    el("p", {id: "db-readonly", class: "muted", hidden: "",
      text: "A folder linked from this machine: its images are shown here, and changed only in the folder itself."}),
    el("div", {id: "db-tools"},
      el("div", {class: "row"},
        el("label", {}, document.createTextNode("Add to class"), el("select", {id: "db-class"})),
        el("label", {}, document.createTextNode("or a new class"), el("input", {id: "db-new-class", placeholder: "new class name", size: "14"})),
        el("label", {}, document.createTextNode("Image files"), el("input", {type: "file", id: "db-files", multiple: "", accept: "image/*"})),
        el("button", {type: "button", id: "db-camera-start", text: "Use the camera"})),
      el("div", {id: "db-camera", class: "row", hidden: ""},
        el("video", {id: "db-video", autoplay: "", playsinline: "", muted: ""}),
        el("div", {class: "db-camera-buttons"},
          el("button", {type: "button", id: "db-capture", text: "Capture into the class"}),
          el("button", {type: "button", class: "secondary", id: "db-camera-stop", text: "Stop the camera"})))),
    el("p", {class: "row"}, el("span", {id: "db-status", class: "muted"}),
      el("button", {type: "button", class: "secondary", id: "db-undo", hidden: "", text: "Undo"})),
    el("div", {id: "db-classes"}));
  $("#db-close").onclick = () => closeDataset();
  $("#db-files").onchange = ev => addFiles([...ev.target.files]).catch(showError).finally(() => { ev.target.value = ""; });
  $("#db-camera-start").onclick = () => startCamera().catch(e => showError(cameraError(e)));
  $("#db-camera-stop").onclick = () => stopCamera();
  $("#db-capture").onclick = () => capture().catch(showError);
  $("#db-undo").onclick = () => undo().catch(showError);
  box.hidden = false;
  await refreshImages();
  box.scrollIntoView();
}

function closeDataset() {
  stopCamera();
  browsing = null;
  lastChange = null;
  $("#dataset-browser").hidden = true;
  $("#dataset-browser").replaceChildren();
}

// the listing again, then the classes drawn, and the data set boxes above (their counts) reloaded
async function refreshImages() {
  if (!browsing) return;
  const d = await api(`/api/datasets/${enc(browsing.name)}/images`);
  Object.assign(browsing, {editable: d.editable, classes: d.classes});
  const names = Object.keys(d.classes);
  const n = names.reduce((s, c) => s + d.classes[c].length, 0);
  $("#db-title").textContent = `Images of ${browsing.name}: ${n} in ${names.length} classes`;
  $("#db-readonly").hidden = d.editable;
  $("#db-tools").hidden = !d.editable;
  fillSelect($("#db-class"), names);
  $("#db-classes").replaceChildren(...names.map(cls => classSection(cls, d.classes[cls], names)));
}

function classSection(cls, files, classes) {
  const grid = el("div", {class: "thumbs db-thumbs"});
  const shown = browsing.all.has(cls) ? files : files.slice(0, SHOWN_PER_CLASS);
  for (const f of shown) grid.append(imageFigure(cls, f, classes));
  const section = el("div", {class: "db-class", "data-class": cls}, el("h4", {text: `${cls} (${files.length})`}), grid);
  if (shown.length < files.length) {
    const more = el("button", {type: "button", class: "secondary db-more", text: `Show all ${files.length}`});
    more.onclick = () => { browsing.all.add(cls); section.replaceWith(classSection(cls, files, classes)); };
    section.append(more);
  }
  return section;
}

function imageFigure(cls, f, classes) {
  const fig = el("figure", {class: "db-image", "data-file": f.file},
    el("img", {src: imageUrl(browsing.name, cls, f), alt: `${f.file} (${cls})`, loading: "lazy"}),
    el("figcaption", {class: "file-name", text: f.file, title: `${f.file}, ${Math.ceil(f.bytes / 1024)} kB`}));
  if (!browsing.editable) return fig;
  const move = el("select", {class: "relabel", title: "The class of this image: choose another to move it there"},
    ...classes.map(c => el("option", {value: c, text: c})));
  move.value = cls;
  move.onchange = () => relabel(cls, f.file, move.value).catch(e => { move.value = cls; showError(e); });
  const del = el("button", {type: "button", class: "secondary delete", title: "Delete this image from the data set", text: "Delete"});
  del.onclick = () => deleteImage(cls, f.file).catch(showError);
  fig.append(el("div", {class: "db-actions"}, move, del));
  return fig;
}

async function relabel(cls, file, to) {
  const out = await api(`/api/datasets/${enc(browsing.name)}/image/relabel`, {method: "POST",
    body: JSON.stringify({cls, file, to})});
  showError(null);
  changed({kind: "relabel", cls: out.cls, file: out.file, from: cls});
  await refreshImages();
  status(`moved ${file} from ${cls} to ${out.cls}` + (out.file !== file ? ` (as ${out.file}: the name was taken)` : ""));
  await loadDatasets();
}

async function deleteImage(cls, file) {
  const out = await api(`/api/datasets/${enc(browsing.name)}/image?cls=${enc(cls)}&file=${enc(file)}`, {method: "DELETE"});
  showError(null);
  changed({kind: "delete", cls, file, undo: out.undo});
  await refreshImages();
  status(`deleted ${file} from ${cls}`);
  await loadDatasets();
}

// the last relabel or delete, which "Undo" takes back (one step: an undone change cannot be undone again)
function changed(change) {
  lastChange = change;
  const b = $("#db-undo");
  b.hidden = !change;
  if (change) b.title = change.kind === "delete" ? `Put ${change.file} back into ${change.cls}`
    : `Move ${change.file} back from ${change.cls} to ${change.from}`;
}

async function undo() {
  const c = lastChange;
  if (!c) return;
  const ds = enc(browsing.name);
  const out = c.kind === "delete"
    ? await api(`/api/datasets/${ds}/image/restore`, {method: "POST", body: JSON.stringify({undo: c.undo})})
    : await api(`/api/datasets/${ds}/image/relabel`, {method: "POST",
      body: JSON.stringify({cls: c.cls, file: c.file, to: c.from, create: true})});
  showError(null);
  changed(null);
  await refreshImages();
  status(`undone: ${out.file} is back in ${out.cls}`);
  await loadDatasets();
}

// where added and captured images go: the new class typed in, else the chosen one
function targetClass() {
  const typed = $("#db-new-class").value.trim();
  return typed ? {cls: typed, create: true} : {cls: $("#db-class").value, create: false};
}

async function addOne(blob, filename, target) {
  const q = new URLSearchParams({cls: target.cls, filename});
  if (target.create) q.set("create", "1");
  return api(`/api/datasets/${enc(browsing.name)}/images?${q}`, {method: "POST", body: blob,
    headers: {"Content-Type": blob.type || "application/octet-stream"}});
}

// each file in its own request: every file that is refused is listed with its reason, the rest are added
async function addFiles(files) {
  if (!files.length) return;
  const target = targetClass();
  if (!target.cls) throw new Error("choose a class to add the images to, or type a new class name");
  const failed = [];
  let added = 0, into = target.cls;
  for (const file of files) {
    try { into = (await addOne(file, file.name, target)).cls; added++; }
    catch (e) { failed.push(`${file.name}: ${e.message}`); }
  }
  if (added) $("#db-new-class").value = "";
  await refreshImages();
  if (added) $("#db-class").value = into;
  status(`added ${added} image${added === 1 ? "" : "s"} to ${into}`);
  await loadDatasets();
  showError(failed.length ? new Error(`${failed.length} of ${files.length} file(s) not added: ${failed.join("; ")}`) : null);
}

// -- the camera -------------------------------------------------------------------------------------
function cameraError(e) {
  const why = {NotAllowedError: "the browser was not allowed to use the camera: allow it for this page and try again",
    NotFoundError: "no camera was found on this device", NotReadableError: "the camera is in use by another program"};
  return new Error(why[e && e.name] || `the camera did not start (${e && e.message ? e.message : e})`);
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia)
    throw new Error("this browser gives the page no camera (open the UI at http://127.0.0.1 or over https)");
  if (!cameraStream) cameraStream = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
  const video = $("#db-video");
  video.srcObject = cameraStream;
  $("#db-camera").hidden = false;
  $("#db-camera-start").hidden = true;
  await video.play();
  showError(null);
}

function stopCamera() {
  if (cameraStream) cameraStream.getTracks().forEach(t => t.stop());
  cameraStream = null;
  const video = $("#db-video");
  if (video) video.srcObject = null;
  if ($("#db-camera")) { $("#db-camera").hidden = true; $("#db-camera-start").hidden = false; }
}

async function capture() {
  const video = $("#db-video");
  if (!cameraStream || !video.videoWidth) throw new Error("the camera has not started yet");
  const target = targetClass();
  if (!target.cls) throw new Error("choose a class to capture into, or type a new class name");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const blob = await new Promise(ok => canvas.toBlob(ok, "image/jpeg", 0.92));
  const t = new Date(), pad = (n, w = 2) => String(n).padStart(w, "0");  // local time: camera-20250131-142501-250.jpg
  const stamp = `${t.getFullYear()}${pad(t.getMonth() + 1)}${pad(t.getDate())}-` +
    `${pad(t.getHours())}${pad(t.getMinutes())}${pad(t.getSeconds())}-${pad(t.getMilliseconds(), 3)}`;
  const out = await addOne(blob, `camera-${stamp}.jpg`, target);
  $("#db-new-class").value = "";
  await refreshImages();
  $("#db-class").value = out.cls;
  status(`captured ${out.file} into ${out.cls}`);
  showError(null);
  await loadDatasets();
}

// -- the model upload form --------------------------------------------------------------------------
let uploadJob = null;  // the import job of the last upload: its form is cleared once that job succeeds

async function uploadModel(form) {
  const file = form.file.files[0];
  if (!file) throw new Error("choose a model file first");
  const q = new URLSearchParams({filename: file.name});
  if (form.name.value.trim()) q.set("name", form.name.value.trim());
  for (const line of form.inputs.value.split("\n")) if (line.trim()) q.append("input", line.trim());
  $("#model-upload-status").textContent = `uploading ${file.name} (${(file.size / 1e6).toFixed(1)} MB)…`;
  try {
    const job = await api(`/api/uploads/model?${q}`, {method: "POST", body: file,
      headers: {"Content-Type": "application/octet-stream"}});
    showError(null);  // the form keeps its file and inputs until the import succeeds: a retry needs only the fix
    uploadJob = job.id;
    watching = job.id;
    location.hash = "#training";
  } finally { $("#model-upload-status").textContent = ""; }
}

// -- wiring -----------------------------------------------------------------------------------------
document.addEventListener("job-shown", ev => {
  if (ev.detail.id !== uploadJob || ev.detail.status !== "succeeded") return;
  $("#model-upload-form").reset();
  uploadJob = null;
});

document.addEventListener("datasets-loaded", () => {
  for (const box of document.querySelectorAll("#datasets-list div.dataset[data-dataset]")) {
    const name = box.dataset.dataset;
    const d = datasets.find(x => x.name === name);
    if (box.querySelector("button.browse") || !d || d.error) continue;
    const b = el("button", {type: "button", class: "secondary browse", text: "Browse and edit images"});
    b.onclick = () => openDataset(name).catch(showError);
    box.append(b);
  }
  if (browsing && !datasets.find(x => x.name === browsing.name)) closeDataset();  // deleted meanwhile
});

document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", () => { if (location.hash !== "#datasets") stopCamera(); });
  $("#model-upload-form").addEventListener("submit", ev => {
    ev.preventDefault();
    uploadModel(ev.target).catch(showError);
  });
});
