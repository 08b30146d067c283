// The neuron view's drawing (views/neuron.js decides what): its layout fitted
// to the width, every query's q vector beside its token, one query's numbers
// against every key (k vectors, q x k, then the score columns of
// draw/scores.js: q . k, scaled, soft-cap, bias, score, the sink row, the
// softmax), the collapsed "lines" form, the colour legend, and the dimming of
// tokens a sentence-pair filter leaves out.

import { css, divLut, headColor, seqLut } from "../colors.js";
import { FONT, fitText, maxLabelWidth, sizeCanvas } from "../dom.js";
import { shortLabel } from "../tokens.js";
import { colorBar } from "./legend.js";
import { drawLines, setLineStyle } from "./lines.js";
import { drawScoreCells, drawSinkRow, hasSink, neuronNumbers as scoreNumbers, painter as scorePainter, scoreColumns } from "./scores.js";

const NUM_W = 64; // a number column (q . k, scaled, bias, score)
const SOFT_W = 112; // the softmax bar (60 px at 1) and its value
const LEGEND_H = 18;
const MIN_BLOCK = 44; // a vector column is at least as wide as its title

/**
 * scores.js neuronNumbers of query qi, its index, and the q and k scale over
 * every query (all their vectors are drawn on one scale).
 */
export function neuronNumbers(n, qi) {
  const r = scoreNumbers(n, qi);
  let maxQK = r.maxQK;
  for (let i = 0; i < n.queries.length; i++) maxQK = Math.max(maxQK, Math.abs(n.queries[i]));
  return { ...r, qi, maxQK };
}

/** scores.js painter plus its luts, for the legend's colour bars. */
function painter(theme) {
  return { ...scorePainter(theme), divLut: divLut(theme), seqLut: seqLut(theme) };
}

/**
 * Where everything goes (CSS px): the label columns, then (vectors mode)
 * the q, k and q x k blocks whose cells shrink (to a quarter pixel a dimension)
 * so that the number and softmax columns, the result, fit `avail`; or
 * (lines mode) the two token columns with lines between.
 * @param {CanvasRenderingContext2D} c0 to measure labels
 */
export function neuronLayout(c0, n, labels, { zoom, avail, lines }) {
  const { Tq, Tk, D } = n;
  const rowH = zoom ? Math.max(6, Math.min(64, zoom)) : Math.max(10, Math.min(18, Math.floor(16000 / Math.max(Tq, Tk))));
  const fontPx = Math.min(12, rowH - 3);
  c0.font = `${fontPx}px ${FONT}`;
  const cap = Math.max(60, Math.min(150, Math.floor(avail * 0.12)));
  const qW = Math.min(cap, Math.ceil(maxLabelWidth(c0, labels.q)) + 10);
  const kW = Math.min(cap, Math.ceil(maxLabelWidth(c0, labels.k)) + 10);
  const columns = lines ? [] : scoreColumns(n);
  const headerH = LEGEND_H + 22; // the legend, then the column titles
  const top = headerH + rowH + 8; // the frozen q vector row sits between titles and rows
  const x = { q: 8 };
  let cw = 0;
  let blockW = 0;
  if (lines) {
    const gap = Math.max(120, Math.min(360, avail - 8 - qW - kW - SOFT_W - 40));
    x.lines0 = x.q + qW + 6;
    x.lines1 = x.lines0 + gap;
    x.k = x.lines1 + 6;
    x.soft = x.k + kW + 10;
  } else {
    const numbers = columns.length * NUM_W;
    const fixed = x.q + qW + 6 + 18 + kW + 6 + 14 + 14 + numbers + SOFT_W + 8;
    cw = Math.max(0.25, Math.min(8, Math.floor((4 * (avail - fixed)) / (3 * D)) / 4));
    blockW = Math.max(D * cw, MIN_BLOCK);
    x.qv = x.q + qW + 6; // every query's q vector
    x.k = x.qv + blockW + 18;
    x.kv = x.k + kW + 6;
    x.prod = x.kv + blockW + 14;
    columns.forEach(([key], i) => { x[key] = x.prod + blockW + 14 + i * NUM_W; });
    x.soft = x.prod + blockW + 14 + numbers;
  }
  const width = Math.ceil(x.soft + SOFT_W + 8);
  const sinkRow = !lines && hasSink(n) ? 1 : 0;
  const height = top + Math.max(Tq, Tk + sinkRow) * rowH + 10;
  return { x, rowH, top, headerH, cw, blockW, width, height, qW, kW, Tq, Tk, D, fontPx, numW: NUM_W, softW: SOFT_W, lines: Boolean(lines), columns };
}

