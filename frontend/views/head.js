// Head view: query tokens on the left, key tokens on the right, one line per
// (head, query, key) with opacity = weight, in each head's colour. Hover a
// token to keep only its lines and see per-head boxes on the other side;
// click it to pin that (pinned tokens are in the URL and survive step
// changes, as does a token under a still mouse while arrow keys change step).
// The canvas covers the rows visible in the scroller; of the lines crossing
// them, the strongest are drawn within a length budget (draw/lines.js). For a
// step captured from an image, image mode (draw/image.js) draws each shown
// head's attention of the query over the image instead.

import { hasSegments, headViewHit, headViewLayout, pairRanges, rowHeight } from "../layout.js";
import { css, headColor } from "../colors.js";
import { canvasPoint, el, labelled, setOptions, sizeCanvas } from "../dom.js";
import { PAIR_LABELS, PAIRS, queryIndex } from "../state.js";
import { need, showNeeds } from "../host.js";
import { headSquares, imageControl, keyboardArea, layerControl, zoomControl } from "./controls.js";
import { shortLabel } from "../tokens.js";
import { LINE_BUDGET, columnWidths, drawColumnLabels, drawLines, setLineStyle } from "../draw/lines.js";
import { ScrolledCanvas } from "../draw/scroll.js";
import { axisTitle, withHeadKey } from "../draw/legend.js";
import { ImagePanels } from "../draw/image.js";

const MAX_LABEL_W = 180;
// room above the token columns for their axis titles
const AXIS_TOP = 20;

const sameToken = (a, b) => (a === null && b === null) || Boolean(a && b && a.side === b.side && a.index === b.index);

