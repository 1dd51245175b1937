// The GoRA dashboard: a page over the public API (the same calls as curl or OpenAI's client), with the
// team's API key kept in sessionStorage (this tab only). No framework and no build step: views are
// plain functions that fetch, then render into #view; charts and the heatmap are SVG drawn here.
"use strict";

const KEY = "gora.apiKey";
// With the admin token: the teams, and the one the pages act for (sent as OpenAI-Organization).
const ADMIN_TEAMS = "gora.adminTeams", ACT_FOR = "gora.actFor";
const isAdmin = () => sessionStorage.getItem(ADMIN_TEAMS) !== null;
const adminTeams = () => JSON.parse(sessionStorage.getItem(ADMIN_TEAMS) || "[]");
const PHASES = ["queued", "loading", "probing", "training", "exporting", "done"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
let stopLive = () => {};  // the current view's timers and streams, stopped when the view changes

// ---- the API ---------------------------------------------------------------------------------
async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, ...(options.headers || {}) };
  if (isAdmin()) headers["OpenAI-Organization"] = options.team || sessionStorage.getItem(ACT_FOR);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { signOut(); throw new Error("the API key was refused"); }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    error.detail = body.error || {};
    throw error;
  }
  return response;
}
const getJson = async (path, options = {}) => (await api(path, options)).json();

async function download(path, filename) {
  const blob = await (await api(path)).blob();
  const link = el("a", { href: URL.createObjectURL(blob), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
}

// Server-sent events read with fetch (EventSource cannot send the Authorization header).
function streamEvents(jobId, onEvent) {
  const controller = new AbortController();
  (async () => {
    const response = await api(`/v1/fine_tuning/jobs/${jobId}/events/stream`, { signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        const kind = (frame.split("\n").find((l) => l.startsWith("event: ")) || "event: message").slice(7);
        if (data) onEvent(kind, JSON.parse(data));
      }
    }
  })().catch((error) => { if (error.name !== "AbortError") console.warn(error); });
  return () => controller.abort();
}

// ---- small DOM helpers -------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children.flat());
  return node;
}
const when = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : "");
const seconds = (s) => (s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);
const card = (title, ...body) => el("section", { class: "card", "aria-label": title }, el("h2", {}, title), ...body);
function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
}
function failure(error) {
  show(card("Something went wrong", el("p", { class: "error", role: "alert" }, error.message)));
}

// ---- jobs ------------------------------------------------------------------------------------
function duration(job) {
  if (!job.started_at) return "";
  return seconds((job.finished_at || Date.now() / 1000) - job.started_at);
}

function jobRow(job, team) {
  const eta = job.estimated_finish ? `ETA ${new Date(job.estimated_finish * 1000).toLocaleTimeString()}` : "";
  return el("tr", {},
    el("td", {}, el("a", { href: team ? `#/jobs/${job.id}@${team.id}` : `#/jobs/${job.id}` }, job.id)),
    team ? el("td", {}, team.name) : null,
    el("td", { class: `status-${job.status}` }, job.queue_position ? `${job.status} (#${job.queue_position} in queue)` : job.status),
    el("td", {}, TERMINAL.has(job.status) ? "" : job.phase || ""),
    el("td", {}, [job.trained_tokens ? `${job.trained_tokens.toLocaleString()} tokens` : "", eta].filter(Boolean).join(", ")),
    el("td", {}, job.model),
    el("td", {}, job.dry_run ? `${job.adapter.type} (dry run)` : job.adapter.type),
    el("td", {}, String(job.adapter.r_ref)),
    el("td", {}, job.adapter_params ? job.adapter_params.toLocaleString() : ""),
    el("td", {}, job.gpu.pool),
    el("td", {}, when(job.created_at)),
    el("td", {}, duration(job)));
}

