// charlm explore: the Translate view of encoder–decoders. Each line of a text is a source: its n best outputs
// (the best first) with their log-probabilities and per-token scores, as `charlm translate --beam B --nbest N`
// writes them, and the attention the decoder gave each source token (columns) while writing each token of the
// best output and its <EOS> (rows), as a heatmap. The API is POST /api/translate (charlm/explore/api.py and
// translate_view in charlm/explore/task_views.py); uses the helpers of explore.js and drawHeatmap of
// task-views.js.
"use strict";

// White to dark blue (ColorBrewer Blues): an attention weight from 0 to 1.
const ATTENTION_STOPS = ["#ffffff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c",
  "#08306b"];
// Attention cells are square, their sides in pixels between these: a short source readable, a long one fitting.
const ATTENTION_CELL = { min: 6, max: 26 };

tickets.translate = 0;
state.translated = null; // the last POST /api/translate answer shown
state.attentionGeometry = []; // per source, the geometry its heatmap was drawn with

function openTranslate() {
  if (!state.translated && !askingFor("translate") && $("translate-text").value.trim()) translateTexts();
}

async function translateTexts() {
  let body;
  try {
    body = { run: state.run, text: $("translate-text").value, beam: numberField("beam", "beam", { integer: true }),
      nbest: numberField("nbest", "n-best", { integer: true }) };
  } catch (err) {
    dropAnswers("translate"); // an answer still on its way to an earlier request is no longer wanted
    showError("translate-error", err.message);
    return;
  }
  const result = await latest("translate", "translate-error", () => fetchJSON("/api/translate", body),
    { button: "translate-button" });
  if (result) renderTranslations(result);
}

// A source's outputs, best first: the text (∅ when empty), log p and the score per token beam search ranks by.
function outputList(record) {
  const items = record.nbest.map((output, i) => {
    const text = el("span", { className: output.output ? "translation-text" : "translation-text empty",
      textContent: output.output || "∅" });
    const scores = el("span", { className: "translation-scores",
      textContent: `log p ${output.logprob.toFixed(2)} nats · ${output.score.toFixed(3)} per token`
        + (output.capped ? " · cut at the length cap" : "") });
    const item = el("li", { className: i === 0 ? "translation-output best" : "translation-output" }, [text, scores]);
    Object.assign(item.dataset, { logprob: String(output.logprob), score: String(output.score) });
    return item;
  });
  return el("ol", { className: "translation-outputs" }, items);
}

function renderTranslations(result) {
  state.translated = result;
  state.attentionGeometry = [];
  const withAttention = result.attention !== "none";
  const cards = result.texts.map((record, i) => {
    const parts = [el("div", { className: "translation-source", textContent: record.source }), outputList(record)];
    if (withAttention) {
      const canvas = el("canvas", { className: "attention", width: 0, height: 0 });
      canvas.setAttribute("aria-label", `Attention over "${record.source}"`);
      Object.assign(canvas.dataset, { index: String(i), rows: String(record.output_tokens.length),
        columns: String(record.source_tokens.length) });
      parts.push(el("div", { className: "attention-box" }, [canvas]));
    }
    return el("article", { className: "translation" }, parts);
  });
  $("translate-results").replaceChildren(...cards);
  if (withAttention) {
    result.texts.forEach((record, i) => drawAttention(record, $("translate-results").children[i]
      .querySelector("canvas.attention"), i));
  }
  $("translate-legend").hidden = !withAttention;
  const shown = `${result.texts.length} source(s), beam ${result.beam}, the ${result.nbest} best output(s) of each`;
  $("translate-summary").textContent = withAttention
    ? `${shown}; below each, the attention while writing its best output: source tokens across, the output's `
      + "tokens and <EOS> down. Hover a cell for its weight."
    : `${shown}. This model has no attention (trained with --attention none): there are no weights to show.`;
  if (result.note) $("translate-summary").textContent += ` ${result.note}.`;
}

// Rows: the best output's tokens and <EOS>; columns: the source's tokens; a cell's shade is its weight.
function drawAttention(record, canvas, index) {
  const available = Math.max($("translate-results").clientWidth - 120, 120);
  const side = Math.min(Math.max(Math.floor(available / record.source_tokens.length), ATTENTION_CELL.min),
    ATTENTION_CELL.max);
  state.attentionGeometry[index] = drawHeatmap(canvas, record.source_tokens.map(visibleText),
    record.output_tokens.map(visibleText), (c, r) => colourAt(ATTENTION_STOPS, record.attention[r][c]),
    { width: side, height: side });
}

function onAttentionHover(event) {
  const canvas = event.currentTarget;
  const index = Number(canvas.dataset.index);
  const record = state.translated && state.translated.texts[index];
  const cell = record && heatmapCell(event, state.attentionGeometry[index], record.source_tokens.length,
    record.output_tokens.length);
  if (!cell) {
    hideTooltip();
    return;
  }
  const { column, row } = cell;
  showTooltip(cell.anchor, [
    el("div", { className: "tip-head" }, [
      el("span", { className: "tip-token", textContent: visibleText(record.source_tokens[column]) }),
      el("span", { textContent: `weight ${record.attention[row][column].toFixed(4)}` })]),
    el("div", { className: "tip-label", textContent: `source token ${column + 1} of ${record.source_tokens.length}, `
      + `writing ${visibleText(record.output_tokens[row])} (output token ${row + 1} of `
      + `${record.output_tokens.length})` })]);
}

// What an encoder–decoder was trained to do, for the Model view's Task table.
function translateRows(info) {
  const task = info.task || {};
  const target = task.target_vocab || {};
  return [
    ["kind", task.kind || info.kind], ["task", task.task], ["attention", task.attention],
    ["encoder", task.bidirectional === undefined ? null : (task.bidirectional ? "bidirectional" : "forward")],
    ["source tokens", task.source_tokens], ["target tokens", task.target_tokens],
    ["target vocabulary size", number(target.size)],
    target.chars !== undefined ? ["target characters", vocabChars(target.chars)]
      : ["most frequent target tokens", vocabTokens(target)],
    ["pairs trained on", task.max_len ? `sides of up to ${number(task.max_len)} tokens` : null],
    ...Object.entries(task.parameters || {}).map(([part, count]) => [`parameters: ${part}`, number(count)]),
  ];
}

function clearTranslate() {
  state.translated = null;
  state.attentionGeometry = [];
  $("translate-results").replaceChildren();
  $("translate-summary").textContent = "";
}

function wireTranslate() {
  drawLegend($("translate-legend"), ATTENTION_STOPS, [[0, "0"], [0.5, "0.5"], [1, "weight 1"]]);
  $("translate-form").addEventListener("submit", (event) => {
    event.preventDefault();
    translateTexts();
  });
  $("translate-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) translateTexts();
  });
  const results = $("translate-results");
  results.addEventListener("mousemove", (event) => {
    if (!event.target.matches("canvas.attention")) return;
    onAttentionHover({ currentTarget: event.target, clientX: event.clientX, clientY: event.clientY });
  });
  results.addEventListener("mouseleave", hideTooltip);
}
