// The neuron view's score columns: every step the model takes between q . k
// and the softmax, in its order (proto/attention.proto NeuronLayer): x scale,
// the soft-cap when the model caps its logits (Gemma 2), + bias and = score
// when it adds one (T5, ALiBi), then the softmax, over the keys and the sink
// logit when the model has one (gpt-oss: drawn as a row of its own under the
// keys, its weight being what the keys do not get). Signed values use a
// diverging scale (blue < 0 < red); masked positions are greyed.

import { css, divergingIndex, divLut, seqLut } from "../colors.js";
import { MONO } from "../dom.js";
import { neuronScores } from "../decode.js";

/** neuronScores plus the ranges the colour scales need. */
export function neuronNumbers(n, qi) {
  const r = neuronScores(n, qi);
  const { D, Tk } = n;
  const maxAbs = (arr) => {
    let m = 0;
    for (let j = 0; j < arr.length; j++) if (!r.masked[j] && Math.abs(arr[j]) > m && Number.isFinite(arr[j])) m = Math.abs(arr[j]);
    return m;
  };
  let maxQK = 0;
  for (let d = 0; d < D; d++) maxQK = Math.max(maxQK, Math.abs(r.q[d]));
  for (let i = 0; i < Tk * D; i++) maxQK = Math.max(maxQK, Math.abs(n.keys[i]));
  let maxProd = 0;
  for (let j = 0; j < Tk; j++) {
    if (r.masked[j]) continue;
    for (let d = 0; d < D; d++) maxProd = Math.max(maxProd, Math.abs(r.prod[j * D + d]));
  }
  const bias = new Float64Array(Tk);
  if (n.bias) for (let j = 0; j < Tk; j++) bias[j] = n.bias[qi * Tk + j];
  let top = 0;
  for (let j = 1; j < Tk; j++) if (r.softmax[j] > r.softmax[top]) top = j;
  return { ...r, bias, maxQK, maxProd, maxAbs, top };
}

/**
 * The numeric columns after q x k, each [key in neuronNumbers, title]:
 * the ones this head's model has.
 * @param {import("../decode.js").Neurons} n
 */
export function scoreColumns(n) {
  return [
    ["dot", "q \u00b7 k"],
    ["scaled", `\u00d7 ${fmt(n.scale)}`],
    ...(n.softcap > 0 ? [["capped", `cap ${fmt(n.softcap)}`]] : []),
    ...(n.hasBias ? [["bias", "+ bias"], ["score", "= score"]] : []),
  ];
}

/** Whether the head has a sink logit (a row under the keys). */
export function hasSink(n) {
  return typeof n.sink === "number" && Number.isFinite(n.sink);
}

/** The theme's fills: diverging (signed values), readable text on them, softmax, masked. */
export function painter(theme) {
  const div = divLut(theme);
  const soft = seqLut(theme);
  const rgb = (lut, i) => `rgb(${lut[i * 4]},${lut[i * 4 + 1]},${lut[i * 4 + 2]})`;
  return {
    div: (v, max) => rgb(div, divergingIndex(v, max)),
    // light text on dark fills, dark on light
    divText: (v, max) => {
      const i = divergingIndex(v, max);
      const lum = (0.2126 * div[i * 4] + 0.7152 * div[i * 4 + 1] + 0.0722 * div[i * 4 + 2]) / 255;
      return lum < 0.5 ? "#ffffff" : "#111111";
    },
    seq: (p) => rgb(soft, Math.round(p * 255)),
    masked: css(theme.masked),
  };
}

/**
 * Key j's numeric cells and its softmax bar (x: the column positions of
 * the neuron view's layout, columns: scoreColumns).
 */
export function drawScoreCells(ctx, g, nums, j, columns, paint, theme) {
  const y = g.top + j * g.rowH;
  const masked = nums.masked[j] === 1;
  for (const [key] of columns) {
    const v = nums[key][j];
    const m = nums.maxAbs(nums[key]);
    ctx.fillStyle = masked ? paint.masked : paint.div(v, m);
    ctx.fillRect(g.x[key], y, g.numW - 4, g.rowH - 1);
    if (g.fontPx < 7) continue;
    ctx.fillStyle = masked ? theme.muted : paint.divText(v, m);
    ctx.font = `${Math.min(11, g.fontPx)}px ${MONO}`;
    ctx.textAlign = "right";
    ctx.fillText(masked ? "\u2013" : fmt(v), g.x[key] + g.numW - 7, y + g.rowH / 2);
  }
  softmaxBar(ctx, g, y, masked ? null : nums.softmax[j], paint, theme);
}

/** The sink's row under the keys: its logit in the score column, its weight. */
export function drawSinkRow(ctx, g, nums, columns, paint, theme) {
  const y = g.top + g.Tk * g.rowH;
  const last = columns[columns.length - 1][0];
  ctx.fillStyle = theme.text;
  ctx.font = `${g.fontPx}px ${MONO}`;
  ctx.textAlign = "right";
  ctx.fillText("sink", g.x.k + g.kW, y + g.rowH / 2);
  ctx.fillStyle = paint.div(nums.sink, Math.max(nums.maxAbs(nums[last]), Math.abs(nums.sink)));
  ctx.fillRect(g.x[last], y, g.numW - 4, g.rowH - 1);
  if (g.fontPx >= 7) {
    ctx.fillStyle = theme.text;
    ctx.font = `${Math.min(11, g.fontPx)}px ${MONO}`;
    ctx.fillText(fmt(nums.sink), g.x[last] + g.numW - 7, y + g.rowH / 2);
  }
  softmaxBar(ctx, g, y, nums.sinkP, paint, theme);
}

function softmaxBar(ctx, g, y, p, paint, theme) {
  ctx.fillStyle = p === null ? paint.masked : paint.seq(p);
  ctx.fillRect(g.x.soft, y, p === null ? 110 : Math.max(1, p * 60), g.rowH - 1);
  if (g.fontPx < 7) return;
  ctx.fillStyle = p === null ? theme.muted : theme.text;
  ctx.font = `${Math.min(11, g.fontPx)}px ${MONO}`;
  ctx.textAlign = "left";
  ctx.fillText(p === null ? "masked" : p.toFixed(3), g.x.soft + 64, y + g.rowH / 2);
}

/** A number in a cell or a readout: 2 decimals, fewer when large. */
export function fmt(v) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 10000) return v.toExponential(1);
  const s = v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2);
  return s === "-0.00" ? "0.00" : s;
}
