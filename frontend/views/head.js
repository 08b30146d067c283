// Head view: query tokens on the left, key tokens on the right, one line per
// (head, query, key) with opacity = weight, in each head's colour. Hover a
// token to keep only its lines and fill the token boxes on the other side
// with one slice per head, coloured by its weight (BertViz's boxes); click it
// to pin that (pinned tokens are in the URL and survive step changes, as does
// a token under a still mouse while arrow keys change step).
// Rows keep a readable height at any length (the scroller shows a labelled
// window of tokens): the canvas covers the rows visible in the scroller; the
// lines between two rows in view are drawn first, all of them when they fit
// the line budget (draw/lines.js), then the strongest lines from or to rows
// out of view with what is left. The note says whenever lines are left out.
// For a step captured from an image, image mode (draw/image.js) draws each
// shown head's attention of the query over the image instead.

import { hasSegments, headViewHit, headViewLayout, pairRanges, rowHeight } from "../layout.js";
import { css, headColor } from "../colors.js";
import { canvasPoint, el, labelled, setOptions, sizeCanvas } from "../dom.js";
import { PAIR_LABELS, PAIRS, queryIndex } from "../state.js";
import { need, showNeeds } from "../host.js";
import { aggControl, headSquares, imageControl, keyboardArea, layerControl, zoomControl } from "./controls.js";
import { AGG_LABELS, aggParams, aggregateMaps } from "../aggregate.js";
import { shortLabel } from "../tokens.js";
import { LINE_BUDGET, columnWidths, drawColumnLabels, drawLines, drawSegmentBoundary, drawSlices, setLineStyle } from "../draw/lines.js";
import { ScrolledCanvas } from "../draw/scroll.js";
import { axisTitle, withHeadKey } from "../draw/legend.js";
import { ImagePanels } from "../draw/image.js";

const MAX_LABEL_W = 180;
// room above the token columns for their axis titles
const AXIS_TOP = 20;
// Token boxes hold a label and, on hover, a slice per head (BertViz: 110 px);
// they and the lines widen into the width the view has, up to these.
const BOX_MIN = 110;
const BOX_MAX = 240;
const GAP_MIN = 160;
const GAP_MAX = 520;
// the automatic row height never goes below a readable label (the view scrolls)
const READABLE_ROW = 14;
// tallest drawing: the screen's is a spacer; an export is one canvas
const SCREEN_MAX_H = 4e6;
const EXPORT_MAX_H = 16000;
const SCROLL_REST_MS = 120;

const sameToken = (a, b) => (a === null && b === null) || Boolean(a && b && a.side === b.side && a.index === b.index);

