// charlm explore: the page's behaviour, in plain JavaScript (no framework, no build step, works offline): this
// file holds the helpers, navigation, model and language model's views; curves.js the curves, task-views.js the
// views of taggers and classifiers, translate.js an encoder–decoder's. The server's API is described in
// charlm/explore/api.py. Model output is only ever written with textContent, never parsed as HTML.
"use strict";

// Every section of the page; a run's model names those that apply to it (its `views`), the first opened first.
const SECTIONS = ["sample", "surprisal", "units", "tag", "classify", "translate", "evaluate", "curves", "model"];
// The views left when the run's model cannot be loaded (a run that has saved no checkpoint yet).
const VIEWS_WITHOUT_MODEL = ["curves", "model"];
// Surprisal colours saturate here: a character the model gives under 1/1024 is simply "very surprising".
const MAX_BITS = 10;
// White to deep red (ColorBrewer OrRd, white first) for bits; blue-white-red (RdBu) for unit activations.
const SURPRISAL_STOPS = ["#ffffff", "#fee8c8", "#fdd49e", "#fdbb84", "#fc8d59", "#ef6548", "#d7301f", "#b30000",
  "#7f0000"];
const DIVERGING_STOPS = ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#ffffff", "#fddbc7", "#f4a582", "#d6604d",
  "#b2182b"];
const KIND_LABELS = { a: "output a⟨t⟩", c: "memory cell c⟨t⟩" };
// A unit's text is read again this long after the last keystroke, not on every one.
const UNITS_TEXT_DELAY_MS = 400;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  run: 0,
  model: null, // GET /api/model of the current run
  views: null, // the sections that apply to the current run's model; null until its model first answers
  modelLoading: Promise.resolve(),
  surprisal: null, // the last POST /api/surprisal answer shown
  units: null, // the last POST /api/units answer shown
  unitsTextEdited: false, // until the user types in it, the units text follows the surprisal text
  sampleAbort: null, // aborts the sample stream in progress
  curvesTimer: null,
  curvesLoading: false,
  curvesJSON: null, // the last /api/curves body, to redraw only when it changed
  curves: null,
  tag: null, // the last POST /api/tag answer shown
  classified: null, // the last POST /api/classify answer shown
  statesText: "", // the text whose hidden states the heatmap shows
  states: null, // the last POST /api/states answer drawn
  statesGeometry: null,
};
// Each request kind counts its requests; an answer that is no longer the newest is dropped, so a slow answer
// never overwrites a newer one.
const tickets = { model: 0, surprisal: 0, units: 0, find: 0, tag: 0, classify: 0, states: 0, evaluate: 0 };
// The view's request that is still on its way ("latest" sets and clears it; a run change forgets them all).
const asking = {};

// Whether `view` has a request on its way: a view that reads its default text when it opens asks only once.
function askingFor(view) {
  return Boolean(asking[view]);
}

// An answer still on its way to `view` is no longer wanted: dropped when it comes.
function dropAnswers(view) {
  tickets[view] += 1;
  asking[view] = false;
}

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function svg(tag, attributes = {}, children = []) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// ----------------------------------------------------------------------------------------- requests

// fetch() with the server's {"error": "..."} line as the thrown message.
async function request(path, body, signal) {
  const init = body === undefined ? { signal } : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
  };
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error(`cannot reach the explorer server (${err.message}); is charlm explore still running?`);
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

async function errorMessage(response) {
  try {
    const record = await response.json();
    if (record && typeof record.error === "string") return record.error;
  } catch (err) {
    // not the server's JSON error: fall back to the status line below
  }
  return `${response.status} ${response.statusText}`.trim();
}

async function fetchJSON(path, body) {
  return (await request(path, body)).json();
}

// Calls onRecord with each object of a newline-delimited JSON stream as its lines arrive.
async function readRecords(response, onRecord) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop(); // an unfinished line waits for the next chunk
    for (const line of lines) if (line.trim()) onRecord(JSON.parse(line));
  }
  pending += decoder.decode();
  if (pending.trim()) onRecord(JSON.parse(pending));
}

