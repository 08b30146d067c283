// Model view: every layer x head as a thumbnail, fitted to the window. All of
// it comes from one `overview` request (every stored layer and head
// max-pooled to at most 64 x 64 by the server; unpooled when the sequence is
// that short). Short sequences (both sides <= 40 tokens) are drawn as lines
// like BertViz; longer ones as heatmaps. A sentence-pair filter keeps the
// lines it names (heatmaps: veils the rest). Click a thumbnail (or Enter on
// the focused grid) to enlarge that head in place, from its own attention,
// with hover (draw/focus.js); the grid and its filters stay.

import { gridLayout } from "../layout.js";
import { css, headColor, lutToUint32, seqLut } from "../colors.js";
import { canvasPoint, el, labelled } from "../dom.js";
import { formatRange, parseRange } from "../state.js";
import { OVERVIEW_SIZE } from "../api.js";
import { need, loadAll } from "../host.js";
import { drawGridFrame, drawHeatmapThumbs, drawThumbBorders } from "../draw/grid.js";
import { drawLines } from "../draw/lines.js";
import { FocusPanel } from "../draw/focus.js";
import { keyboardArea, pairControl } from "./controls.js";

export const LINES_MAX_TOKENS = 40;
// Total line length (px) of the whole grid in lines mode; see head.js.
export const GRID_LINE_BUDGET = 1500000;

