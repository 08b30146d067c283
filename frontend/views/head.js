// Head view: query tokens on the left, key tokens on the right, one line per
// (head, query, key) with opacity = weight, in each head's colour. Hover a
// token to keep only its lines and see per-head boxes on the other side;
// click it to pin that (pinned tokens are in the URL and survive step
// changes, as does a token under a still mouse while arrow keys change step).
//
// One canvas; lines are grouped by head and by opacity bucket so a whole
// group is one path and one stroke() (a few hundred strokes, not one per line).

import { ALPHA_BUCKETS, bucketAlpha, budgetCutoff, collectEdges, hasSegments, headViewHit, headViewLayout, pairRanges, rowHeight } from "../layout.js";
import { css, headColor } from "../colors.js";
import { canvasPoint, el, FONT, fitText, labelled, maxLabelWidth, setOptions, sizeCanvas } from "../dom.js";
import { PAIR_LABELS, PAIRS } from "../state.js";
import { headSquares, layerControl, zoomControl } from "./controls.js";
import { shortLabel } from "../tokens.js";

const MAX_LABEL_W = 180;
// Total length (CSS px) of the visible lines one draw may stroke: the
// strongest lines go first. Canvas rasterization costs about one step per
// pixel of a line's longer axis (Chromium's software canvas: ~100 ns per
// step), so this bounds the draw time at any sequence length.
export const LINE_BUDGET = 400000;

