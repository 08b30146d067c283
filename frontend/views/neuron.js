// Neuron view (BertViz's expanded neuron view, for a logged step): one layer,
// one head, one query token. Columns: the query tokens (click one), the key
// tokens, every key vector k with the query vector q drawn above them
// (dimensions aligned), the elementwise product q x k, then every step the
// model takes to the softmax (draw/scores.js: scale, soft-cap, bias, sink).
// Masked (causal, padding, window) positions are greyed. The numbers come
// from the logged queries and keys (capture(..., neurons=True)); the
// softmax they give is what the model computed.

import { css, headColor } from "../colors.js";
import { canvasPoint, el, FONT, fitText, maxLabelWidth, sizeCanvas } from "../dom.js";
import { need, loadAll } from "../host.js";
import { headControl, layerControl, zoomControl } from "./controls.js";
import { shortLabel } from "../tokens.js";
import { intText } from "../state.js";
import { ScrolledCanvas } from "../draw/scroll.js";
import { drawScoreCells, drawSinkRow, fmt, hasSink, neuronNumbers, painter, scoreColumns } from "../draw/scores.js";

const NEURONS_SNIPPET = [
  "record = tb_attention.capture(model, inputs, tokenizer=tok, neurons=True)",
  "w.add_attention(\"probe\", record, global_step=step)",
].join("\n");

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
    this.zoom = zoomControl(host, "Row height");
    this.queryLabel = el("span", { attrs: { "data-name": "neuron-query" } });
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "neuron-readout" } });
    this.controls = el("div", { className: "tba-controls" },
      this.layer.field, this.head.field, this.zoom.field,
      el("span", { className: "tba-field" }, el("span", { text: "Query" }), this.queryLabel),
      el("span", { className: "tba-hint", text: "click a query token on the left" }),
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
    });
    this.ctx = null;
    this.neurons = null;
    this.geo = null;
    this.status = "";
  }

  async show(ctx) {
    const { state, kind } = ctx;
    this.layer.update(kind, state);
    this.head.update(kind, state);
    this.zoom.update(state);
    this.queryLabel.textContent = `${state.query} \u201c${shortLabel(ctx.labels.q[state.query] ?? "")}\u201d`;
    this.queryLabel.title = ctx.labels.q[state.query] ?? "";
    if (!kind.has_neurons) {
      this.ctx = ctx;
      this.neurons = null;
      this.showMessage(`Step ${intText(state.step)} of probe \u201c${state.tag}\u201d has no query/key vectors (${state.kind} attention).`);
      return;
    }
    let n;
    try {
      [n] = await loadAll(this.host.data, NeuronView.needs(ctx));
    } catch (e) {
      if (!ctx.isCurrent()) return;
      if (e && e.status === 404) {
        this.ctx = ctx;
        this.neurons = null;
        this.showMessage(e.message);
        return;
      }
      throw e;
    }
    if (!ctx.isCurrent()) return;
    this.ctx = ctx;
    this.neurons = n;
    this.message.hidden = true;
    this.scroll.hidden = false;
    this.status = "drawn";
    this.draw();
    // a newly chosen query (or a link to one) scrolled out of sight: bring it in
    const g = this.geo;
    if (this.shownQuery !== state.query) {
      this.shownQuery = state.query;
      const y = g.top + state.query * g.rowH;
      if (y - g.viewY < g.top || y - g.viewY > g.viewH - g.rowH) {
        this.scroll.scrollTop = Math.max(0, y - g.top - (g.viewH - g.top) / 2);
      }
    }
  }

  showMessage(text) {
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
    return ` \u00b7 layer ${this.ctx.state.layer} \u00b7 head ${this.ctx.state.head}`;
  }

  detail() {
    if (this.status === "no-neurons") return "no-neurons";
    const r = this.numbers;
    if (!r) return "";
    return `top=${r.top}` + (r.cap ? `;cap=${r.cap}` : "") + (r.sink !== null ? `;sink=${r.sink};sinkp=${r.sinkP.toFixed(4)}` : "");
  }

  /** Geometry of the whole view (CSS px). */
  layout() {
    const { state, labels } = this.ctx;
    const n = this.neurons;
    const { Tq, Tk, D } = n;
    const rowH = state.zoom ? Math.max(6, Math.min(64, state.zoom)) : Math.max(10, Math.min(18, Math.floor(16000 / Math.max(Tq, Tk))));
    const fontPx = Math.min(12, rowH - 3);
    const cw = Math.max(2, Math.min(8, Math.floor(256 / D)));
    const c0 = this.canvas.getContext("2d");
    c0.font = `${fontPx}px ${FONT}`;
    const qW = Math.min(150, Math.ceil(maxLabelWidth(c0, labels.q)) + 10);
    const kW = Math.min(150, Math.ceil(maxLabelWidth(c0, labels.k)) + 10);
    const headerH = 26; // column titles
    const top = headerH + rowH + 8; // the q vector row sits between titles and rows
    const numW = 64;
    const blockW = Math.max(D * cw, 64); // room for the column title
    const x = {};
    x.q = 8; // query labels (right aligned at x.q + qW)
    x.k = x.q + qW + 24; // key labels
    x.kv = x.k + kW + 6; // k vectors
    x.prod = x.kv + blockW + 14; // q x k
    const columns = scoreColumns(n);
    let at = x.prod + blockW + 14;
    for (const [key] of columns) {
      x[key] = at;
      at += numW;
    }
    x.soft = at;
    const width = x.soft + 120;
    const height = top + Math.max(Tq, Tk + (hasSink(n) ? 1 : 0)) * rowH + 10;
    return { x, rowH, top, headerH, cw, width, height, qW, kW, Tq, Tk, D, fontPx, numW, columns };
  }

  /** Draw what is visible in the scroller. */
  draw() {
    const g = this.layout();
    const { x0, y0, vw, vh } = this.sc.visible(g.width, g.height);
    this.geo = { ...g, viewX: x0, viewY: y0, viewW: vw, viewH: vh };
    this.canvas.dataset.geometry = JSON.stringify(this.geo);
    this.render(this.canvas, g, x0, y0, vw, vh);
  }

  /**
   * Draw the view scrolled by (x0, y0) into a vw x vh canvas; the column
   * titles and the q vector stay frozen at the top.
   */
  render(canvas, g, x0, y0, vw, vh) {
    const { state, theme } = this.ctx;
    const n = this.neurons;
    const qi = Math.min(state.query, n.Tq - 1);
    const nums = neuronNumbers(n, qi);
    this.numbers = nums;
    const ctx = sizeCanvas(canvas, vw, vh);
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, vw, vh);
    const paint = painter(theme);
    // rows visible below the frozen header
    const first = Math.max(0, Math.floor(y0 / g.rowH) - 1);
    const last = Math.ceil((y0 + vh) / g.rowH) + 1;
    ctx.save();
    ctx.translate(-x0, -y0);
    this.drawQueries(ctx, g, qi, first, last);
    for (let j = first; j < Math.min(n.Tk, last); j++) this.drawKeyRow(ctx, g, nums, j, paint);
    if (nums.sink !== null && n.Tk < last) drawSinkRow(ctx, g, nums, g.columns, paint, theme);
    ctx.restore();
    this.drawHeader(ctx, g, nums, qi, x0, vw, paint);
  }

  /** The query tokens (left), the selected one highlighted. */
  drawQueries(ctx, g, qi, first, last) {
    const { labels, theme } = this.ctx;
    ctx.font = `${g.fontPx}px ${FONT}`;
    ctx.textBaseline = "middle";
    for (let i = first; i < Math.min(g.Tq, last); i++) {
      const y = g.top + i * g.rowH;
      if (i === qi) {
        ctx.fillStyle = theme.highlight;
        ctx.fillRect(g.x.q - 4, y, g.qW + 8, g.rowH);
      }
      ctx.fillStyle = theme.text;
      fitText(ctx, labels.q[i], g.x.q + g.qW, y + g.rowH / 2, g.qW - 4, "right");
    }
  }

  /** Key j's row: its label, k vector, q x k, then the score columns and the softmax. */
  drawKeyRow(ctx, g, nums, j, paint) {
    const { labels, theme } = this.ctx;
    const n = this.neurons;
    const { x, rowH, cw, fontPx, D } = g;
    const y = g.top + j * rowH;
    const masked = nums.masked[j] === 1;
    ctx.fillStyle = masked ? theme.muted : theme.text;
    ctx.font = `${fontPx}px ${FONT}`;
    fitText(ctx, labels.k[j], x.k + g.kW, y + rowH / 2, g.kW - 4, "right");
    for (let d = 0; d < D; d++) {
      ctx.fillStyle = paint.div(n.keys[j * D + d], nums.maxQK);
      ctx.fillRect(x.kv + d * cw, y, cw, rowH - 1);
      ctx.fillStyle = masked ? paint.masked : paint.div(nums.prod[j * D + d], nums.maxProd);
      ctx.fillRect(x.prod + d * cw, y, cw, rowH - 1);
    }
    drawScoreCells(ctx, g, nums, j, g.columns, paint, theme);
  }

  /** The frozen header: column titles and the q vector, its dimensions under the k vectors'. */
  drawHeader(ctx, g, nums, qi, x0, vw, paint) {
    const { state, labels, theme } = this.ctx;
    const n = this.neurons;
    const { x, rowH, top, cw, D } = g;
    ctx.save();
    ctx.translate(-x0, 0);
    ctx.fillStyle = theme.background;
    ctx.fillRect(x0, 0, vw, top - 2);
    ctx.fillStyle = theme.muted;
    ctx.font = `11px ${FONT}`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    const titles = [["query", x.q], ["key", x.k], [`k \u00b7 ${D} dims`, x.kv], ["q \u00d7 k", x.prod],
      ...g.columns.map(([key, title]) => [title, x[key]]), [hasSink(n) ? "softmax (+ sink)" : "softmax", x.soft]];
    for (const [text, at] of titles) ctx.fillText(text, at, 13);
    ctx.fillStyle = css(headColor(state.head));
    ctx.fillRect(x.soft + ctx.measureText(titles[titles.length - 1][0]).width + 6, 8, 10, 10);
    ctx.font = `${g.fontPx}px ${FONT}`;
    ctx.fillStyle = theme.text;
    fitText(ctx, `q of \u201c${shortLabel(labels.q[qi], 40)}\u201d`, x.kv - 6, g.headerH + rowH / 2, x.kv - 6 - x.q, "right");
    for (let d = 0; d < D; d++) {
      ctx.fillStyle = paint.div(nums.q[d], nums.maxQK);
      ctx.fillRect(x.kv + d * cw, g.headerH, cw, rowH - 1);
    }
    ctx.strokeStyle = theme.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x0, top - 2.5);
    ctx.lineTo(x0 + vw, top - 2.5);
    ctx.stroke();
    ctx.restore();
    ctx.textAlign = "left";
  }

  hit(e) {
    const g = this.geo;
    if (!g) return null;
    const p = canvasPoint(this.canvas, e);
    if (p.y < g.top) return null; // the frozen header
    const px = p.x + g.viewX;
    const row = Math.floor((p.y + g.viewY - g.top) / g.rowH);
    if (px < g.x.q + g.qW + 6) return row >= 0 && row < g.Tq ? { query: row } : null;
    if (row === g.Tk && hasSink(this.neurons)) return { sink: true };
    if (row < 0 || row >= g.Tk) return null;
    let dim = null;
    if (px >= g.x.kv && px < g.x.kv + g.D * g.cw) dim = Math.floor((px - g.x.kv) / g.cw);
    else if (px >= g.x.prod && px < g.x.prod + g.D * g.cw) dim = Math.floor((px - g.x.prod) / g.cw);
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
    if (!h || h.key === undefined || !this.numbers) {
      const q = h && h.query !== undefined ? this.ctx.labels.q[h.query] : "";
      this.readout.textContent = h && h.query !== undefined ? `click: query ${h.query} \u201c${shortLabel(q)}\u201d` : "";
      this.readout.title = q;
      this.canvas.title = q;
      return;
    }
    const nums = this.numbers;
    const n = this.neurons;
    const j = h.key;
    this.readout.title = this.ctx.labels.k[j];
    this.canvas.title = this.ctx.labels.k[j];
    let text = `key ${j} \u201c${shortLabel(this.ctx.labels.k[j])}\u201d`;
    if (h.dim !== null) {
      const d = h.dim;
      text += ` \u00b7 dim ${d}: q=${fmt(nums.q[d])} k=${fmt(n.keys[j * n.D + d])} q\u00d7k=${fmt(nums.prod[j * n.D + d])}`;
    }
    text += nums.masked[j] ? " \u00b7 masked" : ` \u00b7 q\u00b7k=${fmt(nums.dot[j])} score=${fmt(nums.score[j])} softmax=${nums.softmax[j].toFixed(4)}`;
    this.readout.textContent = text;
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