export default class HeadView {
  /**
   * One layer, every head (the heads shown, and their mean and max, are
   * picked without a request); an aggregate of every layer from the server.
   */
  static needs({ state }) {
    const all = state.agg && aggParams(state.agg, state.layer).layer === "all";
    return [need("attention", state, all ? aggParams(state.agg, state.layer) : { layer: state.layer })];
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    this.layer = layerControl(host);
    this.squares = headSquares(host);
    this.agg = aggControl(host);
    this.pairSel = el("select", { attrs: { "data-name": "pair" }, title: "Sentence pair filter: which segment the lines start in (query) and end in (key)", on: { change: () => host.setState({ pair: this.pairSel.value }) } });
    this.pairField = labelled("Pair", this.pairSel);
    this.zoom = zoomControl(host, "Row height");
    this.imageMode = imageControl(host);
    this.image = new ImagePanels(host, "head");
    // its text follows the hovered token: a line of its own that never collapses
    this.note = el("span", { className: "tba-hint tba-note tba-line", attrs: { "data-name": "head-note" } });
    this.hoverLabel = el("span", { className: "tba-readout", attrs: { "data-name": "head-hover" } });
    this.controls = el("div", { className: "tba-controls" },
      this.layer.field, labelled("Heads", this.squares.element), this.agg.field, this.pairField, this.zoom.field, this.imageMode.field,
      el("span", { className: "tba-hint", text: "hover a token for its lines \u00b7 click to pin" }),
      this.hoverLabel, this.note);
    this.view = { y0: 0, h: 0 };
    // while scrolling, each frame draws the lines between tokens in view only;
    // once the scroller rests, the lines to tokens out of view too
    this.sc = new ScrolledCanvas("head-canvas", () => {
      if (!this.ctx || !this.weights || Math.round(this.sc.scroll.scrollTop) === Math.round(this.view.y0)) return;
      this.draw(true);
      clearTimeout(this.settle);
      this.settle = setTimeout(() => {
        if (!this.ctx || !this.ctx.isCurrent()) return;
        this.draw();
        this.host.drawn(this); // other tokens in view: data-detail says which
      }, SCROLL_REST_MS);
    });
    this.canvas = this.sc.canvas;
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "head-view" } }, this.sc.scroll, this.image.root);
    /** @type {{side: "q" | "k", index: number} | null} */
    this.transient = null;
    this.ctx = null;
    this.weights = null;
    this.geometry = null;
    this.drawn = null;
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
    this.agg.update(state);
    this.zoom.update(state);
    const segs = hasSegments(kind);
    this.pairField.hidden = !segs;
    if (segs) setOptions(this.pairSel, PAIRS.map((p) => ({ value: p, label: PAIR_LABELS[p] })), state.pair);
    this.imaging = this.imageMode.update(ctx);
    this.sc.scroll.hidden = this.imaging;
    this.image.root.hidden = !this.imaging;
    await showNeeds(this, ctx, (w) => {
      this.weights = this.aggregated(w, state.agg);
    });
  }

  /** The layer's heads, or the aggregate the state asks for (one map; a layer's computed here, once). */
  aggregated(w, agg) {
    if (!agg || w.shape[0] === 1) return w;
    if (this.aggMemo && this.aggMemo.w === w && this.aggMemo.agg === agg) return this.aggMemo.out;
    const out = aggregateMaps(w, aggParams(agg, 0).head);
    this.aggMemo = { w, agg, out };
    return out;
  }

  /** The token whose lines are shown: under the mouse, else the pinned one. */
  hoverNow() {
    return this.transient || (this.ctx && this.ctx.state.hover) || null;
  }

  /** What the view shows, for an export's title. */
  describe() {
    const { layer, agg } = this.ctx.state;
    return agg && agg.endsWith("-all") ? ` \u00b7 ${AGG_LABELS[agg]}` : ` \u00b7 layer ${layer}` + (agg ? ` \u00b7 ${AGG_LABELS[agg]}` : "");
  }

  detail() {
    if (this.imaging) return `image=1;query=${queryIndex(this.ctx.state, this.ctx.kind)}`;
    const d = this.drawn;
    if (!d) return "edges=0;candidates=0";
    return `edges=${d.count};candidates=${d.cut.lines};inview=${d.inView.lines};inviewdrawn=${d.inView.drawn};rows=${d.rows[0]}-${d.rows[1]}`;
  }

  heads() {
    const H = this.weights.shape[0];
    if (this.ctx.state.agg) return [0];
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
    const g = this.layout(c, EXPORT_MAX_H);
    this.render(c, g, { y0: 0, h: g.L.height }, 4 * LINE_BUDGET);
    // an aggregate is one map in the text's colour: no key of head colours
    return this.ctx.state.agg ? c : withHeadKey(c, this.heads(), this.ctx.theme);
  }

  /** Draw what is visible in the scroller (`scrolling`: only the lines between tokens in view). */
  draw(scrolling = false) {
    if (this.imaging) {
      const { agg } = this.ctx.state;
      this.image.draw(this.ctx, this.weights, agg ? [[0, AGG_LABELS[agg]]] : this.heads().map((h) => [h, h]));
      return;
    }
    const g = this.layout(this.canvas, SCREEN_MAX_H);
    const L = g.L;
    this.geometry = L;
    const fallback = Math.max(200, (globalThis.innerHeight || 800) - 150);
    const { y0, vh } = this.sc.visible(L.width, L.height, fallback);
    this.view = { y0, h: vh };
    const drawn = this.render(this.canvas, g, this.view, LINE_BUDGET, scrolling ? 0 : undefined);
    // where things are, for tests and tools that read pixels
    this.canvas.dataset.geometry = JSON.stringify({
      top: L.top, rowH: g.rowH, lineX0: L.lineX0, lineX1: L.lineX1, leftTextX: L.leftTextX,
      rightTextX: L.rightTextX, qBox: boxesOf(L, g.widths).q, kBox: boxesOf(L, g.widths).k, labels: g.widths.showText, rows: drawn.rows,
      width: L.width, height: L.height, viewY: y0, viewH: vh,
    });
    this.drawn = drawn;
    this.updateText(g, drawn);
  }

  /**
   * Row height, fonts, box and column widths and the layout of the current
   * state, for a drawing at most maxHeight px tall.
   */
  layout(canvas, maxHeight) {
    const { state, labels } = this.ctx;
    const [, Tq, Tk] = this.weights.shape;
    const heads = this.heads();
    const rowH = rowHeight(Math.max(Tq, Tk), state.zoom, maxHeight, READABLE_ROW);
    const fontPx = Math.min(13, rowH - 3);
    const text = columnWidths(canvas, labels, fontPx, MAX_LABEL_W);
    const avail = (this.sc.scroll.clientWidth || 900) - 2;
    const box = Math.max(BOX_MIN, Math.min(BOX_MAX, Math.floor((avail - GAP_MAX - 24) / 2)));
    const widths = { showText: text.showText, leftW: Math.max(text.leftW, box), rightW: Math.max(text.rightW, box) };
    const gap = Math.max(GAP_MIN, Math.min(GAP_MAX, avail - widths.leftW - widths.rightW - 24));
    const L = headViewLayout({ Tq, Tk, rowH, leftW: widths.leftW, rightW: widths.rightW, boxW: 0, nBox: 0, gap, top: AXIS_TOP });
    return { L, Tq, Tk, heads, rowH, fontPx, widths };
  }

  /** A head's colour; an aggregate's is the text's. */
  colorOf(h) {
    return this.ctx.state.agg ? this.ctx.theme.text : css(headColor(h));
  }

  /**
   * Draw rows y0 .. y0 + h of the view (g from layout()) into `canvas`:
   * the lines between rows in view first, within `budget`; outShare: the
   * share of it the lines to rows out of view may take (draw/lines.js).
   * @returns {ReturnType<typeof drawLines> & {rows: [number, number]}}
   */
  render(canvas, g, { y0, h }, budget, outShare = undefined) {
    const { state, kind, labels, theme } = this.ctx;
    const { L, Tq, Tk, heads, rowH, fontPx, widths } = g;
    const hover = this.hoverNow();
    const ctx = sizeCanvas(canvas, L.width, h);
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, L.width, h);
    ctx.translate(0, -y0);
    const T = Math.max(Tq, Tk);
    // rows drawn at all, and rows in view (their middle inside the band)
    const rows = [Math.max(0, Math.floor((y0 - L.top) / rowH) - 1), Math.min(T, Math.ceil((y0 + h - L.top) / rowH) + 1)];
    const inView = /** @type {[number, number]} */ ([
      Math.max(0, Math.ceil((y0 - L.top) / rowH - 0.5)), Math.min(T, Math.floor((y0 + h - L.top) / rowH - 0.5) + 1)]);
    const { qRange, kRange } = hasSegments(kind)
      ? pairRanges(state.pair, kind.query_segment_b, kind.key_segment_b, Tq, Tk)
      : { qRange: [0, Tq], kRange: [0, Tk] };
    this.markTokens(ctx, L, widths, hover, state.hover, theme);
    axisTitle(ctx, "query", L.leftTextX, AXIS_TOP / 2, theme, false, "right");
    axisTitle(ctx, "key", L.rightTextX, AXIS_TOP / 2, theme);
    const boxed = hover ? (hover.side === "q" ? "k" : "q") : null;
    if (hover) this.drawBoxes(ctx, L, widths, heads, hover, hover.side === "q" ? kRange : qRange, rows);
    if (hasSegments(kind)) drawSegmentBoundary(ctx, L, kind, theme);
    if (widths.showText) {
      const inRange = (side, i) => (side === "q" ? i >= qRange[0] && i < qRange[1] : i >= kRange[0] && i < kRange[1]);
      drawColumnLabels(ctx, L, labels, fontPx, widths, rows[0], rows[1], (side, i) => (inRange(side, i) ? theme.text : theme.muted),
        (side) => (side === boxed ? theme.background : null));
    }
    setLineStyle(ctx, T);
    const band = [y0 - L.top, y0 + h - L.top];
    const at = { x0: L.lineX0, x1: L.lineX1, top: L.top, dq: rowH, dk: rowH };
    const drawn = drawLines(ctx, this.weights.bytes, Tq, Tk, heads, (head) => this.colorOf(head), at,
      { qRange, kRange, hover, band, budget, window: inView, outShare });
    return { ...drawn, rows: inView };
  }

  /** Backgrounds of the hovered and (fainter) the pinned token: their whole box. */
  markTokens(ctx, L, widths, hover, pinned, theme) {
    const boxes = boxesOf(L, widths);
    const mark = (t) => {
      const b = boxes[t.side];
      ctx.fillRect(b.x, L.top + t.index * L.rowH, b.w, L.rowH);
    };
    ctx.fillStyle = theme.highlight;
    if (hover) mark(hover);
    if (pinned && !sameToken(pinned, hover)) {
      ctx.globalAlpha = 0.5;
      mark(pinned);
      ctx.globalAlpha = 1;
    }
  }

  /** The other side's token boxes, a slice per head: each head's weight to or from the hovered token. */
  drawBoxes(ctx, L, widths, heads, hover, range, rows) {
    const [, Tq, Tk] = this.weights.shape;
    const bytes = this.weights.bytes;
    const box = boxesOf(L, widths)[hover.side === "q" ? "k" : "q"];
    const from = Math.max(range[0], rows[0]);
    const to = Math.min(range[1], rows[1]);
    drawSlices(ctx, L, box, heads.map((h) => this.colorOf(h)), from, to, (s, i) => {
      const base = heads[s] * Tq * Tk;
      return hover.side === "q" ? bytes[base + hover.index * Tk + i] : bytes[base + i * Tk + hover.index];
    });
  }

  /** The hover readout, the canvas's title and the note of what is drawn. */
  updateText(g, drawn) {
    const { state, labels } = this.ctx;
    const hover = this.hoverNow();
    const text = hover ? (hover.side === "q" ? labels.q : labels.k)[hover.index] : "";
    this.hoverLabel.textContent = hover
      ? `${hover.side === "q" ? "query" : "key"} ${hover.index} \u201c${shortLabel(text)}\u201d` + (sameToken(state.hover, hover) ? " (pinned)" : "")
      : "";
    // the whole token (labels and the readout are cut short) on hover
    this.hoverLabel.title = text;
    this.canvas.title = text;
    const notes = lineNote(g, drawn);
    if (state.agg) notes.unshift(aggNote(state, this.ctx.kind));
    this.note.textContent = notes.join(" \u00b7 ");
    this.note.title = this.note.textContent;
  }
}