async function jobsView() {
  const filter = el("select", { id: "status-filter", "aria-label": "Filter by status" },
    ["all", "queued", "running", "paused", "succeeded", "failed", "cancelled"].map((s) => el("option", { value: s }, s)));
  const metadata = el("input", { id: "metadata-filter", placeholder: "key=value", "aria-label": "Filter by metadata (key=value)" });
  const body = el("tbody");
  const columns = ["Job", ...(isAdmin() ? ["Team"] : []), "Status", "Phase", "Progress", "Model", "Method", "r_ref", "Parameters", "Pool", "Created", "Duration"];
  const table = el("table", { "aria-label": isAdmin() ? "Every team's fine-tuning jobs, newest first" : "Fine-tuning jobs, newest first" },
    el("thead", {}, el("tr", {}, columns.map((h) => el("th", { scope: "col" }, h)))),
    body);
  async function refresh() {
    const [key, value] = metadata.value.split("=");
    const query = key && value ? `&metadata[${encodeURIComponent(key)}]=${encodeURIComponent(value)}` : "";
    // The admin sees every team: one listing per team, merged newest first.
    const teams = isAdmin() ? adminTeams() : [null];
    const pages = await Promise.all(teams.map((team) =>
      getJson(`/v1/fine_tuning/jobs?limit=50${query}`, team ? { team: team.id } : {}).then((page) => page.data.map((job) => [job, team]))));
    const rows = pages.flat().filter(([j]) => filter.value === "all" || j.status === filter.value)
      .sort((a, b) => b[0].created_at - a[0].created_at);
    body.replaceChildren(...(rows.length ? rows.map(([job, team]) => jobRow(job, team)) : [el("tr", {}, el("td", { colspan: columns.length }, "No jobs yet"))]));
  }
  filter.addEventListener("change", refresh);
  metadata.addEventListener("change", refresh);
  show(card("Jobs", el("p", {}, el("label", { for: "status-filter" }, "Status"), filter,
    el("label", { for: "metadata-filter" }, "Metadata"), metadata), table));
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 3000);
  stopLive = () => clearInterval(timer);
}

// ---- one job ---------------------------------------------------------------------------------
function timeline(job) {
  const reached = job.status === "succeeded" ? PHASES.length - 1 : job.status === "queued" ? 0 : Math.max(0, PHASES.indexOf(job.phase));
  return el("ol", { class: "timeline", "aria-label": "Phases" }, PHASES.map((p, i) =>
    el("li", { class: i < reached ? "done" : i === reached ? "current" : "", "aria-current": i === reached ? "step" : null }, p)));
}

function lineChart(title, series, { width = 560, height = 180 } = {}) {
  const points = series.flatMap((s) => s.points);
  const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, role: "img", "aria-label": title, "data-chart": title });
  if (!points.length) { box.append(svg("text", { x: 10, y: 20 }, "no points yet")); return box; }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const x = (v) => 64 + ((v - x0) / (x1 - x0 || 1)) * (width - 74);
  const y = (v) => height - 20 - ((v - y0) / (y1 - y0 || 1)) * (height - 40);
  box.append(svg("text", { x: 2, y: 24 }, y1.toPrecision(3)), svg("text", { x: 2, y: height - 20 }, y0.toPrecision(3)),
    svg("text", { x: 64, y: height - 4 }, `step ${x0}`), svg("text", { x: width - 60, y: height - 4 }, `step ${x1}`));
  for (const s of series) {
    if (!s.points.length) continue;
    const path = s.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    box.append(svg("path", { d: path, fill: "none", stroke: s.colour, "stroke-width": 2, "data-series": s.name, "data-points": s.points.length }),
      s.points.map((p) => svg("circle", { cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 2.5, fill: s.colour },
        svg("title", {}, `${s.name} at step ${p[0]}: ${p[1].toPrecision(4)}`))));
  }
  let legendX = 64;  // each name after the last, spaced by its length (about 6.5 px a character)
  for (const s of series) {
    box.append(svg("text", { x: legendX, y: 11, fill: s.colour, style: `fill:${s.colour}` }, `— ${s.name}`));
    legendX += 6.5 * (s.name.length + 2) + 16;
  }
  return box;
}

function splitLayer(name) {
  const found = /\.(\d+)\./.exec(`.${name}.`);
  if (!found) return [null, name];
  return [Number(found[1]), `.${name}.`.slice(found.index + found[0].length).replace(/\.$/, "") || name];
}

