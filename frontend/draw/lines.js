// BertViz's lines (the head view, the model view's thumbnails, compare's head
// mode): query tokens in a column on the left, key tokens on the right, a
// line per (head, query, key) with opacity = weight. The strongest lines are
// drawn first, within a length budget (edges.js budgetCutoff); a head's
// lines are one path per opacity bucket (a few hundred strokes, not one per
// line).

import { ALPHA_BUCKETS, bucketAlpha, budgetCutoff, collectEdges, lineCosts, pickCutoff } from "../edges.js";
import { FONT, fitText, maxLabelWidth } from "../dom.js";

// What one draw may stroke: the total length (CSS px) of its visible lines,
// the strongest first, a 2-px line counting WIDE_COST times its length.
// Lines are hairlines (1 device px; a 2-px line is two of them, a device
// pixel apart): Chromium's software canvas strokes a path of hairlines about
// ten times faster than the same path 1.5 or 2 px wide (the wide stroke turns
// into a filled outline of every segment). Measured in headless Chromium on
// 2 busy cores: 3,068 lines 420 px long in 10-20 ms as hairlines, 120-250 ms
// at 2 px. So this bounds a draw to some tens of ms at any sequence length,
// and holds every line of 16 tokens x 12 heads (BertViz draws all 3,072) in
// a 1,440-px window.
export const LINE_BUDGET = 5000000;
export const WIDE_COST = 2;
// Lines from or to tokens out of view (steep, crossing the whole view) get at
// most this share of a draw's budget: they say where attention goes off
// screen without hiding the lines between the tokens in view, or doubling a
// draw's time (128 tokens, 12 heads, 36 in view: 4,108 lines in view in
// 20 ms; with a tenth for the others, 5,613 in 26 ms; a quarter, 7,730 in 47).
const OUT_SHARE = 0.1;

/**
 * Stroke one head's lines (from collectEdges) in one colour, a path per
 * opacity bucket: query i at (x0, top + (i + 0.5) * dq) to key j at
 * (x1, top + (j + 0.5) * dk). ctx.lineWidth (CSS px) is drawn as that many
 * device-pixel hairlines, one under the other. Returns how many lines it drew.
 * @param {CanvasRenderingContext2D} ctx
 * @param {import("../edges.js").HeadEdges} e
 * @param {string} color
 */
export function strokeEdges(ctx, e, color, x0, x1, top, dq, dk) {
  const width = ctx.lineWidth;
  const t = ctx.getTransform && ctx.getTransform();
  const dpr = (t && Math.abs(t.a)) || 1;
  const passes = Math.max(1, Math.min(4, Math.round(width * dpr)));
  ctx.lineWidth = 1 / dpr;
  ctx.strokeStyle = color;
  for (let b = 0; b < ALPHA_BUCKETS; b++) {
    const from = e.offsets[b];
    const to = e.offsets[b + 1];
    if (to <= from) continue;
    ctx.globalAlpha = bucketAlpha(b);
    for (let pass = 0; pass < passes; pass++) {
      const y0 = top + pass / dpr;
      ctx.beginPath();
      for (let p = from; p < to; p++) {
        ctx.moveTo(x0, y0 + (e.q[p] + 0.5) * dq);
        ctx.lineTo(x1, y0 + (e.k[p] + 0.5) * dk);
      }
      ctx.stroke();
    }
  }
  ctx.globalAlpha = 1;
  ctx.lineWidth = width;
  return e.count;
}

/**
 * Draw the strongest lines of some heads of `bytes` ([H, Tq, Tk]) between
 * x0 and x1, rows dq / dk px apart from `top`, until their cost reaches
 * opts.budget (opts: budgetCutoff's and collectEdges' filters: pair ranges,
 * hovered token, visible band). With opts.window (the rows in view, when
 * dq = dk), the lines between two tokens in view come first, all of them
 * when they fit; the lines from a token in view to one out of view get what
 * is left of the budget (at most opts.outShare of it, OUT_SHARE by default),
 * the strongest first, and are drawn beneath; lines passing by (both ends out
 * of view) are left out.
 * @param {CanvasRenderingContext2D} ctx
 * @param {(head: number) => string} colorOf
 * @param {{x0: number, x1: number, top: number, dq: number, dk: number}} at
 * @returns {{cut: {lines: number, drawn: number}, count: number, inView?: any, outView?: any}}
 */
