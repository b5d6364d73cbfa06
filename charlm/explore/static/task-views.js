// charlm explore: the views of taggers and classifiers. Tag: each character's (or token's) label, coloured by
// label and shaded by its probability. Classify: each text's label distribution as bars, and the encoder's
// hidden states over a text as a heatmap. Evaluate: a labelled file's figures, as `charlm evaluate` gives
// them. The API is in charlm/explore/api.py and charlm/explore/task_views.py; uses the helpers of explore.js.
"use strict";

// One colour per label that marks something (a head's "nothing" label stays white), across all heads.
const LABEL_COLOURS = ["#2f5bd3", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
  "#bcbd22", "#7f7f7f"];
// Confusion matrices wider than this many labels are left out (the most confused pairs are listed instead).
const MATRIX_LABELS = 25;
// Heatmap cells: widths in pixels between these, so a short text is readable and a long one still fits.
const STATE_CELL = { minWidth: 3, maxWidth: 28, minHeight: 2, maxHeight: 12, plotHeight: 420 };
// What each kind of labelled file holds, for the Evaluate view's hint.
const EVALUATE_FORMS = {
  tag: "a CoNLL-style file: a token and its label per line (tab-separated), a blank line after each sentence",
  classify: "one example per line: label<TAB>text, or fastText's __label__name text",
  text: "plain text, one document per line: its own case and marks are the labels",
};

// ----------------------------------------------------------------------------------------- tag

function openTag() {
  if (!state.tag) tagText();
}

async function tagText() {
  const result = await latest("tag", "tag-error",
    () => fetchJSON("/api/tag", { run: state.run, text: $("tag-text").value }), { button: "tag-button" });
  if (result) renderTags(result);
}

// head name -> label -> colour (null for the head's "nothing" label).
function labelColours(heads) {
  let next = 0;
  return Object.fromEntries(heads.map((head) => [head.name, Object.fromEntries(head.labels.map((label) => [
    label, label === head.null ? null : LABEL_COLOURS[next++ % LABEL_COLOURS.length]]))]));
}

// The label a piece is coloured by: the first head whose most likely label marks something, else the first
// head's. -> [head, label, probability] or null for a piece no head labels.
function shownLabel(piece, heads) {
  const labelled = heads.filter((head) => piece.labels[head.name]);
  if (!labelled.length) return null;
  const marking = labelled.find((head) => piece.labels[head.name][0][0] !== head.null) || labelled[0];
  const [label, p] = piece.labels[marking.name][0];
  return [marking.name, label, p];
}

function renderTags(result) {
  state.tag = result;
  const colours = labelColours(result.heads);
  const legendItems = result.heads.flatMap((head) => head.labels.filter((label) => colours[head.name][label])
    .map((label) => {
      const swatch = el("span", { className: "swatch" });
      swatch.style.backgroundColor = colours[head.name][label];
      return el("span", { className: "label-key" }, [swatch,
        result.heads.length > 1 ? `${head.name}: ${visibleText(label)}` : visibleText(label)]);
    }));
  $("tag-legend").replaceChildren(...legendItems,
    el("span", { className: "muted", textContent: "paler: less sure; white: nothing to mark" }));
  const docs = result.docs.map((doc, d) => {
    const spans = doc.pieces.map((piece, i) => {
      const span = tokenSpan(piece.text, i);
      span.dataset.doc = String(d);
      const shown = shownLabel(piece, result.heads);
      if (shown) {
        const [head, label, p] = shown;
        Object.assign(span.dataset, { head, label, probability: p.toFixed(4) });
        const colour = colours[head][label];
        if (colour) paint(span, colourAt(["#ffffff", colour], p));
      }
      return span;
    });
    return el("article", { className: "tag-doc" }, [
      el("div", { className: "tag-output", textContent: doc.output }),
      el("div", { className: "token-view tag-view" }, spans),
    ]);
  });
  $("tag-results").replaceChildren(...docs);
  $("tag-summary").textContent = `${result.task}: ${result.docs.length} line(s), one label per ${result.unit}; `
    + "hover for the probabilities";
}

