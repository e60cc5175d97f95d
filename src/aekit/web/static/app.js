// aekit explorer: the page behind `aekit serve`.  Plain JavaScript, no build step, nothing
// fetched from anywhere but this server.  Every image comes back as a PNG data URI in JSON.
"use strict";

const $ = (id) => document.getElementById(id);

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const HOVER_RADIUS = 7;   // px: how close the pointer must be to a dot to show its image
const SLIDER_STEPS = 400; // resolution of each slider

const state = {
  runs: [],
  run: null,         // id of the run on show
  generation: 0,     // bumped on every run switch, so late answers for the old run are dropped
  info: null,        // GET /api/run
  map: null,         // GET /api/points
  label: null,       // class for conditional models
  lastDecode: null,  // body of the latest decode, re-sent when the class changes
  view: null,        // what the map shows: centre (cx, cy) and side length span, in map units
  marks: { current: null, drawn: null, a: null, b: null, path: [] },
  ends: [],          // interpolation ends: {target, point, text}
  drawings: [],      // the last two pad results: {z, point}
  hoverCache: new Map(),
  hoverIndex: -1,
};

// -- talking to the server ----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const sep = path.includes("?") ? "&" : "?";
  const res = await fetch(`${path}${sep}run=${encodeURIComponent(state.run)}`, options);
  let body = null;
  try { body = await res.json(); } catch (err) { body = null; }
  if (!res.ok) {
    // Every error is {"error": "one line", "detail": ...}; anything else shows its status text.
    let detail = body && typeof body.error === "string" ? body.error
      : body && body.detail !== undefined ? body.detail : res.statusText;
    if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    else if (typeof detail !== "string") detail = JSON.stringify(detail);
    throw new ApiError(res.status, detail);
  }
  return body;
}

const postJSON = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

// One request in flight per channel; while it runs only the newest call is kept, so a fast
// mouse never builds a queue and the image always catches up with the pointer.
function latestOnly(fn) {
  let busy = false;
  let pending = null; // {arg} or null
  async function pump(arg) {
    busy = true;
    const generation = state.generation;
    try {
      await fn(arg, generation);
    } catch (err) {
      if (generation === state.generation) showError(err);
    }
    if (pending) {
      const next = pending.arg;
      pending = null;
      return pump(next);
    }
    busy = false;
  }
  return (arg) => {
    if (busy) pending = { arg };
    else pump(arg);
  };
}

let statusTimer = null;
function showError(err) {
  const el = $("status");
  el.textContent = err instanceof ApiError ? `${err.status}: ${err.message}` : String(err.message || err);
  el.className = "error";
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { el.className = ""; el.textContent = ""; }, 8000);
}

function showNote(text) {
  const el = $("status");
  el.textContent = text;
  el.className = text ? "note" : "";
}

// -- small helpers ------------------------------------------------------------------------

const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
const isConditional = () => !!(state.info && state.info.flags.conditional);
const withLabel = (body) => (isConditional() ? { ...body, label: state.label } : body);

function classColour(label) {
  if (label === null || label === undefined) return "#555";
  if (label < PALETTE.length) return PALETTE[label];
  return `hsl(${(label * 137.5) % 360}, 60%, 45%)`;
}

function className(label) {
  const names = state.map ? state.map.classes : [];
  return label !== null && label !== undefined && label < names.length ? names[label] : String(label);
}

function figure(src, caption, id) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.className = "pixel";
  img.src = src;
  img.alt = caption;
  if (id) img.id = id;
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return fig;
}

// -- the map --------------------------------------------------------------------------------

const mapCanvas = () => $("map");

function fitView() {
  const pts = state.map.points;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const p of pts) {
    x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x);
    y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
  }
  if (!isFinite(x0)) { x0 = -3; x1 = 3; y0 = -3; y1 = 3; }
  // One scale for both axes: distances on the map are distances in the (projected) latent space.
  const span = Math.max(x1 - x0, y1 - y0, 1e-3) * 1.12;
  state.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, span };
}

function sizeCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const size = canvas.clientWidth;
  if (canvas.width !== Math.round(size * dpr)) {
    canvas.width = Math.round(size * dpr);
    canvas.height = Math.round(size * dpr);
  }
  return { size, dpr };
}