// One request of a view, the newest winning: an answer to an older request (the user has typed or clicked
// since) is dropped. `ask(current)` makes the request (`current()` says whether it is still the newest); the
// `button` (an id) shows busy meanwhile; a failure clears what `onError` clears and is shown in `errorId`.
// -> the answer, or undefined when the request failed or is no longer the newest.
async function latest(view, errorId, ask, { button = null, onError = null } = {}) {
  const ticket = ++tickets[view];
  const current = () => ticket === tickets[view];
  asking[view] = true;
  clearError(errorId);
  if (button) $(button).classList.add("busy");
  try {
    const answer = await ask(current);
    return current() ? answer : undefined;
  } catch (err) {
    if (current()) {
      if (onError) onError();
      showError(errorId, err.message);
    }
    return undefined;
  } finally {
    if (current()) {
      asking[view] = false;
      if (button) $(button).classList.remove("busy");
    }
  }
}

function showError(id, message) {
  const box = $(id);
  box.textContent = message;
  box.hidden = false;
}

function clearError(id) {
  const box = $(id);
  box.textContent = "";
  box.hidden = true;
}

// ----------------------------------------------------------------------------------------- formatting

// Whitespace made visible, for a token shown on its own.
function visibleText(text) {
  if (text === "") return "∅";
  return text.replace(/\n/g, "↵").replace(/ /g, "␣").replace(/\t/g, "⇥").replace(/\r/g, "␍");
}

function percent(p) {
  return p >= 0.1 ? `${(p * 100).toFixed(0)}%` : `${(p * 100).toFixed(1)}%`;
}

function duration(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds - 60 * minutes)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function tokenWord(plural = true) {
  const word = state.model && state.model.vocab.kind !== "char" ? "token" : "character";
  return plural ? `${word}s` : word;
}

// ----------------------------------------------------------------------------------------- colours

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

// The colour at t in [0, 1] along evenly spaced stops.
function colourAt(stops, t) {
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const [a, b] = [hexToRgb(stops[i]), hexToRgb(stops[i + 1])];
  return a.map((v, k) => Math.round(v + (b[k] - v) * (x - i)));
}

