// charlm explore: the Curves section. Every run's losses in one panel (validation loss with a marker at every
// evaluation, smoothed training loss thin); runs kept by F1 (taggers, classifiers) also get an F1 panel above
// it. Each run's kept checkpoint is marked on the curve it was kept by (charlm/viz/curves.py, kept_evaluation).
// Uses the helpers of explore.js.
"use strict";

// One colour per run in the curves, by the run's position (Tableau 10).
const RUN_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22"];
const CURVES_POLL_MS = 5000;
// Points per training curve: about one per pixel column is all the plot can show.
const MAX_CURVE_POINTS = 1000;

function startCurves() {
  if (state.curvesTimer || document.visibilityState === "hidden") return;
  refreshCurves();
  state.curvesTimer = setInterval(refreshCurves, CURVES_POLL_MS);
}

function stopCurves() {
  clearInterval(state.curvesTimer);
  state.curvesTimer = null;
}

async function refreshCurves() {
  if (state.curvesLoading) return; // a slow answer is still on its way
  state.curvesLoading = true;
  try {
    const body = await (await request("/api/curves")).text();
    clearError("curves-error");
    if (body !== state.curvesJSON) {
      state.curvesJSON = body;
      state.curves = JSON.parse(body).runs;
      drawCurves();
    }
  } catch (err) {
    showError("curves-error", err.message);
  } finally {
    state.curvesLoading = false;
  }
}

