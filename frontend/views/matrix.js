// Matrix view: one head as a query x key heatmap, with a hover readout
// (query token, key token, weight). The canvas covers only the scroller's
// visible area (it is sticky inside a spacer as large as the whole map):
// each draw fills the visible cells into one ImageData (one pixel per cell)
// and scales it up without smoothing, so 4096 x 4096 costs what the screen
// shows, not 16 M pixels. Token labels stay frozen at the left and top edges
// while the map scrolls. The hover crosshair is made of DOM boxes, so hovering
// never repaints the map. Causal (future) positions are greyed.

import { lutToUint32, seqLut } from "../colors.js";
import { canvasPoint, el, FONT, fitText, maxLabelWidth, sizeCanvas } from "../dom.js";
import { weightAt } from "../api.js";
import { matrixCell, matrixHit } from "../layout.js";
import { headControl, layerControl, zoomControl } from "./controls.js";
import { shortLabel } from "../tokens.js";

const EXPORT_MAX_SIDE = 8192;

export class MatrixView {
  constructor(app) {
    this.app = app;
    this.layer = layerControl(app);
    this.head = headControl(app);
    this.zoom = zoomControl(app, "Cell size");
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "matrix-readout" }, text: "hover a cell" });
    this.controls = el("div", { className: "tba-controls" }, this.layer.field, this.head.field, this.zoom.field, this.readout);
    this.canvas = el("canvas", { className: "tba-sticky", attrs: { "data-name": "matrix-canvas" } });
    const box = (cls) => el("div", { className: "tba-cross " + cls });
    this.rowBand = box("tba-cross-row");
    this.colBand = box("tba-cross-col");
    this.cellBox = box("tba-cross-cell");
    this.sizer = el("div", { className: "tba-sizer" }, this.canvas, this.rowBand, this.colBand, this.cellBox);
    this.scroll = el("div", { className: "tba-scroll" }, this.sizer);
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "matrix-view" } }, this.scroll);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.setCell(null));
    this.scroll.addEventListener("scroll", () => {
      if (this.scrollFrame) return;
      this.scrollFrame = requestAnimationFrame(() => {
        this.scrollFrame = 0;
        if (this.ctx && this.weights) this.draw();
      });
    });
    this.tile = document.createElement("canvas");
    this.ctx = null;
    this.weights = null;
    this.geo = null;
    this.cell = null;
  }

  async show(ctx) {
    const { state, kind } = ctx;
    this.layer.update(kind, state);
    this.head.update(kind, state);
    this.zoom.update(state);
    const w = await this.app.api.attention(state.run, state.tag, state.step, state.kind, state.layer, state.head);
    if (!ctx.isCurrent()) return;
    this.ctx = ctx;
    this.weights = w;
    this.draw();
  }

  prefetch(ctx) {
    const s = ctx.state;
    return this.app.api.attention(s.run, s.tag, s.step, s.kind, s.layer, s.head);
  }

  detail() {
    const g = this.geo;
    return g ? `cell=${g.cell}` : "";
  }

  /** Label gutters and cell size for the current state. */
  layout(cellOverride) {
    const [, Tq, Tk] = this.weights.shape;
    const avail = (this.scroll.clientWidth || 900) - 4;
    return heatmapLayout(this.tile, this.ctx.labels, Tq, Tk, avail, this.ctx.state.zoom, cellOverride);
  }

  draw() {
    const g = this.layout();
    this.sizer.style.width = g.width + "px";
    this.sizer.style.height = g.height + "px";
    const vw = Math.max(1, Math.min(g.width, this.scroll.clientWidth || g.width));
    const vh = Math.max(1, Math.min(g.height, this.scroll.clientHeight || g.height));
    const x0 = Math.max(0, Math.min(this.scroll.scrollLeft, g.width - vw));
    const y0 = Math.max(0, Math.min(this.scroll.scrollTop, g.height - vh));
    this.geo = { ...g, viewX: x0, viewY: y0, viewW: vw, viewH: vh };
    this.canvas.dataset.geometry = JSON.stringify({
      ox: g.ox, oy: g.oy, cell: g.cell, Tq: g.Tq, Tk: g.Tk, width: g.width, height: g.height,
      viewX: x0, viewY: y0, viewW: vw, viewH: vh,
    });
    this.render(this.canvas, g, x0, y0, vw, vh);
    this.drawCross();
  }

  /**
   * Draw the part of the map whose top-left map pixel is (x0, y0) (map
   * scrolled by that much), into a vw x vh canvas with frozen label gutters.
   */
  render(canvas, g, x0, y0, vw, vh) {
    const { kind, labels, theme } = this.ctx;
    const lut = lutToUint32(seqLut(theme));
    const src = this.weights.bytes;
    renderHeatmap(canvas, this.tile, g, x0, y0, vw, vh, labels, theme, cellFill(kind, g.Tq, g.Tk, theme, (k) => lut[src[k]]));
  }

  onMove(e) {
    if (!this.geo) return;
    const p = canvasPoint(this.canvas, e);
    const g = this.geo;
    if (p.x < g.ox || p.y < g.oy) {
      this.setCell(null);
      return;
    }
    this.setCell(matrixHit(p.x + g.viewX, p.y + g.viewY, g.ox, g.oy, g.cell, g.Tq, g.Tk));
  }

  setCell(c) {
    this.cell = c;
    this.drawCross();
    if (!c) {
      this.readout.textContent = "hover a cell";
      this.readout.removeAttribute("data-cell");
      this.readout.title = "";
      this.canvas.title = "";
      return;
    }
    const { labels, kind } = this.ctx;
    const v = weightAt(this.weights, c.i * this.geo.Tk + c.j);
    const masked = kind.causal && this.geo.Tq === this.geo.Tk && c.j > c.i;
    const text = (q, k) => `query ${c.i} \u201c${q}\u201d \u2192 key ${c.j} \u201c${k}\u201d: ` +
      (masked ? "masked (future position)" : v.toFixed(this.weights.values ? 4 : 3));
    this.readout.textContent = text(shortLabel(labels.q[c.i]), shortLabel(labels.k[c.j]));
    // the whole tokens (labels and the readout are cut short) on hover
    this.readout.title = text(labels.q[c.i], labels.k[c.j]);
    this.canvas.title = this.readout.title;
    this.readout.setAttribute("data-cell", `${c.i},${c.j}`);
  }

  /** Crosshair boxes, placed in the spacer where the cell shows on screen. */
  drawCross() {
    const g = this.geo;
    const c = this.cell;
    for (const b of [this.rowBand, this.colBand, this.cellBox]) b.hidden = !c || !g;
    if (!c || !g) return;
    // a map pixel (x, y) shows at viewport (x - viewX, y - viewY), that is at
    // spacer position (x - viewX + scrollLeft, ...); the canvas sticks at the
    // scroll offset, so the two offsets cancel when the view is not clamped
    const sx = this.scroll.scrollLeft - g.viewX;
    const sy = this.scroll.scrollTop - g.viewY;
    const x = g.ox + c.j * g.cell + sx;
    const y = g.oy + c.i * g.cell + sy;
    const place = (b, left, top, w, h) => {
      b.style.left = left + "px";
      b.style.top = top + "px";
      b.style.width = w + "px";
      b.style.height = h + "px";
    };
    place(this.rowBand, g.viewX + sx, y, g.viewW, g.cell);
    place(this.colBand, x, g.viewY + sy, g.cell, g.viewH);
    place(this.cellBox, x - 2, y - 2, g.cell + 4, g.cell + 4);
  }

  /** The whole map (up to 8192 px a side) for PNG export. */
  exportCanvas() {
    const g0 = this.layout();
    const fit = Math.max(1, Math.floor((EXPORT_MAX_SIDE - g0.ox) / Math.max(g0.Tq, g0.Tk)));
    const g = g0.cell > fit ? this.layout(fit) : g0;
    const c = document.createElement("canvas");
    this.render(c, g, 0, 0, g.width, g.height);
    return c;
  }
}

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
    if (cell < 8) return { showText: false, fontPx, labelW: 4, labelH: 4 };
    c0.font = `${fontPx}px ${FONT}`;
    const labelW = Math.min(160, Math.ceil(maxLabelWidth(c0, labels.q)) + 8);
    const labelH = Math.min(120, Math.ceil(maxLabelWidth(c0, labels.k)) + 8);
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
  return { ox: labelW, oy: labelH, cell, Tq, Tk, showText, fontPx, width: labelW + Tk * cell + 2, height: labelH + Tq * cell + 2 };
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
  // frozen gutters
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, ox, vh);
  ctx.fillRect(0, 0, vw, oy);
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
