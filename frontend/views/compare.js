// Compare view: two logged steps of one probe side by side and their
// difference. A is the run and step of the main chrome (its scrubber moves
// A); B is chosen in this view's controls: any run that logged this probe,
// any of its kept steps (by default the same run's newest step, or its first
// other step when A is the newest). Modes:
//
//   rank    layers x heads heatmap of the mean Jensen-Shannon divergence over
//           query rows (the `compare` route, computed on the server from the
//           stored layers); click a cell to open that head in matrix mode
//   matrix  A | B | B - A heatmaps of one layer and head
//   model   three grids side by side, A | B | B - A, each with every layer x
//           head as a heatmap thumbnail (the `overview` maps, max-pooled on
//           the server for long sequences); click one to open that head in
//           matrix mode
//   head    A and B as BertViz lines, and B - A as lines coloured by sign
//
// Differences use the theme's diverging scale, symmetric around zero and
// scaled to the largest |B - A| on screen; zero is exactly the background,
// so a step compared with itself draws nothing. Whether A and B line up at
// all, and whether their tokens do, is the `compare` route's verdict: when
// the tokens differ the view shows the route's message and draws no
// difference; A and B are still drawn each with its own tokens in the
// matrix, head and model modes.

import { css, divergingIndex, headColor, lutToUint32, seqLut } from "../colors.js";
import { canvasPoint, el, labelled, setOptions } from "../dom.js";
import { OVERVIEW_SIZE } from "../api.js";
import { weightAt } from "../decode.js";
import { matrixHit } from "../layout.js";
import { CMODES, intText } from "../state.js";
import { headParams, headTitle, load, need } from "../host.js";
import { shortLabel } from "../tokens.js";
import { compareVerdict, diffLut, difference, isA, nothingToCompare, pickBRun, rankHeads, resolveB } from "../comparing.js";
import { composePanels, drawLinePanels, drawMatrixPanels, drawModelGrids, drawRankGrid } from "../draw/compare.js";
import { headControl, layerControl } from "./controls.js";

const MODE_NAMES = { rank: "Ranking", matrix: "Matrix", model: "Model", head: "Head" };
const TOP_LISTED = 5;
const MINUS = "\u2212";

/** A titled canvas of the view (titleName and canvasName are data-name values). */
function comparePanel(canvasName, titleName) {
  const title = el("div", { className: "tba-compare-title", attrs: { "data-name": titleName } });
  const canvas = el("canvas", { attrs: { "data-name": canvasName } });
  const box = el("div", { className: "tba-compare-panel" }, title, canvas);
  return { title, canvas, box, geo: null };
}

/** The B - A title: the scale, or that there is none. */
function diffTitle(prefix, d) {
  return `B ${MINUS} A \u00b7 ${prefix}` + (d.maxAbs > 0 ? `red: B higher, blue: A higher (scale \u00b1${d.maxAbs.toFixed(3)})` : "no difference");
}

