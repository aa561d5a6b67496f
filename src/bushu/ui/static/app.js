// bushu web UI: plain JavaScript over the JSON API in bushu/ui/app.py (no build step).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const fmt = (v, d = 3) => (v === null || v === undefined) ? "-" : (typeof v === "number" ? Number(v.toPrecision(d)).toString() : String(v));

async function api(path, opts = {}) {
  const headers = Object.assign({"X-Bushu-UI": "1"}, opts.headers || {});
  const resp = await fetch(path, Object.assign({}, opts, {headers}));
  const type = resp.headers.get("content-type") || "";
  const body = type.includes("json") ? await resp.json() : await resp.blob();
  if (!resp.ok) {
    const msg = body && body.error ? body.error + (body.hint ? " — " + body.hint : "") : resp.statusText;
    throw new Error(msg);
  }
  return body;
}

// replace a <select>'s options, keeping the current choice when it is still there
function fillSelect(sel, values, first = null) {
  const current = sel.value;
  const opts = values.map(v => el("option", {value: v, text: v}));
  if (first !== null) opts.unshift(el("option", {value: "", text: first}));
  sel.replaceChildren(...opts);
  if (current && values.includes(current)) sel.value = current;
}

function confusionTable(confusion, title) {
  const t = el("table", {class: "cm"});
  t.append(el("tr", {}, el("th", {text: "true \\ predicted"}), ...confusion.columns.map(c => el("th", {text: c}))));
  const max = Math.max(1, ...confusion.matrix.flat());
  confusion.matrix.forEach((row, i) => t.append(el("tr", {}, el("th", {text: confusion.rows[i]}),
    ...row.map((v, j) => {
      const td = el("td", {class: i === j ? "diag" : (v ? "off" : ""), text: fmt(v)});
      if (v && i !== j) td.style.background = `rgba(214, 69, 65, ${0.15 + 0.6 * v / max})`;
      return td;
    }))));
  return el("div", {class: "confusion"}, el("h4", {text: title}), t);
}

// misclassified images: thumbnail, true label, predicted label and its score
function mistakesGrid(mistakes, thumbUrl, title) {
  if (!mistakes || !mistakes.length) return el("div");
  const grid = el("div", {class: "thumbs mistakes"});
  mistakes.slice(0, 24).forEach((m, i) => grid.append(el("figure", {class: "mistake" + (m.excerpt ? " text" : "")},
    m.excerpt ? el("blockquote", {text: m.excerpt}) : el("img", {src: thumbUrl(i), alt: `${m.true} predicted as ${m.pred}`, loading: "lazy"}),
    el("figcaption", {}, el("span", {class: "true", text: m.true}), document.createTextNode(" → "),
      el("span", {class: "pred", text: m.pred}), el("br"), el("span", {class: "muted", text: `score ${fmt(m.score, 2)}`})))));
  const more = mistakes.length > 24 ? ` (first 24 of ${mistakes.length})` : ` (${mistakes.length})`;
  return el("div", {}, el("h4", {text: title + more}), grid);
}

function showError(err) {
  const box = $("#error");
  if (!err) { box.hidden = true; return; }
  box.textContent = String(err.message || err);
  box.hidden = false;
}

// -- tabs -------------------------------------------------------------------------------------------
function showTab() {
  const tab = (location.hash || "#models").slice(1);
  document.querySelectorAll(".tab").forEach(s => { s.hidden = s.id !== "tab-" + tab; });
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.tab === tab));
  refresh(tab).catch(showError);
}

async function refresh(tab) {
  if (["models", "try", "sdk", "evaluate", "deploy"].includes(tab)) await loadModels();
  if (["datasets", "training", "models", "evaluate"].includes(tab)) await loadDatasets();
  if (tab === "training") await loadJobs();
  if (tab === "models") { await loadFormats(); await loadCompare(); }
  if (tab === "evaluate") await loadEvals();
  if (tab === "deploy" || tab === "try") await loadDeployments();
}

// -- models -----------------------------------------------------------------------------------------
let models = [];

