// Matrix view: one head as a query x key heatmap, with a hover readout
// (query token, key token, weight). The canvas covers only the scroller's
// visible area (it is sticky inside a spacer as large as the whole map):
// each draw fills the visible cells into one ImageData (one pixel per cell)
// and scales it up without smoothing, so 4096 x 4096 costs what the screen
// shows, not 16 M pixels. Token labels stay frozen at the left and top edges
// while the map scrolls. The hover crosshair is made of DOM boxes, so hovering
// never repaints the map. Causal (future) positions are greyed. For a step
// captured from an image, image mode (draw/image.js) draws the query's row
// over the image instead.

import { lutToUint32, seqLut } from "../colors.js";
import { canvasPoint, el } from "../dom.js";
import { weightAt } from "../decode.js";
import { queryIndex } from "../state.js";
import { matrixHit } from "../layout.js";
import { headParams, headTitle, need, showNeeds } from "../host.js";
import { headControl, imageControl, keyboardArea, layerControl, zoomControl } from "./controls.js";
import { shortLabel } from "../tokens.js";
import { cellFill, heatmapLayout, renderHeatmap } from "../draw/heatmap.js";
import { ScrolledCanvas } from "../draw/scroll.js";
import { ImagePanels } from "../draw/image.js";
import { AGG_LABELS } from "../aggregate.js";

const EXPORT_MAX_SIDE = 8192;

export default class MatrixView {
  /** One head of one layer, or an aggregate over heads (computed by the server). */
  static needs({ state }) {
    return [need("attention", state, headParams(state))];
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    this.layer = layerControl(host);
    this.head = headControl(host);
    this.zoom = zoomControl(host, "Cell size");
    this.imageMode = imageControl(host);
    this.image = new ImagePanels(host, "matrix");
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "matrix-readout" }, text: "hover a cell" });
    this.controls = el("div", { className: "tba-controls" }, this.layer.field, this.head.field, this.zoom.field,
      this.imageMode.field, this.readout);
    const box = (cls) => el("div", { className: "tba-cross " + cls });
    this.rowBand = box("tba-cross-row");
    this.colBand = box("tba-cross-col");
    this.cellBox = box("tba-cross-cell");
    this.sc = new ScrolledCanvas("matrix-canvas", () => {
      if (this.ctx && this.weights) this.draw();
    }, this.rowBand, this.colBand, this.cellBox);
    this.canvas = this.sc.canvas;
    this.scroll = this.sc.scroll;
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "matrix-view" } }, this.scroll, this.image.root);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.setCell(null));
    keyboardArea(this.canvas, "Matrix view: up and down arrows move along the queries, shift with left or right arrow along the keys", {
      ArrowUp: () => this.moveCell(-1, 0), ArrowDown: () => this.moveCell(1, 0),
      "Shift+ArrowLeft": () => this.moveCell(0, -1), "Shift+ArrowRight": () => this.moveCell(0, 1),
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
    this.imaging = this.imageMode.update(ctx);
    this.scroll.hidden = this.imaging;
    this.image.root.hidden = !this.imaging;
    await showNeeds(this, ctx, (w) => {
      this.weights = w;
    });
  }

  /** What the view shows, for an export's title. */
  describe() {
    return headTitle(this.ctx.state);
  }

  detail() {
    if (this.imaging) return `image=1;query=${queryIndex(this.ctx.state, this.ctx.kind)}`;
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
    if (this.imaging) {
      const { agg, head } = this.ctx.state;
      this.image.draw(this.ctx, this.weights, [[0, agg ? AGG_LABELS[agg] : head]]);
      return;
    }
    const g = this.layout();
    const { x0, y0, vw, vh } = this.sc.visible(g.width, g.height);
    this.geo = { ...g, viewX: x0, viewY: y0, viewW: vw, viewH: vh };
    this.canvas.dataset.geometry = JSON.stringify({
      ox: g.ox, oy: g.oy, axis: g.axis, cell: g.cell, Tq: g.Tq, Tk: g.Tk, width: g.width, height: g.height,
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

  /** The arrow keys: the readout's cell moves, scrolled into view. */
  moveCell(di, dj) {
    const g = this.geo;
    if (!g) return;
    const c = this.cell || { i: 0, j: 0 };
    const next = this.cell ? { i: Math.max(0, Math.min(g.Tq - 1, c.i + di)), j: Math.max(0, Math.min(g.Tk - 1, c.j + dj)) } : c;
    const s = this.scroll;
    const x = next.j * g.cell;
    const y = next.i * g.cell;
    if (x < s.scrollLeft || x + g.cell > s.scrollLeft + s.clientWidth - g.ox) s.scrollLeft = Math.max(0, x - (s.clientWidth - g.ox) / 2);
    if (y < s.scrollTop || y + g.cell > s.scrollTop + s.clientHeight - g.oy) s.scrollTop = Math.max(0, y - (s.clientHeight - g.oy) / 2);
    this.setCell(next);
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
    if (this.imaging) return this.image.canvas;
    const g0 = this.layout();
    const fit = Math.max(1, Math.floor((EXPORT_MAX_SIDE - g0.ox) / Math.max(g0.Tq, g0.Tk)));
    const g = g0.cell > fit ? this.layout(fit) : g0;
    const c = document.createElement("canvas");
    this.render(c, g, 0, 0, g.width, g.height);
    return c;
  }
}