export class HeadView {
  constructor(app) {
    this.app = app;
    this.layer = layerControl(app);
    this.squares = headSquares(app);
    this.pairSel = el("select", { attrs: { "data-name": "pair" }, title: "Sentence pair filter: which segment the lines start in (query) and end in (key)", on: { change: () => app.setState({ pair: this.pairSel.value }) } });
    this.pairField = labelled("Pair", this.pairSel);
    this.zoom = zoomControl(app, "Row height");
    // its text follows the hovered token: a line of its own that never collapses
    this.note = el("span", { className: "tba-hint tba-note tba-line", attrs: { "data-name": "head-note" } });
    this.hoverLabel = el("span", { className: "tba-readout", attrs: { "data-name": "head-hover" } });
    this.controls = el("div", { className: "tba-controls" },
      this.layer.field,
      labelled("Heads", this.squares.element),
      this.pairField,
      this.zoom.field,
      el("span", { className: "tba-hint", text: "hover a token for its lines \u00b7 click to pin" }),
      this.hoverLabel,
      this.note,
    );
    this.canvas = el("canvas", { className: "tba-sticky", attrs: { "data-name": "head-canvas" } });
    this.sizer = el("div", { className: "tba-sizer" }, this.canvas);
    this.scroll = el("div", { className: "tba-scroll" }, this.sizer);
    this.view = { y0: 0, h: 0 };
    this.scroll.addEventListener("scroll", () => {
      if (this.scrollFrame) return;
      this.scrollFrame = requestAnimationFrame(() => {
        this.scrollFrame = 0;
        if (this.ctx && this.weights && Math.round(this.scroll.scrollTop) !== Math.round(this.view.y0)) this.draw();
      });
    });
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "head-view" } }, this.scroll);
    /** @type {{side: "q" | "k", index: number} | null} */
    this.transient = null;
    this.ctx = null;
    this.weights = null;
    this.geometry = null;
    this.edgeCount = 0;
    this.frame = 0;
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.setTransient(null));
    this.canvas.addEventListener("click", (e) => this.onClick(e));
  }

  async show(ctx) {
    const { state, kind } = ctx;
    this.layer.update(kind, state);
    this.squares.update(kind.num_heads, state);
    this.zoom.update(state);
    const segs = hasSegments(kind);
    this.pairField.hidden = !segs;
    if (segs) setOptions(this.pairSel, PAIRS.map((p) => ({ value: p, label: PAIR_LABELS[p] })), state.pair);
    const w = await this.app.api.attention(state.run, state.tag, state.step, state.kind, state.layer);
    if (!ctx.isCurrent()) return;
    this.ctx = ctx;
    this.weights = w;
    this.draw();
  }

  prefetch(ctx) {
    const s = ctx.state;
    return this.app.api.attention(s.run, s.tag, s.step, s.kind, s.layer);
  }

  /** The token whose lines are shown: under the mouse, else the pinned one. */
  hoverNow() {
    return this.transient || (this.ctx && this.ctx.state.hover) || null;
  }

  detail() {
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

  onMove(e) {
    this.setTransient(this.hit(e));
  }

  setTransient(h) {
    const same = (a, b) => (a === null && b === null) || (a && b && a.side === b.side && a.index === b.index);
    if (same(h, this.transient)) return;
    this.transient = h;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (!this.ctx || !this.ctx.isCurrent()) return;
      this.draw();
      this.app.markDrawn(this);
    });
  }

  onClick(e) {
    const h = this.hit(e);
    const pinned = this.ctx && this.ctx.state.hover;
    if (!h) {
      if (pinned) this.app.setState({ hover: null });
      return;
    }
    const same = pinned && pinned.side === h.side && pinned.index === h.index;
    this.app.setState({ hover: same ? null : h });
  }

  /** The whole view (not only the visible rows), for PNG export. */
  exportCanvas() {
    const c = document.createElement("canvas");
    this.render(c, { y0: 0, h: this.geometry.height }, 4 * LINE_BUDGET);
    return c;
  }

  /** Draw what is visible in the scroller. */
  draw() {
    this.render(this.canvas, null, LINE_BUDGET);
  }

  /**
   * Draw the view into `canvas`: the rows visible in the scroller (view null),
   * or everything (view {y0: 0, h: full height}, for export).
   * @param {HTMLCanvasElement} canvas
   * @param {{y0: number, h: number} | null} view
   * @param {number} budget total length of lines to draw (px)
   */
  render(canvas, view, budget) {
    const { state, kind, labels, theme } = this.ctx;
    const w = this.weights;
    const [, Tq, Tk] = w.shape;
    const heads = this.heads();
    const hover = this.hoverNow();
    const rowH = rowHeight(Math.max(Tq, Tk), state.zoom);
    const fontPx = Math.min(13, rowH - 3);
    const showText = fontPx >= 6;
    const c = canvas.getContext("2d");
    c.font = `${fontPx}px ${FONT}`;
    const leftW = showText ? Math.min(MAX_LABEL_W, Math.ceil(maxLabelWidth(c, labels.q))) + 6 : 4;
    const rightW = showText ? Math.min(MAX_LABEL_W, Math.ceil(maxLabelWidth(c, labels.k))) + 6 : 4;
    const boxW = heads.length <= 16 ? 5 : Math.max(2, Math.floor(80 / Math.max(1, heads.length)));
    const avail = (this.scroll.clientWidth || 900) - 2;
    const gap = Math.max(160, Math.min(420, avail - leftW - rightW - 2 * boxW * heads.length - 40));
    const L = headViewLayout({ Tq, Tk, rowH, leftW, rightW, boxW, nBox: heads.length, gap });

    // The on-screen canvas covers only the scroller's visible rows (it is
    // sticky inside a spacer as tall as the whole view): off-screen lines
    // cost nothing, and the budget is spent on what can be seen.
    let y0 = 0;
    let vh = L.height;
    if (!view) {
      this.geometry = L;
      this.sizer.style.width = L.width + "px";
      this.sizer.style.height = L.height + "px";
      const visible = this.scroll.clientHeight || Math.max(200, (this.app.win.innerHeight || 800) - 150);
      vh = Math.max(1, Math.min(L.height, visible));
      y0 = Math.max(0, Math.min(this.scroll.scrollTop, L.height - vh));
      this.view = { y0, h: vh };
      // where things are, for tests and tools that read pixels
      canvas.dataset.geometry = JSON.stringify({
        top: L.top, rowH, lineX0: L.lineX0, lineX1: L.lineX1, leftTextX: L.leftTextX,
        rightTextX: L.rightTextX, leftBoxX: L.leftBoxX, rightBoxX: L.rightBoxX, boxW,
        width: L.width, height: L.height, viewY: y0, viewH: vh,
      });
    } else {
      y0 = view.y0;
      vh = view.h;
    }
    const ctx = sizeCanvas(canvas, L.width, vh);
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, L.width, vh);
    ctx.translate(0, -y0);
    const firstRow = Math.max(0, Math.floor((y0 - L.top) / rowH) - 1);
    const lastRow = Math.ceil((y0 + vh - L.top) / rowH) + 1;

    const { qRange, kRange } = hasSegments(kind)
      ? pairRanges(state.pair, kind.query_segment_b, kind.key_segment_b, Tq, Tk)
      : { qRange: [0, Tq], kRange: [0, Tk] };

    // hovered / pinned token background
    const pinned = state.hover;
    const mark = (h) => {
      if (!h) return;
      const y = L.top + h.index * rowH;
      if (h.side === "q") ctx.fillRect(L.leftBoxX, y, L.leftTextX - L.leftBoxX + 3, rowH);
      else ctx.fillRect(L.rightTextX - 3, y, L.rightBoxX + boxW * heads.length - L.rightTextX + 3, rowH);
    };
    ctx.fillStyle = theme.highlight;
    mark(hover);
    if (pinned && (!hover || pinned.side !== hover.side || pinned.index !== hover.index)) {
      ctx.globalAlpha = 0.5;
      mark(pinned);
      ctx.globalAlpha = 1;
    }

    // sentence B boundary
    if (hasSegments(kind)) {
      ctx.strokeStyle = theme.grid;
      ctx.setLineDash([3, 3]);
      ctx.lineWidth = 1;
      ctx.beginPath();
      if (kind.query_segment_b > 0) {
        const y = L.top + kind.query_segment_b * rowH;
        ctx.moveTo(L.leftBoxX, y);
        ctx.lineTo(L.lineX0, y);
      }
      if (kind.key_segment_b > 0) {
        const y = L.top + kind.key_segment_b * rowH;
        ctx.moveTo(L.lineX1, y);
        ctx.lineTo(L.width, y);
      }
      ctx.stroke();
      ctx.setLineDash([]);
    }

    // labels of the visible rows
    if (showText) {
      ctx.font = `${fontPx}px ${FONT}`;
      ctx.textBaseline = "middle";
      for (let i = firstRow; i < Math.min(Tq, lastRow); i++) {
        ctx.fillStyle = i >= qRange[0] && i < qRange[1] ? theme.text : theme.muted;
        fitText(ctx, labels.q[i], L.leftTextX, L.y(i), leftW - 4, "right");
      }
      for (let j = firstRow; j < Math.min(Tk, lastRow); j++) {
        ctx.fillStyle = j >= kRange[0] && j < kRange[1] ? theme.text : theme.muted;
        fitText(ctx, labels.k[j], L.rightTextX, L.y(j), rightW - 4, "left");
      }
    }

    // lines crossing the visible band, the strongest first, within the budget
    const band = [y0 - L.top, y0 + vh - L.top];
    const edgeOpts = { qRange, kRange, hover, band, rowQ: rowH, rowK: rowH };
    const cut = budgetCutoff(w.bytes, Tq, Tk, heads, { ...edgeOpts, budget, gap: L.lineX1 - L.lineX0 });
    const edges = cut.cutoff > 255 ? [] : collectEdges(w.bytes, Tq, Tk, heads, { ...edgeOpts, minByte: cut.cutoff });
    ctx.lineWidth = Math.max(Tq, Tk) <= 64 ? 2 : 1;
    ctx.lineCap = "butt";
    let count = 0;
    for (const e of edges) count += strokeEdges(ctx, e, css(headColor(e.head)), L.lineX0, L.lineX1, L.top, rowH, rowH);

    // per-head boxes on the other side of the hovered token
    if (hover) {
      const bh = Math.max(1, rowH - 2);
      heads.forEach((h, s) => {
        ctx.fillStyle = css(headColor(h));
        const base = h * Tq * Tk;
        if (hover.side === "q") {
          const row = base + hover.index * Tk;
          const x = L.rightBoxX + s * boxW;
          for (let j = Math.max(kRange[0], firstRow); j < Math.min(kRange[1], lastRow); j++) {
            const v = w.bytes[row + j];
            if (!v) continue;
            ctx.globalAlpha = v / 255;
            ctx.fillRect(x, L.top + j * rowH + 1, boxW - 1, bh);
          }
        } else {
          const x = L.leftBoxX + s * boxW;
          for (let i = Math.max(qRange[0], firstRow); i < Math.min(qRange[1], lastRow); i++) {
            const v = w.bytes[base + i * Tk + hover.index];
            if (!v) continue;
            ctx.globalAlpha = v / 255;
            ctx.fillRect(x, L.top + i * rowH + 1, boxW - 1, bh);
          }
        }
      });
      ctx.globalAlpha = 1;
    }
    if (view) return;

    this.cut = cut;
    this.edgeCount = count;
    const hoverText = hover ? (hover.side === "q" ? labels.q : labels.k)[hover.index] : "";
    this.hoverLabel.textContent = hover
      ? `${hover.side === "q" ? "query" : "key"} ${hover.index} \u201c${shortLabel(hoverText)}\u201d` +
        (state.hover && state.hover.side === hover.side && state.hover.index === hover.index ? " (pinned)" : "")
      : "";
    // the whole token (labels and the readout are cut short) on hover
    this.hoverLabel.title = hoverText;
    canvas.title = hoverText;
    const notes = [];
    if (heads.length === 0) notes.push("no heads selected: click a square");
    if (cut.drawn < cut.lines) {
      notes.push(`the ${cut.drawn} strongest of ${cut.lines} visible lines (weight \u2265 ${(cut.cutoff / 255).toFixed(3)})`);
    }
    if (!showText) notes.push("zoom in for token labels");
    this.note.textContent = notes.join(" \u00b7 ");
    this.note.title = this.note.textContent;
  }
}

/**
 * Stroke one head's lines (from collectEdges) in one colour, a path per
 * opacity bucket: query i at (x0, top + (i + 0.5) * dq) to key j at
 * (x1, top + (j + 0.5) * dk). Returns how many lines it drew.
 * @param {CanvasRenderingContext2D} ctx
 * @param {import("../layout.js").HeadEdges} e
 * @param {string} color
 */
export function strokeEdges(ctx, e, color, x0, x1, top, dq, dk) {
  ctx.strokeStyle = color;
  for (let b = 0; b < ALPHA_BUCKETS; b++) {
    const from = e.offsets[b];
    const to = e.offsets[b + 1];
    if (to <= from) continue;
    ctx.globalAlpha = bucketAlpha(b);
    ctx.beginPath();
    for (let p = from; p < to; p++) {
      ctx.moveTo(x0, top + (e.q[p] + 0.5) * dq);
      ctx.lineTo(x1, top + (e.k[p] + 0.5) * dk);
    }
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  return e.count;
}