async function loadModels() {
  models = (await api("/api/models")).models;
  const tbody = $("#models-table tbody");
  tbody.replaceChildren();
  for (const m of models) {
    const b1 = (m.bench || []).find(r => r.batch === 1) || {};
    const tr = el("tr", {class: "clickable", "data-model": m.name},
      el("td", {text: m.name}), el("td", {text: fmt(m.size_mb)}), el("td", {text: fmt(m.n_labels)}),
      el("td", {text: fmt(m.accuracy), title: m.accuracy_note || ""}), el("td", {text: fmt(b1.p50_ms)}), el("td", {text: fmt(b1.throughput)}),
      el("td", {text: m.error ? m.error : ""}));
    tr.addEventListener("click", () => showModel(m.name).catch(showError));
    tbody.append(tr);
  }
  $("#models-empty").hidden = models.length > 0;
  const runnable = models.filter(m => m.can_classify).map(m => m.name);
  for (const id of ["#try-model", "#deploy-model"]) fillSelect($(id), runnable);
  fillSelect($("#eval-model"), runnable);
  showTryInput();
  $("#sdk-list").replaceChildren(...models.filter(m => m.can_classify).map(m =>
    el("li", {}, el("a", {href: `/api/models/${encodeURIComponent(m.name)}/sdk`, class: "sdk-link", text: `${m.name}-sdk.zip`}),
       el("span", {class: "muted", text: `  (${fmt(m.size_mb)} MB model, ${m.n_labels} labels)`}))));
}

async function showModel(name) {
  const m = await api(`/api/models/${encodeURIComponent(name)}`);
  $("#model-detail").hidden = false;
  $("#md-name").textContent = m.name;
  const info = $("#md-info");
  info.replaceChildren();
  const rows = [["task", m.task], ["inputs", m.inputs.join(", ")], ["outputs", m.outputs.join(", ")],
    ["labels", m.labels.slice(0, 12).join(", ") + (m.n_labels > 12 ? ` … (${m.n_labels})` : "")],
    ["accuracy", m.accuracy_note || fmt(m.accuracy)], ["size", fmt(m.size_mb) + " MB"], ["steps", m.steps.join(" → ")]];
  const t = m.train || {};
  if (t.test_accuracy != null)  // the held-out test part that training never saw, with its 95% Wilson interval
    rows.splice(5, 0, ["test accuracy", `${fmt(t.test_accuracy, 4)} (95% CI ${fmt(t.test_ci95[0], 3)}–` +
      `${fmt(t.test_ci95[1], 3)}, ${t.n_test} held out)`]);
  for (const [k, v] of rows) info.append(el("dt", {text: k}), el("dd", {text: v}));
  const tbody = $("#md-bench tbody");
  tbody.replaceChildren(...(m.bench.length ? m.bench : [{}]).map(r => el("tr", {},
    ...["backend", "batch", "threads", "p50_ms", "p99_ms", "throughput", "peak_rss_mb"].map(k => el("td", {text: fmt(r[k])})))));
  $("#md-sdk").href = `/api/models/${encodeURIComponent(name)}/sdk`;
  $("#md-bench-run").onclick = async () => {
    try { await api(`/api/models/${encodeURIComponent(name)}/bench`, {method: "POST", body: "{}"}); location.hash = "#training"; }
    catch (e) { showError(e); }
  };
  $("#md-eval").onclick = () => { $("#eval-model").value = name; if (m.dataset) $("#eval-dataset").value = m.dataset; location.hash = "#evaluate"; };
  $("#md-serve").onclick = () => { $("#deploy-model").value = name; location.hash = "#deploy"; };
  $("#md-variants tbody").replaceChildren(...(m.variants || []).map(v => {
    const tr = el("tr", {class: v.model && v.model !== name ? "clickable" : "", "data-variant": v.name},
      ...[v.name, v.kind, v.precision, fmt(v.size_mb), fmt(v.p50_ms), fmt(v.accuracy), fmt(v.top1_agreement)].map(x => el("td", {text: fmt(x)})));
    const get = v.download ? el("a", {href: v.download, class: "download", text: "download"})
      : v.model ? el("a", {href: `/api/models/${encodeURIComponent(v.model)}/sdk`, class: "download", text: "SDK"}) : "";
    tr.append(el("td", {}, get));
    if (get) get.addEventListener("click", ev => ev.stopPropagation());
    if (v.reason) tr.title = v.reason;
    if (v.model && v.model !== name) tr.addEventListener("click", () => showModel(v.model).catch(showError));
    return tr;
  }));
  const dsel = $("#optimize-dataset");
  if (m.dataset) dsel.value = m.dataset;
  $("#optimize-form").onsubmit = async ev => {
    ev.preventDefault();
    const f = ev.target;
    try {
      const job = await api(`/api/models/${encodeURIComponent(name)}/optimize`, {method: "POST",
        body: JSON.stringify({quantize: f.quantize.value, dataset: f.dataset.value || null})});
      watching = job.id; showError(null); location.hash = "#training";
    } catch (e) { showError(e); }
  };
  $("#export-form").onsubmit = async ev => {
    ev.preventDefault();
    try {
      const job = await api(`/api/models/${encodeURIComponent(name)}/export`, {method: "POST",
        body: JSON.stringify({format: ev.target.format.value, dataset: ev.target.dataset.value || null})});
      watching = job.id; showError(null); location.hash = "#training";
    } catch (e) { showError(e); }
  };
  const cm = $("#md-confusion");
  cm.replaceChildren();
  if (m.confusion && m.confusion.matrix) cm.append(confusionTable(m.confusion, "Confusion matrix (validation)"));
  $("#md-mistakes").replaceChildren(mistakesGrid(m.mistakes,
    i => `/api/models/${encodeURIComponent(name)}/mistakes/${i}`, "Worst mistakes (validation, most confident first)"));
  modelShown(m);  // results.js: delete, compare, the formats this model can be exported to
}

