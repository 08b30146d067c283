// Neuron view (BertViz's neuron view, for a logged step): one layer, one
// head. Every query token with its q vector on the left; for the query shown
// (hovered, else pinned by a click or the arrow keys; by default the last
// token of causal attention, the first otherwise) every key's k vector, the
// elementwise product q x k, then q . k, the scaled score (x scale), the
// soft-cap, the additive bias and the sink when the model has them, and the softmax
// (draw/scores.js). Or, collapsed
// ("lines", BertViz's collapsed form): the shown query's lines to the keys
// and the softmax. Signed values use a diverging scale (blue < 0 < red, the
// legend on top); masked (causal or padding) positions are greyed; a
// sentence-pair filter veils the tokens it leaves out. The numbers come from
// the logged queries and keys (capture(..., neurons=True));
// the softmax they give is what the model computed.

import { canvasPoint, el, labelled, setOptions } from "../dom.js";
import { need, loadAll } from "../host.js";
import { headControl, keyboardArea, layerControl, pairControl, zoomControl } from "./controls.js";
import { shortLabel } from "../tokens.js";
import { intText, queryIndex } from "../state.js";
import { ScrolledCanvas } from "../draw/scroll.js";
import { neuronLayout, neuronNumbers, renderNeurons } from "../draw/neuron.js";
import { fmt, hasSink } from "../draw/scores.js";

const NEURONS_SNIPPET = [
  "record = tb_attention.capture(model, inputs, tokenizer=tok, neurons=True)",
  "w.add_attention(\"probe\", record, global_step=step)",
].join("\n");
const MODES = [{ value: "vectors", label: "vectors" }, { value: "lines", label: "lines (collapsed)" }];

