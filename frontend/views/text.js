// Text view (CircuitsVis's coloured tokens): the probe's text, each token
// shaded by the attention the selected token pays it (the selected token is
// a query) or pays the selected token (it is a key), one row per kept step
// up to the one shown, so a pattern can be watched forming during training.
// Hover a token to select it, click to pin it (the head view's pinned token:
// the same URL key); with a token pinned, hovering another reads out their
// weight. Pieces that continue a word are joined to it (tokens.js
// tokenPieces); tokens are text nodes, shaded by the theme's sequential
// scale. Hovering only recolours (outline, not border): nothing moves.
// Cross attention (queries and keys from different texts) gets a row of the
// selecting side's tokens above.

import { css, seqLut } from "../colors.js";
import { FONT, clear, el, labelled, setOptions, sizeCanvas } from "../dom.js";
import { weightAt } from "../decode.js";
import { headParams, headTitle, need, showNeeds } from "../host.js";
import { TEXT_STEPS, intText } from "../state.js";
import { shortLabel, tokenPieces } from "../tokens.js";
import { headControl, layerControl } from "./controls.js";

const SIDE_NAMES = { q: "query", k: "key" };

/** The kept steps the view shows for a state: `tsteps` of them, up to the shown one. */
function stepWindow(state, tagInfo) {
  const steps = (tagInfo && tagInfo.steps) || [state.step];
  const i = Math.max(0, steps.indexOf(state.step));
  return steps.slice(Math.max(0, i - state.tsteps + 1), i + 1);
}