let formatsLoaded = false;
async function loadFormats() {
  if (formatsLoaded) return;
  const zoo = (await api("/api/zoo")).models;
  $("#import-source").replaceChildren(...zoo.map(z => el("option", Object.assign({value: z.name,
    text: `${z.name} — ${z.note}, ${fmt(z.params_m)} M parameters` + (z.installed ? "" : " (weights not installed)")},
    z.installed ? {} : {disabled: ""}))));
  const formats = (await api("/api/export-formats")).formats;
  $("#export-format").replaceChildren(...formats.map(f => el("option", {value: f.format, "data-precision": f.precision,
    text: `${f.format} (${f.precision}; runs here: ${f.runs_here})`})));
  const calib = () => { const o = $("#export-format").selectedOptions[0]; $("#export-calib").hidden = !o || o.dataset.precision !== "int8"; };
  $("#export-format").addEventListener("change", calib);
  calib();
  formatsLoaded = true;
}

// -- try it -----------------------------------------------------------------------------------------
const inputKind = name => (models.find(m => m.name === name) || {}).input_kind || "image";

// text models get a text box instead of the image drop
function showTryInput() {
  const text = inputKind($("#try-model").value) === "text";
  $("#try-drop").hidden = text;
  $("#try-text-box").hidden = !text;
}

async function classify(file) {
  const model = $("#try-model").value;
  if (!model) throw new Error("no model that classifies images yet");
  const img = $("#try-preview");
  const isText = typeof file === "string";
  $("#try-results").replaceChildren(); $("#try-via").textContent = "";  // never leave the last answer up
  img.hidden = true; $("#try-boxes").hidden = true;
  if (!isText) img.src = URL.createObjectURL(file);
  const served = $("#try-served").checked && !$("#try-served").disabled;
  const path = served ? `/api/deployments/${encodeURIComponent(model)}/classify` : `/api/models/${encodeURIComponent(model)}/classify?k=5`;
  const out = await api(path, {method: "POST", body: file});
  if (out.detections) { await drawBoxes(img, out.detections); return; }
  img.hidden = isText;
  $("#try-via").textContent = out.via ? `sent through ${out.via}` : "run in the UI's own process";
  $("#try-results").replaceChildren(...out.predictions.map(p => {
    const bar = el("div", {class: "bar"});
    bar.style.width = Math.max(1, Math.round(p.score * 300)) + "px";
    return el("li", {class: "prediction"}, el("strong", {text: p.label}), document.createTextNode(`  ${(p.score * 100).toFixed(1)}%`), bar);
  }));
}

