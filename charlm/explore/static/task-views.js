// charlm explore: the views of taggers, classifiers and encoder–decoders. Tag: each character's (or token's)
// label, coloured by label and shaded by its probability. Classify: each text's label distribution as bars, and
// the encoder's hidden states over a text as a heatmap (drawHeatmap, which translate.js's attention shares).
// Evaluate: a labelled file's figures, as `charlm evaluate` gives them. The API is in charlm/explore/api.py and
// charlm/explore/task_views.py; uses the helpers of explore.js, and the Translate view of translate.js.
"use strict";

// One colour per label that marks something (a head's "nothing" label stays white), across all heads.
const LABEL_COLOURS = ["#2f5bd3", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
  "#bcbd22", "#7f7f7f"];
// Confusion matrices wider than this many labels are left out (the most confused pairs are listed instead).
const MATRIX_LABELS = 25;
// Heatmap cells: widths in pixels between these, so a short text is readable and a long one still fits.
const STATE_CELL = { minWidth: 3, maxWidth: 28, minHeight: 2, maxHeight: 12, plotHeight: 420 };
// A heatmap's column and row names: narrower cells than this leave the columns unnamed.
const HEATMAP_FONT = "11px ui-monospace, monospace";
const NAMED_COLUMN_WIDTH = 8;
// What each kind of labelled file holds, for the Evaluate view's hint.
const EVALUATE_FORMS = {
  tag: "a CoNLL-style file: a token and its label per line (tab-separated), a blank line after each sentence",
  classify: "one example per line: label<TAB>text, or fastText's __label__name text",
  translate: "one pair per line: source<TAB>target (a source on several lines has each target as a reference)",
  text: "plain text, one document per line: its own case and marks are the labels",
};

// ----------------------------------------------------------------------------------------- tag

// A view reads its default text when it first opens, unless that reading is already on its way (the run's
// change opened the view and the user clicked its tab before the answer came).
function openTag() {
  if (!state.tag && !askingFor("tag")) tagText();
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
  if (!state.classified && !askingFor("classify")) classifyTexts();
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
      explainedText(found, result.spaced), ...rows]);
    Object.assign(card.dataset, { index: String(i), label: found.label });
    return card;
  });
  $("classify-results").replaceChildren(...cards);
}

