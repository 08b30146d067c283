// Heatmaps of query x key cells (the matrix view, compare's matrix panels):
// the layout (label gutters, cell size, font), the cell colours, and the
// drawing of the visible part of a map with frozen label gutters.

import { FONT, fitText, maxLabelWidth, sizeCanvas } from "../dom.js";
import { matrixCell } from "../layout.js";
import { axisTitle } from "./legend.js";

// a strip left of the query labels and one above the key labels, for the
// axis titles ("query", "key"): there at any length, labels or not
export const AXIS = 14;

/**
 * Label gutters and cell size of a heatmap of Tq x Tk cells fitting `avail`
 * px (or of cell `cellOverride` px; zoom as in the state). The font follows
 * the cell (min(12, cell - 1) px; no labels below 8 px cells) and the
 * gutters follow the font: automatically, the largest cell whose gutters
 * still leave room for Tk columns, so the labels, the font and the cell
 * always belong together (views laying out several maps alike pass the
 * widest labels of all of them).
 */
export function heatmapLayout(tile, labels, Tq, Tk, avail, zoom, cellOverride) {
  const c0 = tile.getContext("2d");
  const gutters = (cell) => {
    const fontPx = Math.min(12, cell - 1);
    if (cell < 8) return { showText: false, fontPx, labelW: AXIS + 4, labelH: AXIS + 4 };
    c0.font = `${fontPx}px ${FONT}`;
    const labelW = AXIS + Math.min(160, Math.ceil(maxLabelWidth(c0, labels.q)) + 8);
    const labelH = AXIS + Math.min(120, Math.ceil(maxLabelWidth(c0, labels.k)) + 8);
    return { showText: true, fontPx, labelW, labelH };
  };
  let cell = cellOverride || (zoom ? matrixCell(Tk, avail, 0, zoom) : 0);
  if (!cell) {
    cell = 1;
    for (let c = 28; c > 1; c--) {
      if (matrixCell(Tk, avail, gutters(c).labelW, 0) >= c) {
        cell = c;
        break;
      }
    }
  }
  const { showText, fontPx, labelW, labelH } = gutters(cell);
  return { ox: labelW, oy: labelH, axis: AXIS, cell, Tq, Tk, showText, fontPx, width: labelW + Tk * cell + 2, height: labelH + Tq * cell + 2 };
}

/**
 * A renderHeatmap fill: cell (i, j) gets colorAt(i * Tk + j) (packed RGBA),
 * or the theme's masked grey where a causal kind hides the future (j > i).
 */
export function cellFill(kind, Tq, Tk, theme, colorAt) {
  const m = theme.masked;
  const maskedPx = (255 << 24) | (m[2] << 16) | (m[1] << 8) | m[0];
  const causal = kind.causal && Tq === Tk;
  return (px, i0, i1, j0, j1) => {
    const nj = j1 - j0;
    for (let i = i0; i < i1; i++) {
      const row = i * Tk;
      const out = (i - i0) * nj - j0;
      for (let j = j0; j < j1; j++) px[out + j] = causal && j > i ? maskedPx : colorAt(row + j);
    }
  };
}

/**
 * Draw the part of a heatmap whose top-left map pixel is (x0, y0) (map
 * scrolled by that much) into a vw x vh canvas, with frozen label gutters
 * (g from heatmapLayout). fill(px, i0, i1, j0, j1) writes the colours of the
 * visible cells into px, row-major, j1 - j0 wide; `tile` is a scratch canvas.
 */
export function renderHeatmap(canvas, tile, g, x0, y0, vw, vh, labels, theme, fill) {
  const { ox, oy, cell, Tq, Tk } = g;
  const ctx = sizeCanvas(canvas, vw, vh);
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, vw, vh);
  // visible cells
  const j0 = Math.max(0, Math.floor(x0 / cell));
  const j1 = Math.min(Tk, Math.ceil((x0 + vw - ox) / cell));
  const i0 = Math.max(0, Math.floor(y0 / cell));
  const i1 = Math.min(Tq, Math.ceil((y0 + vh - oy) / cell));
  const nj = Math.max(0, j1 - j0);
  const ni = Math.max(0, i1 - i0);
  if (nj > 0 && ni > 0) {
    tile.width = nj;
    tile.height = ni;
    const tctx = tile.getContext("2d");
    const img = tctx.createImageData(nj, ni);
    const px = new Uint32Array(img.data.buffer);
    fill(px, i0, i1, j0, j1);
    tctx.putImageData(img, 0, 0);
    ctx.save();
    ctx.beginPath();
    ctx.rect(ox, oy, vw - ox, vh - oy);
    ctx.clip();
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tile, ox + j0 * cell - x0, oy + i0 * cell - y0, nj * cell, ni * cell);
    ctx.restore();
  }
  // frozen gutters, with the axis titles
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, ox, vh);
  ctx.fillRect(0, 0, vw, oy);
  axisTitle(ctx, "key \u2192", ox + 2, AXIS / 2, theme);
  // rotated to read upwards: the arrow before the word points down the queries
  axisTitle(ctx, "\u2190 query", AXIS / 2, oy + Math.max(30, Math.min(Tq * cell - y0, vh - oy) / 2), theme, true);
  if (g.showText) {
    ctx.font = `${g.fontPx}px ${FONT}`;
    ctx.fillStyle = theme.text;
    ctx.textBaseline = "middle";
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, oy, ox, vh - oy);
    ctx.clip();
    for (let i = i0; i < i1; i++) fitText(ctx, labels.q[i], ox - 4, oy + (i + 0.5) * cell - y0, ox - 6, "right");
    ctx.restore();
    ctx.save();
    ctx.beginPath();
    ctx.rect(ox, 0, vw - ox, oy);
    ctx.clip();
    ctx.rotate(-Math.PI / 2);
    for (let j = j0; j < j1; j++) fitText(ctx, labels.k[j], -(oy - 4), ox + (j + 0.5) * cell - x0, oy - 6, "left");
    ctx.restore();
  }
  ctx.strokeStyle = theme.grid;
  ctx.lineWidth = 1;
  ctx.strokeRect(ox - 0.5, oy - 0.5, Math.min(vw - ox, Tk * cell - x0) + 1, Math.min(vh - oy, Tq * cell - y0) + 1);
}