function heatmap(report) {
  const tooltip = document.getElementById("tooltip");
  const layers = report.layers.map((l) => ({ ...l, where: splitLayer(l.name) }));
  const indices = [...new Set(layers.map((l) => l.where[0]))].sort((a, b) => (a ?? -1) - (b ?? -1));
  const kinds = [...new Set(layers.map((l) => l.where[1]))];
  const last = kinds.map((k) => k.split(".").pop());
  const kindLabel = (k) => (new Set(last).size === kinds.length ? k.split(".").pop() : k);
  const ranks = layers.map((l) => l.rank);
  const [low, high] = [Math.min(...ranks), Math.max(...ranks)];
  const cell = 22, left = 7 * Math.max(...kinds.map((k) => kindLabel(k).length)) + 10, top = 18;
  const width = left + cell * indices.length + 10;
  const box = svg("svg", { class: "heat", role: "group", "aria-label": "Rank by layer and module",
    viewBox: `0 0 ${width} ${top + cell * kinds.length + 10}`, width });
  kinds.forEach((k, r) => box.append(svg("text", { x: 2, y: top + r * cell + 15 }, kindLabel(k))));
  indices.forEach((i, c) => box.append(svg("text", { x: left + c * cell + 4, y: 12 }, i ?? "-")));
  for (const layer of layers) {
    const share = high === low ? 0.5 : (layer.rank - low) / (high - low);
    const label = `${layer.name}: rank ${layer.rank}, importance ${layer.importance ?? "n/a"}, share ${layer.share ?? "n/a"}, ${layer.params.toLocaleString()} parameters`;
    const rect = svg("rect", { x: left + indices.indexOf(layer.where[0]) * cell, y: top + kinds.indexOf(layer.where[1]) * cell,
      width: cell - 2, height: cell - 2, fill: `hsl(${250 - 190 * share}, 65%, ${30 + 35 * share}%)`, tabindex: 0,
      role: "img", "aria-label": label, "data-module": layer.name, "data-rank": layer.rank }, svg("title", {}, label));
    const reveal = (event) => {
      tooltip.textContent = label;
      tooltip.hidden = false;
      const where = event.clientX !== undefined ? event : rect.getBoundingClientRect();
      const left = Math.min((where.clientX ?? where.left) + 12, window.innerWidth - tooltip.offsetWidth - 8);
      tooltip.style.left = `${Math.max(4, left)}px`;
      tooltip.style.top = `${(where.clientY ?? where.top) + 16}px`;
    };
    rect.addEventListener("mousemove", reveal);
    rect.addEventListener("focus", reveal);
    rect.addEventListener("mouseleave", () => { tooltip.hidden = true; });
    rect.addEventListener("blur", () => { tooltip.hidden = true; });
    box.append(rect);
  }
  return box;
}

function rankBars(report) {
  const byLayer = new Map();
  for (const l of report.layers) {
    const index = splitLayer(l.name)[0];
    byLayer.set(index, (byLayer.get(index) || 0) + l.rank);
  }
  const entries = [...byLayer.entries()].sort((a, b) => (a[0] ?? -1) - (b[0] ?? -1));
  const most = Math.max(...entries.map((e) => e[1]));
  const width = 560, height = 120, bar = (width - 10) / entries.length;
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, width, role: "img", "aria-label": "Total rank per layer" },
    entries.map(([index, total], i) => svg("rect", { x: 5 + i * bar, y: height - 5 - (total / most) * (height - 20),
      width: Math.max(1, bar - 2), height: (total / most) * (height - 20), fill: "#2f5fd0" },
      svg("title", {}, `layer ${index ?? "-"}: total rank ${total}`))));
}

function allocationCard(report) {
  const t = report.totals;
  const used = `${t.allocated.toLocaleString()} of LoRA's ${t.budget.toLocaleString()} parameters (${((100 * t.allocated) / t.budget).toFixed(1)} %), ranks ${t.rank_min}–${t.rank_max}`;
  const reused = report.probe && report.probe.reused ? " (probe reused from an earlier job)" : "";
  return card("Rank allocation", el("p", {}, `${report.adapter_type}: ${used}${reused}`), heatmap(report),
    el("h3", {}, "Rank per layer"), rankBars(report));
}