// a detector's answer: the image with its boxes drawn over it, and one line per box
async function drawBoxes(img, detections) {
  if (!img.complete || !img.naturalWidth) await new Promise((ok, fail) => { img.onload = ok; img.onerror = fail; });
  const canvas = $("#try-boxes"), scale = Math.min(1, 480 / Math.max(img.naturalWidth, img.naturalHeight));
  canvas.width = Math.round(img.naturalWidth * scale); canvas.height = Math.round(img.naturalHeight * scale);
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0, canvas.width, canvas.height);
  g.lineWidth = 2; g.font = "13px system-ui"; g.strokeStyle = g.fillStyle = "#ff3b30";
  for (const d of detections) {
    const [x1, y1, x2, y2] = d.box.map(v => v * scale);
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    g.fillText(`${d.label} ${(d.score * 100).toFixed(0)}%`, x1 + 2, Math.max(12, y1 - 3));
  }
  canvas.hidden = false;
  $("#try-results").replaceChildren(...(detections.length ? detections.map(d => el("li", {class: "detection"},
    el("strong", {text: d.label}), document.createTextNode(`  ${(d.score * 100).toFixed(1)}%  at ` +
      d.box.map(v => Math.round(v)).join(", ")))) : [el("li", {class: "muted", text: "nothing found"})]));
}

// -- datasets ---------------------------------------------------------------------------------------
let datasets = [];

async function loadDatasets() {
  datasets = (await api("/api/datasets")).datasets;
  const list = $("#datasets-list");
  list.replaceChildren();
  for (const d of datasets) {
    const box = el("div", {class: "dataset", "data-dataset": d.name});
    box.append(el("h3", {text: `${d.name}  (${d.n_images || 0} images, ${Object.keys(d.classes || {}).length} classes)`}));
    if (d.error) box.append(el("p", {class: "warn", text: d.error}));
    for (const w of d.warnings || []) box.append(el("p", {class: "warn", text: "⚠ " + w}));
    for (const c of d.empty_classes || []) box.append(el("p", {class: "warn empty-class", text: `⚠ class folder ${c} has no readable image: left out`}));
    if ((d.skipped || []).length) box.append(el("details", {class: "skipped", open: ""},
      el("summary", {class: "warn", text: `⚠ ${d.skipped.length} file(s) left out of the upload`}),
      el("ul", {}, ...d.skipped.map(x => el("li", {}, el("code", {text: x.file}), document.createTextNode(": " + x.reason))))));
    const thumbs = el("div", {class: "thumbs"});
    for (const [cls, n] of Object.entries(d.classes || {})) {
      const src = `/api/datasets/${encodeURIComponent(d.name)}/thumb?cls=${encodeURIComponent(cls)}&i=0`;
      thumbs.append(el("figure", {}, el("img", {src, alt: cls, loading: "lazy"}), el("figcaption", {text: `${cls} (${n})`})));
    }
    box.append(thumbs);
    list.append(box);
  }
  const names = datasets.filter(d => !d.error).map(d => d.name);
  fillSelect($("#train-dataset"), names);
  fillSelect($("#eval-dataset"), names);
  fillSelect($("#optimize-dataset"), names, "(none)");
  fillSelect($("#export-dataset"), names, "(choose a data set)");
  document.dispatchEvent(new CustomEvent("datasets-loaded"));  // data.js adds its buttons to each box
}

// -- evaluation -------------------------------------------------------------------------------------
let evalJob = null;  // {id, key} of the evaluation being run

async function loadEvals() {
  const evals = (await api("/api/evals")).evals;
  $("#evals-table tbody").replaceChildren(...evals.map(e => {
    const tr = el("tr", {class: "clickable", "data-eval": e.key, title: e.accuracy_note || ""}, ...[e.model, e.dataset, fmt(e.accuracy), fmt(e.macro_f1),
      fmt(e.n_images), fmt(e.n_mistakes), (e.time || "").replace("T", " ").slice(0, 19)].map(x => el("td", {text: x})));
    tr.addEventListener("click", () => showEval(e.key).catch(showError));
    return tr;
  }));
}

