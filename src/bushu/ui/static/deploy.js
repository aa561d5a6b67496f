// bushu web UI, the Deploy page: serve a model (optionally with an API key, optionally reachable from
// other machines), its addresses, live latency and throughput charts, try it through the endpoint; stop,
// start again, forget. Loaded after app.js (helpers) and results.js (lineChart).
"use strict";

let deployments = [];

function deploymentCard(d) {
  return d.running ? runningCard(d) : stoppedCard(d);
}

function runningCard(d) {
  const card = el("div", {class: "deployment", "data-deployment": d.name, "data-state": "serving"});
  const urls = el("dl", {class: "urls"});
  for (const [k, label] of [["http", "HTTP (KServe v2)"], ["classify", "image endpoint"], ["grpc", "gRPC"], ["metrics", "metrics"]])
    urls.append(el("dt", {text: label}), el("dd", {}, el("code", {class: "url-" + k, text: d.urls[k]})));
  if (d.remote) {
    const where = d.remote.urls
      ? el("code", {class: "url-remote", text: d.remote.urls.classify})
      : el("span", {class: "warn", text: "this machine has no address other machines can reach (no network?)"});
    urls.append(el("dt", {text: "from another machine"}), el("dd", {}, where,
      d.remote.hosts.length > 1 ? el("span", {class: "muted", text: `  (or ${d.remote.hosts.slice(1).join(", ")})`}) : ""));
  }
  if (d.api_key) {
    const key = el("code", {class: "api-key", text: d.api_key});
    urls.append(el("dt", {text: "API key"}), el("dd", {}, key,
      el("span", {class: "muted", text: "  send it as Authorization: Bearer KEY (or X-API-Key: KEY)"})));
  }
  const metrics = el("p", {class: "metrics"});
  const charts = el("div", {class: "charts deploy-charts"});
  const isText = inputKind(d.name) === "text";
  const file = el("input", {type: "file", accept: "image/*", class: "deploy-file"});
  const text = el("textarea", {rows: "3", cols: "50", class: "deploy-text"});
  const send = el("button", {type: "button", class: "deploy-send", text: "Send"});
  const results = el("ol", {class: "deploy-results"});
  const sendOne = async body => {
    try {
      const out = await api(`/api/deployments/${encodeURIComponent(d.name)}/classify`, {method: "POST", body});
      results.replaceChildren(...out.predictions.map(p => el("li", {class: "prediction"}, el("strong", {text: p.label}),
        document.createTextNode(`  ${(p.score * 100).toFixed(1)}%`))));
      showError(null); await loadDeployments();
    } catch (e) { showError(e); }
  };
  file.addEventListener("change", () => sendOne(file.files[0]));
  send.addEventListener("click", () => sendOne(text.value));
  const stop = el("button", {class: "secondary stop", text: "Stop"});
  stop.onclick = () => deploymentAction(d.name, "stop");
  card.append(el("h3", {}, document.createTextNode(d.name + " "), el("span", {class: "status-running", text: "serving"}),
    d.expose ? el("span", {class: "exposed", text: " reachable from other machines"}) : ""),
    urls, metrics, charts, el("h4", {text: "Try it with curl"}), el("pre", {class: "curl", text: d.curl.join("\n")}),
    isText ? el("label", {}, document.createTextNode("Send a text through the endpoint"), text, send)
      : el("label", {}, document.createTextNode("Send an image through the endpoint"), file), results, stop);
  return card;
}

// a remembered deployment that is not running (stopped, or the UI restarted since): start it again or forget it
function stoppedCard(d) {
  const card = el("div", {class: "deployment stopped", "data-deployment": d.name, "data-state": "stopped"});
  const again = el("button", {class: "start-again", text: "Start again"});
  again.onclick = () => deploymentAction(d.name, "start");
  const forget = el("button", {class: "secondary forget", text: "Forget"});
  forget.onclick = () => deploymentAction(d.name, "forget");
  const ports = d.ports && d.ports.http ? `last on HTTP port ${d.ports.http} (kept when it is free)` : "";
  card.append(el("h3", {}, document.createTextNode(d.name + " "), el("span", {class: "status-stopped", text: "stopped"})),
    el("p", {class: "muted settings", text: [d.api_key ? "with an API key" : "no API key",
      d.expose ? "reachable from other machines" : "this machine only", ports].filter(Boolean).join(" · ")}),
    el("p", {class: "row"}, again, forget));
  return card;
}

