// bushu web UI, results: live charts of a training job (score per search trial, loss and accuracy per
// fine-tuning epoch), the comparison table (accuracy on one data set, size, speed), delete buttons, the
// formats a model can be exported to, and a plain-language explanation of every figure (tooltips).
// Loaded after app.js, whose helpers ($, el, fmt, api, showError, loadModels...) it uses; app.js calls
// modelShown(m) and jobShown(j). Delete buttons and tooltips are added to what app.js draws as it
// appears (a MutationObserver), so app.js's drawing code knows nothing of them.
"use strict";

// -- what each figure means -------------------------------------------------------------------------
const ACCURACY = "The share of images the model got right (1.0 = all of them). On few images it can be far off: " +
  "the 95% interval says how far.";
const P50 = "Typical time to answer one image, in milliseconds on this machine: the median of many runs, one " +
  "image at a time (batch 1). Lower is faster.";
const THROUGHPUT = "Images per second the model gets through on this machine. Higher is faster.";
const SIZE = "Size of the model file in megabytes: what you download and load. Smaller fits small devices better.";
const GLOSSARY = {
  "name": "The model's name in this workspace.",
  "model": "The model's name in this workspace.",
  "size mb": SIZE,
  "size": SIZE,
  "labels": "How many different answers (classes) the model can give.",
  "accuracy": ACCURACY,
  "test accuracy": "Accuracy on images set aside before training and never used to choose the model: the most " +
    "honest figure. The interval is where the true accuracy lies with 95% confidence.",
  "p50 ms (b1)": P50,
  "p50 ms": "The median time per call, in milliseconds: half the calls were faster, half slower.",
  "p99 ms": "The slowest 1% of calls took at least this long, in milliseconds: what an unlucky user waits.",
  "throughput /s": THROUGHPUT,
  "backend": "The engine that ran the model (for example onnxruntime or openvino).",
  "batch": "How many images were sent in one call.",
  "threads": "How many CPU threads the engine was allowed to use.",
  "peak rss mb": "The most memory the process used while measuring, in megabytes.",
  "variant": "The model itself, a copy made smaller or faster from it, or an export of it to another format.",
  "kind": "How this row was made: the model itself, optimized from another model (int8, fp16...), or exported " +
    "to another runtime's format.",
  "made by": "How this row was made: the model itself, optimized from another model (int8, fp16...), or exported " +
    "to another runtime's format.",
  "precision": "How the numbers inside are stored: fp32 (full), fp16 (half the size), int8 (a quarter: smallest " +
    "and often fastest, sometimes a little less accurate).",
  "top-1 agreement": "How often this variant's top answer is the same as the original model's on the same images " +
    "(1.0 = always).",
  "task": "What the model does: classification (one label per input), detection (boxes)...",
  "inputs": "What the model takes: the input's name, number type and shape (batch, channels, height, width).",
  "outputs": "What the model gives back: the output's name, number type and shape.",
  "steps": "How the model was made: the bushu commands that produced it, in order.",
  "dataset": "The images the model was measured on.",
  "macro f1": "The F1 score averaged over the classes, each class counting the same however many images it has: " +
    "low when a rare class is often missed.",
  "images": "How many images the figures were measured on: the fewer, the less certain they are.",
  "mistakes": "How many images got a wrong answer.",
  "when": "When the evaluation ran.",
  "class": "One of the answers the model can give.",
  "recall": "Of the images that really are this class, the share the model found.",
  "f1": "The balance of precision and recall (their harmonic mean); 1.0 is perfect.",
  "support": "How many images of this class there were.",
  "true \\ predicted": "Rows: the real class; columns: the model's answer. The diagonal (green) counts right " +
    "answers; every other number is a mistake: which class was taken for which.",
  "#": "The job's number.",
  "job": "What the job does.",
  "status": "queued → running → succeeded, failed, cancelled or interrupted. Skipped (yellow): it ran but could " +
    "not make what was asked; the reason is shown.",
  "time": "How long the job ran (or has been running), in seconds.",
  "latest output": "The job's last line of output, or why it did not succeed.",
  "http (kserve v2)": "The standard inference API (KServe v2, as Triton speaks it), for programs that send " +
    "tensors: metadata at this address, predictions at …/infer.",
  "image endpoint": "Send an image file (the body of a POST), get the top labels and their scores back as JSON.",
  "grpc": "The same KServe v2 API over gRPC, for clients that want lower overhead.",
  "metrics": "Counters for monitoring tools (Prometheus format): requests, failures, time spent.",
  "from another machine": "The address to use from another computer on the same network (this machine's " +
    "address instead of 127.0.0.1). The API key is required there.",
  "api key": "The secret every request must carry: Authorization: Bearer KEY (or X-API-Key: KEY). Keep it private.",
};
// in the per-class table "precision" means a class's precision, not the number format
const PER_CLASS_PRECISION = "Of the images the model called this class, the share that really were it.";