async function showEval(key) {
  const r = await api(`/api/evals/${encodeURIComponent(key)}`);
  $("#eval-detail").hidden = false;
  $("#ev-title").textContent = `${r.model} on ${r.dataset}`;
  $("#ev-summary").replaceChildren(el("strong", {text: `accuracy ${r.accuracy_note || fmt(r.accuracy, 4)}`}),
    document.createTextNode(`  top-5 ${fmt(r.top5, 4)}  macro F1 ${fmt(r.macro && r.macro.f1, 4)}  on ${r.n_images} images` +
      (r.n_skipped ? ` (${r.n_skipped} unreadable, skipped)` : "")));
  $("#ev-per-class tbody").replaceChildren(...r.per_class.map(c => el("tr", {},
    ...[c.class, fmt(c.precision), fmt(c.recall), fmt(c.f1), fmt(c.support)].map(x => el("td", {text: x})))));
  $("#ev-confusion").replaceChildren(confusionTable(r.confusion, "Confusion matrix"));
  $("#ev-mistakes").replaceChildren(mistakesGrid(r.mistakes, i => `/api/evals/${encodeURIComponent(key)}/mistakes/${i}`,
    "Misclassified images"));
}

async function pollEval() {
  if (!evalJob) return;
  const j = await api(`/api/jobs/${evalJob.id}`);
  const last = (j.log_tail || []).slice(-1)[0] || "";
  $("#eval-status").textContent = `#${j.id} ${j.title}: ${j.status}` + (j.status === "failed" ? ` — ${last}` : "");
  if (j.status === "running" || j.status === "queued") return;
  const key = evalJob.key;
  evalJob = null;
  if (j.status === "succeeded") { await loadEvals(); await showEval(key); }
}

// -- jobs -------------------------------------------------------------------------------------------
let watching = null, newestJob = 0;

async function loadJobs() {
  const jobs = (await api("/api/jobs")).jobs;
  const tbody = $("#jobs-table tbody");
  tbody.replaceChildren();
  for (const j of jobs) {
    const actions = el("td");
    if (j.status === "running" || j.status === "queued") {
      const b = el("button", {class: "secondary", text: "Cancel"});
      b.onclick = ev => { ev.stopPropagation(); api(`/api/jobs/${j.id}/cancel`, {method: "POST"}).then(loadJobs).catch(showError); };
      actions.append(b);
    } else if (j.status !== "succeeded") {
      const b = el("button", {class: "secondary", text: j.kind === "train" ? "Resume" : "Retry"});
      b.onclick = ev => { ev.stopPropagation(); api(`/api/jobs/${j.id}/retry`, {method: "POST"}).then(loadJobs).catch(showError); };
      actions.append(b);
    }
    const tr = el("tr", {class: "clickable", "data-job": String(j.id)}, el("td", {text: j.id}), el("td", {text: j.title}),
      el("td", {class: "status-" + j.status, text: j.status + (j.status === "running" && j.progress && j.progress.percent !== null
        ? ` ${Math.floor(j.progress.percent)}%` : "")}), el("td", {text: fmt(j.elapsed_s, 4) + " s"}),
      el("td", {class: j.reason ? "reason" : "muted", text: j.reason || (j.log_tail || []).slice(-1)[0] || ""}), actions);
    tr.addEventListener("click", () => { watching = j.id; showJob().catch(showError); });
    tbody.append(tr);
  }
  if (jobs.length && jobs[0].id > newestJob) { watching = jobs[0].id; newestJob = jobs[0].id; }  // follow a new job
  if (watching !== null) await showJob();
}

const duration = s => s >= 90 ? `about ${Math.round(s / 60)} min` : `about ${Math.round(s)} s`;