async function deploymentAction(name, what) {
  const status = $("#deploy-status");
  if (what === "start") status.textContent = `starting a server for ${name}…`;
  try {
    await api(`/api/deployments/${encodeURIComponent(name)}/${what}`, {method: "POST"});
    showError(null);
  } catch (e) { showError(e); }
  status.textContent = "";
  await loadDeployments().catch(showError);
}

// the server's counters, sampled every few seconds: mean latency per request and requests per second. The
// first sample (at readiness) has a latency when requests were already answered, but no rate: a rate needs
// a second sample, a few seconds later; until then the charts say they are collecting rather than "no data".
function deploymentCharts(box, history) {
  const key = JSON.stringify(history.length ? history[history.length - 1] : null) + history.length;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  const now = history.length ? history[history.length - 1].t : 0;
  const x = p => Math.round(p.t - now);
  const rated = history.some(p => p.rps !== null && p.rps !== undefined);
  box.replaceChildren(
    lineChart({title: "Latency", cls: "chart-latency", width: 440, xLabel: "seconds (0 = the latest sample)", yLabel: "ms per request",
      explain: "How long the server took to answer, on average, for the requests in each few-second window " +
        "(a gap: no requests then). Lower is better.",
      empty: !history.length ? "collecting…" : rated ? "no requests yet" : "no requests yet; collecting…",
      series: [{name: "mean latency", points: history.map(p => [x(p), p.latency_ms]), color: "#2f6fed"},
        {name: "of which waiting in the queue", points: history.map(p => [x(p), p.queue_ms]), color: "#8792a6", dashed: true}]}),
    lineChart({title: "Throughput", cls: "chart-throughput", width: 440, xLabel: "seconds (0 = the latest sample)", yLabel: "requests / s",
      explain: "How many requests the server answered per second in each few-second window. It follows the load " +
        "the clients send; its ceiling is what the server can do.",
      empty: "collecting… (a rate needs two samples of the server's counters, a few seconds apart)",
      series: [{name: "answered", points: history.map(p => [x(p), p.rps]), color: "#137333"},
        {name: "failed", points: history.map(p => [x(p), p.failed_rps]), color: "#b3261e", dashed: true}]}));
}

async function loadDeployments() {
  deployments = (await api("/api/deployments")).deployments;
  const box = $("#deployments");
  for (const card of [...box.children]) {
    const d = deployments.find(d => d.name === card.dataset.deployment);
    if (!d || card.dataset.state !== (d.running ? "serving" : "stopped")) card.remove();  // gone, or changed state
  }
  for (const d of deployments) {
    let card = box.querySelector(`[data-deployment="${CSS.escape(d.name)}"]`);
    if (!card && (d.urls || !d.running)) { card = deploymentCard(d); box.append(card); }
    if (!card || !d.running) continue;
    const m = d.metrics;
    card.querySelector(".metrics").textContent = !m ? "metrics unavailable" :
      `requests ${m.requests} (failed ${m.failure}) · mean latency ${fmt(m.mean_latency_ms)} ms · ` +
      `latest ${fmt(m.recent_latency_ms)} ms · up ${fmt(d.uptime_s, 4)} s`;
    card.querySelector(".metrics").title = "requests: all answered so far (failed: answered with an error); " +
      "mean latency: the server's average time per request since it started; latest: the average over the requests " +
      "since the page last looked; up: how long it has been running";
    deploymentCharts(card.querySelector(".deploy-charts"), d.history || []);
  }
  const served = deployments.some(d => d.name === $("#try-model").value && d.running);
  $("#try-served").disabled = !served;
  if (!served) $("#try-served").checked = false;
  $("#try-served-note").hidden = served;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#deploy-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = ev.target, model = f.model.value;
    $("#deploy-status").textContent = `starting a server for ${model}…`;
    try {
      await api("/api/deployments", {method: "POST",
        body: JSON.stringify({model, api_key: f.api_key.value || null, expose: f.expose.checked})});
      $("#deploy-status").textContent = ""; showError(null); await loadDeployments();
    } catch (e) { $("#deploy-status").textContent = ""; showError(e); }
  });
  $("#deploy-key-make").addEventListener("click", () => {
    const bytes = crypto.getRandomValues(new Uint8Array(16));  // hex: safe in a header, a shell and a URL
    $("#deploy-key").value = [...bytes].map(b => b.toString(16).padStart(2, "0")).join("");
  });
});
