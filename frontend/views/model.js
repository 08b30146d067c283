// Model view: every layer x head as a thumbnail. All of it comes from one
// `overview` request (every stored layer and head max-pooled to at most 64 x 64
// by the server; unpooled when the sequence is that short). Short sequences
// (both sides <= 40 tokens) are drawn as lines like BertViz; longer ones as
// heatmaps. Click a thumbnail to open that head large: the head view for
// lines, the matrix view for heatmaps.

import { ALPHA_BUCKETS, budgetCutoff, collectEdges, gridLayout } from "../layout.js";
import { css, headColor, lutToUint32, seqLut } from "../colors.js";
import { canvasPoint, el, FONT, labelled, sizeCanvas } from "../dom.js";
import { formatRange, parseRange } from "../state.js";
import { OVERVIEW_SIZE } from "../api.js";
import { strokeEdges } from "./head.js";

export const LINES_MAX_TOKENS = 40;
// Total line length (px) of the whole grid in lines mode; see head.js.
export const GRID_LINE_BUDGET = 1500000;

/**
 * Size a canvas for a thumbnail grid (g from gridLayout) and draw its
 * background and labels: each column's head colour and H<n> on top, a row
 * label left of each row.
 * @param {string[]} rowLabels
 * @param {number[]} heads the head of each column
 * @returns {CanvasRenderingContext2D}
 */
export function drawGridFrame(canvas, g, rowLabels, heads, theme) {
  const ctx = sizeCanvas(canvas, g.width, g.height);
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, g.width, g.height);
  ctx.font = `11px ${FONT}`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  // narrow columns (compare's three grids) keep the number and drop the "H"
  const last = `H${Math.max(0, ...heads)}`;
  const prefix = 11 + ctx.measureText(last).width <= g.thumb + g.gap - 2 ? "H" : "";
  heads.forEach((h, c) => {
    ctx.fillStyle = css(headColor(h));
    ctx.fillRect(g.x(c), 4, 8, 8);
    ctx.fillStyle = theme.muted;
    ctx.fillText(`${prefix}${h}`, g.x(c) + 11, 8);
  });
  ctx.fillStyle = theme.muted;
  ctx.textAlign = "right";
  rowLabels.forEach((text, r) => ctx.fillText(text, g.labelW - 2, g.y(r) + g.thumb / 2));
  return ctx;
}

/**
 * Fill every thumbnail of a rows x cols grid with an Sq x Sk map: one
 * pixel a cell on the scratch canvas `tile`, scaled up without smoothing.
 * fill(px, r, c) writes the packed RGBA of row r, column c's map into px
 * (row-major, Sq * Sk).
 */
export function drawHeatmapThumbs(ctx, tile, g, rows, cols, Sq, Sk, fill) {
  tile.width = Sk;
  tile.height = Sq;
  const tctx = tile.getContext("2d");
  const img = tctx.createImageData(Sk, Sq);
  const px = new Uint32Array(img.data.buffer);
  ctx.imageSmoothingEnabled = false;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      fill(px, r, c);
      tctx.putImageData(img, 0, 0);
      ctx.drawImage(tile, g.x(c), g.y(r), g.thumb, g.thumb);
    }
  }
}

/** A border in the theme's grid colour around each thumbnail. */
export function drawThumbBorders(ctx, g, rows, cols, theme) {
  ctx.strokeStyle = theme.grid;
  ctx.lineWidth = 1;
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) ctx.strokeRect(g.x(c) - 0.5, g.y(r) - 0.5, g.thumb + 1, g.thumb + 1);
}

