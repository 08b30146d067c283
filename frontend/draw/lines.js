// BertViz's lines (the head view, the model view's thumbnails, compare's head
// mode): query tokens in a column on the left, key tokens on the right, a
// line per (head, query, key) with opacity = weight. The strongest lines are
// drawn first, within a length budget (layout.js budgetCutoff); a head's
// lines are one path per opacity bucket (a few hundred strokes, not one per
// line).

import { ALPHA_BUCKETS, bucketAlpha, budgetCutoff, collectEdges } from "../layout.js";
import { FONT, fitText, maxLabelWidth } from "../dom.js";

// Total length (CSS px) of the visible lines one draw may stroke: the
// strongest lines go first. Canvas rasterization costs about one step per
// pixel of a line's longer axis (Chromium's software canvas: ~100 ns per
// step), so this bounds the draw time at any sequence length.
export const LINE_BUDGET = 400000;

/**
 * Stroke one head's lines (from collectEdges) in one colour, a path per
 * opacity bucket: query i at (x0, top + (i + 0.5) * dq) to key j at
 * (x1, top + (j + 0.5) * dk). Returns how many lines it drew.
 * @param {CanvasRenderingContext2D} ctx
 * @param {import("../layout.js").HeadEdges} e
 * @param {string} color
 */
export function strokeEdges(ctx, e, color, x0, x1, top, dq, dk) {
  ctx.strokeStyle = color;
  for (let b = 0; b < ALPHA_BUCKETS; b++) {
    const from = e.offsets[b];
    const to = e.offsets[b + 1];
    if (to <= from) continue;
    ctx.globalAlpha = bucketAlpha(b);
    ctx.beginPath();
    for (let p = from; p < to; p++) {
      ctx.moveTo(x0, top + (e.q[p] + 0.5) * dq);
      ctx.lineTo(x1, top + (e.k[p] + 0.5) * dk);
    }
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  return e.count;
}

/**
 * Draw the strongest lines of some heads of `bytes` ([H, Tq, Tk]) between
 * x0 and x1, rows dq / dk px apart from `top`, until their length reaches
 * opts.budget px (opts: budgetCutoff's and collectEdges' filters: pair
 * ranges, hovered token, visible band).
 * @param {CanvasRenderingContext2D} ctx
 * @param {(head: number) => string} colorOf
 * @param {{x0: number, x1: number, top: number, dq: number, dk: number}} at
 * @returns {{cut: ReturnType<typeof budgetCutoff>, count: number}}
 */
export function drawLines(ctx, bytes, Tq, Tk, heads, colorOf, at, opts) {
  const rows = { ...opts, rowQ: at.dq, rowK: at.dk };
  const cut = budgetCutoff(bytes, Tq, Tk, heads, { ...rows, gap: at.x1 - at.x0 });
  let count = 0;
  if (cut.cutoff > 255) return { cut, count };
  for (const e of collectEdges(bytes, Tq, Tk, heads, { ...rows, minByte: cut.cutoff })) {
    count += strokeEdges(ctx, e, colorOf(e.head), at.x0, at.x1, at.top, at.dq, at.dk);
  }
  return { cut, count };
}

/** Line width for a sequence: 2 px up to 64 tokens, then 1. */
export function setLineStyle(ctx, T) {
  ctx.lineWidth = T <= 64 ? 2 : 1;
  ctx.lineCap = "butt";
}

/**
 * Widths of the two token columns in a font of fontPx: the widest label (at
 * most maxW) + 6 px; 4 px and no text below 6 px fonts.
 * @param {HTMLCanvasElement} canvas any canvas, to measure text
 */
export function columnWidths(canvas, labels, fontPx, maxW) {
  if (fontPx < 6) return { showText: false, leftW: 4, rightW: 4 };
  const c = canvas.getContext("2d");
  c.font = `${fontPx}px ${FONT}`;
  const w = (list) => Math.min(maxW, Math.ceil(maxLabelWidth(c, list))) + 6;
  return { showText: true, leftW: w(labels.q), rightW: w(labels.k) };
}

/**
 * The labels of rows [from, to) of both columns (L from layout.js
 * headViewLayout), cut to their column; fill(side, i) is each one's colour.
 * @param {(side: "q" | "k", i: number) => string} fill
 */
export function drawColumnLabels(ctx, L, labels, fontPx, widths, from, to, fill) {
  ctx.font = `${fontPx}px ${FONT}`;
  ctx.textBaseline = "middle";
  for (let i = Math.max(0, from); i < Math.min(labels.q.length, to); i++) {
    ctx.fillStyle = fill("q", i);
    fitText(ctx, labels.q[i], L.leftTextX, L.y(i), widths.leftW - 4, "right");
  }
  for (let j = Math.max(0, from); j < Math.min(labels.k.length, to); j++) {
    ctx.fillStyle = fill("k", j);
    fitText(ctx, labels.k[j], L.rightTextX, L.y(j), widths.rightW - 4, "left");
  }
}
