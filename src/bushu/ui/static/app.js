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
  if (tab === "models" || tab === "try" || tab === "sdk") await loadModels();
  if (tab === "datasets" || tab === "training") await loadDatasets();
  if (tab === "training") await loadJobs();
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
      el("td", {text: fmt(m.accuracy)}), el("td", {text: fmt(b1.p50_ms)}), el("td", {text: fmt(b1.throughput)}),
      el("td", {text: m.error ? m.error : ""}));
    tr.addEventListener("click", () => showModel(m.name).catch(showError));
    tbody.append(tr);
  }
  $("#models-empty").hidden = models.length > 0;
  const sel = $("#try-model");
  const current = sel.value;
  sel.replaceChildren(...models.filter(m => m.can_classify).map(m => el("option", {value: m.name, text: m.name})));
  if (current) sel.value = current;
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
    ["accuracy", fmt(m.accuracy)], ["size", fmt(m.size_mb) + " MB"], ["steps", m.steps.join(" → ")]];
  for (const [k, v] of rows) info.append(el("dt", {text: k}), el("dd", {text: v}));
  const tbody = $("#md-bench tbody");
  tbody.replaceChildren(...(m.bench.length ? m.bench : [{}]).map(r => el("tr", {},
    ...["backend", "batch", "threads", "p50_ms", "p99_ms", "throughput", "peak_rss_mb"].map(k => el("td", {text: fmt(r[k])})))));
  $("#md-sdk").href = `/api/models/${encodeURIComponent(name)}/sdk`;
  $("#md-bench-run").onclick = async () => {
    try { await api(`/api/models/${encodeURIComponent(name)}/bench`, {method: "POST", body: "{}"}); location.hash = "#training"; }
    catch (e) { showError(e); }
  };
  const cm = $("#md-confusion");
  cm.replaceChildren();
  if (m.confusion && m.confusion.matrix) {
    const t = el("table", {class: "cm"});
    t.append(el("tr", {}, el("th", {text: "true \\ predicted"}), ...m.confusion.columns.map(c => el("th", {text: c}))));
    m.confusion.matrix.forEach((row, i) => t.append(el("tr", {}, el("th", {text: m.confusion.rows[i]}),
      ...row.map((v, j) => el("td", {class: i === j ? "diag" : "", text: fmt(v)})))));
    cm.append(el("h4", {text: "Confusion matrix (validation)"}), t);
  }
}

// -- try it -----------------------------------------------------------------------------------------
async function classify(file) {
  const model = $("#try-model").value;
  if (!model) throw new Error("no model that classifies images yet");
  const img = $("#try-preview");
  img.src = URL.createObjectURL(file);
  img.hidden = false;
  const out = await api(`/api/models/${encodeURIComponent(model)}/classify?k=5`, {method: "POST", body: file});
  $("#try-results").replaceChildren(...out.predictions.map(p => {
    const bar = el("div", {class: "bar"});
    bar.style.width = Math.max(1, Math.round(p.score * 300)) + "px";
    return el("li", {class: "prediction"}, el("strong", {text: p.label}), document.createTextNode(`  ${(p.score * 100).toFixed(1)}%`), bar);
  }));
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
    const thumbs = el("div", {class: "thumbs"});
    for (const [cls, n] of Object.entries(d.classes || {})) {
      const src = `/api/datasets/${encodeURIComponent(d.name)}/thumb?cls=${encodeURIComponent(cls)}&i=0`;
      thumbs.append(el("figure", {}, el("img", {src, alt: cls, loading: "lazy"}), el("figcaption", {text: `${cls} (${n})`})));
    }
    box.append(thumbs);
    list.append(box);
  }
  const sel = $("#train-dataset");
  const current = sel.value;
  sel.replaceChildren(...datasets.filter(d => !d.error).map(d => el("option", {value: d.name, text: d.name})));
  if (current) sel.value = current;
}

// -- jobs -------------------------------------------------------------------------------------------
let watching = null;

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
      el("td", {class: "status-" + j.status, text: j.status}), el("td", {text: fmt(j.elapsed_s, 4) + " s"}),
      el("td", {class: "muted", text: (j.log_tail || []).slice(-1)[0] || ""}), actions);
    tr.addEventListener("click", () => { watching = j.id; showJob().catch(showError); });
    tbody.append(tr);
  }
  if (watching === null && jobs.length) watching = jobs[0].id;
  if (watching !== null) await showJob();
}

async function showJob() {
  const j = await api(`/api/jobs/${watching}`);
  $("#job-title").hidden = false;
  $("#job-title").textContent = `#${j.id} ${j.title}: ${j.status}` + (j.returncode !== null ? ` (exit ${j.returncode})` : "");
  $("#job-log").hidden = false;
  $("#job-log").textContent = j.log_tail.join("\n");
}

// -- wiring -----------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", showTab);
  showTab();
  setInterval(() => {
    const tab = (location.hash || "#models").slice(1);
    if (tab === "training") loadJobs().catch(showError);
  }, 1500);

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