function tagTip(piece, heads) {
  const rows = [el("div", { className: "tip-head" }, [
    el("span", { className: "tip-token", textContent: visibleText(piece.text) })])];
  for (const head of heads) {
    const top = piece.labels[head.name];
    if (!top) continue;
    rows.push(el("div", { className: "tip-label", textContent: head.name }));
    for (const [label, p] of top) rows.push(probabilityRow(label, p, label === top[0][0]));
  }
  return rows;
}

function probabilityRow(label, p, chosen) {
  const bar = el("span", { className: "guess-bar" }, [el("span")]);
  bar.firstChild.style.width = `${(p * 100).toFixed(1)}%`;
  return el("div", { className: chosen ? "guess actual" : "guess" }, [
    el("span", { className: "guess-text", textContent: visibleText(label) }), bar,
    el("span", { className: "guess-prob", textContent: percent(p) })]);
}

function onTagHover(event) {
  const span = event.target.closest("span.tok");
  if (!span || !state.tag) return;
  const piece = state.tag.docs[Number(span.dataset.doc)].pieces[Number(span.dataset.index)];
  if (Object.keys(piece.labels).length) showTooltip(span, tagTip(piece, state.tag.heads));
}

// ----------------------------------------------------------------------------------------- classify

function openClassify() {
  if (!state.classified) classifyTexts();
}

async function classifyTexts() {
  const result = await latest("classify", "classify-error",
    () => fetchJSON("/api/classify", { run: state.run, text: $("classify-text").value }),
    { button: "classify-button" });
  if (!result) return;
  renderClassified(result);
  selectClassified(0);
}

function renderClassified(result) {
  state.classified = result;
  const cards = result.texts.map((found, i) => {
    const rows = found.top.map(([label, p]) => {
      const bar = el("span", { className: "label-bar" }, [el("span")]);
      bar.firstChild.style.width = `${(p * 100).toFixed(1)}%`;
      const row = el("div", { className: label === found.label ? "label-row chosen" : "label-row" }, [
        el("span", { className: "label-name", textContent: label }), bar,
        el("span", { className: "label-prob", textContent: percent(p) })]);
      row.dataset.probability = p.toFixed(6);
      return row;
    });
    const card = el("button", { type: "button", className: "class-card" }, [
      el("span", { className: "class-text", textContent: found.text }), ...rows]);
    Object.assign(card.dataset, { index: String(i), label: found.label });
    return card;
  });
  $("classify-results").replaceChildren(...cards);
}

function onClassifiedClick(event) {
  const card = event.target.closest("button.class-card");
  if (card) selectClassified(Number(card.dataset.index));
}

// The text whose hidden states the heatmap shows.
function selectClassified(index) {
  const texts = state.classified ? state.classified.texts : [];
  if (!texts[index]) return;
  state.statesText = texts[index].text;
  for (const card of $("classify-results").children) {
    card.classList.toggle("active", card.dataset.index === String(index));
  }
  requestStates();
}

function setStatesControls(units) {
  const layer = $("states-layer");
  const kept = Math.min(Number(layer.value) || 0, units.layers - 1);
  layer.replaceChildren(...Array.from({ length: units.layers }, (_, i) => el("option", {
    value: String(i), textContent: String(i) })));
  layer.value = String(kept);
}

async function requestStates() {
  if (!state.statesText) return;
  const result = await latest("states", "states-error", () => fetchJSON("/api/states", {
    run: state.run, text: state.statesText, layer: Number($("states-layer").value) }));
  if (result) drawStates(result);
}

