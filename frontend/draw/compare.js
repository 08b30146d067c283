// The compare view's panels, A | B | B - A, laid out alike so that a cell, a
// token or a head sits at the same place in all three: heatmaps of one head
// (matrix mode), lines of one head (head mode), layers x heads grids (model
// mode), and the ranking's grid of divergences.

import { css, divergingIndex, headColor, lutToUint32, seqLut } from "../colors.js";
import { FONT, sizeCanvas } from "../dom.js";
import { gridLayout, headViewLayout, maxPool, rowHeight } from "../layout.js";
import { diffLut, signedBytes } from "../comparing.js";
import { cellFill, heatmapLayout, renderHeatmap } from "./heatmap.js";
import { drawGridFrame, drawHeatmapThumbs, drawThumbBorders } from "./grid.js";
import { LINE_BUDGET, columnWidths, drawColumnLabels, drawLines, setLineStyle } from "./lines.js";
import { colorBar, wrapText } from "./legend.js";

// the head mode's three panels stay short enough to draw in full
const HEAD_MAX_HEIGHT = 4000;
// Model mode's grids are a third of the width each: 12 heads still fit side
// by side in a 1280-px window (about 26 px thumbnails); below this size they
// wrap onto the next line instead of shrinking further.
const MODEL_MIN_THUMB = 20;
const MODEL_GAP = 4;

/**
 * @typedef {{title: HTMLElement, canvas: HTMLCanvasElement, box: HTMLElement, geo: any}} Panel
 * @typedef {{a: any, b: any, kind: any, kindB: any, labels: any, labelsB: any, theme: any, tile: HTMLCanvasElement, avail: number}} Sides
 *   a / b: A's and B's arrays; tile: a scratch canvas; avail: a panel's width
 */

/**
 * Matrix mode: A, B and (with `d`, B - A) as heatmaps, one layout for all:
 * the cell, font and gutters that fit the widest labels and the longest side.
 * @param {Record<"a" | "b" | "diff", Panel>} panels
 * @param {Sides} x
 * @param {{values: Float32Array, maxAbs: number} | null} d
 */
export function drawMatrixPanels(panels, x, d) {
  const { a, b, labels, labelsB, theme } = x;
  const seq = lutToUint32(seqLut(theme));
  const div = lutToUint32(diffLut(theme));
  const sides = [
    { p: panels.a, w: a, kind: x.kind, labels, color: (k) => seq[a.bytes[k]] },
    { p: panels.b, w: b, kind: x.kindB, labels: labelsB, color: (k) => seq[b.bytes[k]] },
  ];
  if (d) sides.push({ p: panels.diff, w: a, kind: x.kind, labels, color: (k) => div[divergingIndex(d.values[k], d.maxAbs)] });
  const all = { q: [...labels.q, ...labelsB.q], k: [...labels.k, ...labelsB.k] };
  const shared = heatmapLayout(x.tile, all, Math.max(a.shape[1], b.shape[1]), Math.max(a.shape[2], b.shape[2]), x.avail, 0);
  for (const s of sides) {
    const [, Tq, Tk] = s.w.shape;
    const g = { ...shared, Tq, Tk, width: shared.ox + Tk * shared.cell + 2, height: shared.oy + Tq * shared.cell + 2 };
    renderHeatmap(s.p.canvas, x.tile, g, 0, 0, g.width, g.height, s.labels, theme, cellFill(s.kind, Tq, Tk, theme, s.color));
    s.p.geo = { type: "matrix", ...g, labels: s.labels, w: s.w };
    s.p.canvas.dataset.geometry = JSON.stringify({ ox: g.ox, oy: g.oy, cell: g.cell, fontPx: g.fontPx, Tq, Tk, width: g.width, height: g.height });
  }
}

/**
 * Head mode: A's and B's lines of one head in `color`, and (with `d`)
 * B - A's lines by sign (blue: A higher, red: B higher), one row height.
 * @param {Record<"a" | "b" | "diff", Panel>} panels
 * @param {Sides} x
 */