function toPx(x, y) {
  const size = mapCanvas().clientWidth;
  const v = state.view;
  return [(x - v.cx) / v.span * size + size / 2, size / 2 - (y - v.cy) / v.span * size];
}

function fromPx(px, py) {
  const size = mapCanvas().clientWidth;
  const v = state.view;
  return [v.cx + (px - size / 2) / size * v.span, v.cy - (py - size / 2) / size * v.span];
}

function drawMap() {
  const canvas = mapCanvas();
  if (!state.map || !state.view) return;
  const { size, dpr } = sizeCanvas(canvas);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, size, size);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);

  // the axes through the origin, faint
  const [ox, oy] = toPx(0, 0);
  ctx.strokeStyle = "#e3e3e3";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(ox, 0); ctx.lineTo(ox, size);
  ctx.moveTo(0, oy); ctx.lineTo(size, oy);
  ctx.stroke();

  let drawn = 0;
  ctx.globalAlpha = 0.75;
  for (const p of state.map.points) {
    const [px, py] = toPx(p.x, p.y);
    if (!isFinite(px) || !isFinite(py)) continue;
    ctx.fillStyle = classColour(p.label);
    ctx.beginPath();
    ctx.arc(px, py, 2.6, 0, 2 * Math.PI);
    ctx.fill();
    drawn += 1;
  }
  ctx.globalAlpha = 1;
  // What the page drew, for tests and for the curious: it must equal what the API sent.
  canvas.dataset.points = String(drawn);

  const m = state.marks;
  if (m.path.length > 1) {
    ctx.strokeStyle = "#222";
    ctx.lineWidth = 1.5;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    m.path.forEach((p, i) => { const [px, py] = toPx(p[0], p[1]); if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py); });
    ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const [key, text] of [["a", "A"], ["b", "B"]]) {
    if (!m[key]) continue;
    const [px, py] = toPx(m[key][0], m[key][1]);
    ctx.fillStyle = "#000";
    ctx.beginPath(); ctx.arc(px, py, 5, 0, 2 * Math.PI); ctx.fill();
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.fillText(text, px + 7, py - 7);
  }
  if (m.drawn) { // a diamond where the drawing lands
    const [px, py] = toPx(m.drawn[0], m.drawn[1]);
    ctx.fillStyle = "#ffd400";
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(px, py - 8); ctx.lineTo(px + 8, py); ctx.lineTo(px, py + 8); ctx.lineTo(px - 8, py);
    ctx.closePath(); ctx.fill(); ctx.stroke();
  }
  if (m.current) { // a ring and cross where the decoded latent lies
    const [px, py] = toPx(m.current[0], m.current[1]);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(px - 11, py); ctx.lineTo(px + 11, py);
    ctx.moveTo(px, py - 11); ctx.lineTo(px, py + 11);
    ctx.stroke();
  }
}

function nearestPoint(px, py) {
  let best = -1, bestD = HOVER_RADIUS * HOVER_RADIUS;
  const pts = state.map ? state.map.points : [];
  for (let i = 0; i < pts.length; i++) {
    const [qx, qy] = toPx(pts[i].x, pts[i].y);
    const d = (qx - px) ** 2 + (qy - py) ** 2;
    if (d <= bestD) { bestD = d; best = i; }
  }
  return best;
}

function drawLegend() {
  const legend = $("legend");
  legend.replaceChildren();
  const labels = new Set(state.map.points.map((p) => p.label));
  for (const label of [...labels].sort((a, b) => (a ?? -1) - (b ?? -1))) {
    const item = document.createElement("span");
    item.className = "legend-item";
    const swatch = document.createElement("i");
    swatch.style.background = classColour(label);
    item.append(swatch, label === null ? "unlabelled" : className(label));
    legend.append(item);
  }
}

// -- decoding -------------------------------------------------------------------------------

// where = {z, point, coords}: the latent (null when too large to send), its place on the
// map, and its slider coordinates.
function showDecoded(image, where) {
  $("decoded").src = image;
  state.marks.current = where.point;
  const z = where.z;
  $("z-readout").textContent = z
    ? `z = [${z.slice(0, 8).map(fmt).join(", ")}${z.length > 8 ? ", ..." : ""}]`
    : `z: ${state.map.latent_dim} numbers; map point (${where.point.map(fmt).join(", ")})`;
  setSliders(where.coords);
  drawMap();
}