export class ModelView {
  constructor(app) {
    this.app = app;
    const onFilter = (key, input) => () => {
      const v = input.value.trim();
      const parsed = parseRange(v);
      input.setCustomValidity(v !== "" && parsed === null ? "use numbers and ranges, like 0-3,7" : "");
      if (v === "" || parsed !== null) app.setState({ [key]: parsed });
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
    if (document.activeElement !== this.layersInput) this.layersInput.value = formatRange(state.mlayers);
    if (document.activeElement !== this.headsInput) this.headsInput.value = formatRange(state.mheads);
    const o = await this.app.api.overview(state.run, state.tag, state.step, state.kind, OVERVIEW_SIZE);
    if (!ctx.isCurrent()) return;
    this.ctx = ctx;
    this.data = o;
    this.draw();
  }

  prefetch(ctx) {
    const s = ctx.state;
    return this.app.api.overview(s.run, s.tag, s.step, s.kind, OVERVIEW_SIZE);
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
    const [, H, Sq, Sk] = o.shape;
    const Tq = kind.query_tokens.length;
    const Tk = kind.key_tokens.length;
    const lines = o.pool[0] === 1 && o.pool[1] === 1 && Tq <= LINES_MAX_TOKENS && Tk <= LINES_MAX_TOKENS;
    this.mode = lines ? "lines" : "heatmap";
    const { layerIdx, heads } = this.shown();
    this.lineCounts = null;
    const avail = Math.max(600, (this.scroll.clientWidth || 1000) - 4);
    const g = gridLayout({ rows: layerIdx.length, cols: heads.length, availWidth: avail });
    this.grid = g;
    this.canvas.dataset.geometry = JSON.stringify({
      labelW: g.labelW, labelH: g.labelH, gap: g.gap, thumb: g.thumb, rows: layerIdx.length, cols: heads.length,
    });
    this.layout = { layerIdx, heads };
    const ctx = drawGridFrame(this.canvas, g, layerIdx.map((l) => `L${kind.layer_ids[l]}`), heads, theme);

    const per = H * Sq * Sk;
    if (lines) {
      const t = g.thumb;
      ctx.lineWidth = 1;
      const perThumb = GRID_LINE_BUDGET / Math.max(1, layerIdx.length * heads.length);
      const geo = { budget: perThumb, gap: t - 6, rowQ: t / Sq, rowK: t / Sk };
      let drawn = 0;
      let lines = 0;
      layerIdx.forEach((l, r) => {
        const layer = o.bytes.subarray(l * per, (l + 1) * per);
        const edges = heads.map((h) => {
          const cut = budgetCutoff(layer, Sq, Sk, [h], geo);
          drawn += cut.drawn;
          lines += cut.lines;
          return cut.cutoff > 255 ? { head: h, offsets: new Int32Array(ALPHA_BUCKETS + 1), q: new Int32Array(0), k: new Int32Array(0), count: 0 } : collectEdges(layer, Sq, Sk, [h], { minByte: cut.cutoff })[0];
        });
        this.lineCounts = { drawn, lines };
        edges.forEach((e, c) => strokeEdges(ctx, e, css(headColor(e.head)), g.x(c) + 3, g.x(c) + t - 3, g.y(r), t / Sq, t / Sk));
      });
    } else {
      const lut = lutToUint32(seqLut(theme));
      drawHeatmapThumbs(ctx, document.createElement("canvas"), g, layerIdx.length, heads.length, Sq, Sk, (px, r, c) => {
        const base = layerIdx[r] * per + heads[c] * Sq * Sk;
        const src = o.bytes;
        for (let i = 0, n = Sq * Sk; i < n; i++) px[i] = lut[src[base + i]];
      });
    }
    drawThumbBorders(ctx, g, layerIdx.length, heads.length, theme);

    const pool = o.pool[0] > 1 || o.pool[1] > 1 ? ` max-pooled to ${Sq}\u00d7${Sk} (${o.pool[0]}\u00d7${o.pool[1]} tokens per cell)` : "";
    const hidden = layerIdx.length === 0 || heads.length === 0 ? " \u00b7 nothing matches the filters" : "";
    const lc = lines && this.lineCounts && this.lineCounts.drawn < this.lineCounts.lines
      ? ` \u00b7 the ${this.lineCounts.drawn} strongest of ${this.lineCounts.lines} lines` : "";
    this.note.textContent = `${this.mode}${pool} \u00b7 ${layerIdx.length} layers \u00d7 ${heads.length} heads${hidden}${lc}`;
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
    if (this.mode === "lines") this.app.setState({ view: "head", layer: c.layer, heads: [c.head], head: c.head, hover: null });
    else this.app.setState({ view: "matrix", layer: c.layer, head: c.head });
  }

  exportCanvas() {
    return this.canvas;
  }
}