// The text with each token shaded by its effect on the chosen label (green for it, red against, stronger for
// more), the effect in its title: what `charlm classify --explain` colours in the terminal.
function explainedText(found, spaced) {
  const tokens = found.tokens.filter(([token]) => !spaced || token.trim());
  const largest = Math.max(...tokens.map(([, effect]) => Math.abs(effect)), 1e-9);
  const spans = [];
  tokens.forEach(([token, effect], i) => {
    if (spaced && i) spans.push(document.createTextNode(" "));
    const span = el("span", { className: effect > 0 ? "effect for" : "effect against", textContent: token,
      title: `${visibleText(token)}: ${effect >= 0 ? "+" : ""}${(effect * 100).toFixed(1)} points for ${found.label}` });
    span.style.setProperty("--strength", (Math.abs(effect) / largest).toFixed(3));
    span.dataset.effect = effect.toFixed(6);
    spans.push(span);
  });
  return el("span", { className: "class-text" }, spans);
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

// ----------------------------------------------------------------------------------------- heatmaps

// A heatmap on `canvas`, sized to fit: one `cell` ({width, height} in pixels) per column and row, filled with
// `colour(c, r)` (rgb); the columns' names across the top (upright when one is wider than a cell, none when
// cells are narrower than NAMED_COLUMN_WIDTH), the rows' down the left (every few rows when rows are low).
// -> the geometry {left, top, width, height} that heatmapCell reads the pointer's cell by.
function drawHeatmap(canvas, columns, rows, colour, cell) {
  const ctx = canvas.getContext("2d");
  ctx.font = HEATMAP_FONT;
  const widest = (names) => Math.ceil(Math.max(0, ...names.map((name) => ctx.measureText(name).width)));
  const across = cell.width >= NAMED_COLUMN_WIDTH ? widest(columns) : 0;
  const upright = across > cell.width - 1;
  const geometry = { left: widest(rows) + 10, top: !across ? 4 : upright ? across + 8 : 20, ...cell };
  canvas.width = geometry.left + columns.length * cell.width;
  canvas.height = geometry.top + rows.length * cell.height;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  rows.forEach((_, r) => columns.forEach((__, c) => {
    ctx.fillStyle = cssColour(colour(c, r));
    ctx.fillRect(geometry.left + c * cell.width, geometry.top + r * cell.height, cell.width, cell.height);
  }));
  ctx.font = HEATMAP_FONT; // resizing the canvas reset it
  ctx.fillStyle = "#5d6677";
  if (across) {
    columns.forEach((name, c) => {
      const x = geometry.left + (c + 0.5) * cell.width;
      ctx.save();
      ctx.translate(x, upright ? geometry.top - 4 : 13);
      if (upright) ctx.rotate(-Math.PI / 2);
      ctx.textAlign = upright ? "left" : "center";
      ctx.textBaseline = upright ? "middle" : "alphabetic";
      ctx.fillText(name, 0, 0);
      ctx.restore();
    });
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const every = Math.ceil(12 / cell.height); // a row's name every few rows, where they fit
  rows.forEach((name, r) => {
    if (r % every === 0) ctx.fillText(name, geometry.left - 4, geometry.top + (r + 0.5) * cell.height);
  });
  return geometry;
}

// The cell of a heatmap (drawn with `geometry`, `columns` x `rows` cells) under the pointer of a mouse event
// on its canvas: {column, row, anchor (the cell's box, for showTooltip)}, or null off the cells.
function heatmapCell(event, geometry, columns, rows) {
  const box = event.currentTarget.getBoundingClientRect();
  const column = Math.floor((event.clientX - box.left - geometry.left) / geometry.width);
  const row = Math.floor((event.clientY - box.top - geometry.top) / geometry.height);
  if (column < 0 || row < 0 || column >= columns || row >= rows) return null;
  const rect = new DOMRect(box.left + geometry.left + column * geometry.width,
    box.top + geometry.top + row * geometry.height, geometry.width, geometry.height);
  return { column, row, anchor: { getBoundingClientRect: () => rect } };
}

// Hidden states. Rows: units (the forward direction's, then the reverse's); columns: characters.
function drawStates(result) {
  state.states = result;
  const n = result.chars.length;
  const rows = result.units.length;
  const available = Math.max($("states-box").clientWidth - 48, 200);
  const width = Math.min(Math.max(Math.floor(available / n), STATE_CELL.minWidth), STATE_CELL.maxWidth);
  const height = Math.min(Math.max(Math.floor(STATE_CELL.plotHeight / rows), STATE_CELL.minHeight),
    STATE_CELL.maxHeight);
  const canvas = $("states-canvas");
  const range = result.high - result.low || 1;
  state.statesGeometry = drawHeatmap(canvas, result.chars.map(visibleText), result.units,
    (t, u) => colourAt(DIVERGING_STOPS, (result.values[t][u] - result.low) / range), { width, height });
  Object.assign(canvas.dataset, { chars: String(n), units: String(rows), layer: String(result.layer) });
  const digits = Math.abs(result.high) >= 10 ? 1 : 2;
  drawLegend($("states-legend"), DIVERGING_STOPS, [[0, result.low.toFixed(digits)], [0.5, "0"],
    [1, result.high.toFixed(digits)]]);
  const cut = result.cut ? ` (the first ${n.toLocaleString("en")}; ${result.cut.toLocaleString("en")} left out)` : "";
  $("states-summary").textContent = `Layer ${result.layer}: ${rows} units (rows; f: forward, r: reverse) after `
    + `each of ${n.toLocaleString("en")} characters (columns)${cut}.`;
}

function onStatesHover(event) {
  const result = state.states;
  const cell = result && heatmapCell(event, state.statesGeometry, result.chars.length, result.units.length);
  if (!cell) {
    hideTooltip();
    return;
  }
  const { column: t, row: u } = cell;
  showTooltip(cell.anchor, [el("div", { className: "tip-head" }, [
    el("span", { className: "tip-token", textContent: visibleText(result.chars[t]) }),
    el("span", { textContent: `unit ${result.units[u]} · ${result.values[t][u].toFixed(3)}` })])]);
}

// ----------------------------------------------------------------------------------------- evaluate

function openEvaluate() {
  const task = state.model && state.model.task ? state.model.task.task : "";
  const form = ["tag", "classify", "translate"].includes(task) ? task : "text";
  $("evaluate-form-hint").textContent = `The file: ${EVALUATE_FORMS[form]}.`;
  $("evaluate-beam-field").hidden = form !== "translate";
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
    async () => fetchJSON("/api/evaluate", { run: state.run, text: await file.text(), name: file.name,
      beam: $("evaluate-beam-field").hidden ? undefined : Number($("evaluate-beam").value) }),
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
  if (result.kind === "seq2seq") {
    $("evaluate-summary").textContent = `${result.file}: exact match ${figure(result.exact_match)}, BLEU `
      + `${result.bleu.toFixed(2)}, chrF ${result.chrf.toFixed(2)} (beam ${result.beam})`;
    tables.push(translationTable(result));
  } else if (result.kind === "classifier") {
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

// An encoder–decoder's figures against every reference of each source, as `charlm evaluate` prints them.
function translationTable(result) {
  const rows = [
    ["exact match", figure(result.exact_match)],
    ["WER (sources matching no reference)", figure(result.wer)],
    ["TER (token edits per reference token)", figure(result.ter)],
    ["BLEU", result.bleu.toFixed(2)],
    ["chrF", result.chrf.toFixed(2)],
    ["loss (nats per target token)", figure(result.nats_per_token)],
    ["sources", result.n.toLocaleString("en")],
    ["pairs", result.pairs.toLocaleString("en")],
    ["outputs cut at the length cap", result.capped.toLocaleString("en")],
  ];
  return el("table", { className: "scores translation-figures" }, [
    el("caption", { textContent: `translations (beam ${result.beam})` }),
    el("tbody", {}, rows.map(([name, value]) => el("tr", {}, [
      el("th", { textContent: name, scope: "row" }), el("td", { textContent: value })])))]);
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

// Opens a view of taggers, classifiers or encoder–decoders (each reads what it shows when it first opens).
function openTaskView(name) {
  const open = { tag: openTag, classify: openClassify, evaluate: openEvaluate, translate: openTranslate }[name];
  if (open) open();
}

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
  clearTranslate();
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
  wireTranslate();
}