export default class TextView {
  /** One head of one layer (or an aggregate over heads) at each step shown. */
  static needs({ state, tagInfo }) {
    return stepWindow(state, tagInfo).map((step) => need("attention", { ...state, step }, headParams(state)));
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    this.layer = layerControl(host);
    this.head = headControl(host);
    this.dirSel = el("select", { attrs: { "data-name": "tdir" }, title: "What the shading shows", on: { change: () => host.setState({ tdir: this.dirSel.value }) } });
    this.stepsSel = el("select", { attrs: { "data-name": "tsteps" }, title: "Rows: the kept steps up to the one shown", on: { change: () => host.setState({ tsteps: Number(this.stepsSel.value) }) } });
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "text-readout" } });
    this.controls = el("div", { className: "tba-controls" }, this.layer.field, this.head.field,
      labelled("Shade by", this.dirSel), labelled("Steps", this.stepsSel),
      el("span", { className: "tba-hint", text: "hover a token to select it \u00b7 click to pin" }), this.readout);
    this.picker = el("div", { className: "tba-text-row tba-text-picker", attrs: { "data-name": "text-picker" } });
    this.rowsBox = el("div", { className: "tba-text-rows", attrs: { "data-name": "text-rows" } });
    this.box = el("div", { className: "tba-scroll tba-text-box", attrs: { "data-name": "text-view-box" } }, this.picker, this.rowsBox);
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "text-view" } }, this.box);
    this.box.addEventListener("mouseover", (e) => this.onOver(e));
    this.box.addEventListener("mouseleave", () => {
      this.over = null;
      this.setTransient(null);
    });
    this.box.addEventListener("click", (e) => this.onClick(e));
    this.ctx = null;
    this.rows = [];
    this.transient = null;
    this.over = null;
  }

  async show(ctx) {
    const { state, kind } = ctx;
    this.layer.update(kind, state);
    this.head.update(kind, state);
    setOptions(this.dirSel, [{ value: "q", label: "attention from the selected token" }, { value: "k", label: "attention to the selected token" }], state.tdir);
    setOptions(this.stepsSel, TEXT_STEPS.map((n) => ({ value: String(n), label: n === 1 ? "this step" : `last ${n}` })), String(state.tsteps));
    const steps = stepWindow(state, ctx.tagInfo);
    await showNeeds(this, ctx, (...weights) => {
      this.data = steps.map((step, i) => ({ step, w: weights[i] }));
    });
  }

  /** The selected token: hovered, else pinned on this view's side, else the last one of that side. */
  selected() {
    const { state, kind } = this.ctx;
    if (this.transient) return this.transient;
    if (state.hover && state.hover.side === state.tdir) return state.hover;
    const n = state.tdir === "q" ? kind.query_tokens.length : kind.key_tokens.length;
    return { side: state.tdir, index: n - 1 };
  }

  hoverNow() {
    return this.ctx ? this.selected() : null;
  }

  describe() {
    return headTitle(this.ctx.state);
  }

  detail() {
    const s = this.selected();
    const pinned = this.ctx.state.hover;
    return `sel=${s.side}${s.index};pinned=${pinned && pinned.side === s.side && pinned.index === s.index ? 1 : 0};steps=${this.data.map((r) => intText(r.step)).join(",")}`;
  }

  /** The texts: the shaded side's tokens in each row; a picker row of the other side when they differ. */
  draw() {
    const { state, kind } = this.ctx;
    const [shaded, picking] = state.tdir === "q" ? ["k", "q"] : ["q", "k"];
    const tokens = { q: kind.query_tokens, k: kind.key_tokens };
    const same = kind.query_tokens.length === kind.key_tokens.length && kind.query_tokens.every((t, i) => t === kind.key_tokens[i]);
    clear(this.picker);
    this.picker.hidden = same;
    if (!same) this.picker.append(el("span", { className: "tba-text-step", text: SIDE_NAMES[picking] + "s" }), this.paragraph(tokens[picking], picking, "pick"));
    clear(this.rowsBox);
    this.rows = this.data.map(({ step, w }) => {
      const p = this.paragraph(tokens[shaded], shaded, intText(step));
      const row = el("div", { className: "tba-text-row", attrs: { "data-step": intText(step) } },
        el("span", { className: "tba-text-step", text: `step ${intText(step)}` }), p);
      if (step === state.step) row.setAttribute("aria-current", "step");
      this.rowsBox.appendChild(row);
      return { step, w, spans: [...p.querySelectorAll(".tba-tok")] };
    });
    this.pickSpans = [...this.picker.querySelectorAll(".tba-tok")];
    this.shade();
    this.updateReadout();
  }

  /** A paragraph of one side's tokens, a span each: pretty pieces joined into words, or the raw labels. */
  paragraph(tokens, side, row) {
    const p = el("p", { className: "tba-text" });
    const pieces = this.ctx.state.raw ? this.ctx.labels[side].map((text) => ({ text, space: true, cont: false })) : tokenPieces(tokens);
    pieces.forEach((piece, i) => {
      if (piece.space && i > 0) p.appendChild(document.createTextNode(" "));
      p.appendChild(el("span", { className: "tba-tok" + (piece.cont ? " tba-cont" : ""), text: piece.text, attrs: { "data-i": String(i), "data-row": row } }));
    });
    return p;
  }

  /** Background of every token from the selected token's weights; the selected one outlined. */
  shade() {
    const lut = seqLut(this.ctx.theme);
    const sel = this.selected();
    for (const { w, spans } of this.rows) {
      const [, Tq, Tk] = w.shape;
      spans.forEach((span, j) => {
        const k = sel.side === "q" ? sel.index * Tk + j : j * Tk + sel.index;
        const inRange = sel.side === "q" ? sel.index < Tq && j < Tk : sel.index < Tk && j < Tq;
        const b = inRange ? w.bytes[k] : 0;
        const rgb = [lut[b * 4], lut[b * 4 + 1], lut[b * 4 + 2]];
        span.style.background = css(rgb);
        // dark text on light shading, light on dark (either theme)
        span.style.color = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140 ? "#ffffff" : "#1f1f1f";
        span.dataset.w = String(b);
        span.classList.toggle("tba-selected", this.pickSpans.length === 0 && j === sel.index);
      });
    }
    this.pickSpans.forEach((span, i) => span.classList.toggle("tba-selected", i === sel.index));
  }

  /** The token span under the pointer: {row, index}, or null. */
  tokenAt(e) {
    const t = e.target && e.target.closest ? e.target.closest(".tba-tok") : null;
    return t ? { row: t.dataset.row, index: Number(t.dataset.i) } : null;
  }

  onOver(e) {
    const t = this.tokenAt(e);
    if (!t || !this.ctx) return;
    this.over = t;
    const { state } = this.ctx;
    const pinned = state.hover && state.hover.side === state.tdir;
    const picks = this.pickSpans.length === 0 || t.row === "pick";
    this.setTransient(picks && !pinned ? { side: state.tdir, index: t.index } : this.transient);
  }

  setTransient(h) {
    this.transient = h;
    if (!this.ctx) return;
    this.shade();
    this.updateReadout();
    this.host.drawn(this);
  }

  onClick(e) {
    const t = this.tokenAt(e);
    const { state } = this.ctx;
    if (!t || (this.pickSpans.length && t.row !== "pick")) return;
    const h = { side: state.tdir, index: t.index };
    const pinned = state.hover && state.hover.side === h.side && state.hover.index === h.index;
    this.transient = null;
    this.host.setState({ hover: pinned ? null : h });
  }

  /** The rows as they are on screen (each token's box, shading and text), for PNG export. */
  exportCanvas() {
    const { theme } = this.ctx;
    const origin = this.box.getBoundingClientRect();
    const x0 = origin.left - this.box.scrollLeft;
    const y0 = origin.top - this.box.scrollTop;
    const c = document.createElement("canvas");
    const ctx = sizeCanvas(c, Math.max(1, this.box.scrollWidth), Math.max(1, this.box.scrollHeight));
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, this.box.scrollWidth, this.box.scrollHeight);
    ctx.textBaseline = "middle";
    for (const node of this.box.querySelectorAll(".tba-tok, .tba-text-step")) {
      const r = node.getBoundingClientRect();
      const style = getComputedStyle(node);
      if (node.classList.contains("tba-tok")) {
        ctx.fillStyle = style.backgroundColor;
        ctx.fillRect(r.left - x0, r.top - y0, r.width, r.height);
      }
      ctx.fillStyle = style.color;
      ctx.font = `${style.fontWeight} ${style.fontSize} ${FONT}`;
      ctx.fillText(node.textContent, r.left - x0 + 1, r.top - y0 + r.height / 2);
    }
    return c;
  }

  /** The selected token, and with one pinned, its weight with the hovered token. */
  updateReadout() {
    const { state, labels } = this.ctx;
    const sel = this.selected();
    const name = (side, i) => `${SIDE_NAMES[side]} ${i} \u201c${shortLabel((side === "q" ? labels.q : labels.k)[i])}\u201d`;
    let text = name(sel.side, sel.index);
    const row = this.over && this.rows.find((r) => intText(r.step) === this.over.row);
    if (row && state.hover && state.hover.side === state.tdir) {
      const other = sel.side === "q" ? "k" : "q";
      const [, , Tk] = row.w.shape;
      const k = sel.side === "q" ? sel.index * Tk + this.over.index : this.over.index * Tk + sel.index;
      text = `step ${intText(row.step)} \u00b7 ${name(sel.side, sel.index)} ${sel.side === "q" ? "\u2192" : "\u2190"} ${name(other, this.over.index)}: ${weightAt(row.w, k).toFixed(3)}`;
    }
    this.readout.textContent = text;
  }
}