export default class ModelView {
  /** Every layer and head, max-pooled on the server: one request; and the enlarged head's own attention. */
  static needs({ state }) {
    const out = [need("overview", state, { size: OVERVIEW_SIZE })];
    if (state.mfocus) out.push(need("attention", state, { layer: state.mfocus.layer, head: state.mfocus.head }));
    return out;
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    this.layersInput = this.filterInput("mlayers", "Layers to show: numbers and ranges, like 0-3,7", "layers");
    this.headsInput = this.filterInput("mheads", "Heads to show: numbers and ranges, like 0-3,7", "heads");
    this.invalid = el("span", { className: "tba-invalid", attrs: { "data-name": "model-filter-error", role: "alert" } });
    this.pair = pairControl(host);
    // one line, always there: its text (set after drawing) never moves the grid
    this.note = el("span", { className: "tba-hint tba-note tba-line", attrs: { "data-name": "model-note" } });
    this.controls = el("div", { className: "tba-controls" },
      labelled("Layers", this.layersInput), labelled("Heads", this.headsInput), this.invalid, this.pair.field,
      el("span", { className: "tba-hint", text: "click a thumbnail to enlarge it" }),
      this.note,
    );
    this.canvas = el("canvas", { attrs: { "data-name": "model-canvas" } });
    this.canvas.style.cursor = "pointer";
    this.tooltip = el("div", { className: "tba-tooltip" });
    this.scroll = el("div", { className: "tba-scroll" }, this.canvas);
    this.focus = new FocusPanel({
      close: () => this.closeFocus(),
      open: (view) => this.openFocused(view),
      drawn: () => host.drawn(this),
    });
    this.root = el("div", { className: "tba-viewroot tba-model", attrs: { "data-name": "model-view" } }, this.scroll, this.focus.element, this.tooltip);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.tooltip.style.display = "none";
    });
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.focus.element.addEventListener("click", (e) => {
      if (e.target === this.focus.element) this.closeFocus(); // outside the drawing
    });
    keyboardArea(this.canvas, "Model view: up and down arrows (and shift with left and right) move the cursor, Enter enlarges that head", {
      ArrowUp: () => this.moveCursor(-1, 0), ArrowDown: () => this.moveCursor(1, 0),
      "Shift+ArrowLeft": () => this.moveCursor(0, -1), "Shift+ArrowRight": () => this.moveCursor(0, 1),
      Enter: () => this.cursor && this.enlarge(this.cursorCell()),
      Escape: () => (this.ctx && this.ctx.state.mfocus ? this.closeFocus() : false),
    });
    this.ctx = null;
    this.data = null;
    this.grid = null;
    this.mode = "";
    this.cursor = null;
    this.lineCount = 0;
  }

  /** A layer or head filter input: a filter it cannot read is said beside it, never ignored silently. */
  filterInput(key, title, noun) {
    const input = el("input", { attrs: { type: "text", placeholder: "all", "data-name": key }, title });
    input.addEventListener("change", () => {
      const v = input.value.trim();
      const parsed = parseRange(v);
      const bad = v !== "" && parsed === null;
      input.setCustomValidity(bad ? "use numbers and ranges, like 0-3,7" : "");
      input.setAttribute("aria-invalid", String(bad));
      this.invalid.textContent = bad ? `\u201c${v.slice(0, 40)}\u201d is not a list of ${noun}: use numbers and ranges, like 0-3,7 (showing the last filter)` : "";
      if (!bad) this.host.setState({ [key]: parsed });
    });
    return input;
  }

  async show(ctx) {
    const { state } = ctx;
    // not while typed in (:focus also inside a shadow root, where document.activeElement is its host)
    if (!this.layersInput.matches(":focus")) this.layersInput.value = formatRange(state.mlayers);
    if (!this.headsInput.matches(":focus")) this.headsInput.value = formatRange(state.mheads);
    if (!this.layersInput.matches(":focus") && !this.headsInput.matches(":focus")) this.invalid.textContent = "";
    this.ranges = this.pair.update(ctx.kind, state);
    const [o, focused] = await loadAll(this.host.data, ModelView.needs(ctx));
    if (!ctx.isCurrent()) return;
    this.ctx = ctx;
    this.data = o;
    this.focused = focused || null;
    this.draw();
  }

  detail() {
    const f = this.ctx && this.ctx.state.mfocus;
    return `mode=${this.mode};lines=${this.lineCount}` + (f ? `;focus=${f.layer}.${f.head}` : "");
  }

  /** What the view shows, for an export's title. */
  describe() {
    const f = this.ctx.state.mfocus;
    return f ? ` \u00b7 layer ${f.layer} \u00b7 head ${f.head}` : "";
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
    // the whole grid in the window: the rows fit the view's height too
    const availHeight = Math.max(240, (this.root.clientHeight || 800) - 4);
    const g = gridLayout({ rows: layerIdx.length, cols: heads.length, availWidth: avail, availHeight });
    this.grid = g;
    this.canvas.dataset.geometry = JSON.stringify({
      labelW: g.labelW, labelH: g.labelH, gap: g.gap, thumb: g.thumb, rows: layerIdx.length, cols: heads.length,
      width: g.width, height: g.height, cursor: this.cursor,
    });
    this.layout = { layerIdx, heads };
    const ctx = drawGridFrame(this.canvas, g, layerIdx.map((l) => `L${kind.layer_ids[l]}`), heads, theme);
    const counts = lines ? this.drawLineThumbs(ctx, g) : this.drawHeatmaps(ctx, g);
    drawThumbBorders(ctx, g, layerIdx.length, heads.length, theme);
    this.drawCursor(ctx, g);
    this.lineCount = counts ? counts.drawn : 0;
    this.writeNote(counts);
    this.drawFocus();
  }

  writeNote(counts) {
    const [, , Sq, Sk] = this.data.shape;
    const { layerIdx, heads } = this.layout;
    const o = this.data;
    const pool = o.pool[0] > 1 || o.pool[1] > 1 ? ` max-pooled to ${Sq}\u00d7${Sk} (${o.pool[0]}\u00d7${o.pool[1]} tokens per cell)` : "";
    const hidden = layerIdx.length === 0 || heads.length === 0 ? " \u00b7 nothing matches the filters" : "";
    const lc = counts && counts.drawn < counts.lines ? ` \u00b7 the ${counts.drawn} strongest of ${counts.lines} lines` : "";
    this.note.textContent = `${this.mode}${pool} \u00b7 ${layerIdx.length} layers \u00d7 ${heads.length} heads${hidden}${lc}`;
  }

  /** Each thumbnail's lines (those the pair filter keeps), the strongest first within its share of the grid's budget. */
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
        const { cut } = drawLines(ctx, layer, Sq, Sk, [h], () => css(headColor(h)), at, { budget, ...this.ranges });
        counts.drawn += cut.drawn;
        counts.lines += cut.lines;
      });
    });
    return counts;
  }

  /** Each thumbnail as a heatmap of its (pooled) map; what the pair filter leaves out veiled. */
  drawHeatmaps(ctx, g) {
    const o = this.data;
    const [, H, Sq, Sk] = o.shape;
    const { layerIdx, heads } = this.layout;
    const lut = lutToUint32(seqLut(this.ctx.theme));
    drawHeatmapThumbs(ctx, document.createElement("canvas"), g, layerIdx.length, heads.length, Sq, Sk, (px, r, c) => {
      const base = (layerIdx[r] * H + heads[c]) * Sq * Sk;
      for (let i = 0, n = Sq * Sk; i < n; i++) px[i] = lut[o.bytes[base + i]];
    });
    const { qRange, kRange } = this.ranges;
    const [pq, pk] = o.pool;
    const cq = g.thumb / Sq;
    const ck = g.thumb / Sk;
    // pooled cells wholly outside the kept tokens
    const q0 = Math.ceil(qRange[0] / pq);
    const q1 = Math.floor(qRange[1] / pq);
    const k0 = Math.ceil(kRange[0] / pk);
    const k1 = Math.floor(kRange[1] / pk);
    ctx.fillStyle = this.ctx.theme.background;
    ctx.globalAlpha = 0.8;
    for (let r = 0; r < layerIdx.length; r++) {
      for (let c = 0; c < heads.length; c++) {
        const x = g.x(c);
        const y = g.y(r);
        if (q0 > 0) ctx.fillRect(x, y, g.thumb, q0 * cq);
        if (q1 < Sq) ctx.fillRect(x, y + q1 * cq, g.thumb, (Sq - q1) * cq);
        if (k0 > 0) ctx.fillRect(x, y, k0 * ck, g.thumb);
        if (k1 < Sk) ctx.fillRect(x + k1 * ck, y, (Sk - k1) * ck, g.thumb);
      }
    }
    ctx.globalAlpha = 1;
    return null;
  }

  /** The keyboard's cursor: a ring round its thumbnail. */
  drawCursor(ctx, g) {
    const c = this.cursor;
    if (!c || c.row >= this.layout.layerIdx.length || c.col >= this.layout.heads.length) return;
    ctx.strokeStyle = "#ff9800";
    ctx.lineWidth = 2;
    ctx.strokeRect(g.x(c.col) - 2, g.y(c.row) - 2, g.thumb + 4, g.thumb + 4);
  }

  /** The enlarged head, over the grid, sized to the visible part of the view. */
  drawFocus() {
    const f = this.ctx.state.mfocus;
    if (!f || !this.focused) {
      this.focus.hide();
      return;
    }
    const { kind, labels, theme } = this.ctx;
    const width = Math.max(300, (this.scroll.clientWidth || 900) - 24);
    const height = Math.max(240, (this.root.clientHeight || 700) - 70);
    this.focus.show({ layer: f.layer, head: f.head, w: this.focused, kind, labels, theme, ranges: this.ranges, width, height });
  }

  cellAt(e) {
    if (!this.grid) return null;
    const p = canvasPoint(this.canvas, e);
    const hit = this.grid.hit(p.x, p.y);
    return hit ? this.cellOf(hit.row, hit.col) : null;
  }

  cellOf(row, col) {
    return { layer: this.ctx.kind.layer_ids[this.layout.layerIdx[row]], head: this.layout.heads[col], row, col };
  }

  cursorCell() {
    return this.cellOf(this.cursor.row, this.cursor.col);
  }

  moveCursor(dr, dc) {
    if (!this.grid) return;
    const rows = this.layout.layerIdx.length;
    const cols = this.layout.heads.length;
    if (!rows || !cols) return;
    const c = this.cursor || { row: 0, col: 0 };
    this.cursor = this.cursor ? { row: Math.max(0, Math.min(rows - 1, c.row + dr)), col: Math.max(0, Math.min(cols - 1, c.col + dc)) } : c;
    this.draw();
    this.host.drawn(this);
  }

  onMove(e) {
    const c = this.cellAt(e);
    if (!c) {
      this.tooltip.style.display = "none";
      return;
    }
    this.tooltip.textContent = `layer ${c.layer} \u00b7 head ${c.head}\nclick to enlarge`;
    this.tooltip.style.display = "block";
    this.tooltip.style.left = e.clientX + 12 + "px";
    this.tooltip.style.top = e.clientY + 12 + "px";
  }

  onClick(e) {
    const c = this.cellAt(e);
    if (!c) return;
    this.tooltip.style.display = "none";
    this.cursor = { row: c.row, col: c.col };
    this.enlarge(c);
  }

  enlarge(c) {
    this.host.setState({ mfocus: { layer: c.layer, head: c.head } });
  }

  closeFocus() {
    this.host.setState({ mfocus: null });
    this.canvas.focus({ preventScroll: true });
  }

  /** The enlarged head in its own view (head view for lines, matrix view for heatmaps). */
  openFocused(view) {
    const f = this.ctx.state.mfocus;
    if (view === "head") this.host.setState({ view, layer: f.layer, heads: [f.head], head: f.head, hover: null, mfocus: null, agg: null });
    else this.host.setState({ view, layer: f.layer, head: f.head, mfocus: null, agg: null });
  }

  exportCanvas() {
    return this.ctx.state.mfocus && this.focused ? this.focus.canvas : this.canvas;
  }
}