/** What an aggregate is of: "the mean of layer 3's 12 heads, drawn as one". */
function aggNote(state, kind) {
  const { head, layer } = aggParams(state.agg, state.layer);
  const of = layer === "all" ? `all ${kind.layer_ids.length} layers' ${kind.num_heads} heads` : `layer ${layer}'s ${kind.num_heads} heads`;
  return `the ${head} of ${of}, drawn as one`;
}

/** The token boxes of the two columns: x and width (CSS px). */
function boxesOf(L, widths) {
  return { q: { x: L.leftBoxX, w: L.leftTextX - L.leftBoxX + 3 }, k: { x: L.rightTextX - 3, w: widths.rightW + 3 } };
}

/** What the note says: the rows in view, and every time lines are left out. */
function lineNote(g, drawn) {
  const notes = [];
  const T = Math.max(g.Tq, g.Tk);
  const [r0, r1] = drawn.rows;
  const weight = (cut) => `weight \u2265 ${(cut.cutoff / 255).toFixed(3)}`;
  if (g.heads.length === 0) notes.push("no heads selected: click a square");
  if (r1 - r0 < T) notes.push(`tokens ${r0}\u2013${r1 - 1} of ${T} in view (scroll for the others)`);
  const { inView, outView } = drawn;
  if (inView.drawn < inView.lines) notes.push(`the ${inView.drawn} strongest of ${inView.lines} lines between tokens in view (${weight(inView)})`);
  else if (outView.lines && outView.drawn === outView.lines) notes.push(`all ${drawn.cut.lines} lines`);
  if (outView.lines && outView.drawn === 0) notes.push(`none of the ${outView.lines} lines to tokens out of view: hover a token for its lines`);
  else if (outView.drawn < outView.lines) notes.push(`the ${outView.drawn} strongest of ${outView.lines} lines to tokens out of view (${weight(outView)})`);
  if (!g.widths.showText) notes.push("zoom in for token labels");
  return notes;
}