export function drawLines(ctx, bytes, Tq, Tk, heads, colorOf, at, opts) {
  const rows = { ...opts, rowQ: at.dq, rowK: at.dk, gap: at.x1 - at.x0 };
  const budget = opts.budget / (ctx.lineWidth >= 2 ? WIDE_COST : 1);
  const stroke = (sels, cut) => {
    let n = 0;
    if (cut.cutoff > 255) return 0;
    for (const sel of sels) {
      for (const e of collectEdges(bytes, Tq, Tk, heads, { ...sel, minByte: cut.cutoff })) {
        n += strokeEdges(ctx, e, colorOf(e.head), at.x0, at.x1, at.top, at.dq, at.dk);
      }
    }
    return n;
  };
  if (!opts.window) {
    const cut = budgetCutoff(bytes, Tq, Tk, heads, { ...rows, budget });
    return { cut, count: stroke([rows], cut) };
  }
  const win = opts.window;
  const clip = (r, n) => /** @type {[number, number]} */ ([Math.max(win[0], r ? r[0] : 0), Math.min(win[1], r ? r[1] : n)]);
  const inner = { ...rows, band: null, qRange: clip(opts.qRange, Tq), kRange: clip(opts.kRange, Tk) };
  const inView = budgetCutoff(bytes, Tq, Tk, heads, { ...inner, budget });
  // from a query in view to a key out of view, and into a key in view from a query out of view
  const outer = [{ ...rows, skip: win, qRange: inner.qRange }, { ...rows, skip: win, kRange: inner.kRange }];
  const share = opts.outShare ?? OUT_SHARE;
  const room = inView.drawn < inView.lines ? 0 : Math.min(budget * share, budget - inView.cost);
  const outView = share > 0 ? pickCutoff(outer.map((sel) => lineCosts(bytes, Tq, Tk, heads, sel)), room)
    : { cutoff: 256, lines: 0, drawn: 0, cost: 0 }; // not even counted (while scrolling)
  if (!(room > 0)) Object.assign(outView, { cutoff: 256, drawn: 0, cost: 0 });
  const count = stroke(outer, outView) + stroke([inner], inView);
  const cut = { lines: inView.lines + outView.lines, drawn: inView.drawn + outView.drawn };
  return { cut, count, inView, outView };
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
 * headViewLayout), cut to their column; fill(side, i) is each one's colour,
 * halo(side) a colour to outline them with (over coloured boxes), or null.
 * @param {(side: "q" | "k", i: number) => string} fill
 * @param {(side: "q" | "k") => string | null} [halo]
 */
export function drawColumnLabels(ctx, L, labels, fontPx, widths, from, to, fill, halo = () => null) {
  ctx.font = `${fontPx}px ${FONT}`;
  ctx.textBaseline = "middle";
  ctx.lineJoin = "round";
  const column = (side, list, x, w, align) => {
    const outline = halo(side);
    for (let i = Math.max(0, from); i < Math.min(list.length, to); i++) {
      if (outline) {
        ctx.strokeStyle = outline;
        ctx.lineWidth = 3;
        fitText(ctx, list[i], x, L.y(i), w, align, true);
      }
      ctx.fillStyle = fill(side, i);
      fitText(ctx, list[i], x, L.y(i), w, align);
    }
  };
  column("q", labels.q, L.leftTextX, widths.leftW - 4, "right");
  column("k", labels.k, L.rightTextX, widths.rightW - 4, "left");
}

/**
 * BertViz's boxes: each token box of one column (rows [from, to)) split into
 * one slice per head, filled with the head's colour at its weight to or from
 * the hovered token: weight(s, i) of slice s, row i (0..255).
 * @param {{x: number, w: number}} box the column's box
 * @param {string[]} colors one per slice
 * @param {(s: number, i: number) => number} weight
 */
export function drawSlices(ctx, L, box, colors, from, to, weight) {
  const n = colors.length;
  if (!n) return;
  const sw = box.w / n;
  const h = Math.max(1, L.rowH - 1);
  colors.forEach((color, s) => {
    ctx.fillStyle = color;
    const x0 = Math.round(box.x + s * sw);
    const x1 = Math.round(box.x + (s + 1) * sw);
    for (let i = from; i < to; i++) {
      const v = weight(s, i);
      if (!v) continue;
      ctx.globalAlpha = v / 255;
      ctx.fillRect(x0, L.top + i * L.rowH, Math.max(1, x1 - x0), h);
    }
  });
  ctx.globalAlpha = 1;
}

/** The dashed line where sentence B starts, on both sides. */
export function drawSegmentBoundary(ctx, L, kind, theme) {
  ctx.strokeStyle = theme.grid;
  ctx.setLineDash([3, 3]);
  ctx.lineWidth = 1;
  ctx.beginPath();
  if (kind.query_segment_b > 0) {
    const y = L.top + kind.query_segment_b * L.rowH;
    ctx.moveTo(L.leftBoxX, y);
    ctx.lineTo(L.lineX0, y);
  }
  if (kind.key_segment_b > 0) {
    const y = L.top + kind.key_segment_b * L.rowH;
    ctx.moveTo(L.lineX1, y);
    ctx.lineTo(L.width, y);
  }
  ctx.stroke();
  ctx.setLineDash([]);
}