// About `count` round tick values (1, 2 or 5 times a power of ten) within [low, high].
function niceTicks(low, high, count) {
  const raw = (high - low) / count || 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const ratio = raw / power; // in [1, 10): rounded to the nearest of 1, 2, 5, 10
  const step = power * (ratio < 1.5 ? 1 : ratio < 3 ? 2 : ratio < 7 ? 5 : 10);
  const ticks = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

function stepLabel(step) {
  if (step >= 1e6) return `${+(step / 1e6).toPrecision(3)}M`;
  if (step >= 1e3) return `${+(step / 1e3).toPrecision(3)}k`;
  return String(step);
}

// Time ticks in the unit that fits the span: seconds, minutes or hours.
function timeAxis(maxSeconds) {
  const [scale, suffix] = maxSeconds >= 7200 ? [3600, "h"] : maxSeconds >= 120 ? [60, "min"] : [1, "s"];
  return { scale, label: (v) => `${+(v / scale).toPrecision(4)} ${suffix}` };
}

// Every n-th point, so a long run's path stays light; the last point is always kept.
function thin(points) {
  const every = Math.ceil(points.length / MAX_CURVE_POINTS);
  if (every <= 1) return points;
  return points.filter((_, i) => i % every === 0 || i === points.length - 1);
}

function zip(xs, ys) {
  return (xs || []).map((x, i) => [x, ys[i]]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
}

// Per run: its colour, training and validation points, F1 points, and the kept checkpoint's point.
function curveSeries(runs, byTime) {
  return runs.map((run, i) => {
    if (run.error !== undefined) return null;
    const evalX = byTime ? run.eval_seconds : run.eval_steps;
    const train = thin(zip(byTime ? run.step_seconds : run.steps, run.train_loss));
    const val = zip(evalX, run.val_loss);
    const f1 = run.kept_by === "val_f1" ? zip(evalX, run.val_f1 || []) : [];
    const kept = typeof run.best_value === "number"
      ? [byTime ? run.best_seconds : run.best_step, run.best_value] : null;
    return { run, colour: RUN_COLOURS[i % RUN_COLOURS.length], train, val, f1, kept };
  }).filter((s) => s && (s.train.length || s.val.length));
}

function drawCurves() {
  const runs = state.curves || [];
  const byTime = $("x-axis").value === "time";
  const series = curveSeries(runs, byTime);
  const notes = runs.filter((r) => r.error !== undefined).map((r) => `${r.name}: ${r.error}`);
  for (const s of series) {
    if (!s.val.length) notes.push(`${s.run.name}: no validation loss yet`);
    if (s.run.skipped_lines) notes.push(`${s.run.name}: ${s.run.skipped_lines} unreadable metrics line(s) skipped`);
  }
  $("curves-notes").replaceChildren(...notes.map((note) => el("li", { textContent: note })));
  const lossPlot = $("curves-svg");
  if (!series.length) {
    const { width, height } = lossPlot.viewBox.baseVal;
    lossPlot.replaceChildren(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" },
      ["No curves yet: the runs have written no metrics."]));
    $("metric-svg").toggleAttribute("hidden", true); // an SVG element has no `hidden` property
    return;
  }
  const xMax = Math.max(...series.flatMap((s) => [...s.train, ...s.val].map((p) => p[0]))) || 1;
  const byF1 = series.filter((s) => s.run.kept_by === "val_f1" && s.f1.length);
  const losses = series.map((s) => ({ ...s, lines: [[s.train, "train-curve"], [s.val, "val-curve"]], points: s.val,
    kept: s.run.kept_by === "val_loss" ? s.kept : null }));
  const units = [...new Set(series.map((s) => s.run.loss_label))];
  drawPanel(lossPlot, losses, byTime, xMax, `loss (${units.join(" / ")})`, "top");
  $("metric-svg").toggleAttribute("hidden", !byF1.length);
  if (byF1.length) {
    const f1s = byF1.map((s) => ({ ...s, lines: [[s.f1, "val-curve"]], points: s.f1, kept: s.kept }));
    // F1 rises as a run learns: its legend sits low, out of the curves' way
    drawPanel($("metric-svg"), f1s, byTime, xMax, [...new Set(byF1.map((s) => s.run.metric_label))].join(" / "),
      "bottom");
  }
}

// One panel: axes, each series' lines, a marker at each of its `points`, its kept checkpoint, and a legend in
// the top or bottom right corner.
function drawPanel(plot, series, byTime, xMax, yTitle, corner) {
  const { width, height } = plot.viewBox.baseVal;
  const ys = series.flatMap((s) => [...s.lines.flatMap(([points]) => points), ...(s.kept ? [s.kept] : [])])
    .map((p) => p[1]);
  const box = { left: 64, right: width - 16, top: 16, bottom: height - 48 };
  const [yLow, yHigh] = [Math.min(...ys), Math.max(...ys)];
  const pad = (yHigh - yLow) * 0.05 || 0.05;
  const scale = {
    x: (v) => box.left + (v / xMax) * (box.right - box.left),
    y: (v) => box.bottom - ((v - yLow + pad) / (yHigh - yLow + 2 * pad)) * (box.bottom - box.top),
  };
  plot.replaceChildren(
    ...axes(box, scale, byTime, xMax, yLow - pad, yHigh + pad, yTitle),
    ...series.flatMap((s) => curvePaths(s, scale)),
    legend(series, box, corner),
  );
}

function axes(box, scale, byTime, xMax, yLow, yHigh, yTitle) {
  const time = timeAxis(xMax);
  const xTicks = byTime ? niceTicks(0, xMax / time.scale, 6).map((v) => v * time.scale) : niceTicks(0, xMax, 6);
  const xLabel = byTime ? time.label : stepLabel;
  const nodes = [svg("rect", { x: box.left, y: box.top, width: box.right - box.left, height: box.bottom - box.top,
    class: "plot-area" })];
  for (const v of xTicks) {
    const x = scale.x(v).toFixed(1);
    nodes.push(svg("line", { x1: x, x2: x, y1: box.top, y2: box.bottom, class: "grid" }),
      svg("text", { x, y: box.bottom + 18, "text-anchor": "middle", class: "tick" }, [xLabel(v)]));
  }
  for (const v of niceTicks(yLow, yHigh, 5)) {
    const y = scale.y(v).toFixed(1);
    nodes.push(svg("line", { x1: box.left, x2: box.right, y1: y, y2: y, class: "grid" }),
      svg("text", { x: box.left - 8, y, "text-anchor": "end", "dominant-baseline": "middle", class: "tick" },
        [String(+v.toPrecision(6))]));
  }
  nodes.push(
    svg("text", { x: (box.left + box.right) / 2, y: box.bottom + 40, "text-anchor": "middle", class: "axis-title" },
      [byTime ? "training time" : "step"]),
    svg("text", { x: 16, y: (box.top + box.bottom) / 2, "text-anchor": "middle", class: "axis-title",
      transform: `rotate(-90 16 ${(box.top + box.bottom) / 2})` }, [yTitle]),
  );
  return nodes;
}

function pathData(points, scale) {
  return points.map(([x, y], i) => `${i ? "L" : "M"}${scale.x(x).toFixed(1)},${scale.y(y).toFixed(1)}`).join(" ");
}

// The legend's words for a run's kept checkpoint: "kept: macro-F1 0.885 at step 3.67k".
function keptLabel(run) {
  const figure = run.metric_label.replace(/^validation /, "");
  return `kept: ${figure} ${run.best_value.toFixed(3)} at step ${stepLabel(run.best_step)}`;
}

function curvePaths(series, scale) {
  const nodes = [];
  for (const [points, className] of series.lines) {
    if (points.length) nodes.push(svg("path", { d: pathData(points, scale), class: className, stroke: series.colour }));
  }
  // a marker at every evaluation, so a run evaluated once or twice still shows
  for (const [x, y] of series.points) {
    nodes.push(svg("circle", { cx: scale.x(x).toFixed(1), cy: scale.y(y).toFixed(1), r: 2.75, class: "eval-point",
      fill: series.colour }));
  }
  if (series.kept) {
    const [x, y] = series.kept;
    nodes.push(svg("circle", { cx: scale.x(x).toFixed(1), cy: scale.y(y).toFixed(1), r: 6, class: "best-point",
      fill: series.colour, "data-step": series.run.best_step },
    [svg("title", {}, [`${series.run.name} ${keptLabel(series.run)}`])]));
  }
  return nodes;
}

function legend(series, box, corner) {
  const rowHeight = 20;
  const labels = series.map((s) => {
    const name = s.run.name.length > 24 ? `${s.run.name.slice(0, 23)}…` : s.run.name;
    return s.kept ? `${name}  ${keptLabel(s.run)}` : name;
  });
  const width = 56 + 7 * Math.max(...labels.map((label) => label.length)); // about 7 px a character at 12 px
  const height = series.length * rowHeight + 10;
  const top = corner === "bottom" ? box.bottom - height - 10 : box.top + 10;
  const group = svg("g", { class: "legend", transform: `translate(${box.right - width - 10} ${top})` },
    [svg("rect", { width, height, rx: 4, class: "legend-box" })]);
  series.forEach((s, i) => {
    const y = 15 + i * rowHeight;
    group.append(svg("line", { x1: 10, x2: 34, y1: y, y2: y, stroke: s.colour, class: "legend-line" }),
      svg("text", { x: 42, y, "dominant-baseline": "middle", class: "legend-text" }, [labels[i]]));
  });
  return group;
}