export default class HeadView {
  /** One layer, every head (the heads shown are picked without a request). */
  static needs({ state }) {
    return [need("attention", state, { layer: state.layer })];
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    this.layer = layerControl(host);
    this.squares = headSquares(host);
    this.pairSel = el("select", { attrs: { "data-name": "pair" }, title: "Sentence pair filter: which segment the lines start in (query) and end in (key)", on: { change: () => host.setState({ pair: this.pairSel.value }) } });
    this.pairField = labelled("Pair", this.pairSel);
    this.zoom = zoomControl(host, "Row height");
    this.imageMode = imageControl(host);
    this.image = new ImagePanels(host, "head");
    // its text follows the hovered token: a line of its own that never collapses
    this.note = el("span", { className: "tba-hint tba-note tba-line", attrs: { "data-name": "head-note" } });
    this.hoverLabel = el("span", { className: "tba-readout", attrs: { "data-name": "head-hover" } });
    this.controls = el("div", { className: "tba-controls" },
      this.layer.field, labelled("Heads", this.squares.element), this.pairField, this.zoom.field, this.imageMode.field,
      el("span", { className: "tba-hint", text: "hover a token for its lines \u00b7 click to pin" }),
      this.hoverLabel, this.note);
    this.view = { y0: 0, h: 0 };
    this.sc = new ScrolledCanvas("head-canvas", () => {
      if (this.ctx && this.weights && Math.round(this.sc.scroll.scrollTop) !== Math.round(this.view.y0)) this.draw();
    });
    this.canvas = this.sc.canvas;
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "head-view" } }, this.sc.scroll, this.image.root);
    /** @type {{side: "q" | "k", index: number} | null} */
    this.transient = null;
    this.ctx = null;
    this.weights = null;
    this.geometry = null;
    this.edgeCount = 0;
    this.frame = 0;
    this.canvas.addEventListener("mousemove", (e) => this.setTransient(this.hit(e)));
    this.canvas.addEventListener("mouseleave", () => this.setTransient(null));
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    keyboardArea(this.canvas, "Head view: up and down arrows pin the previous or next token, shift with left or right arrow switches between queries and keys, Escape unpins", {
      ArrowUp: () => this.pinBy(-1), ArrowDown: () => this.pinBy(1),
      "Shift+ArrowLeft": () => this.pinSide("q"), "Shift+ArrowRight": () => this.pinSide("k"),
      Escape: () => (this.ctx && this.ctx.state.hover ? this.host.setState({ hover: null }) : false),
    });
  }

  /** The arrow keys: pin the token `delta` rows away on the pinned token's side (queries first), scrolled into view. */
  pinBy(delta) {
    if (!this.weights) return;
    const pinned = this.ctx.state.hover;
    const side = pinned ? pinned.side : "q";
    const len = this.weights.shape[side === "q" ? 1 : 2];
    const index = pinned ? Math.max(0, Math.min(len - 1, pinned.index + delta)) : delta > 0 ? 0 : len - 1;
    const L = this.geometry;
    if (L) {
      const y = L.top + index * L.rowH;
      const s = this.sc.scroll;
      if (y < s.scrollTop || y + L.rowH > s.scrollTop + s.clientHeight) s.scrollTop = Math.max(0, y - s.clientHeight / 2);
    }
    this.host.setState({ hover: { side, index } });
  }

  pinSide(side) {
    if (!this.weights) return;
    const pinned = this.ctx.state.hover;
    const len = this.weights.shape[side === "q" ? 1 : 2];
    this.host.setState({ hover: { side, index: Math.min(len - 1, pinned ? pinned.index : 0) } });
  }

  async show(ctx) {
    const { state, kind } = ctx;
    this.layer.update(kind, state);
    this.squares.update(kind.num_heads, state);
    this.zoom.update(state);
    const segs = hasSegments(kind);
    this.pairField.hidden = !segs;
    if (segs) setOptions(this.pairSel, PAIRS.map((p) => ({ value: p, label: PAIR_LABELS[p] })), state.pair);
    this.imaging = this.imageMode.update(ctx);
    this.sc.scroll.hidden = this.imaging;
    this.image.root.hidden = !this.imaging;
    await showNeeds(this, ctx, (w) => {
      this.weights = w;
    });
  }

  /** The token whose lines are shown: under the mouse, else the pinned one. */
  hoverNow() {
    return this.transient || (this.ctx && this.ctx.state.hover) || null;
  }

  /** What the view shows, for an export's title. */
  describe() {
    return ` \u00b7 layer ${this.ctx.state.layer}`;
  }

  detail() {
    if (this.imaging) return `image=1;query=${queryIndex(this.ctx.state, this.ctx.kind)}`;
    return `edges=${this.edgeCount};candidates=${this.cut ? this.cut.lines : 0}`;
  }

  heads() {
    const H = this.weights.shape[0];
    const s = this.ctx.state.heads;
    return s === null ? [...Array(H).keys()] : s.filter((h) => h < H);
  }

  hit(e) {
    if (!this.geometry) return null;
    const p = canvasPoint(this.canvas, e);
    const [, Tq, Tk] = this.weights.shape;
    return headViewHit(this.geometry, Tq, Tk, p.x, p.y + this.view.y0);
  }

  setTransient(h) {
    if (sameToken(h, this.transient)) return;
    this.transient = h;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (!this.ctx || !this.ctx.isCurrent()) return;
      this.draw();
      this.host.drawn(this);
    });
  }

  onClick(e) {
    const h = this.hit(e);
    const pinned = this.ctx && this.ctx.state.hover;
    if (!h) {
      if (pinned) this.host.setState({ hover: null });
      return;
    }
    this.host.setState({ hover: sameToken(pinned, h) ? null : h });
  }

  /** The whole view (not only the visible rows), for PNG export, with a key of the heads' colours. */
  exportCanvas() {
    if (this.imaging) return this.image.canvas;
    const c = document.createElement("canvas");
    this.render(c, this.layout(c), { y0: 0, h: this.geometry.height }, 4 * LINE_BUDGET);
    return withHeadKey(c, this.heads(), this.ctx.theme);
  }

  /** Draw what is visible in the scroller. */
  draw() {
    if (this.imaging) {
      this.image.draw(this.ctx, this.weights, this.heads().map((h) => [h, h]));
      return;
    }
    const g = this.layout(this.canvas);
    const L = g.L;
    this.geometry = L;
    const fallback = Math.max(200, (globalThis.innerHeight || 800) - 150);
    const { y0, vh } = this.sc.visible(L.width, L.height, fallback);
    this.view = { y0, h: vh };
    // where things are, for tests and tools that read pixels
    this.canvas.dataset.geometry = JSON.stringify({
      top: L.top, rowH: g.rowH, lineX0: L.lineX0, lineX1: L.lineX1, leftTextX: L.leftTextX,
      rightTextX: L.rightTextX, leftBoxX: L.leftBoxX, rightBoxX: L.rightBoxX, boxW: g.boxW,
      width: L.width, height: L.height, viewY: y0, viewH: vh,
    });
    const drawn = this.render(this.canvas, g, this.view, LINE_BUDGET);
    this.cut = drawn.cut;
    this.edgeCount = drawn.count;
    this.updateText(g, drawn.cut);
  }

  /** Row height, fonts, column widths and the layout of the current state. */
  layout(canvas) {
    const { state, labels } = this.ctx;
    const [, Tq, Tk] = this.weights.shape;
    const heads = this.heads();
    const rowH = rowHeight(Math.max(Tq, Tk), state.zoom);
    const fontPx = Math.min(13, rowH - 3);
    const widths = columnWidths(canvas, labels, fontPx, MAX_LABEL_W);
    const boxW = heads.length <= 16 ? 5 : Math.max(2, Math.floor(80 / Math.max(1, heads.length)));
    const avail = (this.sc.scroll.clientWidth || 900) - 2;
    const gap = Math.max(160, Math.min(420, avail - widths.leftW - widths.rightW - 2 * boxW * heads.length - 40));
    const L = headViewLayout({ Tq, Tk, rowH, leftW: widths.leftW, rightW: widths.rightW, boxW, nBox: heads.length, gap, top: AXIS_TOP });
    return { L, Tq, Tk, heads, rowH, fontPx, widths, boxW };
  }

  /**
   * Draw rows y0 .. y0 + h of the view (g from layout()) into `canvas`,
   * the strongest lines first up to `budget` px of line.
   * @returns {{cut: any, count: number}}
   */
  render(canvas, g, { y0, h }, budget) {
    const { state, kind, labels, theme } = this.ctx;
    const { L, Tq, Tk, heads, rowH, fontPx, widths } = g;
    const hover = this.hoverNow();
    const ctx = sizeCanvas(canvas, L.width, h);
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, L.width, h);
    ctx.translate(0, -y0);
    const rows = [Math.max(0, Math.floor((y0 - L.top) / rowH) - 1), Math.ceil((y0 + h - L.top) / rowH) + 1];
    const { qRange, kRange } = hasSegments(kind)
      ? pairRanges(state.pair, kind.query_segment_b, kind.key_segment_b, Tq, Tk)
      : { qRange: [0, Tq], kRange: [0, Tk] };
    this.markTokens(ctx, L, heads.length, hover, state.hover, theme);
    axisTitle(ctx, "query", L.leftTextX, AXIS_TOP / 2, theme, false, "right");
    axisTitle(ctx, "key", L.rightTextX, AXIS_TOP / 2, theme);
    if (hasSegments(kind)) drawSegmentBoundary(ctx, L, kind, theme);
    if (widths.showText) {
      const inRange = (side, i) => (side === "q" ? i >= qRange[0] && i < qRange[1] : i >= kRange[0] && i < kRange[1]);
      drawColumnLabels(ctx, L, labels, fontPx, widths, rows[0], rows[1], (side, i) => (inRange(side, i) ? theme.text : theme.muted));
    }
    setLineStyle(ctx, Math.max(Tq, Tk));
    const band = [y0 - L.top, y0 + h - L.top];
    const at = { x0: L.lineX0, x1: L.lineX1, top: L.top, dq: rowH, dk: rowH };
    const drawn = drawLines(ctx, this.weights.bytes, Tq, Tk, heads, (head) => css(headColor(head)), at,
      { qRange, kRange, hover, band, budget });
    if (hover) this.drawBoxes(ctx, L, heads, hover, hover.side === "q" ? kRange : qRange, rows);
    return drawn;
  }

  /** Backgrounds of the hovered and (fainter) the pinned token. */
  markTokens(ctx, L, nBox, hover, pinned, theme) {
    const mark = (t) => {
      const y = L.top + t.index * L.rowH;
      if (t.side === "q") ctx.fillRect(L.leftBoxX, y, L.leftTextX - L.leftBoxX + 3, L.rowH);
      else ctx.fillRect(L.rightTextX - 3, y, L.rightBoxX + L.boxW * nBox - L.rightTextX + 3, L.rowH);
    };
    ctx.fillStyle = theme.highlight;
    if (hover) mark(hover);
    if (pinned && !sameToken(pinned, hover)) {
      ctx.globalAlpha = 0.5;
      mark(pinned);
      ctx.globalAlpha = 1;
    }
  }

  /** Per-head boxes on the other side of the hovered token: each head's weight to or from it. */
  drawBoxes(ctx, L, heads, hover, range, rows) {
    const [, Tq, Tk] = this.weights.shape;
    const bytes = this.weights.bytes;
    const bh = Math.max(1, L.rowH - 2);
    heads.forEach((h, s) => {
      ctx.fillStyle = css(headColor(h));
      const base = h * Tq * Tk;
      const x = (hover.side === "q" ? L.rightBoxX : L.leftBoxX) + s * L.boxW;
      for (let i = Math.max(range[0], rows[0]); i < Math.min(range[1], rows[1]); i++) {
        const v = hover.side === "q" ? bytes[base + hover.index * Tk + i] : bytes[base + i * Tk + hover.index];
        if (!v) continue;
        ctx.globalAlpha = v / 255;
        ctx.fillRect(x, L.top + i * L.rowH + 1, L.boxW - 1, bh);
      }
    });
    ctx.globalAlpha = 1;
  }

  /** The hover readout, the canvas's title and the note of what is drawn. */
  updateText(g, cut) {
    const { state, labels } = this.ctx;
    const hover = this.hoverNow();
    const text = hover ? (hover.side === "q" ? labels.q : labels.k)[hover.index] : "";
    this.hoverLabel.textContent = hover
      ? `${hover.side === "q" ? "query" : "key"} ${hover.index} \u201c${shortLabel(text)}\u201d` + (sameToken(state.hover, hover) ? " (pinned)" : "")
      : "";
    // the whole token (labels and the readout are cut short) on hover
    this.hoverLabel.title = text;
    this.canvas.title = text;
    const notes = [];
    if (g.heads.length === 0) notes.push("no heads selected: click a square");
    if (cut.drawn < cut.lines) {
      notes.push(`the ${cut.drawn} strongest of ${cut.lines} visible lines (weight \u2265 ${(cut.cutoff / 255).toFixed(3)})`);
    }
    if (!g.widths.showText) notes.push("zoom in for token labels");
    this.note.textContent = notes.join(" \u00b7 ");
    this.note.title = this.note.textContent;
  }
}

/** The dashed line where sentence B starts, on both sides. */
function drawSegmentBoundary(ctx, L, kind, theme) {
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