/**
 * Draw the view scrolled by (x0, y0) into a vw x vh canvas; the legend,
 * the column titles and the shown query's q vector stay frozen at the top.
 * @param {{n: any, nums: any, labels: any, theme: any, head: number,
 *   pinned: number, ranges: {qRange: number[], kRange: number[]}}} v
 *   nums: neuronNumbers of the query shown (hovered, else pinned)
 * @returns {any} the legend's geometry
 */
export function renderNeurons(canvas, g, x0, y0, vw, vh, v) {
  const ctx = sizeCanvas(canvas, vw, vh);
  ctx.fillStyle = v.theme.background;
  ctx.fillRect(0, 0, vw, vh);
  const paint = painter(v.theme);
  const first = Math.max(0, Math.floor((y0 - g.top) / g.rowH) - 1);
  const last = Math.ceil((y0 + vh - g.top) / g.rowH) + 1;
  ctx.save();
  ctx.translate(-x0, -y0);
  drawQueries(ctx, g, v, first, last, paint);
  if (g.lines) drawQueryLines(ctx, g, v);
  for (let j = first; j < Math.min(g.Tk, last); j++) drawKeyRow(ctx, g, v, j, paint);
  if (!g.lines && v.nums.sink !== null && g.Tk < last) drawSinkRow(ctx, g, v.nums, g.columns, paint, v.theme);
  dimFiltered(ctx, g, v, first, last);
  ctx.restore();
  return drawHeader(ctx, g, v, x0, vw, paint);
}

/** The query tokens (left) with their q vectors; the pinned one highlighted, the shown one outlined. */
function drawQueries(ctx, g, v, first, last, paint) {
  const { labels, theme, n, nums } = v;
  for (let i = first; i < Math.min(g.Tq, last); i++) {
    const y = g.top + i * g.rowH;
    const right = g.lines ? g.x.q + g.qW + 4 : g.x.qv + g.blockW + 4;
    if (i === v.pinned) {
      ctx.fillStyle = theme.highlight;
      ctx.fillRect(g.x.q - 4, y, right - g.x.q + 4, g.rowH);
    }
    if (i === nums.qi && i !== v.pinned) {
      ctx.strokeStyle = theme.muted;
      ctx.lineWidth = 1;
      ctx.strokeRect(g.x.q - 3.5, y + 0.5, right - g.x.q + 3, g.rowH - 1);
    }
    ctx.font = `${g.fontPx}px ${FONT}`;
    ctx.textBaseline = "middle";
    ctx.fillStyle = theme.text;
    fitText(ctx, labels.q[i], g.x.q + g.qW, y + g.rowH / 2, g.qW - 4, "right");
    if (g.lines) continue;
    for (let d = 0; d < g.D; d++) {
      ctx.fillStyle = paint.div(n.queries[i * g.D + d], nums.maxQK);
      ctx.fillRect(g.x.qv + d * g.cw, y + 1, g.cw, g.rowH - 3);
    }
  }
}

/** Lines mode: the shown query's softmax to every key, in the head's colour. */
function drawQueryLines(ctx, g, v) {
  const { n, nums } = v;
  const bytes = new Uint8Array(n.Tq * n.Tk);
  for (let j = 0; j < n.Tk; j++) bytes[nums.qi * n.Tk + j] = Math.round(nums.softmax[j] * 255);
  setLineStyle(ctx, Math.max(n.Tq, n.Tk));
  const at = { x0: g.x.lines0, x1: g.x.lines1, top: g.top, dq: g.rowH, dk: g.rowH };
  drawLines(ctx, bytes, n.Tq, n.Tk, [0], () => css(headColor(v.head)), at, { budget: Infinity, kRange: v.ranges.kRange });
}

