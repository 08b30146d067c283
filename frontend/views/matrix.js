// Matrix view: one head as a query x key heatmap, with a hover readout
// (query token, key token, weight). The heatmap is one ImageData (one pixel
// per cell) scaled up without smoothing, so 4096 x 4096 stays one draw call;
// the hover crosshair lives on an overlay canvas so hovering never redraws
// the map. Causal (future) positions are greyed.

import { lutToUint32, seqLut } from "../colors.js";
import { canvasPoint, el, FONT, fitText, maxLabelWidth, sizeCanvas } from "../dom.js";
import { weightAt } from "../api.js";
import { matrixCell, matrixHit } from "../layout.js";
import { headControl, layerControl, zoomControl } from "./controls.js";

export class MatrixView {
  constructor(app) {
    this.app = app;
    this.layer = layerControl(app);
    this.head = headControl(app);
    this.zoom = zoomControl(app, "Cell size");
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "matrix-readout" }, text: "hover a cell" });
    this.controls = el("div", { className: "tba-controls" }, this.layer.field, this.head.field, this.zoom.field, this.readout);
    this.canvas = el("canvas", { attrs: { "data-name": "matrix-canvas" } });
    this.overlay = el("canvas", { className: "tba-overlay" });
    this.stack = el("div", { className: "tba-stack" }, this.canvas, this.overlay);
    this.scroll = el("div", { className: "tba-scroll" }, this.stack);
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "matrix-view" } }, this.scroll);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.setCell(null));
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

  setTheme(theme) {
    if (!this.ctx) return;
    this.ctx = { ...this.ctx, theme };
    this.draw();
  }

  onResize() {
    if (this.ctx) this.draw();
  }

  detail() {
    const g = this.geo;
    return g ? `cell=${g.cell}` : "";
  }

  draw() {
    const { state, kind, labels, theme } = this.ctx;
    const w = this.weights;
    const [, Tq, Tk] = w.shape;
    const avail = (this.scroll.clientWidth || 900) - 4;
    // labels only when cells are tall enough to read them
    let cell = matrixCell(Tk, avail, 120, state.zoom);
    const showText = cell >= 8;
    const fontPx = Math.min(12, cell - 1);
    const c0 = this.canvas.getContext("2d");
    c0.font = `${fontPx}px ${FONT}`;
    const labelW = showText ? Math.min(160, Math.ceil(maxLabelWidth(c0, labels.q)) + 8) : 4;
    const labelH = showText ? Math.min(120, Math.ceil(maxLabelWidth(c0, labels.k)) + 8) : 4;
    if (!state.zoom) cell = matrixCell(Tk, avail, labelW, 0);
    const ox = labelW;
    const oy = labelH;
    const width = ox + Tk * cell + 2;
    const height = oy + Tq * cell + 2;
    this.geo = { ox, oy, cell, Tq, Tk, width, height };
    this.canvas.dataset.geometry = JSON.stringify(this.geo);
    const ctx = sizeCanvas(this.canvas, width, height);
    sizeCanvas(this.overlay, width, height);
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, width, height);

    // the map: one pixel per cell, scaled up
    const tile = document.createElement("canvas");
    tile.width = Tk;
    tile.height = Tq;
    const tctx = tile.getContext("2d");
    const img = tctx.createImageData(Tk, Tq);
    const px = new Uint32Array(img.data.buffer);
    const lut = lutToUint32(seqLut(theme));
    const src = w.bytes;
    const m = theme.masked;
    const maskedPx = (255 << 24) | (m[2] << 16) | (m[1] << 8) | m[0];
    const causal = kind.causal && Tq === Tk;
    for (let i = 0; i < Tq; i++) {
      const row = i * Tk;
      for (let j = 0; j < Tk; j++) px[row + j] = causal && j > i ? maskedPx : lut[src[row + j]];
    }
    tctx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tile, ox, oy, Tk * cell, Tq * cell);

    if (showText) {
      ctx.font = `${fontPx}px ${FONT}`;
      ctx.fillStyle = theme.text;
      ctx.textBaseline = "middle";
      for (let i = 0; i < Tq; i++) fitText(ctx, labels.q[i], ox - 4, oy + (i + 0.5) * cell, labelW - 6, "right");
      ctx.save();
      ctx.rotate(-Math.PI / 2);
      for (let j = 0; j < Tk; j++) fitText(ctx, labels.k[j], -(oy - 4), ox + (j + 0.5) * cell, labelH - 6, "left");
      ctx.restore();
    } else {
      ctx.fillStyle = theme.muted;
      ctx.font = `10px ${FONT}`;
    }
    ctx.strokeStyle = theme.grid;
    ctx.lineWidth = 1;
    ctx.strokeRect(ox - 0.5, oy - 0.5, Tk * cell + 1, Tq * cell + 1);
    this.drawOverlay();
  }

  onMove(e) {
    if (!this.geo) return;
    const p = canvasPoint(this.canvas, e);
    const g = this.geo;
    this.setCell(matrixHit(p.x, p.y, g.ox, g.oy, g.cell, g.Tq, g.Tk));
  }

  setCell(c) {
    this.cell = c;
    this.drawOverlay();
    if (!c) {
      this.readout.textContent = "hover a cell";
      return;
    }
    const { labels, kind } = this.ctx;
    const v = weightAt(this.weights, c.i * this.geo.Tk + c.j);
    const masked = kind.causal && this.geo.Tq === this.geo.Tk && c.j > c.i;
    this.readout.textContent = `query ${c.i} \u201c${labels.q[c.i]}\u201d \u2192 key ${c.j} \u201c${labels.k[c.j]}\u201d: ` +
      (masked ? "masked (future position)" : v.toFixed(this.weights.values ? 4 : 3));
    this.readout.setAttribute("data-cell", `${c.i},${c.j}`);
  }

  drawOverlay() {
    const g = this.geo;
    if (!g) return;
    const ctx = this.overlay.getContext("2d");
    const sx = this.overlay.width / g.width;
    ctx.setTransform(sx, 0, 0, this.overlay.height / g.height, 0, 0);
    ctx.clearRect(0, 0, g.width, g.height);
    if (!this.cell) return;
    const { i, j } = this.cell;
    ctx.fillStyle = "rgba(255, 200, 0, 0.18)";
    ctx.fillRect(0, g.oy + i * g.cell, g.width, g.cell);
    ctx.fillRect(g.ox + j * g.cell, 0, g.cell, g.height);
    ctx.strokeStyle = "#ff9800";
    ctx.lineWidth = 2;
    ctx.strokeRect(g.ox + j * g.cell - 1, g.oy + i * g.cell - 1, g.cell + 2, g.cell + 2);
  }

  exportCanvas() {
    return this.canvas;
  }
}