export function drawLinePanels(panels, x, d, color, zoom) {
  const { a, b, labels, labelsB, theme } = x;
  const sides = [
    { p: panels.a, w: a, labels, strokes: [[a.bytes, color]] },
    { p: panels.b, w: b, labels: labelsB, strokes: [[b.bytes, color]] },
  ];
  if (d) {
    const { pos, neg } = signedBytes(d.values, d.maxAbs);
    sides.push({ p: panels.diff, w: a, labels, strokes: [[neg, css(theme.div[0])], [pos, css(theme.div[4])]] });
  }
  const rowH = rowHeight(Math.max(...a.shape.slice(1), ...b.shape.slice(1)), zoom, HEAD_MAX_HEIGHT);
  const fontPx = Math.min(13, rowH - 3);
  for (const s of sides) {
    const [, Tq, Tk] = s.w.shape;
    const widths = columnWidths(x.tile, s.labels, fontPx, 140);
    const gap = Math.max(80, Math.min(300, x.avail - widths.leftW - widths.rightW - 24));
    const L = headViewLayout({ Tq, Tk, rowH, leftW: widths.leftW, rightW: widths.rightW, boxW: 0, nBox: 0, gap });
    const ctx = sizeCanvas(s.p.canvas, L.width, L.height);
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, L.width, L.height);
    if (widths.showText) drawColumnLabels(ctx, L, s.labels, fontPx, widths, 0, Math.max(Tq, Tk), () => theme.text);
    setLineStyle(ctx, Math.max(Tq, Tk));
    const at = { x0: L.lineX0, x1: L.lineX1, top: L.top, dq: rowH, dk: rowH };
    let lines = 0;
    for (const [bytes, col] of s.strokes) lines += drawLines(ctx, bytes, Tq, Tk, [0], () => col, at, { budget: LINE_BUDGET / s.strokes.length }).count;
    s.p.geo = { type: "head", ...L, Tq, Tk, labels: s.labels, w: s.w };
    s.p.canvas.dataset.geometry = JSON.stringify({
      top: L.top, rowH, lineX0: L.lineX0, lineX1: L.lineX1, leftTextX: L.leftTextX, rightTextX: L.rightTextX,
      width: L.width, height: L.height, Tq, Tk, lines,
    });
  }
}

/** The row labels of a layers x heads grid: L and the stored layer's id. */
export function gridLabels(kind, rows) {
  return kind.layer_ids.slice(0, rows).map((id) => `L${id}`);
}

/**
 * Model mode: A | B | B - A, each a layers x heads grid of heatmap
 * thumbnails of one size, so a head sits at the same place in all three.
 * @param {Array<{p: Panel, o: any, src: ArrayLike<number>, signed?: boolean, title: string, color: (v: number) => number}>} grids
 * @returns {{g: any, repooled: number[] | null}} the grid layout, and the
 *   map size the thumbnails were pooled again to (null: drawn as they came)
 */
export function drawModelGrids(grids, x) {
  const [L, H] = grids[0].o.shape;
  const g = gridLayout({ rows: L, cols: H, availWidth: x.avail, gap: MODEL_GAP, minThumb: MODEL_MIN_THUMB });
  let repooled = null;
  for (const m of grids) {
    const [, , Sq, Sk] = m.o.shape;
    const ctx = drawGridFrame(m.p.canvas, g, gridLabels(x.kind, L), [...Array(H).keys()], x.theme);
    // scaled down without smoothing a map loses whole rows and columns:
    // pool it to the thumbnail's device pixels first (the difference by
    // magnitude, so its strongest change of either sign stays)
    const S = Math.max(1, Math.floor((g.thumb * m.p.canvas.width) / g.width));
    const n = Sq * Sk;
    const maps = [];
    for (let k = 0; k < L * H; k++) {
      maps.push(Sq <= S && Sk <= S ? { data: m.src.subarray(k * n, (k + 1) * n), rows: Sq, cols: Sk } : maxPool(m.src, k * n, Sq, Sk, S, m.signed));
    }
    const { rows, cols } = maps[0];
    if (rows < Sq || cols < Sk) repooled = [rows, cols];
    drawHeatmapThumbs(ctx, x.tile, g, L, H, rows, cols, (px, l, h) => {
      const v = maps[l * H + h].data;
      for (let i = 0; i < v.length; i++) px[i] = m.color(v[i]);
    });
    drawThumbBorders(ctx, g, L, H, x.theme);
    m.p.title.textContent = m.title;
    m.p.box.style.width = `${g.width}px`;
    m.p.canvas.dataset.geometry = JSON.stringify({ labelW: g.labelW, labelH: g.labelH, gap: g.gap, thumb: g.thumb, rows: L, cols: H, Sq, Sk, pool: m.o.pool, drawn: [rows, cols] });
  }
  return { g, repooled };
}