const decode = latestOnly(async (body, generation) => {
  state.lastDecode = body;
  const res = await postJSON("/api/decode", withLabel(body));
  if (generation !== state.generation) return;
  showDecoded(res.image, res);
});

// -- sliders --------------------------------------------------------------------------------

function buildSliders() {
  const s = state.map.sliders;
  const box = $("sliders");
  box.replaceChildren();
  $("slider-note").textContent = s.basis === "pca"
    ? `Sliders move along the first ${s.names.length} principal axes of the test codes; other directions stay at their mean.`
    : "One slider per latent dimension.";
  s.names.forEach((name, i) => {
    const [lo, hi] = s.ranges[i];
    const row = document.createElement("label");
    row.className = "slider";
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: lo, max: hi, step: (hi - lo) / SLIDER_STEPS, value: s.start[i] });
    input.id = `slider-${i}`;
    input.setAttribute("aria-label", name);
    const value = document.createElement("output");
    value.textContent = fmt(s.start[i]);
    input.addEventListener("input", () => {
      value.textContent = fmt(Number(input.value));
      decode({ coords: sliderCoords() });
    });
    const caption = document.createElement("span");
    caption.textContent = name;
    row.append(caption, input, value);
    box.append(row);
  });
}

function sliderInputs() {
  return [...$("sliders").querySelectorAll("input[type=range]")];
}

// The server maps slider coordinates to latents and back (for large latents the sliders are
// principal axes), so the page never has to send or hold a 19,000-number code per mouse move.
function sliderCoords() {
  return sliderInputs().map((input) => Number(input.value));
}

function setSliders(coords) {
  sliderInputs().forEach((input, i) => {
    input.value = coords[i];
    input.nextElementSibling.textContent = fmt(coords[i]);
  });
}

// -- hover ----------------------------------------------------------------------------------

const hoverFetch = latestOnly(async (index, generation) => {
  if (!state.hoverCache.has(index)) {
    const res = await api(`/api/image/${index}`);
    if (generation !== state.generation) return;
    state.hoverCache.set(index, res);
  }
  if (state.hoverIndex === index) showHover(state.hoverCache.get(index));
});

function showHover(res) {
  $("hover-img").src = res.image;
  $("hover-text").textContent = `#${res.index}${res.class !== null ? ` · ${res.class}` : ""}`;
  $("hover").classList.remove("hidden");
}

function hover(px, py) {
  const i = nearestPoint(px, py);
  const tip = $("hover");
  if (i < 0) {
    state.hoverIndex = -1;
    tip.classList.add("hidden");
    return;
  }
  const p = state.map.points[i];
  tip.style.left = `${px + 14}px`;
  tip.style.top = `${py + 14}px`;
  if (state.hoverIndex === p.index) return;
  state.hoverIndex = p.index;
  if (state.hoverCache.has(p.index)) showHover(state.hoverCache.get(p.index));
  else hoverFetch(p.index);
}

// -- map pointer handling -------------------------------------------------------------------

function setupMap() {
  const canvas = mapCanvas();
  let dragging = false;
  const local = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  };
  canvas.addEventListener("pointerdown", (ev) => {
    if (!state.map || ev.button !== 0) return;
    const [px, py] = local(ev);
    if (ev.shiftKey) {
      addEnd(px, py);
      return;
    }
    dragging = true;
    canvas.setPointerCapture(ev.pointerId);
    decode({ point: fromPx(px, py) });
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!state.map) return;
    const [px, py] = local(ev);
    if (dragging) decode({ point: fromPx(px, py) });
    else hover(px, py);
  });
  const stop = () => { dragging = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  canvas.addEventListener("pointerleave", () => {
    state.hoverIndex = -1;
    $("hover").classList.add("hidden");
  });
  window.addEventListener("resize", () => drawMap());
}

// -- interpolation --------------------------------------------------------------------------

function addEnd(px, py) {
  const i = nearestPoint(px, py);
  let end;
  if (i >= 0) { // a dot: interpolate between the real codes, not their projections
    const p = state.map.points[i];
    end = { target: { index: p.index }, point: [p.x, p.y], text: `test image #${p.index} (${className(p.label)})` };
  } else {
    const point = fromPx(px, py);
    end = { target: { point }, point, text: `map point (${fmt(point[0])}, ${fmt(point[1])})` };
  }
  if (state.ends.length >= 2) state.ends = [];
  state.ends.push(end);
  showEnds();
  if (state.ends.length === 2) runInterpolation();
}