function cssColour(rgb) {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

// White text on dark backgrounds, so every token stays readable.
function inkFor(rgb) {
  const luminance = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255;
  return luminance < 0.5 ? "#fff" : "";
}

function paint(span, rgb) {
  span.style.backgroundColor = cssColour(rgb);
  span.style.color = inkFor(rgb);
}

function gradient(stops) {
  const steps = 24;
  const colours = Array.from({ length: steps + 1 }, (_, i) => cssColour(colourAt(stops, i / steps)));
  return `linear-gradient(to right, ${colours.join(", ")})`;
}

// A colour bar with labels [[position in 0..1, text]].
function drawLegend(box, stops, labels) {
  const ticks = labels.map(([position, text]) => el("span", { textContent: text }));
  labels.forEach(([position], i) => { ticks[i].style.left = `${position * 100}%`; });
  const bar = el("div", { className: "legend-bar" });
  bar.style.background = gradient(stops);
  box.replaceChildren(bar, el("div", { className: "legend-ticks" }, ticks));
}

// ----------------------------------------------------------------------------------------- tooltip

function showTooltip(anchor, children) {
  const tip = $("tooltip");
  tip.replaceChildren(...children);
  tip.hidden = false;
  const box = anchor.getBoundingClientRect();
  const margin = 8;
  const left = Math.min(Math.max(box.left, margin), window.innerWidth - tip.offsetWidth - margin);
  let top = box.bottom + 6;
  if (top + tip.offsetHeight > window.innerHeight - margin) top = box.top - tip.offsetHeight - 6;
  tip.style.left = `${left}px`;
  tip.style.top = `${Math.max(top, margin)}px`;
}

function hideTooltip() {
  $("tooltip").hidden = true;
}

function surprisalTip(token) {
  const head = el("div", { className: "tip-head" }, [
    el("span", { className: "tip-token", textContent: visibleText(token.text) }),
    el("span", { textContent: `${token.bits.toFixed(2)} bits · p ${percent(2 ** -token.bits)}` }),
  ]);
  const guesses = token.top.map(([text, p]) => {
    const bar = el("span", { className: "guess-bar" }, [el("span")]);
    bar.firstChild.style.width = `${(p * 100).toFixed(1)}%`;
    return el("div", { className: text === token.text ? "guess actual" : "guess" }, [
      el("span", { className: "guess-text", textContent: visibleText(text) }),
      bar,
      el("span", { className: "guess-prob", textContent: percent(p) }),
    ]);
  });
  return [head, el("div", { className: "tip-label", textContent: "the model's top guesses here" }), ...guesses];
}

function unitTip(text, value) {
  return [el("div", { className: "tip-head" }, [
    el("span", { className: "tip-token", textContent: visibleText(text) }),
    el("span", { textContent: `activation ${value.toFixed(3)}` }),
  ])];
}

// ----------------------------------------------------------------------------------------- navigation

// The section the address names when it applies to the run's model, else the model's first view.
function currentSection() {
  const views = state.views || VIEWS_WITHOUT_MODEL;
  const name = location.hash.slice(1);
  return views.includes(name) ? name : views[0];
}

// Shows the current section and the tabs of the sections that apply to the run's model; hides the others.
// Before the first model answers nothing is shown: which views apply is not known yet.
function showSection() {
  const views = state.views;
  if (!views) return;
  const shown = currentSection();
  if (location.hash.slice(1) !== shown) history.replaceState(null, "", `#${shown}`);
  for (const name of SECTIONS) {
    $(`section-${name}`).hidden = name !== shown;
    const tab = $(`tab-${name}`);
    tab.hidden = !views.includes(name);
    tab.classList.toggle("active", name === shown);
    if (name === shown) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  hideTooltip();
  if (shown === "units") openUnits();
  openTaskView(shown);
  if (shown === "curves") startCurves();
  else stopCurves();
}

// ----------------------------------------------------------------------------------------- runs and model

async function loadRuns() {
  const { runs, defaults } = await fetchJSON("/api/runs");
  $("run").replaceChildren(...runs.map((run) => el("option", {
    value: String(run.index), textContent: run.name, title: run.path,
  })));
  state.run = runs.length ? runs[0].index : 0;
  for (const id of ["surprisal-text", "units-text", "tag-text", "classify-text"]) $(id).value = defaults.text;
  $("pattern").value = defaults.pattern;
}

function loadModel() {
  state.modelLoading = fetchModel();
  return state.modelLoading;
}

async function fetchModel() {
  const ticket = ++tickets.model;
  clearError("model-error");
  try {
    const info = await fetchJSON(`/api/model?run=${state.run}`);
    if (ticket !== tickets.model) return;
    state.model = info;
    state.views = info.views;
    renderModel(info);
    setUnitControls(info.units);
    setStatesControls(info.units);
  } catch (err) {
    if (ticket !== tickets.model) return;
    state.model = null;
    state.views = VIEWS_WITHOUT_MODEL;
    $("model-info").replaceChildren();
    showError("model-error", err.message);
  }
}

// Another run: its model's views replace the other's (the current one kept when it applies), and the views
// shown are read again by its model.
async function changeRun() {
  state.run = Number($("run").value);
  // An answer still on its way belongs to the other run's model: dropped, so nothing it would trigger (the
  // hidden states of a classified text) is asked of this run.
  for (const view of Object.keys(tickets)) dropAnswers(view);
  for (const button of document.querySelectorAll("button.busy")) button.classList.remove("busy");
  $("found-units").replaceChildren(); // they were units of the other model
  $("found-summary").textContent = "";
  state.units = null; // read again when the Units view opens
  clearTaskViews();
  await loadModel();
  if (state.surprisal && state.views && state.views.includes("surprisal")) showSurprisal();
  showSection();
}

// A two-column table of [label, value] rows; rows whose value is missing are left out.
function infoTable(caption, rows) {
  const body = rows.filter(([, value]) => value !== null && value !== undefined && value !== "").map(
    ([label, value]) => el("tr", {}, [el("th", { textContent: label, scope: "row" }),
      el("td", {}, [value instanceof Node ? value : String(value)])]));
  return el("table", { className: "info" }, [el("caption", { textContent: caption }), el("tbody", {}, body)]);
}

function number(value, digits) {
  if (typeof value !== "number") return value;
  return digits === undefined ? value.toLocaleString("en") : value.toFixed(digits);
}

function renderModel(info) {
  const { model, vocab, training: train } = info;
  const shown = new Set(["cell", "hidden", "layers", "embed", "vocab_size", "dropout", "activation", "dtype", "tie",
    "parameters"]);
  const modelRows = [
    ["cell", model.cell], ["hidden units per layer", number(model.hidden)], ["layers", model.layers],
    ["embedding", model.embed === 0 ? "0 (one-hot input)" : number(model.embed)],
    ["vocabulary size", number(model.vocab_size)], ["dropout", model.dropout],
    ["activation", model.cell === "rnn" ? model.activation : null], ["dtype", model.dtype],
    ["tied embedding", model.tie === undefined ? null : (model.tie ? "yes" : "no")],
    ["parameters", number(model.parameters)],
    ...Object.entries(model).filter(([key]) => !shown.has(key)).map(([key, value]) => [key, plainValue(value)]),
  ];
  const vocabRows = [
    ["size", number(vocab.size)], ["kind", vocab.kind], ["documents", vocab.eos_mode], ["encoding", vocab.encoding],
    ["lowercased", vocab.lowercase === undefined ? null : (vocab.lowercase ? "yes" : "no")],
    ["specials", (vocab.specials || []).join(" ")],
    vocab.chars !== undefined ? ["characters", vocabChars(vocab.chars)] : ["most frequent tokens", vocabTokens(vocab)],
  ];
  const bestVal = train.best_val_nats;
  const perLabel = info.kind !== "lm"; // a loss per label, or an encoder–decoder's per target token
  const trainRows = [
    ["step", number(train.step)], ["epoch", number(train.epoch, 2)],
    ["training time", typeof train.seconds === "number" ? duration(train.seconds) : null],
    ["best validation loss", typeof bestVal !== "number" ? "none yet"
      : perLabel ? `${bestVal.toFixed(4)} nats per ${info.kind === "seq2seq" ? "target token" : "label"}`
        : `${bestVal.toFixed(4)} nats = ${train.best_val_bits.toFixed(4)} bits per ${tokenWord(false)}`],
    ["best step", number(train.best_step)],
    ["final validation loss", typeof train.final_val_nats === "number"
      ? `${train.final_val_nats.toFixed(4)} nats (${train.final_val_mode || "?"})` : null],
    ["corpus", train.corpus], ["corpus sha256", train.corpus_sha256 ? train.corpus_sha256.slice(0, 16) + "…" : null],
  ];
  const fileRows = [
    ["run", info.run ? info.run.name : null], ["checkpoint", info.path], ["format version", info.format_version],
    ["charlm version", info.charlm_version], ["integrity", info.integrity],
    ["optimizer state", info.has_optimizer_state ? "saved" : "not saved"],
  ];
  const tables = [infoTable("Architecture", modelRows),
    infoTable(info.kind === "seq2seq" ? "Source vocabulary" : "Vocabulary", vocabRows),
    infoTable("Training", trainRows), infoTable("Checkpoint", fileRows)];
  if (perLabel) tables.splice(1, 0, infoTable("Task", taskRows(info)));
  $("model-info").replaceChildren(...tables);
}

// What a tagger or classifier was trained to do: its task, labels and the figure its best checkpoint has.
function taskRows(info) {
  if (info.kind === "seq2seq") return translateRows(info);
  const task = info.task || {};
  const f1 = typeof task.best_val_f1 === "number" ? task.best_val_f1.toFixed(4) : null;
  return [
    ["kind", info.kind], ["task", task.task],
    ["labels", task.labels ? task.labels.join(", ") : null],
    ...(task.heads || []).map((head) => [`labels (${head.name})`, head.labels.map(visibleText).join(" ")]),
    ["pooling", task.pool], ["marks", task.marks],
    [info.kind === "classifier" ? "best validation macro-F1" : "best validation F1", f1],
  ];
}

// A config value of a kind the page has no row for, as plain text.
function plainValue(value) {
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length ? value.map(plainValue).join(", ") : "none";
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return value;
}

function vocabChars(chars) {
  return el("span", { className: "vocab-items" }, [...chars].map(
    (c) => el("span", { className: "vocab-item", textContent: visibleText(c), title: `U+${c.codePointAt(0)
      .toString(16).toUpperCase().padStart(4, "0")}` })));
}

function vocabTokens(vocab) {
  const tokens = vocab.tokens || [];
  return el("span", { className: "vocab-items" }, tokens.map(
    (t) => el("span", { className: "vocab-item", textContent: visibleText(t) })));
}

// ----------------------------------------------------------------------------------------- sample

function numberField(id, label, { integer = false, optional = false } = {}) {
  const input = $(id);
  if (input.validity.badInput) throw new Error(`${label} is not a number`);
  const raw = input.value.trim();
  if (raw === "") {
    if (optional) return null;
    throw new Error(`${label} is empty`);
  }
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${label} is not a number`);
  if (integer && !Number.isSafeInteger(value)) throw new Error(`${label} must be a whole number below 2^53`);
  return value;
}

function sampleRequest() {
  return {
    run: state.run,
    prime: $("prime").value,
    temperature: numberField("temperature", "temperature"),
    top_k: numberField("top-k", "top-k", { integer: true, optional: true }),
    top_p: numberField("top-p", "top-p", { optional: true }),
    length: numberField("length", "length", { integer: true }),
    seed: numberField("seed", "seed", { integer: true, optional: true }),
    num_samples: numberField("num-samples", "samples", { integer: true }),
  };
}

// A sample's card; its text grows as deltas arrive, the prime set apart.
function sampleCard(index, primeLength) {
  const prime = el("span", { className: "prime" });
  const rest = document.createTextNode("");
  const text = el("div", { className: "sample" }, [prime, rest]);
  const logprob = el("span", { className: "logprob" });
  const card = el("article", { className: "sample-card" }, [
    el("header", {}, [el("span", { textContent: `Sample ${index + 1}` }), logprob]), text]);
  let full = "";
  return {
    card,
    append(delta) {
      full += delta;
      prime.textContent = full.slice(0, primeLength);
      rest.data = full.slice(primeLength);
    },
    finish(logp) {
      logprob.textContent = `log p = ${logp.toFixed(1)} nats`;
    },
  };
}

function setSampling(active) {
  const button = $("sample-button");
  button.textContent = active ? "Stop" : "Sample";
  button.classList.toggle("busy", active);
}

async function drawSamples(event) {
  event.preventDefault();
  if (state.sampleAbort) { // the button reads "Stop" while a stream is running
    state.sampleAbort.abort();
    return;
  }
  clearError("sample-error");
  let body;
  try {
    body = sampleRequest();
  } catch (err) {
    showError("sample-error", err.message);
    return;
  }
  const controller = new AbortController();
  state.sampleAbort = controller;
  setSampling(true);
  $("sample-command").textContent = "";
  $("copy-command").disabled = true;
  const cards = [];
  let done = false;
  let failed = false;
  try {
    const response = await request("/api/sample", body, controller.signal);
    for (let i = 0; i < body.num_samples; i++) cards.push(sampleCard(i, body.prime.length));
    $("samples").replaceChildren(...cards.map((c) => c.card));
    await readRecords(response, (record) => {
      if (record.error !== undefined) {
        failed = true;
        showError("sample-error", record.error);
      } else if (record.done) {
        done = true;
        record.samples.forEach((s, i) => cards[i] && cards[i].finish(s.logprob));
        $("sample-command").textContent = record.command;
        $("copy-command").disabled = false;
      } else if (cards[record.sample]) {
        cards[record.sample].append(record.text);
      }
    });
    if (!done && !failed) showError("sample-error", "the sample stream ended before the samples were finished");
  } catch (err) {
    if (err.name === "AbortError") showError("sample-error", "Stopped: the samples above are unfinished.");
    else showError("sample-error", err.message);
  } finally {
    state.sampleAbort = null;
    setSampling(false);
  }
}

async function copyCommand() {
  const code = $("sample-command");
  const button = $("copy-command");
  try {
    await navigator.clipboard.writeText(code.textContent);
    button.textContent = "Copied";
  } catch (err) {
    // No clipboard (permission refused, or an old browser): select the command for Ctrl+C instead.
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = document.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Selected: press Ctrl+C";
  }
  setTimeout(() => { button.textContent = "Copy command"; }, 2000);
}

// ----------------------------------------------------------------------------------------- surprisal

async function showSurprisal() {
  const result = await latest("surprisal", "surprisal-error",
    () => fetchJSON("/api/surprisal", { run: state.run, text: $("surprisal-text").value }),
    { button: "surprisal-button" });
  if (result) renderSurprisal(result);
}

function tokenSpan(text, index) {
  const span = el("span", { className: text.includes("\n") ? "tok newline" : "tok", textContent: text });
  span.dataset.index = String(index);
  return span;
}

function renderSurprisal(result) {
  state.surprisal = result;
  const spans = result.tokens.map((token, i) => {
    const span = tokenSpan(token.text, i);
    span.dataset.bits = token.bits.toFixed(4);
    paint(span, colourAt(SURPRISAL_STOPS, token.bits / MAX_BITS));
    return span;
  });
  $("surprisal-view").replaceChildren(...spans);
  summariseSurprisal();
}

async function useValidationText() {
  clearError("surprisal-error");
  try {
    const { text } = await fetchJSON(`/api/validation-text?run=${state.run}`);
    $("surprisal-text").value = text;
    await showSurprisal();
  } catch (err) {
    showError("surprisal-error", err.message);
  }
}

// The token spans of the view that the range covers at least one character of.
function selectedSpans(range, view) {
  if (!range.intersectsNode(view)) return [];
  const endOf = (node) => (node.nodeType === Node.TEXT_NODE ? node.length : node.childNodes.length);
  return [...view.children].filter((span) => range.intersectsNode(span)
    && !(span.contains(range.endContainer) && range.endOffset === 0)
    && !(span.contains(range.startContainer) && range.startOffset === endOf(range.startContainer)));
}

function summariseSurprisal() {
  const result = state.surprisal;
  const summary = $("surprisal-summary");
  if (!result) {
    summary.replaceChildren();
    return;
  }
  const whole = el("span", { className: "whole" }, [
    el("strong", { textContent: `${result.bits_per_char.toFixed(3)} bits/char` }),
    ` over the whole text (${result.chars.toLocaleString("en")} characters)`]);
  const parts = [whole];
  const selection = document.getSelection();
  if (selection.rangeCount && !selection.isCollapsed) {
    const spans = selectedSpans(selection.getRangeAt(0), $("surprisal-view"));
    const tokens = spans.map((span) => result.tokens[Number(span.dataset.index)]);
    const chars = tokens.reduce((n, t) => n + t.text.length, 0);
    if (chars > 0) {
      const bits = tokens.reduce((n, t) => n + t.bits, 0);
      parts.push(el("span", { className: "selection" }, [
        el("strong", { textContent: `${(bits / chars).toFixed(3)} bits/char` }),
        ` over the selection (${chars.toLocaleString("en")} characters)`]));
    }
  }
  summary.replaceChildren(...parts);
}

// selectionchange fires for every caret move: summarise at most once per frame.
let selectionFrame = 0;
function onSelectionChange() {
  if (selectionFrame) return;
  selectionFrame = requestAnimationFrame(() => {
    selectionFrame = 0;
    summariseSurprisal();
  });
}

// ----------------------------------------------------------------------------------------- units

function setUnitControls(units) {
  const layer = $("layer");
  const kind = $("kind");
  const unit = $("unit");
  const keptLayer = Math.min(Number(layer.value) || 0, units.layers - 1);
  const keptKind = units.kinds.includes(kind.value) ? kind.value : units.kinds[0];
  layer.replaceChildren(...Array.from({ length: units.layers }, (_, i) => el("option", {
    value: String(i), textContent: String(i) })));
  kind.replaceChildren(...units.kinds.map((k) => el("option", { value: k, textContent: KIND_LABELS[k] || k })));
  layer.value = String(keptLayer);
  kind.value = keptKind;
  unit.max = String(units.hidden - 1);
  if (Number(unit.value) > units.hidden - 1) unit.value = String(units.hidden - 1);
  $("unit-count").textContent = `of 0–${units.hidden - 1}`;
}

function openUnits() {
  if (!state.unitsTextEdited) $("units-text").value = $("surprisal-text").value;
  if (!state.units || !state.unitsTextEdited) requestUnits();
}

function unitRequest() {
  const hidden = state.model ? state.model.units.hidden : Infinity;
  const unit = numberField("unit", "unit", { integer: true });
  if (unit < 0 || unit >= hidden) throw new Error(`unit must lie in 0..${hidden - 1}`);
  return {
    run: state.run, text: $("units-text").value, layer: Number($("layer").value), unit, kind: $("kind").value,
  };
}

async function requestUnits() {
  const result = await latest("units", "units-error", async (current) => {
    await state.modelLoading; // the layer, kind and unit controls come from the model
    return current() ? fetchJSON("/api/units", unitRequest()) : undefined;
  });
  if (result) renderUnits(result);
}

function renderUnits(result) {
  state.units = result;
  const range = result.high - result.low || 1;
  const spans = result.tokens.map((text, i) => {
    const span = tokenSpan(text, i);
    span.dataset.value = result.values[i].toFixed(4);
    paint(span, colourAt(DIVERGING_STOPS, (result.values[i] - result.low) / range));
    return span;
  });
  $("units-view").replaceChildren(...spans);
  const digits = Math.abs(result.high) >= 10 ? 1 : 2;
  drawLegend($("units-legend"), DIVERGING_STOPS, [[0, result.low.toFixed(digits)],
    [-result.low / range, "0"], [1, result.high.toFixed(digits)]]);
  markFoundUnit();
}

function stepUnit(delta) {
  const hidden = state.model ? state.model.units.hidden : 1;
  const current = Number($("unit").value) || 0;
  $("unit").value = String((((current + delta) % hidden) + hidden) % hidden); // wraps around
  requestUnits();
}

let unitsTextTimer = 0;
function onUnitsTextInput() {
  state.unitsTextEdited = true;
  clearTimeout(unitsTextTimer);
  unitsTextTimer = setTimeout(requestUnits, UNITS_TEXT_DELAY_MS);
}

async function findUnits(event) {
  event.preventDefault();
  const clearFound = () => {
    $("found-units").replaceChildren();
    $("found-summary").textContent = "";
  };
  if (!$("pattern").value) { // nothing to search for: say so here rather than ask the server
    dropAnswers("find"); // and an answer still on its way to an earlier search is no longer wanted
    clearError("units-error");
    clearFound();
    $("found-summary").textContent = "Type a regular expression first, e.g. \"[^\"]*\" for the quoted parts "
      + "of the text.";
    return;
  }
  const result = await latest("find", "units-error", () => fetchJSON("/api/find-units", {
    run: state.run, text: $("units-text").value, pattern: $("pattern").value, kind: $("kind").value, top: 10,
  }), { button: "find-units-button", onError: clearFound });
  if (result) renderFoundUnits(result);
}

function renderFoundUnits(result) {
  $("found-summary").textContent = `The pattern covers ${result.matched.toLocaleString("en")} of `
    + `${result.total.toLocaleString("en")} ${tokenWord()}. The units that best tell them apart:`;
  const buttons = result.units.map((found) => {
    const button = el("button", { type: "button", className: "found-unit" }, [
      el("span", { className: "found-name", textContent: `layer ${found.layer} · unit ${found.unit}` }),
      el("span", { className: "found-kind", textContent: KIND_LABELS[found.kind] || found.kind }),
      el("span", { textContent: `score ${found.score.toFixed(2)}` }),
      el("span", { textContent: `AUC ${found.auc.toFixed(2)}` }),
      el("span", { className: "muted", textContent: `mean ${found.mean_in.toFixed(2)} inside, `
        + `${found.mean_out.toFixed(2)} outside` }),
    ]);
    Object.assign(button.dataset, { layer: found.layer, unit: found.unit, kind: found.kind });
    return button;
  });
  $("found-units").replaceChildren(...buttons);
  markFoundUnit();
}

function selectFoundUnit(event) {
  const button = event.target.closest("button.found-unit");
  if (!button) return;
  $("layer").value = button.dataset.layer;
  $("kind").value = button.dataset.kind;
  $("unit").value = button.dataset.unit;
  requestUnits();
}

// The found unit whose colours are shown is marked.
function markFoundUnit() {
  const [layer, unit, kind] = [$("layer").value, $("unit").value, $("kind").value];
  for (const button of $("found-units").children) {
    const { dataset } = button;
    button.classList.toggle("active", dataset.layer === layer && dataset.unit === unit && dataset.kind === kind);
  }
}

// ----------------------------------------------------------------------------------------- start

function onTokenHover(event) {
  const span = event.target.closest("span.tok");
  if (!span) return;
  const index = Number(span.dataset.index);
  if (event.currentTarget.id === "surprisal-view" && state.surprisal) {
    showTooltip(span, surprisalTip(state.surprisal.tokens[index]));
  } else if (event.currentTarget.id === "units-view" && state.units) {
    showTooltip(span, unitTip(state.units.tokens[index], state.units.values[index]));
  }
}

function wire() {
  window.addEventListener("hashchange", showSection);
  $("run").addEventListener("change", changeRun);
  $("sample-form").addEventListener("submit", drawSamples);
  $("copy-command").addEventListener("click", copyCommand);
  $("surprisal-button").addEventListener("click", showSurprisal);
  $("use-validation").addEventListener("click", useValidationText);
  $("surprisal-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) showSurprisal();
  });
  document.addEventListener("selectionchange", onSelectionChange);
  for (const id of ["surprisal-view", "units-view"]) {
    $(id).addEventListener("mouseover", onTokenHover);
    $(id).addEventListener("mouseleave", hideTooltip);
  }
  window.addEventListener("scroll", hideTooltip, { passive: true });
  $("units-text").addEventListener("input", onUnitsTextInput);
  for (const id of ["layer", "kind"]) $(id).addEventListener("change", requestUnits);
  $("unit").addEventListener("input", requestUnits);
  $("unit-prev").addEventListener("click", () => stepUnit(-1));
  $("unit-next").addEventListener("click", () => stepUnit(1));
  $("find-form").addEventListener("submit", findUnits);
  $("found-units").addEventListener("click", selectFoundUnit);
  $("x-axis").addEventListener("change", drawCurves);
  wireTaskViews();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") stopCurves();
    else if (currentSection() === "curves") startCurves();
  });
}

// The page opens on the first view of the first run's model, so the model is loaded before a section shows.
async function start() {
  wire();
  drawLegend($("surprisal-legend"), SURPRISAL_STOPS, [0, 2, 4, 6, 8, 10].map(
    (bits) => [bits / MAX_BITS, bits === 0 ? "0 bits" : bits === MAX_BITS ? `≥${bits}` : String(bits)]));
  try {
    await loadRuns();
  } catch (err) {
    showError("page-error", `cannot list the runs: ${err.message}`);
  }
  await loadModel();
  showSection();
}

// curves.js, task-views.js and translate.js load after this file: start once all have.
document.addEventListener("DOMContentLoaded", start);