// Rows: units (the forward direction's, then the reverse's); columns: characters.
function drawStates(result) {
  state.states = result;
  const n = result.chars.length;
  const rows = result.units.length;
  const available = Math.max($("states-box").clientWidth - 48, 200);
  const width = Math.min(Math.max(Math.floor(available / n), STATE_CELL.minWidth), STATE_CELL.maxWidth);
  const height = Math.min(Math.max(Math.floor(STATE_CELL.plotHeight / rows), STATE_CELL.minHeight),
    STATE_CELL.maxHeight);
  const geometry = { left: 40, top: width >= 8 ? 20 : 4, width, height };
  state.statesGeometry = geometry;
  const canvas = $("states-canvas");
  canvas.width = geometry.left + n * width;
  canvas.height = geometry.top + rows * height;
  Object.assign(canvas.dataset, { chars: String(n), units: String(rows), layer: String(result.layer) });
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const range = result.high - result.low || 1;
  result.values.forEach((column, t) => column.forEach((value, u) => {
    ctx.fillStyle = cssColour(colourAt(DIVERGING_STOPS, (value - result.low) / range));
    ctx.fillRect(geometry.left + t * width, geometry.top + u * height, width, height);
  }));
  ctx.fillStyle = "#5d6677";
  ctx.font = "11px ui-monospace, monospace";
  ctx.textAlign = "center";
  if (width >= 8) {
    result.chars.forEach((c, t) => ctx.fillText(visibleText(c), geometry.left + (t + 0.5) * width, 13));
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const every = Math.ceil(12 / height); // a unit's name every few rows, where they fit
  result.units.forEach((name, u) => {
    if (u % every === 0) ctx.fillText(name, geometry.left - 4, geometry.top + (u + 0.5) * height);
  });
  const digits = Math.abs(result.high) >= 10 ? 1 : 2;
  drawLegend($("states-legend"), DIVERGING_STOPS, [[0, result.low.toFixed(digits)], [0.5, "0"],
    [1, result.high.toFixed(digits)]]);
  const cut = result.cut ? ` (the first ${n.toLocaleString("en")}; ${result.cut.toLocaleString("en")} left out)` : "";
  $("states-summary").textContent = `Layer ${result.layer}: ${rows} units (rows; f: forward, r: reverse) after `
    + `each of ${n.toLocaleString("en")} characters (columns)${cut}.`;
}

function onStatesHover(event) {
  const result = state.states;
  const geometry = state.statesGeometry;
  if (!result) return;
  const canvas = event.currentTarget;
  const box = canvas.getBoundingClientRect();
  const t = Math.floor((event.clientX - box.left - geometry.left) / geometry.width);
  const u = Math.floor((event.clientY - box.top - geometry.top) / geometry.height);
  if (t < 0 || u < 0 || t >= result.chars.length || u >= result.units.length) {
    hideTooltip();
    return;
  }
  const cell = new DOMRect(box.left + geometry.left + t * geometry.width, box.top + geometry.top + u * geometry.height,
    geometry.width, geometry.height);
  showTooltip({ getBoundingClientRect: () => cell }, [el("div", { className: "tip-head" }, [
    el("span", { className: "tip-token", textContent: visibleText(result.chars[t]) }),
    el("span", { textContent: `unit ${result.units[u]} · ${result.values[t][u].toFixed(3)}` })])]);
}

// ----------------------------------------------------------------------------------------- evaluate

function openEvaluate() {
  const task = state.model && state.model.task ? state.model.task.task : "";
  const form = task === "tag" || task === "classify" ? task : "text";
  $("evaluate-form-hint").textContent = `The file: ${EVALUATE_FORMS[form]}.`;
}

async function evaluateFile(event) {
  event.preventDefault();
  const file = $("evaluate-file").files[0];
  clearError("evaluate-error");
  if (!file) {
    $("evaluate-summary").textContent = "Choose a labelled file first.";
    return;
  }
  $("evaluate-summary").textContent = `Evaluating ${file.name}…`;
  $("evaluate-tables").replaceChildren();
  const result = await latest("evaluate", "evaluate-error",
    async () => fetchJSON("/api/evaluate", { run: state.run, text: await file.text(), name: file.name }),
    { button: "evaluate-button", onError: () => { $("evaluate-summary").textContent = ""; } });
  if (result) renderEvaluation(result);
}

function figure(value) {
  return value.toFixed(4);
}

// A table of per-label figures: [name, {precision, recall, f1, support}] rows; `bold` rows are averages.
function scoreTable(caption, rows) {
  const head = el("tr", {}, ["label", "precision", "recall", "F1", "support"].map(
    (name) => el("th", { textContent: name, scope: "col" })));
  const body = rows.map(([name, s, bold]) => {
    const support = s.support === undefined ? "" : s.support.toLocaleString("en");
    const cells = [figure(s.precision), figure(s.recall), figure(s.f1), support];
    return el("tr", { className: bold ? "average" : "" }, [el("th", { textContent: visibleText(name), scope: "row" }),
      ...cells.map((text) => el("td", { textContent: text }))]);
  });
  return el("table", { className: "scores" }, [el("caption", { textContent: caption }), el("thead", {}, [head]),
    el("tbody", {}, body)]);
}

function renderEvaluation(result) {
  const tables = [];
  if (result.kind === "classifier") {
    $("evaluate-summary").textContent = `${result.file}: accuracy ${figure(result.accuracy)}, macro-F1 `
      + `${figure(result.macro_f1)}, loss ${figure(result.loss)} nats per text`;
    tables.push(scoreTable("labels", Object.entries(result.labels)));
    const { labels, matrix } = result.confusion;
    if (labels.length <= MATRIX_LABELS) tables.push(confusionTable(labels, matrix));
    const pairs = result.most_confused.slice(0, 10).map(([gold, guess, count]) => el("tr", {}, [
      el("td", { textContent: gold }), el("td", { textContent: guess }),
      el("td", { textContent: count.toLocaleString("en") })]));
    tables.push(el("table", { className: "scores" }, [
      el("caption", { textContent: "most confused (true → predicted)" }), el("tbody", {}, pairs)]));
  } else {
    $("evaluate-summary").textContent = `${result.file}: ${result.task} F1 ${figure(result.f1)} (precision `
      + `${figure(result.precision)}, recall ${figure(result.recall)})`;
    for (const [name, head] of Object.entries(result.heads)) {
      const rows = [...Object.entries(head.labels), ["(micro)", head.micro, true], ["(macro)", head.macro, true]];
      if (name === "case") rows.push(["(words)", head, true]);
      tables.push(scoreTable(name, rows));
    }
  }
  $("evaluate-tables").replaceChildren(...tables);
}

function confusionTable(labels, matrix) {
  const head = el("tr", {}, [el("th"), ...labels.map((label) => el("th", { textContent: label, scope: "col" }))]);
  const body = matrix.map((row, i) => el("tr", {}, [el("th", { textContent: labels[i], scope: "row" }),
    ...row.map((count) => el("td", { textContent: count ? String(count) : "." }))]));
  return el("table", { className: "scores" }, [
    el("caption", { textContent: "confusion (rows: true, columns: predicted)" }), el("thead", {}, [head]),
    el("tbody", {}, body)]);
}

// ----------------------------------------------------------------------------------------- wiring

// The answers of the other run's model are dropped: they are read again when their view opens.
function clearTaskViews() {
  state.tag = null;
  state.classified = null;
  state.states = null;
  state.statesText = "";
  for (const id of ["tag-results", "tag-legend", "classify-results", "evaluate-tables", "states-legend"]) {
    $(id).replaceChildren();
  }
  for (const id of ["tag-summary", "evaluate-summary", "states-summary"]) $(id).textContent = "";
  const canvas = $("states-canvas");
  canvas.width = 0;
  canvas.height = 0;
}

function wireTaskViews() {
  $("tag-button").addEventListener("click", tagText);
  $("tag-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) tagText();
  });
  $("tag-results").addEventListener("mouseover", onTagHover);
  $("tag-results").addEventListener("mouseleave", hideTooltip);
  $("classify-button").addEventListener("click", classifyTexts);
  $("classify-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) classifyTexts();
  });
  $("classify-results").addEventListener("click", onClassifiedClick);
  $("states-layer").addEventListener("change", requestStates);
  $("states-canvas").addEventListener("mousemove", onStatesHover);
  $("states-canvas").addEventListener("mouseleave", hideTooltip);
  $("evaluate-form").addEventListener("submit", evaluateFile);
}
