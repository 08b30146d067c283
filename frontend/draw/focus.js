// One head enlarged in place over a thumbnail grid (BertViz's model view:
// click a thumbnail to see it large): its lines between the token columns
// (short inputs, with hover: a token's lines only) or its heatmap (long
// inputs, with a hover readout), drawn from the head's own attention (not
// the grid's pooled thumbnail). The grid, its filters and the step stay as
// they were; closing it (its button, Escape, a click outside) shows the grid.

import { css, headColor, lutToUint32, seqLut } from "../colors.js";
import { canvasPoint, el, sizeCanvas } from "../dom.js";
import { headViewHit, headViewLayout, matrixHit } from "../layout.js";
import { weightAt } from "../decode.js";
import { shortLabel } from "../tokens.js";
import { cellFill, heatmapLayout, renderHeatmap } from "./heatmap.js";
import { LINE_BUDGET, columnWidths, drawColumnLabels, drawLines, setLineStyle } from "./lines.js";
import { axisTitle } from "./legend.js";

// up to this many tokens a side the enlarged head is lines, like the grid's
const LINES_MAX = 64;

export class FocusPanel {
  /**
   * @param {{close: () => void, open: (view: string) => void, drawn: () => void}} actions
   */
  constructor(actions) {
    this.actions = actions;
    this.title = el("span", { className: "tba-focus-title", attrs: { "data-name": "model-focus-title" } });
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "model-focus-readout" } });
    this.openBtn = el("button", { attrs: { "data-name": "model-focus-open" }, on: { click: () => actions.open(this.lines ? "head" : "matrix") } });
    const close = el("button", { text: "\u00d7 close", title: "Back to the grid (Esc)", attrs: { "data-name": "model-focus-close" }, on: { click: () => actions.close() } });
    this.canvas = el("canvas", { attrs: { "data-name": "model-focus" } });
    this.tile = document.createElement("canvas");
    this.element = el("div", { className: "tba-focus", attrs: { "data-name": "model-focus-panel", role: "dialog" } },
      el("div", { className: "tba-focus-bar" }, this.title, this.readout, this.openBtn, close), this.canvas);
    this.element.hidden = true;
    this.canvas.tabIndex = 0;
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.setHover(null));
    this.element.addEventListener("keydown", (e) => {
      if (e.key !== "Escape") return;
      e.preventDefault();
      actions.close();
    });
    this.hover = null;
    this.frame = 0;
    this.data = null;
  }

  /**
   * Show layer / head enlarged: w is its attention ([1, Tq, Tk] bytes).
   * @param {{layer: number, head: number, w: any, kind: any, labels: any, theme: any, ranges: any, width: number, height: number}} d
   */
  show(d) {
    this.data = d;
    this.element.hidden = false;
    const [, Tq, Tk] = d.w.shape;
    this.lines = Tq <= LINES_MAX && Tk <= LINES_MAX;
    this.title.textContent = `layer ${d.layer} \u00b7 head ${d.head} \u00b7 ${this.lines ? "hover a token for its lines" : "hover a cell"}`;
    this.openBtn.textContent = `open in the ${this.lines ? "head" : "matrix"} view`;
    this.draw();
  }

  hide() {
    this.element.hidden = true;
    this.data = null;
    this.hover = null;
  }

  draw() {
    const d = this.data;
    if (!d) return;
    if (this.lines) this.drawLines(d);
    else this.drawHeatmap(d);
  }

  drawLines(d) {
    const [, Tq, Tk] = d.w.shape;
    const T = Math.max(Tq, Tk);
    const rowH = Math.max(6, Math.min(22, Math.floor((d.height - 40) / T)));
    const fontPx = Math.min(13, rowH - 3);
    const widths = columnWidths(this.tile, d.labels, fontPx, 180);
    const gap = Math.max(160, Math.min(520, d.width - widths.leftW - widths.rightW - 40));
    const L = headViewLayout({ Tq, Tk, rowH, leftW: widths.leftW, rightW: widths.rightW, boxW: 0, nBox: 0, gap, top: 22 });
    this.geo = { type: "lines", L, Tq, Tk };
    const ctx = sizeCanvas(this.canvas, L.width, L.height);
    ctx.fillStyle = d.theme.background;
    ctx.fillRect(0, 0, L.width, L.height);
    axisTitle(ctx, "query", L.leftTextX, 10, d.theme, false, "right");
    axisTitle(ctx, "key", L.rightTextX, 10, d.theme);
    if (this.hover) {
      ctx.fillStyle = d.theme.highlight;
      const y = L.top + this.hover.index * rowH;
      if (this.hover.side === "q") ctx.fillRect(0, y, L.lineX0, rowH);
      else ctx.fillRect(L.lineX1, y, L.width - L.lineX1, rowH);
    }
    if (widths.showText) drawColumnLabels(ctx, L, d.labels, fontPx, widths, 0, T, () => d.theme.text);
    setLineStyle(ctx, T);
    const at = { x0: L.lineX0, x1: L.lineX1, top: L.top, dq: rowH, dk: rowH };
    const drawn = drawLines(ctx, d.w.bytes, Tq, Tk, [0], () => css(headColor(d.head)), at, { ...d.ranges, hover: this.hover, budget: LINE_BUDGET });
    this.count = drawn.count;
    this.canvas.dataset.geometry = JSON.stringify({ type: "lines", top: L.top, rowH, lineX0: L.lineX0, lineX1: L.lineX1, leftTextX: L.leftTextX, rightTextX: L.rightTextX, width: L.width, height: L.height, lines: drawn.count });
  }

  drawHeatmap(d) {
    const [, Tq, Tk] = d.w.shape;
    const side = Math.max(200, Math.min(d.width, d.height));
    const g = heatmapLayout(this.tile, d.labels, Tq, Tk, side, 0);
    this.geo = { type: "matrix", g, Tq, Tk };
    const lut = lutToUint32(seqLut(d.theme));
    renderHeatmap(this.canvas, this.tile, g, 0, 0, g.width, g.height, d.labels, d.theme, cellFill(d.kind, Tq, Tk, d.theme, (k) => lut[d.w.bytes[k]]));
    this.canvas.dataset.geometry = JSON.stringify({ type: "matrix", ox: g.ox, oy: g.oy, cell: g.cell, Tq, Tk, width: g.width, height: g.height });
  }

  onMove(e) {
    const geo = this.geo;
    if (!geo || !this.data) return;
    const p = canvasPoint(this.canvas, e);
    if (geo.type === "lines") {
      this.setHover(headViewHit(geo.L, geo.Tq, geo.Tk, p.x, p.y));
      return;
    }
    const c = matrixHit(p.x, p.y, geo.g.ox, geo.g.oy, geo.g.cell, geo.Tq, geo.Tk);
    const { labels, w } = this.data;
    this.readout.textContent = c ? `query ${c.i} \u201c${shortLabel(labels.q[c.i])}\u201d \u2192 key ${c.j} \u201c${shortLabel(labels.k[c.j])}\u201d: ${weightAt(w, c.i * geo.Tk + c.j).toFixed(3)}` : "";
  }

  /** Lines mode: only the hovered token's lines (null: all), redrawn once a frame. */
  setHover(h) {
    const same = (a, b) => (a === null && b === null) || Boolean(a && b && a.side === b.side && a.index === b.index);
    if (same(h, this.hover)) return;
    this.hover = h;
    const labels = this.data.labels;
    this.readout.textContent = h ? `${h.side === "q" ? "query" : "key"} ${h.index} \u201c${shortLabel((h.side === "q" ? labels.q : labels.k)[h.index])}\u201d` : "";
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
      this.actions.drawn();
    });
  }
}