// learning_rate_multiplier "search": each trial's validation loss per rung (what the halving ranks;
// a classifier's accuracy beside it), and what became of it.
function searchCard(search) {
  const colours = ["#2f5fd0", "#d0702f", "#1e7a3c", "#8a3fb5", "#b5304f", "#5f6b7a"];
  const series = search.trials.map((trial, i) => ({ name: `${trial.learning_rate}`, colour: colours[i % colours.length],
    points: trial.scores.map((s) => [s.step, s.valid_loss]) }));
  const last = (trial) => trial.scores[trial.scores.length - 1];
  const accuracy = (trial) => (trial.scores.length && last(trial).valid_accuracy !== undefined ? last(trial).valid_accuracy.toFixed(3) : "–");
  const rows = search.trials.map((trial) => el("tr", { class: trial.status === "chosen" ? "chosen" : "" },
    el("td", {}, String(trial.learning_rate)), el("td", {}, trial.status), el("td", {}, String(trial.steps)),
    el("td", {}, trial.scores.length ? last(trial).valid_loss.toPrecision(4) : "–"), el("td", {}, accuracy(trial)),
    el("td", {}, trial.reason || "")));
  const heads = ["Rate", "Outcome", "Steps", "Validation loss", "Validation accuracy", "Why"];
  return card("Learning-rate search",
    el("p", {}, `Chose ${search.chosen} of ${search.candidates.join(", ")}; ${search.trial_steps} trial steps, cost ${search.cost}× a plain job's training steps`),
    lineChart("Validation loss by trial", series, { height: 150 }),
    el("table", { "aria-label": "Learning-rate search trials" }, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows)));
}