export default class NeuronView {
  /** One head's queries and keys, when the step logged them. */
  static needs({ state, kind }) {
    return kind && kind.has_neurons ? [need("neurons", state, { layer: state.layer, head: state.head })] : [];
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    this.layer = layerControl(host);
    this.head = headControl(host, { aggregates: false });
    this.pair = pairControl(host);
    this.zoom = zoomControl(host, "Row height");
    this.modeSel = el("select", { attrs: { "data-name": "nmode" }, title: "Every number of the shown query (vectors), or its lines only (collapsed)", on: { change: () => host.setState({ nmode: this.modeSel.value }) } });
    this.queryLabel = el("span", { attrs: { "data-name": "neuron-query" } });
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "neuron-readout" } });
    this.controls = el("div", { className: "tba-controls" },
      this.layer.field, this.head.field, this.pair.field, labelled("Show", this.modeSel), this.zoom.field,
      el("span", { className: "tba-field" }, el("span", { text: "Query" }), this.queryLabel),
      el("span", { className: "tba-hint", text: "hover a query token to preview it \u00b7 click (or \u2191/\u2193) to pin" }),
      this.readout,
    );
    this.sc = new ScrolledCanvas("neuron-canvas", () => {
      if (this.ctx && this.neurons) this.draw();
    });
    this.canvas = this.sc.canvas;
    this.scroll = this.sc.scroll;
    this.message = el("div", { className: "tba-message", attrs: { "data-name": "neuron-message" } });
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "neuron-view" } }, this.message, this.scroll);
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.readout.textContent = "";
      this.setPreview(null);
    });
    keyboardArea(this.canvas, "Neuron view: up and down arrows choose the query token", {
      ArrowUp: () => this.pinBy(-1), ArrowDown: () => this.pinBy(1),
    });
    this.ctx = null;
    this.neurons = null;
    this.geo = null;
    this.status = "";
    /** @type {number | null} the query under the pointer, shown until the pointer leaves */
    this.preview = null;
    this.frame = 0;
  }

  async show(ctx) {
    const { state, kind } = ctx;
    this.layer.update(kind, state);
    this.head.update(kind, state);
    this.ranges = this.pair.update(kind, state);
    this.zoom.update(state);
    setOptions(this.modeSel, MODES, state.nmode);
    const qi = queryIndex(state, kind);
    this.queryLabel.textContent = `${qi} \u201c${shortLabel(ctx.labels.q[qi] ?? "")}\u201d`;
    this.queryLabel.title = ctx.labels.q[qi] ?? "";
    this.preview = null;
    if (!kind.has_neurons) return this.noNeurons(ctx, `Step ${intText(state.step)} of probe \u201c${state.tag}\u201d has no query/key vectors (${state.kind} attention).`);
    let n;
    try {
      [n] = await loadAll(this.host.data, NeuronView.needs(ctx));
    } catch (e) {
      if (!ctx.isCurrent()) return;
      if (e && e.status === 404) return this.noNeurons(ctx, e.message);
      throw e;
    }
    if (!ctx.isCurrent()) return;
    this.ctx = ctx;
    this.neurons = n;
    this.message.hidden = true;
    this.scroll.hidden = false;
    this.status = "drawn";
    this.draw();
    this.scrollToQuery(qi);
  }

  /** A newly chosen query (or a link to one) scrolled out of sight: bring it in. */
  scrollToQuery(qi) {
    const g = this.geo;
    if (this.shownQuery === qi) return;
    this.shownQuery = qi;
    const y = g.top + qi * g.rowH;
    if (y - g.viewY < g.top || y - g.viewY > g.viewH - g.rowH) {
      this.scroll.scrollTop = Math.max(0, y - g.top - (g.viewH - g.top) / 2);
    }
  }

  noNeurons(ctx, text) {
    this.ctx = ctx;
    this.neurons = null;
    this.status = "no-neurons";
    this.scroll.hidden = true;
    this.message.hidden = false;
    while (this.message.firstChild) this.message.removeChild(this.message.firstChild);
    this.message.append(
      el("h2", { text: "No neurons logged" }),
      el("p", { text }),
      el("p", { text: "The neuron view needs the queries and keys behind the attention. Log them with:" }),
      el("pre", { className: "tba-code", text: NEURONS_SNIPPET }),
    );
  }

  /** Whether draw() has what it needs (App.redraw asks before a theme or size redraw). */
  drawable() {
    return Boolean(this.neurons);
  }

  /** What the view shows, for an export's title. */
  describe() {
    return ` \u00b7 layer ${this.ctx.state.layer} \u00b7 head ${this.ctx.state.head} \u00b7 query ${this.pinned()}`;
  }

  detail() {
    if (this.status === "no-neurons") return "no-neurons";
    const r = this.numbers;
    if (!r) return "";
    return `top=${r.top};shown=${r.qi};mode=${this.ctx.state.nmode}` + (r.cap ? `;cap=${r.cap}` : "") +
      (r.sink !== null ? `;sink=${r.sink};sinkp=${r.sinkP.toFixed(4)}` : "");
  }

  /** The previewed query, as the head view's hovered token (data-hover). */
  hoverNow() {
    return this.preview === null ? null : { side: "q", index: this.preview };
  }

  pinned() {
    return queryIndex(this.ctx.state, this.ctx.kind);
  }

  layout() {
    const avail = (this.scroll.clientWidth || 1000) - 2;
    return neuronLayout(this.canvas.getContext("2d"), this.neurons, this.ctx.labels,
      { zoom: this.ctx.state.zoom, avail, lines: this.ctx.state.nmode === "lines" });
  }

  /** Draw what is visible in the scroller. */
  draw() {
    const g = this.layout();
    const { x0, y0, vw, vh } = this.sc.visible(g.width, g.height);
    this.geo = { ...g, viewX: x0, viewY: y0, viewW: vw, viewH: vh };
    this.geo.legend = this.render(this.canvas, g, x0, y0, vw, vh);
    this.canvas.dataset.geometry = JSON.stringify(this.geo);
  }

  render(canvas, g, x0, y0, vw, vh) {
    const n = this.neurons;
    const qi = Math.min(this.preview ?? this.pinned(), n.Tq - 1);
    this.numbers = neuronNumbers(n, qi);
    const v = { n, nums: this.numbers, labels: this.ctx.labels, theme: this.ctx.theme, head: this.ctx.state.head, pinned: this.pinned(), ranges: this.ranges };
    return renderNeurons(canvas, g, x0, y0, vw, vh, v);
  }

  /** Show another query while the pointer is on it (null: the pinned one again). */
  setPreview(qi) {
    if (qi === this.preview || !this.neurons) return;
    this.preview = qi;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (!this.ctx || !this.ctx.isCurrent() || !this.neurons) return;
      this.draw();
      this.host.drawn(this);
    });
  }

  /** The arrow keys: pin the previous or next query the pair filter keeps. */
  pinBy(delta) {
    if (!this.neurons) return;
    const [a, b] = this.ranges.qRange;
    const next = Math.max(a, Math.min(b - 1, this.pinned() + delta));
    if (next !== this.pinned()) this.host.setState({ query: next });
  }

  hit(e) {
    const g = this.geo;
    if (!g) return null;
    const p = canvasPoint(this.canvas, e);
    if (p.y < g.top) return null; // the frozen header
    const px = p.x + g.viewX;
    const row = Math.floor((p.y + g.viewY - g.top) / g.rowH);
    const [a, b] = this.ranges.qRange;
    if (px < (g.lines ? g.x.lines0 : g.x.k - 6)) return row >= a && row < b && row < g.Tq ? { query: row } : null;
    if (row === g.Tk && !g.lines && hasSink(this.neurons)) return { sink: true };
    if (row < 0 || row >= g.Tk) return null;
    let dim = null;
    if (!g.lines && px >= g.x.kv && px < g.x.kv + g.D * g.cw) dim = Math.floor((px - g.x.kv) / g.cw);
    else if (!g.lines && px >= g.x.prod && px < g.x.prod + g.D * g.cw) dim = Math.floor((px - g.x.prod) / g.cw);
    return { key: row, dim };
  }

  onClick(e) {
    const h = this.hit(e);
    if (h && h.query !== undefined && h.query !== this.ctx.state.query) this.host.setState({ query: h.query });
  }

  onMove(e) {
    const h = this.hit(e);
    this.canvas.style.cursor = h && h.query !== undefined ? "pointer" : "default";
    if (h && h.sink && this.numbers) {
      this.readout.textContent = `sink logit ${fmt(this.numbers.sink)} \u00b7 softmax=${this.numbers.sinkP.toFixed(4)} (weight no key gets)`;
      return;
    }
    if (h && h.query !== undefined) this.setPreview(h.query);
    if (!h || h.key === undefined || !this.numbers) {
      const q = h && h.query !== undefined ? this.ctx.labels.q[h.query] : "";
      this.readout.textContent = h && h.query !== undefined
        ? `query ${h.query} \u201c${shortLabel(q)}\u201d` + (h.query === this.pinned() ? " (pinned)" : " (preview: click to pin)") : "";
      this.readout.title = q;
      this.canvas.title = q;
      return;
    }
    this.readout.textContent = this.keyText(h);
  }

  /** The readout of a key (and a dimension) of the shown query. */
  keyText(h) {
    const nums = this.numbers;
    const n = this.neurons;
    const j = h.key;
    this.readout.title = this.ctx.labels.k[j];
    this.canvas.title = this.ctx.labels.k[j];
    let text = `query ${nums.qi} \u2192 key ${j} \u201c${shortLabel(this.ctx.labels.k[j])}\u201d`;
    if (h.dim !== null) {
      const d = h.dim;
      text += ` \u00b7 dim ${d}: q=${fmt(nums.q[d])} k=${fmt(n.keys[j * n.D + d])} q\u00d7k=${fmt(nums.prod[j * n.D + d])}`;
    }
    return text + (nums.masked[j] ? " \u00b7 masked" : ` \u00b7 q\u00b7k=${fmt(nums.dot[j])} score=${fmt(nums.score[j])} softmax=${nums.softmax[j].toFixed(4)}`);
  }

  /** The whole view (not only the visible rows), for PNG export. */
  exportCanvas() {
    if (!this.neurons) return this.canvas;
    const g = this.layout();
    const c = document.createElement("canvas");
    this.render(c, g, 0, 0, g.width, g.height);
    return c;
  }
}