function showEnds() {
  const [a, b] = state.ends;
  state.marks.a = a ? a.point : null;
  state.marks.b = b ? b.point : null;
  if (!a) state.marks.path = [];
  $("interp-ends").textContent = a
    ? `A: ${a.text}${b ? ` → B: ${b.text}` : " · shift-click a second place for B"}`
    : "Shift-click two places on the map, or draw twice and press \"Interpolate last two\".";
  drawMap();
}

const interpolateReq = latestOnly(async (body, generation) => {
  const res = await postJSON("/api/interpolate", withLabel(body));
  if (generation !== state.generation) return;
  const strip = $("strip");
  strip.replaceChildren(...res.images.map((src, i) => {
    const img = document.createElement("img");
    img.className = "pixel";
    img.src = src;
    img.alt = `step ${i + 1}`;
    img.title = "click to decode this step";
    img.addEventListener("click", () => decode(res.z ? { z: res.z[i] } : { coords: res.coords[i] }));
    return img;
  }));
  state.marks.path = res.points;
  drawMap();
});

function runInterpolation() {
  if (state.ends.length !== 2) return;
  const steps = Math.max(2, Math.min(32, Math.round(Number($("steps").value)) || 10));
  $("steps").value = steps;
  interpolateReq({ a: state.ends[0].target, b: state.ends[1].target, steps, spherical: $("spherical").checked });
}

function setupInterpolation() {
  $("steps").addEventListener("change", runInterpolation);
  $("spherical").addEventListener("change", runInterpolation);
  $("interp-clear").addEventListener("click", () => {
    state.ends = [];
    $("strip").replaceChildren();
    showEnds();
  });
  $("pair-button").addEventListener("click", () => {
    if (state.drawings.length < 2) return;
    state.ends = state.drawings.map((d, i) => ({ target: { z: d.z }, point: d.point, text: `drawing ${i + 1}` }));
    showEnds();
    runInterpolation();
  });
}

// -- the drawing pad ------------------------------------------------------------------------

function clearPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  // White on black, like MNIST: what the digit models were trained on.
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function padBlob() {
  return new Promise((resolve) => $("pad").toBlob(resolve, "image/png"));
}

// arg: {file} for an upload, {} for the pad; "final" marks the end of a stroke or an upload,
// whose answer joins the pair that "Interpolate last two" uses.
const sendImage = latestOnly(async (arg, generation) => {
  const file = arg.file || await padBlob();
  const form = new FormData();
  form.append("file", file, "drawing.png");
  if (isConditional()) form.append("label", String(state.label));
  const res = await api("/api/reconstruct", { method: "POST", body: form });
  if (generation !== state.generation) return;
  showReconstruction(res);
  if (arg.final) keepDrawing({ z: res.z, point: res.point });
});

function showReconstruction(res) {
  const figs = [];
  if (res.task === "reconstruct") {
    figs.push(figure(res.input, "model input", "recon-input"));
    figs.push(figure(res.reconstruction, "reconstruction", "recon-reconstruction"));
  } else {
    const [seen, out] = res.task === "denoise"
      ? ["model input (with the run's noise)", "output (denoised)"]
      : ["model input (downscaled)", "output (upscaled)"];
    figs.push(figure(res.clean, "your image", "recon-clean"));
    figs.push(figure(res.input, seen, "recon-input"));
    figs.push(figure(res.output, out, "recon-output"));
    if (res.task === "denoise") figs.push(figure(res.reconstruction, "your image as is, through the model", "recon-reconstruction"));
  }
  $("recon").replaceChildren(...figs);
  state.marks.drawn = res.point;
  drawMap();
}

let reconHint = null;
function resetRecon() {
  // back to the explanation the page starts with
  reconHint = reconHint || $("recon").firstElementChild;
  $("recon").replaceChildren(reconHint);
}

function keepDrawing(drawing) {
  // Called once per finished stroke or upload: the two most recent are the interpolation pair.
  state.drawings.push(drawing);
  state.drawings = state.drawings.slice(-2);
  $("pair-button").disabled = state.drawings.length < 2;
}

function setupPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  clearPad();
  let last = null;
  const local = (ev) => {
    const r = pad.getBoundingClientRect();
    return [(ev.clientX - r.left) * pad.width / r.width, (ev.clientY - r.top) * pad.height / r.height];
  };
  const stroke = (from, to) => {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = pad.width / 12; // about 2.3 pixels at 28x28, like an MNIST pen stroke
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from[0], from[1]);
    ctx.lineTo(to[0], to[1]);
    ctx.stroke();
  };
  pad.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    pad.setPointerCapture(ev.pointerId);
    last = local(ev);
    stroke(last, last);
    sendImage({});
  });
  pad.addEventListener("pointermove", (ev) => {
    if (!last) return;
    const p = local(ev);
    stroke(last, p);
    last = p;
    sendImage({});
  });
  const end = () => {
    if (!last) return;
    last = null;
    sendImage({ final: true });
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  $("clear-button").addEventListener("click", () => {
    clearPad();
    resetRecon();
    state.marks.drawn = null;
    drawMap();
  });
  $("upload").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";
    if (!file) return;
    try { // show it on the pad too; the server gets the original file
      const bitmap = await createImageBitmap(file);
      clearPad();
      const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
      const w = bitmap.width * scale, h = bitmap.height * scale;
      ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    } catch (err) {
      // the browser cannot show it; the server will say whether it can read it
    }
    sendImage({ file, final: true });
  });
}

// -- random samples and classes ---------------------------------------------------------------

async function randomSample() {
  const generation = state.generation;
  try {
    const q = isConditional() ? `?n=1&label=${state.label}` : "?n=1";
    const res = await api(`/api/sample${q}`);
    if (generation !== state.generation) return;
    showDecoded(res.images[0], { z: res.z ? res.z[0] : null, point: res.points[0], coords: res.coords[0] });
  } catch (err) {
    showError(err);
  }
}

function setupControls() {
  $("random-button").addEventListener("click", randomSample);
  $("class-select").addEventListener("change", (ev) => {
    state.label = Number(ev.target.value);
    if (state.lastDecode) decode(state.lastDecode);
    runInterpolation();
  });
  $("metrics-button").addEventListener("click", () => $("metrics-dialog").showModal());
  $("run-select").addEventListener("change", (ev) => {
    history.replaceState(null, "", `#run=${encodeURIComponent(ev.target.value)}`);
    loadRun(ev.target.value);
  });
}

// -- metrics --------------------------------------------------------------------------------

function table(headers, rows) {
  const t = document.createElement("table");
  const head = t.createTHead().insertRow();
  for (const h of headers) { const th = document.createElement("th"); th.textContent = h; head.append(th); }
  const body = t.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const cell of row) tr.insertCell().textContent = cell;
  }
  return t;
}

const num = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(5)) : (v ?? "–"));

function renderMetrics() {
  const info = state.info;
  const body = $("metrics-body");
  body.replaceChildren();
  $("metrics-title").textContent = `Metrics: ${info.name}`;
  const h = (text) => { const el = document.createElement("h3"); el.textContent = text; return el; };
  if (info.test_metrics) {
    body.append(h("Test split"), table(["metric", "value"], Object.entries(info.test_metrics).map(([k, v]) => [k, num(v)])));
  }
  const evaluations = Object.entries(info.evaluations || {});
  if (evaluations.length) {
    // what `aekit evaluate --nll / --samples` measured and stored after training
    const describe = (r) => (r.measured === "nll"
      ? [`NLL ${num(r.nll)} ± ${num(r.nll_se)} nats`, `-ELBO ${num(r.nll_negative_elbo)}`]
      : [`FD ${num(r.fd)}`, `confidence ${num(r.confidence)}, ${num(r.classes_covered)} classes`]);
    body.append(h("Likelihood and sample quality"),
      table(["measured", "value", "also"], evaluations.map(([key, r]) => [key, ...describe(r)])));
  }
  const rows = info.metrics || [];
  if (rows.length) {
    const trainKeys = Object.keys(rows[0].train || {});
    const valKeys = Object.keys(rows[0].val || {});
    const headers = ["epoch", ...trainKeys.map((k) => `train ${k}`), ...valKeys.map((k) => `val ${k}`), "seconds"];
    const cells = rows.map((r) => [r.epoch, ...trainKeys.map((k) => num((r.train || {})[k])),
      ...valKeys.map((k) => num((r.val || {})[k])), num(r.seconds)]);
    body.append(h("Per epoch"), table(headers, cells));
  } else {
    const p = document.createElement("p");
    p.textContent = "No per-epoch metrics in this run folder.";
    body.append(p);
  }
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "config.json";
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(info.config, null, 2);
  details.append(summary, pre);
  body.append(details);
}