export default class CompareView {
  /**
   * B's header and the verdict on A and B (the ranking: with every head's
   * divergence; the other modes: the verdict alone, from the two headers),
   * and A's and B's arrays of the mode; only A's before B is known (the
   * entry point, prefetching).
   * @param {{state: any, b?: {run: string, tag: string, step: number} | null}} ctx
   */
  static needs({ state, b = null }) {
    const sides = b ? [state, { ...state, run: b.run, tag: b.tag, step: b.step }] : [state];
    const ab = b && { a: { run: state.run, step: state.step }, b: { run: b.run, step: b.step, tag: b.tag }, verdict: state.cmode !== "rank" };
    const out = b ? [need("header", sides[1]), need("compare", state, ab)] : [];
    if (state.cmode === "model") for (const s of sides) out.push(need("overview", s, { size: OVERVIEW_SIZE }));
    if (state.cmode === "matrix" || state.cmode === "head") for (const s of sides) out.push(need("attention", s, headParams(state)));
    return out;
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    this.modeBox = el("div", { className: "tba-tabs", attrs: { role: "group", "aria-label": "Compare mode", "data-name": "cmode" } });
    this.modeButtons = {};
    for (const m of CMODES) {
      const b = el("button", { text: MODE_NAMES[m], attrs: { "data-cmode": m, "aria-pressed": "false" }, on: { click: () => host.setState({ cmode: m }) } });
      this.modeButtons[m] = b;
      this.modeBox.appendChild(b);
    }
    this.btagSel = el("select", { attrs: { "data-name": "btag" }, title: "B: a probe (A's by default)", on: { change: () => host.setState({ btag: this.btagSel.value === host.state().tag ? null : this.btagSel.value, bstep: null }) } });
    this.brunSel = el("select", { attrs: { "data-name": "brun" }, title: "B: a run that logged B's probe", on: { change: () => host.setState({ brun: this.brunSel.value, bstep: null }) } });
    this.bstepSel = el("select", { attrs: { "data-name": "bstep" }, title: "B: a step of that run (A is the main step)", on: { change: () => host.setState({ bstep: Number(this.bstepSel.value) }) } });
    this.layer = layerControl(host);
    this.head = headControl(host);
    this.aLabel = el("span", { className: "tba-hint", attrs: { "data-name": "compare-a" } });
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "compare-readout" } });
    this.note = el("span", { className: "tba-hint tba-note", attrs: { "data-name": "compare-note" } });
    this.controls = el("div", { className: "tba-controls" },
      this.modeBox, this.aLabel, labelled("B probe", this.btagSel), labelled("B run", this.brunSel), labelled("B step", this.bstepSel),
      this.layer.field, this.head.field, this.readout, this.note);
    this.message = el("div", { className: "tba-notice tba-compare-message", attrs: { "data-name": "compare-message", role: "status" } });
    this.message.hidden = true;
    this.tile = document.createElement("canvas");
    this.panels = this.panelSet("compare-", "compare-title-", "tba-compare-panels tba-compare-rows", (p, name) => {
      p.canvas.addEventListener("mousemove", (e) => this.onPanelMove(name, e));
    });
    this.modelPanels = this.panelSet("compare-model-", "compare-model-title-", "tba-compare-panels tba-compare-grids", (p) => {
      p.canvas.style.cursor = "pointer";
      p.canvas.addEventListener("mousemove", (e) => this.onGridMove(e, p.canvas, this.modelGrid, "model"));
      p.canvas.addEventListener("click", (e) => this.openHead(this.gridHit(e, p.canvas, this.modelGrid)));
    });
    this.gridCanvas = el("canvas", { attrs: { "data-name": "compare-grid" } });
    this.gridCanvas.style.cursor = "pointer";
    this.gridCanvas.addEventListener("mousemove", (e) => this.onGridMove(e, this.gridCanvas, this.rank && this.rank.g, "rank"));
    this.gridCanvas.addEventListener("mouseleave", () => this.setReadout(""));
    this.gridCanvas.addEventListener("click", (e) => this.openHead(this.gridHit(e, this.gridCanvas, this.rank && this.rank.g)));
    this.gridBox = el("div", {}, this.gridCanvas);
    this.scroll = el("div", { className: "tba-scroll" }, this.panels.box, this.modelPanels.box, this.gridBox);
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "compare-view" } }, this.message, this.scroll);
    this.ctx = null;
    this.b = null;
    this.data = null;
    this.info = {};
  }

  /** Panels a, b and diff in one row (box), each named prefix + a / b / diff. */
  panelSet(prefix, titlePrefix, className, wire) {
    const set = { box: el("div", { className }) };
    for (const name of ["a", "b", "diff"]) {
      const p = comparePanel(prefix + name, titlePrefix + name);
      p.canvas.addEventListener("mouseleave", () => this.setReadout(""));
      wire(p, name);
      set[name] = p;
      set.box.appendChild(p.box);
    }
    return set;
  }

  async show(ctx) {
    const { state, kind } = ctx;
    const host = this.host;
    for (const m of CMODES) this.modeButtons[m].setAttribute("aria-pressed", String(m === state.cmode));
    // B's run may not be A's: its steps are fetched (once per listing) first
    const brun = pickBRun(state, host.catalogue.listing());
    if (brun !== null) await host.catalogue.probe(brun, state.btag || state.tag);
    if (!ctx.isCurrent()) return;
    const b = resolveB(state, host.catalogue.listing());
    if (!b || b.step === null) throw new Error(`no run has steps of probe "${state.btag || state.tag}"`);
    this.updateControls(ctx, b);
    const nothing = nothingToCompare(state, b);
    if (nothing) return this.keep(ctx, b, null, { tokens: "n/a" }, nothing);
    const [headerB, verdict, ...arrays] = await Promise.allSettled(CompareView.needs({ state, b }).map((n) => load(host.data, n)));
    if (!ctx.isCurrent()) return;
    if (headerB.status === "rejected") throw headerB.reason;
    const kindB = headerB.value.kinds.find((k) => k.name === kind.name) || null;
    const v = kindB ? compareVerdict(verdict)
      : { problem: `B has no ${kind.name} attention (its kinds: ${headerB.value.kinds.map((k) => k.name).join(", ")})`, tokens: "n/a" };
    let data = null;
    if (!v.problem && state.cmode === "rank") {
      data = v.tokens === "match" ? v.answer : null;
    } else if (!v.problem) {
      const failed = arrays.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
      data = state.cmode === "model" ? { oa: arrays[0].value, ob: arrays[1].value } : { wa: arrays[0].value, wb: arrays[1].value };
    }
    this.keep({ ...ctx, kindB, labelsB: kindB ? host.labels(kindB, state.raw) : null }, b, data, v, v.problem || v.message || null);
  }

  /** Keep what show() found and draw it: the data of the mode, or the problem to say. */
  keep(ctx, b, data, verdict, problem) {
    this.ctx = ctx;
    this.b = b;
    this.data = data;
    this.info = { mode: ctx.state.cmode, brun: b.run, bstep: b.step, tokens: verdict.tokens, diff: "none" };
    this.problem = problem;
    this.draw();
  }

  /** B's run and step selects, A's label, and the layer and head (per-head modes only). */
  updateControls({ state, kind }, b) {
    const probes = [...new Set(this.host.catalogue.listing().runs.flatMap((r) => r.tags.map((t) => t.tag)))];
    setOptions(this.btagSel, probes.map((t) => ({ value: t, label: t })), b.tag);
    setOptions(this.brunSel, b.runs.map((r) => ({ value: r, label: r })), b.run);
    setOptions(this.bstepSel, b.steps.map((st) => ({ value: intText(st), label: intText(st) })), intText(b.step));
    this.aLabel.textContent = `A: ${state.run} \u00b7 step ${intText(state.step)} (the main scrubber)`;
    this.layer.update(kind, state);
    this.head.update(kind, state);
    const perHead = state.cmode === "matrix" || state.cmode === "head";
    this.layer.field.hidden = !perHead;
    this.head.field.hidden = !perHead;
  }

  /** What the view shows, for an export's title: the mode, B, and the head of the per-head modes. */
  describe() {
    const s = this.ctx.state;
    const b = this.b;
    const head = s.cmode === "matrix" || s.cmode === "head" ? headTitle(s) : "";
    return ` \u00b7 ${MODE_NAMES[s.cmode]} \u00b7 B: ${b.run}${b.tag !== s.tag ? ` \u00b7 ${b.tag}` : ""} \u00b7 step ${intText(b.step)}${head}`;
  }

  detail() {
    const i = this.info;
    const parts = [`mode=${i.mode}`, `brun=${encodeURIComponent(i.brun || "")}`, `bstep=${i.bstep}`, `tokens=${i.tokens}`, `diff=${i.diff}`];
    if (i.maxabs !== undefined) parts.push(`maxabs=${i.maxabs.toFixed(3)}`);
    if (i.max !== undefined) parts.push(`max=${i.max.toFixed(4)}`);
    if (i.top) parts.push(`top=${i.top}`);
    return parts.join(";");
  }

  draw() {
    const s = this.ctx.state;
    const mode = s.cmode;
    this.message.textContent = this.problem || "";
    this.message.hidden = !this.problem;
    this.setReadout("");
    this.note.textContent = "";
    this.info = { mode: this.info.mode, brun: this.info.brun, bstep: this.info.bstep, tokens: this.info.tokens, diff: "none" };
    const other = this.b.tag !== s.tag;
    const head = mode === "matrix" || mode === "head" ? headTitle(s) : "";
    const titles = {
      a: `A: ${s.run}${other ? ` \u00b7 ${s.tag}` : ""} \u00b7 step ${intText(s.step)}${head}`,
      b: `B: ${this.b.run}${other ? ` \u00b7 ${this.b.tag}` : ""} \u00b7 step ${intText(this.b.step)}${head}`,
    };
    const panels = (mode === "matrix" || mode === "head") && this.data && this.data.wa;
    this.panels.box.hidden = !panels;
    this.gridBox.hidden = panels || !this.data || mode !== "rank";
    this.modelPanels.box.hidden = !(this.data && mode === "model");
    if (panels) this.drawPanels(titles);
    else if (this.data && mode === "model") this.drawModel(titles);
    else if (this.data && mode === "rank") this.drawRank();
  }

  /** What the panels share: A's and B's arrays, kinds, labels, theme, a scratch canvas and a panel's width. */
  sides(a, b) {
    const { kind, kindB, labels, labelsB, theme } = this.ctx;
    const avail = Math.max(180, Math.floor(((this.scroll.clientWidth || this.root.clientWidth || 1200) - 40) / 3));
    return { a, b, kind, kindB, labels, labelsB, theme, tile: this.tile, avail };
  }

  /** Matrix and head modes: A | B | B - A of one head (no B - A when the tokens differ). */
  drawPanels(titles) {
    const s = this.ctx.state;
    const { wa, wb } = this.data;
    this.panels.a.title.textContent = titles.a;
    this.panels.b.title.textContent = titles.b;
    const d = this.info.tokens === "match" ? difference(wa, wb) : null;
    this.panels.diff.box.hidden = !d;
    this.diff = d;
    if (d) {
      Object.assign(this.info, { diff: "drawn", maxabs: d.maxAbs });
      this.panels.diff.title.textContent = diffTitle(`${headTitle(s).slice(3)} \u00b7 `, d);
    }
    // an aggregate over heads is drawn in the text's colour, as in the head view
    const color = s.agg ? this.ctx.theme.text : css(headColor(s.head));
    if (s.cmode === "head") drawLinePanels(this.panels, this.sides(wa, wb), d, color, s.zoom);
    else drawMatrixPanels(this.panels, this.sides(wa, wb), d);
  }

  /** Model mode: A | B | B - A grids of every head. */
  drawModel(titles) {
    const { theme } = this.ctx;
    const { oa, ob } = this.data;
    const d = this.info.tokens === "match" ? difference(oa, ob) : null;
    const seq = lutToUint32(seqLut(theme));
    const div = lutToUint32(diffLut(theme));
    const grids = [
      { p: this.modelPanels.a, o: oa, title: titles.a, src: oa.bytes, color: (v) => seq[v] },
      { p: this.modelPanels.b, o: ob, title: titles.b, src: ob.bytes, color: (v) => seq[v] },
    ];
    if (d) grids.push({ p: this.modelPanels.diff, o: oa, src: d.values, signed: true, color: (v) => div[divergingIndex(v, d.maxAbs)], title: diffTitle("", d) });
    this.modelPanels.diff.box.hidden = !d;
    const { g, repooled } = drawModelGrids(grids, this.sides(oa, ob));
    this.modelGrid = g;
    const pools = [oa, ob].filter((o) => o.pool[0] > 1 || o.pool[1] > 1);
    const pool = pools.length ? ` \u00b7 max-pooled to ${pools[0].shape[2]}\u00d7${pools[0].shape[3]} (${pools[0].pool[0]}\u00d7${pools[0].pool[1]} tokens per cell)` +
      (d ? `, so B ${MINUS} A is of the pooled maps` : "") : "";
    const again = repooled ? ` \u00b7 max-pooled again to ${repooled[0]}\u00d7${repooled[1]} to fit the thumbnails` : "";
    if (d) Object.assign(this.info, { diff: "drawn", maxabs: d.maxAbs });
    this.note.textContent = `A | B | B ${MINUS} A of every head${pool}${again} \u00b7 click a thumbnail to open that head`;
  }

  /** Rank mode: the layers x heads heatmap of mean JSD, and the heads that changed most. */
  drawRank() {
    const data = this.data;
    const ranked = rankHeads(data.jsd, data.layer_ids);
    const max = ranked.length ? ranked[0].value : 0;
    const width = Math.max(400, (this.scroll.clientWidth || 1000) - 4);
    const g = drawRankGrid(this.gridCanvas, data, max, { kind: this.ctx.kind, theme: this.ctx.theme, width });
    this.rank = { g, ranked };
    this.info.max = max;
    this.info.top = ranked.length && max > 0 ? `${ranked[0].layer},${ranked[0].head}` : "";
    const top = ranked.filter((r) => r.value > 0).slice(0, TOP_LISTED).map((r) => `L${r.layer} H${r.head} ${r.value.toFixed(4)}`);
    const none = isA(this.ctx.state, this.b) ? "no head changed (B is A itself)" : "no head changed";
    this.note.textContent = (top.length ? `most changed: ${top.join(" \u00b7 ")}` : none) +
      ` \u00b7 mean Jensen-Shannon divergence over query rows, nats (0 to ln 2 = ${data.max.toFixed(3)}) \u00b7 click a cell to open that head`;
  }

  setReadout(text) {
    this.readout.textContent = text;
  }

  gridHit(e, canvas, g) {
    if (!g) return null;
    const p = canvasPoint(canvas, e);
    const hit = g.hit(p.x, p.y);
    return hit ? { l: hit.row, layer: this.ctx.kind.layer_ids[hit.row], head: hit.col } : null;
  }

  /** The head under the pointer of the ranking or a model grid. */
  onGridMove(e, canvas, g, mode) {
    const c = this.gridHit(e, canvas, g);
    if (!c) {
      this.setReadout("");
    } else if (mode === "model") {
      this.setReadout(`layer ${c.layer} \u00b7 head ${c.head}: click to open A | B | B ${MINUS} A`);
    } else {
      const v = this.data.jsd[c.l][c.head];
      const ranked = this.rank.ranked;
      const rank = ranked.findIndex((r) => r.layer === c.layer && r.head === c.head);
      this.setReadout(`layer ${c.layer} \u00b7 head ${c.head}: ` +
        (v === null ? "no query row to compare" : `mean JSD ${v.toFixed(4)} nats (rank ${rank + 1} of ${ranked.length})`));
    }
  }

  /** Open a head of a grid (or nothing) in matrix mode. */
  openHead(c) {
    if (c) this.host.setState({ cmode: "matrix", layer: c.layer, head: c.head, agg: null });
  }

  onPanelMove(name, e) {
    const p = this.panels[name];
    const g = p.geo;
    if (!g || !this.ctx || g.type !== "matrix") return;
    const pt = canvasPoint(p.canvas, e);
    const c = matrixHit(pt.x, pt.y, g.ox, g.oy, g.cell, g.Tq, g.Tk);
    if (!c) {
      this.setReadout("");
      return;
    }
    const k = c.i * g.Tk + c.j;
    const cell = `query ${c.i} \u201c${shortLabel(g.labels.q[c.i])}\u201d \u2192 key ${c.j} \u201c${shortLabel(g.labels.k[c.j])}\u201d: `;
    if (name === "b") {
      this.setReadout(cell + `B ${weightAt(g.w, k).toFixed(3)}`);
      return;
    }
    const a = weightAt(this.data.wa, k);
    const both = this.info.diff === "drawn";
    const d = both ? this.diff.values[k] : 0;
    this.setReadout(cell + `A ${a.toFixed(3)}` + (both ? ` \u00b7 B ${(a + d).toFixed(3)} \u00b7 B ${MINUS} A ${d >= 0 ? "+" : MINUS}${Math.abs(d).toFixed(3)}` : ""));
  }

  /** Every panel of the mode under its title, and the colour scale's legend, for PNG export. */
  exportCanvas() {
    const { theme } = this.ctx;
    const shown = (set) => ["a", "b", "diff"].filter((n) => !set[n].box.hidden).map((n) => ({ canvas: set[n].canvas, title: set[n].title.textContent }));
    const diff = this.info.diff === "drawn" ? { lut: diffLut(theme), left: `A higher \u2212${this.info.maxabs.toFixed(3)}`, right: `+${this.info.maxabs.toFixed(3)} B higher`, caption: `B ${MINUS} A` } : null;
    const parts = [];
    if (this.problem) parts.push({ text: this.problem });
    if (!this.modelPanels.box.hidden) return composePanels([...parts, ...shown(this.modelPanels)], theme, diff);
    if (!this.panels.box.hidden) return composePanels([...parts, ...shown(this.panels)], theme, diff);
    if (!this.gridBox.hidden) {
      const scale = { lut: seqLut(theme), left: "0", right: `${(this.info.max || 0).toFixed(4)} nats`, caption: "mean Jensen-Shannon divergence of B from A" };
      return composePanels([...parts, { canvas: this.gridCanvas, title: this.note.textContent }], theme, scale);
    }
    return composePanels(parts.length ? parts : [{ text: "nothing drawn" }], theme, null);
  }
}
