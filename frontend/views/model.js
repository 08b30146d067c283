// Model view: every layer x head as a thumbnail. All of it comes from one
// `overview` request (every stored layer and head max-pooled to at most 64 x 64
// by the server; unpooled when the sequence is that short). Short sequences
// (both sides <= 40 tokens) are drawn as lines like BertViz; longer ones as
// heatmaps. Click a thumbnail to open that head large: the head view for
// lines, the matrix view for heatmaps.

import { gridLayout } from "../layout.js";
import { css, headColor, lutToUint32, seqLut } from "../colors.js";
import { canvasPoint, el, labelled } from "../dom.js";
import { formatRange, parseRange } from "../state.js";
import { OVERVIEW_SIZE } from "../api.js";
import { need, showNeeds } from "../host.js";
import { drawGridFrame, drawHeatmapThumbs, drawThumbBorders } from "../draw/grid.js";
import { drawLines } from "../draw/lines.js";

export const LINES_MAX_TOKENS = 40;
// Total line length (px) of the whole grid in lines mode; see head.js.
export const GRID_LINE_BUDGET = 1500000;

export default class ModelView {
  /** Every layer and head, max-pooled on the server: one request. */
  static needs({ state }) {
    return [need("overview", state, { size: OVERVIEW_SIZE })];
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    const onFilter = (key, input) => () => {
      const v = input.value.trim();
      const parsed = parseRange(v);
      input.setCustomValidity(v !== "" && parsed === null ? "use numbers and ranges, like 0-3,7" : "");
      if (v === "" || parsed !== null) host.setState({ [key]: parsed });
    };
    this.layersInput = el("input", { attrs: { type: "text", placeholder: "all", "data-name": "mlayers" }, title: "Layers to show: numbers and ranges, like 0-3,7" });
    this.headsInput = el("input", { attrs: { type: "text", placeholder: "all", "data-name": "mheads" }, title: "Heads to show: numbers and ranges, like 0-3,7" });
    this.layersInput.addEventListener("change", onFilter("mlayers", this.layersInput));
    this.headsInput.addEventListener("change", onFilter("mheads", this.headsInput));
    this.note = el("span", { className: "tba-hint tba-note", attrs: { "data-name": "model-note" } });
    this.controls = el("div", { className: "tba-controls" },
      labelled("Layers", this.layersInput),
      labelled("Heads", this.headsInput),
      el("span", { className: "tba-hint", text: "click a thumbnail to open it" }),
      this.note,
    );
    this.canvas = el("canvas", { attrs: { "data-name": "model-canvas" } });
    this.canvas.style.cursor = "pointer";
    this.tooltip = el("div", { className: "tba-tooltip" });
    this.scroll = el("div", { className: "tba-scroll" }, this.canvas);
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "model-view" } }, this.scroll, this.tooltip);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.tooltip.style.display = "none";
    });
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.ctx = null;
    this.data = null;
    this.grid = null;
    this.mode = "";
  }

  async show(ctx) {
    const { state } = ctx;
    // not while typed in (:focus also inside a shadow root, where document.activeElement is its host)
    if (!this.layersInput.matches(":focus")) this.layersInput.value = formatRange(state.mlayers);
    if (!this.headsInput.matches(":focus")) this.headsInput.value = formatRange(state.mheads);
    await showNeeds(this, ctx, (o) => {
      this.data = o;
    });
  }

  detail() {
    return `mode=${this.mode}`;
  }

  shown() {
    const { state, kind } = this.ctx;
    const [L, H] = this.data.shape;
    const layerIdx = [];
    for (let i = 0; i < L; i++) {
      const id = kind.layer_ids[i];
      if (!state.mlayers || state.mlayers.includes(id)) layerIdx.push(i);
    }
    const heads = [];
    for (let h = 0; h < H; h++) if (!state.mheads || state.mheads.includes(h)) heads.push(h);
    return { layerIdx, heads };
  }

  draw() {
    const { kind, theme } = this.ctx;
    const o = this.data;
    const [, , Sq, Sk] = o.shape;
    const lines = o.pool[0] === 1 && o.pool[1] === 1 && kind.query_tokens.length <= LINES_MAX_TOKENS &&
      kind.key_tokens.length <= LINES_MAX_TOKENS;
    this.mode = lines ? "lines" : "heatmap";
    const { layerIdx, heads } = this.shown();
    const avail = Math.max(600, (this.scroll.clientWidth || 1000) - 4);
    const g = gridLayout({ rows: layerIdx.length, cols: heads.length, availWidth: avail });
    this.grid = g;
    this.canvas.dataset.geometry = JSON.stringify({
      labelW: g.labelW, labelH: g.labelH, gap: g.gap, thumb: g.thumb, rows: layerIdx.length, cols: heads.length,
    });
    this.layout = { layerIdx, heads };
    const ctx = drawGridFrame(this.canvas, g, layerIdx.map((l) => `L${kind.layer_ids[l]}`), heads, theme);
    const counts = lines ? this.drawLineThumbs(ctx, g) : this.drawHeatmaps(ctx, g);
    drawThumbBorders(ctx, g, layerIdx.length, heads.length, theme);

    const pool = o.pool[0] > 1 || o.pool[1] > 1 ? ` max-pooled to ${Sq}\u00d7${Sk} (${o.pool[0]}\u00d7${o.pool[1]} tokens per cell)` : "";
    const hidden = layerIdx.length === 0 || heads.length === 0 ? " \u00b7 nothing matches the filters" : "";
    const lc = counts && counts.drawn < counts.lines ? ` \u00b7 the ${counts.drawn} strongest of ${counts.lines} lines` : "";
    this.note.textContent = `${this.mode}${pool} \u00b7 ${layerIdx.length} layers \u00d7 ${heads.length} heads${hidden}${lc}`;
  }

  /** Each thumbnail's lines, the strongest first within its share of the grid's budget. */
  drawLineThumbs(ctx, g) {
    const o = this.data;
    const [, H, Sq, Sk] = o.shape;
    const { layerIdx, heads } = this.layout;
    const t = g.thumb;
    const per = H * Sq * Sk;
    const budget = GRID_LINE_BUDGET / Math.max(1, layerIdx.length * heads.length);
    ctx.lineWidth = 1;
    const counts = { drawn: 0, lines: 0 };
    layerIdx.forEach((l, r) => {
      const layer = o.bytes.subarray(l * per, (l + 1) * per);
      heads.forEach((h, c) => {
        const at = { x0: g.x(c) + 3, x1: g.x(c) + t - 3, top: g.y(r), dq: t / Sq, dk: t / Sk };
        const { cut } = drawLines(ctx, layer, Sq, Sk, [h], () => css(headColor(h)), at, { budget });
        counts.drawn += cut.drawn;
        counts.lines += cut.lines;
      });
    });
    return counts;
  }

  /** Each thumbnail as a heatmap of its (pooled) map. */
  drawHeatmaps(ctx, g) {
    const o = this.data;
    const [, H, Sq, Sk] = o.shape;
    const { layerIdx, heads } = this.layout;
    const lut = lutToUint32(seqLut(this.ctx.theme));
    drawHeatmapThumbs(ctx, document.createElement("canvas"), g, layerIdx.length, heads.length, Sq, Sk, (px, r, c) => {
      const base = (layerIdx[r] * H + heads[c]) * Sq * Sk;
      for (let i = 0, n = Sq * Sk; i < n; i++) px[i] = lut[o.bytes[base + i]];
    });
    return null;
  }

  cellAt(e) {
    if (!this.grid) return null;
    const p = canvasPoint(this.canvas, e);
    const hit = this.grid.hit(p.x, p.y);
    if (!hit) return null;
    const l = this.layout.layerIdx[hit.row];
    const h = this.layout.heads[hit.col];
    return { layer: this.ctx.kind.layer_ids[l], head: h };
  }

  onMove(e) {
    const c = this.cellAt(e);
    if (!c) {
      this.tooltip.style.display = "none";
      return;
    }
    this.tooltip.textContent = `layer ${c.layer} \u00b7 head ${c.head}\nclick to open in the ${this.mode === "lines" ? "head" : "matrix"} view`;
    this.tooltip.style.display = "block";
    this.tooltip.style.left = e.clientX + 12 + "px";
    this.tooltip.style.top = e.clientY + 12 + "px";
  }

  onClick(e) {
    const c = this.cellAt(e);
    if (!c) return;
    this.tooltip.style.display = "none";
    if (this.mode === "lines") this.host.setState({ view: "head", layer: c.layer, heads: [c.head], head: c.head, hover: null, agg: null });
    else this.host.setState({ view: "matrix", layer: c.layer, head: c.head, agg: null });
  }

  exportCanvas() {
    return this.canvas;
  }
}