function explain(root) {
  for (const e of root.querySelectorAll ? root.querySelectorAll("th, dt") : []) {
    if (e.title) continue;
    const key = e.textContent.trim().toLowerCase().replace(/\s+/g, " ");
    const text = key === "precision" && e.closest("#ev-per-class") ? PER_CLASS_PRECISION : GLOSSARY[key];
    if (text) { e.title = text; e.classList.add("explained"); }
  }
}

// -- charts -----------------------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}, text = null) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  return e;
};
const ticks = (lo, hi, n = 4) => Array.from({length: n + 1}, (_, i) => lo + (hi - lo) * i / n);

// A line chart as SVG: series [{name, points: [[x, y|null]], color, dashed, right}] (right: the second y axis;
// null: a gap). Every point carries its value as a tooltip; `explain` is the chart's own; `empty`: what the
// caption says while no series has a value.
function lineChart({title, series, xLabel, yLabel, y2Label = null, explain = "", cls = "", width = 460, empty = "no data yet"}) {
  const W = width, H = 210, L = 48, R = y2Label ? 48 : 14, T = 12, B = 40;
  const all = series.flatMap(s => s.points.filter(p => p[1] !== null && p[1] !== undefined));
  const xs = series.flatMap(s => s.points.map(p => p[0]));
  const range = (vals, zero) => {
    if (!vals.length) return [0, 1];
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (zero) lo = Math.min(0, lo);
    if (hi - lo < 1e-9) { hi += 0.5; lo = Math.max(zero ? 0 : -Infinity, lo - 0.5); }
    return [lo, hi];
  };
  const [x0, x1] = range(xs, false);
  const left = series.filter(s => !s.right).flatMap(s => s.points.map(p => p[1]).filter(v => v !== null && v !== undefined));
  const right = series.filter(s => s.right).flatMap(s => s.points.map(p => p[1]).filter(v => v !== null && v !== undefined));
  const [y0, y1] = range(left, true), [z0, z1] = range(right, true);
  const sx = x => L + (W - L - R) * (x - x0) / (x1 - x0 || 1);
  const sy = (y, r) => r ? T + (H - T - B) * (1 - (y - z0) / (z1 - z0 || 1)) : T + (H - T - B) * (1 - (y - y0) / (y1 - y0 || 1));
  const g = svg("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", class: "chart " + cls});
  g.append(svg("title", {}, title + (explain ? ": " + explain : "")));
  for (const v of ticks(y0, y1)) {
    g.append(svg("line", {x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid"}));
    g.append(svg("text", {x: L - 4, y: sy(v) + 4, "text-anchor": "end", class: "tick"}, fmt(v, 2)));
  }
  if (y2Label) for (const v of ticks(z0, z1))
    g.append(svg("text", {x: W - R + 4, y: sy(v, true) + 4, class: "tick"}, fmt(v, 2)));
  // whole numbers (trials, epochs, seconds) get whole-number ticks
  const step = Math.max(1, Math.ceil((x1 - x0) / 5));
  const xt = xs.every(Number.isInteger) ? Array.from({length: Math.floor((x1 - x0) / step) + 1}, (_, i) => x0 + i * step)
    : ticks(x0, x1, 5);
  for (const v of xt) g.append(svg("text", {x: sx(v), y: H - B + 16, "text-anchor": "middle", class: "tick"}, fmt(v, 3)));
  g.append(svg("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis"}, xLabel));
  g.append(svg("text", {x: 12, y: T + (H - T - B) / 2, transform: `rotate(-90 12 ${T + (H - T - B) / 2})`,
    "text-anchor": "middle", class: "axis"}, yLabel));
  if (y2Label) g.append(svg("text", {x: W - 6, y: T + (H - T - B) / 2,
    transform: `rotate(90 ${W - 6} ${T + (H - T - B) / 2})`, "text-anchor": "middle", class: "axis"}, y2Label));
  for (const s of series) {
    let d = "", pen = false;
    for (const [x, y] of s.points) {
      if (y === null || y === undefined) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${sx(x).toFixed(1)},${sy(y, s.right).toFixed(1)}`;
      pen = true;
    }
    if (d && !s.noLine) g.append(svg("path", {d, fill: "none", stroke: s.color, "stroke-width": 2,
      "stroke-dasharray": s.dashed ? "5 4" : "none", class: "series"}));
    if (!s.noDots) for (const [x, y] of s.points) {
      if (y === null || y === undefined) continue;
      const dot = svg("circle", {cx: sx(x), cy: sy(y, s.right), r: 3.5, fill: s.color, class: "point"});
      dot.append(svg("title", {}, `${s.name} at ${xLabel.split(" (")[0]} ${fmt(x, 4)}: ${fmt(y, 4)}`));
      g.append(dot);
    }
  }
  const legend = el("p", {class: "legend"}, ...series.map(s => el("span", {class: "key"},
    el("span", {class: "swatch" + (s.dashed ? " dashed" : "")}), document.createTextNode(s.name))));
  legend.querySelectorAll(".swatch").forEach((sw, i) => { sw.style.borderColor = series[i].color; });
  const fig = el("figure", {class: "chart-box " + cls, title: explain},
    el("figcaption", {}, el("strong", {text: title}), all.length ? "" : el("span", {class: "muted empty", text: `  (${empty})`})), g, legend);
  return fig;
}

// the watched job's charts: the search (validation accuracy of each trial, best so far) and fine-tuning
function jobShown(j) {
  const box = $("#job-charts"), p = j.progress || {};
  const scores = p.scores || [], epochs = p.epochs || [];
  const key = `${j.id}:${scores.length}:${epochs.length}`;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  const charts = [];
  if (scores.length) {
    let best = -Infinity;
    charts.push(lineChart({title: "Search: validation accuracy of each trial", cls: "chart-search",
      xLabel: "trial", yLabel: "validation accuracy",
      explain: "Each trial trains a small model on top of the pretrained features with other settings and scores " +
        "it on images kept aside (validation). The best one is kept; more trials rarely help once the line is flat.",
      series: [{name: "score", points: scores.map((s, i) => [i + 1, s]), color: "#8792a6", noLine: true},
        {name: "best so far", points: scores.map((s, i) => [i + 1, best = Math.max(best, s)]), color: "#2f6fed", noDots: true}]}));
  }
  if (epochs.length) {
    charts.push(lineChart({title: "Fine-tuning: loss and accuracy per epoch", cls: "chart-finetune",
      xLabel: "epoch (0 = before fine-tuning)", yLabel: "validation accuracy", y2Label: "loss",
      explain: "Fine-tuning adjusts the top of the pretrained network on your images, one pass (epoch) at a time. " +
        "Accuracy should rise and loss fall; when the validation loss rises while the training loss keeps falling, " +
        "the model is learning the training images by heart. The best epoch is kept, and only if it beats epoch 0.",
      series: [{name: "validation accuracy", points: epochs.map(e => [e.epoch, e.val_accuracy]), color: "#2f6fed"},
        {name: "validation loss", points: epochs.map(e => [e.epoch, e.val_loss]), color: "#b3261e", right: true},
        {name: "training loss", points: epochs.map(e => [e.epoch, e.train_loss ?? null]), color: "#e8a33d", right: true, dashed: true}]}));
  }
  box.replaceChildren(...charts);
}

// -- a model's page: delete, compare its variants, the formats it can be exported to -----------------
async function modelShown(m) {
  $("#md-delete").onclick = async () => {
    if (!confirm(`Delete model ${m.name}, its exports and evaluations? This cannot be undone.`)) return;
    try {
      await api(`/api/models/${encodeURIComponent(m.name)}`, {method: "DELETE"});
      $("#model-detail").hidden = true; showError(null);
      await loadModels(); await loadCompare();
    } catch (e) { showError(e); }
  };
  $("#md-compare").onclick = async () => {
    $("#compare-scope").value = m.name;
    if (m.dataset) $("#compare-dataset").value = m.dataset;
    await loadCompare().catch(showError);
    $("#compare-box").scrollIntoView();
  };
  try {
    const formats = (await api(`/api/models/${encodeURIComponent(m.name)}/export-formats`)).formats;
    for (const o of $("#export-format").options) {
      const f = formats.find(f => f.format === o.value);
      if (!o.dataset.text) o.dataset.text = o.textContent;
      o.disabled = !!(f && !f.available);
      o.textContent = o.dataset.text + (o.disabled ? " — not from this model (hover for why)" : "");
      if (o.disabled) o.title = f.why; else o.removeAttribute("title");
    }
    // what is not offered, and why, in words under the form (an option's tooltip is easy to miss)
    let note = $("#export-unavailable");
    if (!note) { note = el("p", {id: "export-unavailable", class: "muted"}); $("#export-form").after(note); }
    const off = formats.filter(f => !f.available), whys = [...new Set(off.map(f => f.why))];
    note.textContent = off.length ? `Not offered for this model: ${off.map(f => f.format).join(", ")} — ${whys.join("; ")}.` : "";
    note.hidden = !off.length;
    const sel = $("#export-format");
    if (sel.selectedOptions[0] && sel.selectedOptions[0].disabled) {
      const ok = [...sel.options].find(o => !o.disabled);
      if (ok) { sel.value = ok.value; sel.dispatchEvent(new Event("change")); }
    }
  } catch (e) { showError(e); }
}

// -- the comparison table ---------------------------------------------------------------------------
function buildCompareBox() {
  const box = $("#compare-box");
  const dataset = el("select", {id: "compare-dataset", name: "dataset"});
  const scope = el("select", {id: "compare-scope", name: "model"});
  const measure = el("button", {type: "button", id: "compare-measure", text: "Measure what is missing"});
  const table = el("table", {id: "compare-table"}, el("thead", {}, el("tr", {},
    ...["model", "made by", "accuracy", "images", "size MB", "p50 ms (b1)", "throughput /s", ""].map(h => el("th", {text: h})))),
    el("tbody"));
  box.append(el("h3", {text: "Compare"}),
    el("p", {class: "muted", text: "Accuracy on the same images, size and speed, side by side: across models, or " +
      "across one model's variants (its optimized copies and exports). ★ marks the best of each column."}),
    el("form", {class: "row", id: "compare-form"}, el("label", {}, document.createTextNode("On the data set"), dataset),
      el("label", {}, document.createTextNode("Rows"), scope), measure),
    table, el("p", {id: "compare-note", class: "muted"}));
  dataset.addEventListener("change", () => loadCompare().catch(showError));
  scope.addEventListener("change", () => loadCompare().catch(showError));
  measure.addEventListener("click", async () => {
    try {
      const out = await api("/api/compare/measure", {method: "POST",
        body: JSON.stringify({dataset: dataset.value, model: scope.value || null})});
      $("#compare-note").textContent = out.jobs.length
        ? `queued ${out.jobs.length} job(s): ${out.jobs.map(j => j.title).join("; ")}. The table fills in as they finish.`
        : "nothing to measure: every row has its figures (or its jobs are already queued)";
      showError(null);
    } catch (e) { showError(e); }
  });
}

async function loadCompare() {
  const dsel = $("#compare-dataset"), ssel = $("#compare-scope");
  const names = (typeof datasets !== "undefined" ? datasets : []).filter(d => !d.error).map(d => d.name);
  fillSelect(dsel, names);
  const scope = ssel.value;
  ssel.replaceChildren(el("option", {value: "", text: "all models"}),
    ...models.filter(m => !m.error).map(m => el("option", {value: m.name, text: `${m.name} and its variants`})));
  if (scope && models.some(m => m.name === scope)) ssel.value = scope;
  $("#compare-box").hidden = !models.length;
  const tbody = $("#compare-table tbody");
  if (!dsel.value) {
    tbody.replaceChildren();
    $("#compare-note").textContent = "Add a data set (Datasets tab) to compare the models on it.";
    $("#compare-measure").disabled = true;
    return;
  }
  $("#compare-measure").disabled = false;
  const q = `dataset=${encodeURIComponent(dsel.value)}` + (ssel.value ? `&model=${encodeURIComponent(ssel.value)}` : "");
  const c = await api(`/api/compare?${q}`);
  if (c.dataset !== dsel.value || (c.model || "") !== ssel.value) return;  // the choice changed meanwhile
  const star = (col, r) => c.best[col] === r.name ? " ★" : "";
  tbody.replaceChildren(...c.rows.map(r => {
    let acc;
    if (r.accuracy === null || r.accuracy === undefined) {
      acc = el("td", {class: "muted not-measured", text: r.runs_here ? "not measured" : "runs elsewhere",
        title: r.runs_here ? "Not evaluated on this data set yet: 'Measure what is missing' runs it."
          : "This format does not run on this machine, so it cannot be evaluated here."});
    } else {
      acc = el("td", {class: "accuracy" + (r.stale ? " stale" : ""), text: fmt(r.accuracy) + star("accuracy", r) +
        (r.stale ? " (old)" : "") + (r.trained_on_this_data ? " ⚠" : "")});
      acc.title = [r.accuracy_note ? "accuracy " + r.accuracy_note : ACCURACY,
        r.stale ? "Measured before the model last changed: measure again." : "",
        r.trained_on_this_data ? "⚠ The model was trained on these images, so this is optimistic: compare on images it never saw." : ""]
        .filter(Boolean).join("\n");
    }
    const name = el("td", {text: r.name});
    const get = r.download ? el("a", {href: r.download, class: "download", text: r.model ? "SDK" : "download"}) : "";
    const tr = el("tr", {"data-compare": r.name, class: r.model ? "clickable" : ""}, name,
      el("td", {text: r.kind + (r.from ? ` (from ${r.from})` : "")}), acc,
      el("td", {text: fmt(r.n_images)}),
      el("td", {text: fmt(r.size_mb) + star("size_mb", r), title: SIZE}),
      el("td", {text: fmt(r.p50_ms) + star("p50_ms", r), title: P50 + (r.speed_from === "export" ? " Timed by the export." : "")}),
      el("td", {text: fmt(r.throughput), title: THROUGHPUT}), el("td", {}, get));
    if (r.eval) {
      name.append(" ", el("a", {href: "#evaluate", class: "eval-link", text: "details",
        title: "the evaluation: per class figures, confusion matrix, misclassified images"}));
      name.querySelector("a").onclick = ev => { ev.stopPropagation(); setTimeout(() => showEval(r.eval).catch(showError), 0); };
    }
    if (get) get.addEventListener("click", ev => ev.stopPropagation());
    if (r.model) tr.addEventListener("click", () => showModel(r.model).catch(showError));
    return tr;
  }));
  if (!$("#compare-note").textContent.startsWith("queued") || !c.missing)
    $("#compare-note").textContent = c.missing ? `${c.missing} measurement(s) missing: 'Measure what is missing' queues them.` : "";
}

// -- delete buttons on what app.js draws: data sets and ended jobs -----------------------------------
const ENDED = ["succeeded", "failed", "cancelled", "interrupted", "skipped"];

function addDeleteButtons(root) {
  if (!root.querySelectorAll) return;
  for (const box of root.querySelectorAll("div.dataset[data-dataset]")) {
    if (box.querySelector(":scope > .delete-dataset")) continue;
    const name = box.dataset.dataset;
    const b = el("button", {type: "button", class: "danger delete-dataset", text: "Delete data set"});
    b.onclick = async () => {
      if (!confirm(`Delete data set ${name}? Uploaded images are removed; a linked folder is only unlinked.`)) return;
      try { await api(`/api/datasets/${encodeURIComponent(name)}`, {method: "DELETE"}); showError(null); await loadDatasets(); }
      catch (e) { showError(e); }
    };
    box.append(b);
  }
  for (const tr of root.querySelectorAll("#jobs-table tr[data-job]")) {
    const status = tr.children[2] && tr.children[2].className.replace("status-", "");
    if (!ENDED.includes(status) || tr.querySelector(".delete-job")) continue;
    const id = tr.dataset.job;
    const b = el("button", {type: "button", class: "link delete-job", text: "delete", title: "forget this job and its log (what it made stays)"});
    b.onclick = async ev => {
      ev.stopPropagation();
      try {
        await api(`/api/jobs/${id}`, {method: "DELETE"}); showError(null);
        if (String(watching) === id) { watching = null; ["#job-title", "#job-reason", "#job-progress", "#job-links"].forEach(s => { $(s).hidden = true; }); $("#job-charts").replaceChildren(); $("#job-log").textContent = ""; }
        await loadJobs();
      } catch (e) { showError(e); }
    };
    tr.lastElementChild.append(b);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  buildCompareBox();
  explain(document.body);
  addDeleteButtons(document.body);
  new MutationObserver(changes => {
    for (const c of changes) for (const n of c.addedNodes) {
      if (n.nodeType !== 1) continue;
      explain(n.matches("th, dt") ? n.parentNode : n);
      addDeleteButtons(n.matches("tr, div.dataset") ? n.parentNode : n);
    }
  }).observe(document.querySelector("main"), {childList: true, subtree: true});
  const onModels = () => (location.hash || "#models") === "#models";
  setInterval(() => { if (onModels() && !document.hidden) loadCompare().catch(showError); }, 3000);
});