function checkpointsCard(job, checkpoints) {
  const rows = checkpoints.map((c) => el("tr", {},
    el("td", {}, String(c.step_number)),
    el("td", {}, Object.entries(c.metrics).filter(([k]) => k !== "step").map(([k, v]) => `${k} ${typeof v === "number" ? v.toPrecision(4) : v}`).join(", ")),
    el("td", {}, ["peft", "uniform"].map((f) => el("button", { type: "button", class: "secondary",
      onclick: () => download(`/v1/fine_tuning/jobs/${job.id}/checkpoints/${c.id}/adapter?format=${f}`, `${job.id}-step-${c.step_number}-${f}.tar.gz`) }, f)))));
  return card("Checkpoints", rows.length ? el("table", {}, el("thead", {}, el("tr", {}, ["Step", "Metrics", "Adapter"].map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows)) : el("p", {}, "None yet"));
}

async function jobView(jobId) {
  let job = await getJson(`/v1/fine_tuning/jobs/${jobId}`);
  const train = [], valid = [], lr = [], rewards = [], validRewards = [];
  const log = el("ol", { class: "events", "aria-label": "Events, oldest first", reversed: false });
  const charts = el("div", { class: "charts" });
  const head = el("div");
  const allocation = el("div");
  const checkpoints = el("div");
  const drawCharts = () => charts.replaceChildren(...[
    lineChart("Training and validation loss", [{ name: "train loss", colour: "#2f5fd0", points: train }, { name: "valid loss", colour: "#d0702f", points: valid }]),
    lineChart("Learning rate", [{ name: "learning rate", colour: "#1e7a3c", points: lr }], { height: 110 }),
    // DPO jobs: the share of pairs whose preferred answer earns the higher reward.
    job.method && job.method.type === "dpo" ? lineChart("Reward accuracy", [{ name: "train reward accuracy", colour: "#2f5fd0", points: rewards },
      { name: "valid reward accuracy", colour: "#d0702f", points: validRewards }], { height: 140 }) : null].filter(Boolean));
  const drawHead = () => head.replaceChildren(card(`Job ${job.id}`,
    el("p", {}, el("strong", { class: `status-${job.status}`, id: "job-status" }, job.status),
      job.phase && !TERMINAL.has(job.status) ? ` · ${job.phase}` : "",
      job.estimated_finish ? ` · ETA ${new Date(job.estimated_finish * 1000).toLocaleTimeString()}` : ""),
    timeline(job),
    job.error ? el("p", { class: "error", role: "alert" }, `${job.error.message}`, job.error.param ? ` (field: ${job.error.param})` : "") : null,
    el("p", {},
      TERMINAL.has(job.status) ? null : el("button", { type: "button", class: "danger", id: "cancel", onclick: async () => { job = await (await api(`/v1/fine_tuning/jobs/${job.id}/cancel`, { method: "POST" })).json(); drawHead(); } }, "Cancel"),
      job.status === "succeeded" && !job.dry_run ? ["peft", "uniform"].map((f) => el("button", { type: "button", class: "secondary", id: `download-${f}`,
        onclick: () => download(`/v1/fine_tuning/jobs/${job.id}/adapter?format=${f}`, `${job.id}-${f}.tar.gz`) }, `Download adapter (${f})`)) : null),
    job.preview ? el("pre", { "aria-label": "Dry run preview" }, JSON.stringify(job.preview, null, 2)) : null,
    el("details", {}, el("summary", {}, "Spec as submitted"),
      el("pre", { "aria-label": "Spec as submitted" }, JSON.stringify(job.submitted, null, 2))),
    el("details", {}, el("summary", {}, "Spec as resolved (\"auto\" shown as the numbers used)"),
      el("pre", {}, JSON.stringify({ model: job.model, hyperparameters: job.hyperparameters, adapter: job.adapter, gpu: job.gpu, priority: job.priority, from_checkpoint: job.from_checkpoint, metadata: job.metadata }, null, 2)))));
  const refreshReports = async () => {
    const report = await api(`/v1/fine_tuning/jobs/${jobId}/allocation`).then((r) => r.json()).catch(() => null);
    if (report) allocation.replaceChildren(allocationCard(report));
    const page = await getJson(`/v1/fine_tuning/jobs/${jobId}/checkpoints?limit=50`);
    checkpoints.replaceChildren(checkpointsCard(job, page.data));
  };
  drawHead(); drawCharts();
  const search = el("div");
  const drawSearch = () => search.replaceChildren(...(job.learning_rate_search ? [searchCard(job.learning_rate_search)] : []));
  drawSearch();
  show(head, card("Training", charts), search, allocation, checkpoints, card("Events", log));
  await refreshReports();
  const stopStream = streamEvents(jobId, async (kind, event) => {
    if (kind === "end") { job = await getJson(`/v1/fine_tuning/jobs/${jobId}`); drawHead(); drawSearch(); await refreshReports(); return; }
    log.append(el("li", { class: event.level === "error" ? "error" : "" }, `${when(event.created_at)} ${event.message}`));
    const data = event.data || {};
    if (event.type === "metrics" && data.loss !== undefined) {
      train.push([data.step, data.loss]); lr.push([data.step, data.learning_rate]);
      if (data.reward_accuracy !== undefined) rewards.push([data.step, data.reward_accuracy]);
      drawCharts();
    }
    if (event.type === "metrics" && data.valid_loss !== undefined) {
      valid.push([data.step, data.valid_loss]);
      if (data.valid_reward_accuracy !== undefined) validRewards.push([data.step, data.valid_reward_accuracy]);
      drawCharts();
    }
    if (data.phase || data.totals || data.chosen || event.message.startsWith("Checkpoint")) {
      job = await getJson(`/v1/fine_tuning/jobs/${jobId}`); drawHead(); drawSearch(); await refreshReports();
    }
  });
  stopLive = stopStream;
}

// ---- new job and files -----------------------------------------------------------------------
async function uploadFile(input, report) {
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", input.files[0]);
  const file = await (await api("/v1/files", { method: "POST", body: form })).json();
  const errors = file.errors.map((e) => el("li", {}, `line ${e.line}${e.field ? `, ${e.field}` : ""}: ${e.message}`));
  report.replaceChildren(
    el("p", { class: file.status === "processed" ? "status-succeeded" : "error", role: "status" },
      `${file.filename}: ${file.status}, ${file.rows} rows${file.format ? ` (${file.format})` : ""}${file.labels.length ? `, labels ${file.labels.join(", ")}` : ""}`),
    errors.length ? el("ul", { class: "line-errors", "aria-label": "Line errors" }, errors) : null);
  return file;
}

function range(setting) {
  const low = setting.minimum ?? setting.exclusiveMinimum, high = setting.maximum ?? setting.exclusiveMaximum;
  const from = low === undefined ? "" : `${setting.exclusiveMinimum !== undefined ? ">" : "≥"} ${low}`;
  const to = high === undefined ? "" : `${setting.exclusiveMaximum !== undefined ? "<" : "≤"} ${high}`;
  const bounds = [from, to].filter(Boolean).join(", ");
  const fallback = setting.default_rule ?? setting.default;
  return [bounds, fallback !== null && fallback !== undefined ? `default ${fallback}` : ""].filter(Boolean).join("; ");
}

function settingInput(setting, id) {
  return el("input", { id, type: "number", step: setting.type === "integer" ? 1 : "any", value: setting.default,
    min: setting.minimum ?? setting.exclusiveMinimum, max: setting.maximum ?? setting.exclusiveMaximum });
}

async function newJobView() {
  const models = (await getJson("/v1/models")).data;
  const settings = Object.fromEntries((await getJson("/v1/fine_tuning/adapter_settings")).data.map((s) => [s.name, s]));
  const fileInput = el("input", { type: "file", id: "training-file", accept: ".jsonl,application/jsonl", required: true });
  const report = el("div", { id: "file-report" });
  const model = el("select", { id: "model" }, models.map((m) => el("option", { value: m.id }, m.id)));
  const method = el("select", { id: "method" }, settings.type.choices.map((c) => el("option", { value: c }, c === "gora" ? "GoRA" : "LoRA")));
  const rRef = settingInput(settings.r_ref, "r-ref");
  const probeSteps = settingInput(settings.probe_steps, "probe-steps");
  const gamma = settingInput(settings.gamma, "gamma");
  const epochs = el("input", { id: "n-epochs", placeholder: "auto", "aria-describedby": "epochs-help" });
  const search = el("input", { type: "checkbox", id: "search-rate" });
  const message = el("p", { class: "error", role: "alert" });
  let file = null;
  fileInput.addEventListener("change", async () => { file = null; try { file = await uploadFile(fileInput, report); } catch (error) { report.replaceChildren(el("p", { class: "error" }, error.message)); } });
  const form = el("form", { id: "new-job", onsubmit: async (event) => {
    event.preventDefault();
    message.textContent = "";
    if (!file || file.status !== "processed") { message.textContent = "Upload a file without errors first (training_file)"; return; }
    const hyperparameters = epochs.value ? { n_epochs: Number(epochs.value) } : {};
    if (search.checked) hyperparameters.learning_rate_multiplier = "search";
    // Preference rows train with DPO, every other format supervised (the file says which).
    const objective = file.format === "preference" ? "dpo" : "supervised";
    const body = { model: model.value, training_file: file.id, method: { type: objective, [objective]: { hyperparameters } },
      adapter: { type: method.value, r_ref: Number(rRef.value), probe_steps: Number(probeSteps.value), gamma: Number(gamma.value) } };
    try {
      const job = await (await api("/v1/fine_tuning/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();
      location.hash = `#/jobs/${job.id}`;
    } catch (error) { message.textContent = `${error.message}${error.detail.param ? ` (field: ${error.detail.param})` : ""}`; }
  } },
    el("label", { for: "training-file" }, "Training file (JSONL)"), fileInput, report,
    el("label", { for: "model" }, "Model"), model,
    el("label", { for: "method" }, "Method"), method,
    el("label", { for: "r-ref" }, `r_ref, LoRA's rank whose budget GoRA shares out (${range(settings.r_ref)})`), rRef,
    el("label", { for: "probe-steps" }, `Probe batches, probe_steps (GoRA; ${range(settings.probe_steps)})`), probeSteps,
    el("label", { for: "gamma" }, `γ, gamma: the init's step (GoRA; ${range(settings.gamma)})`), gamma,
    el("label", { for: "n-epochs" }, "Epochs"), epochs, el("small", { id: "epochs-help" }, " 1–50, or empty for auto"),
    el("p", {}, search, el("label", { for: "search-rate" }, " Search the learning rate (tries 3 rates on validation loss; at most 1.75× a plain job)")),
    el("p", {}, el("button", { type: "submit" }, "Submit")), message);
  show(card("New job", form));
}

async function filesView() {
  const page = await getJson("/v1/files?limit=100");
  const rows = page.data.map((f) => el("tr", {}, el("td", {}, f.id), el("td", {}, f.filename), el("td", { class: f.status === "processed" ? "status-succeeded" : "status-failed" }, f.status),
    el("td", {}, f.format || ""), el("td", {}, String(f.rows)), el("td", {}, f.labels.join(", ")), el("td", {}, f.purpose), el("td", {}, when(f.created_at))));
  show(card("Files", el("table", { "aria-label": "Files, newest first" }, el("thead", {}, el("tr", {}, ["File", "Name", "Status", "Format", "Rows", "Labels", "Purpose", "Created"].map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows))));
}

async function poolsView() {
  await drawPools();
  const timer = setInterval(() => drawPools().catch(() => {}), 5000);
  stopLive = () => clearInterval(timer);
}

async function drawPools() {
  const pools = (await getJson("/v1/pools")).data;
  const limit = (t) => (t.max_running_jobs === null ? "no limit" : `limit ${t.max_running_jobs}`);
  show(...pools.map((pool) => card(`Pool ${pool.id}`,
    el("p", {}, `${pool.workers.length} worker${pool.workers.length === 1 ? "" : "s"} online · your team: ${pool.team.running} running, ${pool.team.queued} queued (${limit(pool.team)})`),
    pool.workers.length ? el("table", { "aria-label": `Workers in pool ${pool.id}` },
      el("thead", {}, el("tr", {}, ["Worker", "Host", "GPUs", "Started", "Last heartbeat"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, pool.workers.map((w) => el("tr", {}, el("td", {}, w.id), el("td", {}, w.host),
        el("td", {}, w.gpus.length ? w.gpus.join(", ") : "CPU"), el("td", {}, when(w.started_at)), el("td", {}, when(w.last_heartbeat_at))))))
      : null)));
}

// ---- sign-in and routing -----------------------------------------------------------------------
function signOut() {
  for (const name of [KEY, ADMIN_TEAMS, ACT_FOR]) sessionStorage.removeItem(name);
  drawTeamPicker();
  route();
}

// The admin's team picker: which team the pages (new job, files, pools, a job) act for.
function drawTeamPicker() {
  const slot = document.getElementById("act-for");
  if (!isAdmin()) { slot.replaceChildren(); return; }
  const picker = el("select", { id: "team-picker", onchange: (event) => { sessionStorage.setItem(ACT_FOR, event.target.value); route(); } },
    adminTeams().map((t) => el("option", { value: t.id, selected: t.id === sessionStorage.getItem(ACT_FOR) }, t.name)));
  slot.replaceChildren(el("label", { for: "team-picker" }, "Acting for team"), picker);
}

// The admin token opens GET /v1/teams; a team's key does not.
async function signInAsAdmin(token) {
  const response = await fetch("/v1/teams", { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) return false;
  const teams = (await response.json()).data.map((t) => ({ id: t.id, name: t.name }));
  if (!teams.length) throw new Error("there is no team yet: create one (POST /v1/teams)");
  sessionStorage.setItem(ADMIN_TEAMS, JSON.stringify(teams));
  sessionStorage.setItem(ACT_FOR, teams[0].id);
  return true;
}

async function route() {
  stopLive();
  stopLive = () => {};
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  document.getElementById("sign-in").hidden = signedIn;
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn) { show(); document.getElementById("api-key").focus(); return; }
  const [, section, target] = (location.hash || "#/jobs").split("/");
  const [id, actFor] = (target || "").split("@");
  if (actFor && isAdmin()) { sessionStorage.setItem(ACT_FOR, actFor); drawTeamPicker(); }
  try {
    if (section === "jobs" && id) await jobView(id);
    else if (section === "new") await newJobView();
    else if (section === "files") await filesView();
    else if (section === "pools") await poolsView();
    else await jobsView();
  } catch (error) { failure(error); }
}

document.getElementById("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("api-key").value.trim();
  sessionStorage.setItem(KEY, key);
  try {
    if (!(await signInAsAdmin(key))) await getJson("/v1/files?limit=1");  // a wrong key is refused here
    drawTeamPicker();
    document.getElementById("sign-in-error").textContent = "";
    route();
  } catch (error) {
    for (const name of [KEY, ADMIN_TEAMS, ACT_FOR]) sessionStorage.removeItem(name);
    document.getElementById("sign-in-error").textContent = `Sign-in failed: ${error.message}`;
  }
});
document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
drawTeamPicker();
route();