// -- loading a run --------------------------------------------------------------------------

async function loadRun(id) {
  state.run = id;
  state.generation += 1;
  const generation = state.generation;
  Object.assign(state, { map: null, info: null, lastDecode: null, ends: [], drawings: [], hoverIndex: -1 });
  state.hoverCache = new Map();
  state.marks = { current: null, drawn: null, a: null, b: null, path: [] };
  document.body.dataset.ready = "0";
  $("projection").textContent = "loading the model and encoding the test set...";
  $("strip").replaceChildren();
  resetRecon();
  $("pair-button").disabled = true;
  showEnds();
  try {
    const [info, map] = await Promise.all([api("/api/run"), api("/api/points")]);
    if (generation !== state.generation) return;
    state.info = info;
    state.map = map;
    const shown = map.points.length;
    $("run-summary").textContent = `${info.model} · ${info.task_description} · ${info.dataset} · ` +
      `${info.latent_dim}-D latent`;
    // the map's own dataset where it is not the run's: mnist-5k's digits standing in for MNIST's
    const from = map.dataset && map.dataset !== info.dataset ? ` of ${map.dataset}` : "";
    $("projection").textContent = `${shown} of ${map.test_size} test images${from}, at their latent means; ` +
      `axes: ${map.projection}.`;
    showNote(map.note || "");
    const report = $("report-link");
    report.href = info.has_report ? `/report/${encodeURIComponent(info.id)}/` : "#";
    report.classList.toggle("disabled", !info.has_report);
    report.setAttribute("aria-disabled", String(!info.has_report));
    report.title = info.has_report ? "the run's HTML report" : "this run has no report.html";
    $("random-button").classList.toggle("hidden", !info.flags.generative);
    const classSelect = $("class-select");
    classSelect.replaceChildren(...info.classes.map((c, i) => new Option(c, String(i))));
    $("class-picker").classList.toggle("hidden", !info.flags.conditional);
    state.label = info.flags.conditional ? 0 : null;
    renderMetrics();
    fitView();
    drawLegend();
    buildSliders();
    drawMap();
    state.lastDecode = { coords: map.sliders.start };
    const first = await postJSON("/api/decode", withLabel(state.lastDecode));
    if (generation !== state.generation) return;
    showDecoded(first.image, first);
    document.body.dataset.ready = "1";
  } catch (err) {
    if (generation === state.generation) {
      $("projection").textContent = "this run could not be loaded";
      showError(err);
    }
  }
}

async function start() {
  setupMap();
  setupPad();
  setupInterpolation();
  setupControls();
  try {
    const res = await fetch("/api/runs");
    if (!res.ok) throw new ApiError(res.status, res.statusText);
    state.runs = (await res.json()).runs;
  } catch (err) {
    showError(err);
    return;
  }
  const select = $("run-select");
  // A broken run (its folder cannot be read) is listed greyed out, with why (in full as its tooltip).
  select.replaceChildren(...state.runs.map((r) => {
    const why = r.broken && r.broken.length > 100 ? `${r.broken.slice(0, 99)}\u2026` : r.broken;
    const opt = new Option(r.broken ? `${r.name} (broken: ${why})` : `${r.name} (${r.model}, ${r.task})`, r.id);
    if (r.broken) { opt.disabled = true; opt.title = r.broken; }
    return opt;
  }));
  $("run-picker").classList.toggle("hidden", state.runs.length < 2);
  const good = state.runs.filter((r) => !r.broken);
  if (!good.length) { showError(new Error("no run on this server can be loaded")); return; }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("run");
  const id = good.some((r) => r.id === wanted) ? wanted : good[0].id;
  select.value = id;
  loadRun(id);
}

document.addEventListener("DOMContentLoaded", start);