// the watched job's progress bar (phase, step of total, percent, time left, best score) and, once done, its results
function showProgress(j) {
  const p = j.progress || {};
  const bar = $("#job-bar");
  if (p.percent === null || p.percent === undefined) bar.removeAttribute("value"); else bar.value = p.percent;
  const parts = [];
  if (p.phase) parts.push(p.phase + (p.total ? ` ${fmt(p.step, 4)} of ${fmt(p.total, 4)}` : ""));
  if (p.percent !== null && p.percent !== undefined) parts.push(`${Math.floor(p.percent)}%`);
  if (j.status === "running" && p.eta_s !== null && p.eta_s !== undefined) parts.push(`${duration(p.eta_s)} left`);
  if (p.best !== null && p.best !== undefined) parts.push(`best accuracy so far ${fmt(p.best)}`);
  $("#job-progress-text").textContent = parts.join(" · ");
  $("#job-progress").hidden = j.status === "failed" || j.status === "cancelled";
  const links = $("#job-links"), l = j.links || {};
  links.replaceChildren();
  if (l.model) {
    const open = el("a", {href: "#models", class: "button job-model", text: `Open model ${l.model}`});
    open.onclick = () => setTimeout(() => showModel(l.model).catch(showError), 0);
    const ev = el("a", {href: "#evaluate", class: "button job-eval", text: "Evaluate it"});
    ev.onclick = () => { $("#eval-model").value = l.model; };
    links.append(open, ev);
    if (l.report) links.append(el("a", {href: l.report, target: "_blank", class: "button job-report", text: "Training report"}));
  }
  if (l.eval) {
    const ev = el("a", {href: "#evaluate", class: "button job-eval", text: "See the evaluation"});
    ev.onclick = () => setTimeout(() => showEval(l.eval).catch(showError), 0);
    links.append(ev);
  }
  links.hidden = !links.children.length;
}

async function showJob() {
  const j = await api(`/api/jobs/${watching}`);
  $("#job-title").hidden = false;
  $("#job-title").replaceChildren(document.createTextNode(`#${j.id} ${j.title}: `),
    el("span", {class: "status-" + j.status, text: j.status}));
  $("#job-reason").hidden = !j.reason;
  $("#job-reason").textContent = j.reason || "";
  showProgress(j);
  $("#job-log").hidden = false;
  $("#job-log").textContent = j.log_tail.join("\n");
  jobShown(j);  // results.js: the live charts of the search and of fine-tuning
  document.dispatchEvent(new CustomEvent("job-shown", {detail: j}));  // data.js: a finished model upload
}

// -- wiring -----------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", showTab);
  showTab();
  setInterval(() => {
    const tab = (location.hash || "#models").slice(1);
    if (tab === "training") loadJobs().catch(showError);
    if (tab === "evaluate") pollEval().catch(showError);
    if (tab === "deploy") loadDeployments().catch(showError);
  }, 1500);
  $("#try-model").addEventListener("change", () => { showTryInput(); loadDeployments().catch(showError); });
  $("#try-text-send").addEventListener("click", () => classify($("#try-text").value).then(() => showError(null), showError));
  $("#eval-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = ev.target;
    try {
      const job = await api("/api/evals", {method: "POST", body: JSON.stringify({model: f.model.value, dataset: f.dataset.value})});
      evalJob = {id: job.id, key: job.key}; showError(null);
      $("#eval-status").textContent = `#${job.id} ${job.title}: ${job.status}`;
    } catch (e) { showError(e); }
  });

  $("#try-file").addEventListener("change", ev => { if (ev.target.files[0]) classify(ev.target.files[0]).then(() => showError(null), showError); });
  const drop = $("#try-drop");
  drop.addEventListener("dragover", ev => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", ev => {
    ev.preventDefault(); drop.classList.remove("over");
    if (ev.dataTransfer.files[0]) classify(ev.dataTransfer.files[0]).then(() => showError(null), showError);
  });

  $("#upload-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = ev.target;
    try {
      await api(`/api/datasets?name=${encodeURIComponent(f.name.value)}`, {method: "POST", body: f.file.files[0],
        headers: {"Content-Type": "application/zip"}});
      f.reset(); showError(null); await loadDatasets();
    } catch (e) { showError(e); }
  });
  $("#link-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = ev.target;
    try {
      await api("/api/datasets/link", {method: "POST", body: JSON.stringify({name: f.name.value, path: f.path.value})});
      f.reset(); showError(null); await loadDatasets();
    } catch (e) { showError(e); }
  });
  $("#train-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = ev.target;
    const params = {kind: "train", dataset: f.dataset.value, name: f.name.value, budget: f.budget.value};
    if (f.image_size.value) params.image_size = Number(f.image_size.value);
    try {
      const job = await api("/api/jobs", {method: "POST", body: JSON.stringify(params)});
      watching = job.id; showError(null); await loadJobs();
    } catch (e) { showError(e); }
  });
  $("#import-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const job = await api("/api/jobs", {method: "POST", body: JSON.stringify({kind: "import", source: ev.target.source.value})});
      watching = job.id; location.hash = "#training";
    } catch (e) { showError(e); }
  });
});