/**
 * The ranking: a layers x heads grid of mean JSD (the `compare` answer),
 * shaded up to the largest; heads without a value are grey.
 * @returns {any} the grid layout
 */
export function drawRankGrid(canvas, answer, max, x) {
  const L = answer.layer_ids.length;
  const H = answer.num_heads;
  const g = gridLayout({ rows: L, cols: H, availWidth: x.width, minThumb: 16, maxThumb: 44 });
  const ctx = drawGridFrame(canvas, g, gridLabels(x.kind, L), [...Array(H).keys()], x.theme);
  const lut = seqLut(x.theme);
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const v = answer.jsd[l][h];
      const i = v !== null && max > 0 ? Math.round((v / max) * 255) : 0;
      ctx.fillStyle = css(v === null ? x.theme.masked : [lut[i * 4], lut[i * 4 + 1], lut[i * 4 + 2]]);
      ctx.fillRect(g.x(h), g.y(l), g.thumb, g.thumb);
    }
  }
  drawThumbBorders(ctx, g, L, H, x.theme);
  canvas.dataset.geometry = JSON.stringify({ labelW: g.labelW, labelH: g.labelH, gap: g.gap, thumb: g.thumb, rows: L, cols: H, max });
  return g;
}

const PANEL_GAP = 14;
const LINE_H = 16;

/**
 * One canvas of the compare view's panels side by side, each under its title
 * (wrapped to its width), and under them the colour scale's legend: what
 * PNG export saves (every panel, titled, with the sign convention). A part
 * with `text` and no canvas is a line of text across the top (a problem).
 * @param {Array<{canvas?: HTMLCanvasElement, title?: string, text?: string}>} parts
 * @param {{lut: Uint8ClampedArray, left: string, right: string, caption: string} | null} scale
 * @returns {HTMLCanvasElement} its dataset.panels: where each panel is (CSS px), JSON
 */
export function composePanels(parts, theme, scale) {
  const out = document.createElement("canvas");
  const m = out.getContext("2d");
  m.font = `12px ${FONT}`;
  const size = (c) => [parseFloat(c.style.width) || c.width, parseFloat(c.style.height) || c.height];
  const panels = parts.filter((p) => p.canvas).map((p) => ({ ...p, size: size(p.canvas) }));
  const panelsW = panels.reduce((w, p) => w + p.size[0], 0) + PANEL_GAP * Math.max(0, panels.length - 1);
  const width = Math.max(panelsW, 480) + 16;
  const notes = parts.filter((p) => p.text).flatMap((p) => wrapText(m, p.text, width - 16));
  for (const p of panels) p.lines = wrapText(m, p.title || "", p.size[0]);
  const titleH = Math.max(1, ...panels.map((p) => p.lines.length)) * LINE_H;
  const top = 8 + notes.length * LINE_H;
  const bodyH = Math.max(0, ...panels.map((p) => p.size[1]));
  const height = top + titleH + bodyH + (scale ? 28 : 8);
  const ctx = sizeCanvas(out, width, height);
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, width, height);
  ctx.font = `12px ${FONT}`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.fillStyle = theme.text;
  notes.forEach((line, i) => ctx.fillText(line, 8, 8 + (i + 0.5) * LINE_H));
  let x = 8;
  const where = [];
  for (const p of panels) {
    ctx.fillStyle = theme.muted;
    ctx.font = `12px ${FONT}`;
    p.lines.forEach((line, i) => ctx.fillText(line, x, top + (i + 0.5) * LINE_H));
    ctx.drawImage(p.canvas, x, top + titleH, p.size[0], p.size[1]);
    where.push({ x, y: top + titleH, width: p.size[0], height: p.size[1], title: p.title });
    x += p.size[0] + PANEL_GAP;
  }
  if (scale) colorBar(ctx, scale.lut, 8, top + titleH + bodyH + 10, 120, 10, { ...scale, theme });
  out.dataset.panels = JSON.stringify(where);
  return out;
}