/** Key j's row: its label, k vector, q x k, then the score columns and the softmax. */
function drawKeyRow(ctx, g, v, j, paint) {
  const { labels, theme, n, nums } = v;
  const { x, rowH, cw, fontPx, D } = g;
  const y = g.top + j * rowH;
  const masked = nums.masked[j] === 1;
  ctx.fillStyle = masked ? theme.muted : theme.text;
  ctx.font = `${fontPx}px ${FONT}`;
  if (g.lines) {
    fitText(ctx, labels.k[j], x.k, y + rowH / 2, g.kW - 4, "left");
  } else {
    fitText(ctx, labels.k[j], x.k + g.kW, y + rowH / 2, g.kW - 4, "right");
    for (let d = 0; d < D; d++) {
      ctx.fillStyle = paint.div(n.keys[j * D + d], nums.maxQK);
      ctx.fillRect(x.kv + d * cw, y, cw, rowH - 1);
      ctx.fillStyle = masked ? paint.masked : paint.div(nums.prod[j * D + d], nums.maxProd);
      ctx.fillRect(x.prod + d * cw, y, cw, rowH - 1);
    }
  }
  // the score cells (none in lines mode) and the softmax bar
  drawScoreCells(ctx, g, nums, j, g.columns, paint, theme);
}

/** Tokens the sentence-pair filter leaves out: veiled in the background colour. */
function dimFiltered(ctx, g, v, first, last) {
  const { qRange, kRange } = v.ranges;
  ctx.fillStyle = v.theme.background;
  ctx.globalAlpha = 0.75;
  const qRight = g.lines ? g.x.lines0 : g.x.k - 6;
  for (let i = first; i < Math.min(g.Tq, last); i++) {
    if (i < qRange[0] || i >= qRange[1]) ctx.fillRect(0, g.top + i * g.rowH, qRight, g.rowH);
  }
  for (let j = first; j < Math.min(g.Tk, last); j++) {
    if (j < kRange[0] || j >= kRange[1]) ctx.fillRect(g.x.k - 2, g.top + j * g.rowH, g.width - g.x.k + 2, g.rowH);
  }
  ctx.globalAlpha = 1;
}

/** The frozen header: the legend, the column titles and the shown query's q vector under the k vectors. */
function drawHeader(ctx, g, v, x0, vw, paint) {
  const { labels, theme, n, nums } = v;
  const { x, rowH, top, cw, D } = g;
  ctx.save();
  ctx.translate(-x0, 0);
  ctx.fillStyle = theme.background;
  ctx.fillRect(x0, 0, vw, top - 2);
  const legend = {};
  if (!g.lines) {
    const caption = "blue < 0 < red: q, k, q\u00d7k, q\u00b7k and scores, each column to its largest |value|";
    legend.div = colorBar(ctx, paint.divLut, x.q, 4, 60, 9, { left: "\u2212", right: "+", caption, maxX: x.soft - 12, theme });
  }
  legend.seq = colorBar(ctx, paint.seqLut, x.soft, 4, 60, 9, { left: "0", right: "1", theme });
  ctx.fillStyle = theme.muted;
  ctx.font = `11px ${FONT}`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  const ty = LEGEND_H + 11;
  const soft = !g.lines && hasSink(n) ? "softmax (+ sink)" : "softmax";
  const titles = g.lines ? [["query", x.q], ["key", x.k], [soft, x.soft]]
    : [["query \u00b7 q", x.q], ["key", x.k], [`k \u00b7 ${D} dims`, x.kv], ["q \u00d7 k", x.prod],
      ...g.columns.map(([key, title]) => [title, x[key]]), [soft, x.soft]];
  for (const [text, at] of titles) ctx.fillText(text, at, ty);
  ctx.fillStyle = css(headColor(v.head));
  ctx.fillRect(x.soft + ctx.measureText(soft).width + 6, ty - 5, 10, 10);
  if (!g.lines) {
    ctx.font = `${g.fontPx}px ${FONT}`;
    ctx.fillStyle = theme.text;
    fitText(ctx, `q of \u201c${shortLabel(labels.q[nums.qi], 40)}\u201d`, x.kv - 6, g.headerH + rowH / 2, x.kv - 6 - x.q, "right");
    for (let d = 0; d < D; d++) {
      ctx.fillStyle = paint.div(nums.q[d], nums.maxQK);
      ctx.fillRect(x.kv + d * cw, g.headerH, cw, rowH - 1);
    }
  }
  ctx.strokeStyle = theme.grid;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(x0, top - 2.5);
  ctx.lineTo(x0 + vw, top - 2.5);
  ctx.stroke();
  ctx.restore();
  ctx.textAlign = "left";
  return legend;
}
