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
// so a step compared with itself draws nothing. When A's and B's tokens
// differ, nothing is aligned: the view names the first differing position
// and both tokens (as text) and draws no difference; A and B are still
// drawn each with its own tokens in the matrix, head and model modes.

import { css, divergingIndex, headColor, lutToUint32, makeLut, seqLut } from "../colors.js";
import { canvasPoint, el, FONT, fitText, labelled, maxLabelWidth, setOptions, sizeCanvas } from "../dom.js";
import { OVERVIEW_SIZE, weightAt } from "../api.js";
import { budgetCutoff, collectEdges, gridLayout, headViewLayout, matrixHit, maxPool, rowHeight } from "../layout.js";
import { CMODES, intText, nearestStep } from "../state.js";
import { shortLabel } from "../tokens.js";
import { headControl, layerControl } from "./controls.js";
import { LINE_BUDGET, strokeEdges } from "./head.js";
import { cellFill, heatmapLayout, renderHeatmap } from "./matrix.js";
import { drawGridFrame, drawHeatmapThumbs, drawThumbBorders } from "./model.js";

const MODE_NAMES = { rank: "Ranking", matrix: "Matrix", model: "Model", head: "Head" };
const TOP_LISTED = 5;
// the head mode's three panels stay short enough to draw in full
const HEAD_MAX_HEIGHT = 4000;
// Model mode's grids are a third of the width each: 12 heads still fit side
// by side in a 1280-px window (about 26 px thumbnails); below this size they
// wrap onto the next line instead of shrinking further.
const MODEL_MIN_THUMB = 20;
const MODEL_GAP = 4;

// -- pure parts (node-tested) -------------------------------------------------

/**
 * The runs that logged `tag`, in the `tags` route's order (an entry whose
 * steps were fetched and found empty is left out; one not fetched yet counts:
 * the listing names only probes with data).
 * @returns {Array<{run: string, tagInfo: any}>}
 */
export function runsWithTag(tags, tag) {
  const out = [];
  for (const r of (tags && tags.runs) || []) {
    const t = (r.tags || []).find((x) => x.tag === tag);
    if (t && (!t.steps || t.steps.length)) out.push({ run: r.run, tagInfo: t });
  }
  return out;
}

/**
 * The compare view's B run for a state: the chosen run (brun) when it logged
 * the probe, else A's run, else the first that did; null when none did.
 * @param {import("../state.js").State} s
 * @returns {string | null}
 */
export function pickBRun(s, tags) {
  const runs = runsWithTag(tags, s.tag);
  const b = runs.find((r) => r.run === s.brun) || runs.find((r) => r.run === s.run) || runs[0];
  return b ? b.run : null;
}

/**
 * The compare view's B for a state: the chosen run (brun) when it logged
 * the probe, else A's run; the kept step nearest bstep, or by default the
 * newest step, and when that is A's own step, the run's first other step.
 * @param {import("../state.js").State} s
 * @returns {{run: string, step: number, steps: number[], runs: string[]} | null}
 *   null when no run logged s.tag; steps [] and step null while B's steps
 *   are not fetched yet (App.loadSteps)
 */
export function resolveB(s, tags) {
  const runs = runsWithTag(tags, s.tag);
  if (!runs.length) return null;
  const b = runs.find((r) => r.run === pickBRun(s, tags));
  const steps = b.tagInfo.steps || [];
  let step = nearestStep(steps, s.bstep);
  if (s.bstep === null && b.run === s.run && step === s.step) {
    const other = steps.find((x) => x !== s.step);
    if (other !== undefined) step = other;
  }
  return { run: b.run, step, steps, runs: runs.map((r) => r.run) };
}

/**
 * Where two kinds' tokens first differ (queries first, then keys), or null.
 * @returns {{side: "query" | "key", position: number, a: string | null,
 *   b: string | null, lenA: number, lenB: number} | null}
 *   a / b are null past the end of the shorter list
 */
export function tokenMismatch(kindA, kindB) {
  for (const side of ["query", "key"]) {
    const ta = kindA[side + "_tokens"];
    const tb = kindB[side + "_tokens"];
    const n = Math.min(ta.length, tb.length);
    let i = 0;
    while (i < n && ta[i] === tb[i]) i++;
    if (i < n || ta.length !== tb.length) {
      return { side: /** @type {"query" | "key"} */ (side), position: i, a: i < ta.length ? ta[i] : null,
        b: i < tb.length ? tb[i] : null, lenA: ta.length, lenB: tb.length };
    }
  }
  return null;
}

/** What the view says about a token mismatch (plain text). */
export function mismatchMessage(m) {
  const q = (t) => (t === null ? "nothing (its tokens end there)" : `\u201c${t}\u201d`);
  const lengths = m.lenA !== m.lenB ? ` (A has ${m.lenA} ${m.side} tokens, B has ${m.lenB})` : "";
  return `A's and B's ${m.side} tokens differ at position ${m.position}: A has ${q(m.a)}, B has ${q(m.b)}${lengths}. ` +
    "Their rows and columns cannot be aligned, so no difference is drawn.";
}

/**
 * Why two kinds cannot be compared head by head, or null (the same check
 * as the `compare` route's 400).
 */
export function structureMismatch(kindA, kindB) {
  const la = kindA.layer_ids.join(",");
  const lb = kindB.layer_ids.join(",");
  if (la !== lb) return `A stores layers [${la}], B stores layers [${lb}]`;
  if (kindA.num_heads !== kindB.num_heads) return `A has ${kindA.num_heads} heads per layer, B has ${kindB.num_heads}`;
  return null;
}

/**
 * B - A of two decoded arrays of one shape (see api.js Weights).
 * @returns {{values: Float32Array, maxAbs: number}}
 */
export function difference(wa, wb) {
  const n = wa.bytes.length;
  if (wa.shape.join("x") !== wb.shape.join("x")) {
    throw new Error(`cannot subtract shape ${wa.shape.join("x")} from ${wb.shape.join("x")}`);
  }
  const values = new Float32Array(n);
  let maxAbs = 0;
  for (let i = 0; i < n; i++) {
    const d = weightAt(wb, i) - weightAt(wa, i);
    values[i] = d;
    const a = d < 0 ? -d : d;
    if (a > maxAbs) maxAbs = a;
  }
  return { values, maxAbs };
}

/**
 * The positive and negative parts of a difference as line bytes (|d| /
 * maxAbs * 255, rounded): what collectEdges draws.
 * @returns {{pos: Uint8Array, neg: Uint8Array}}
 */
export function signedBytes(values, maxAbs) {
  const pos = new Uint8Array(values.length);
  const neg = new Uint8Array(values.length);
  if (!(maxAbs > 0)) return { pos, neg };
  const k = 255 / maxAbs;
  for (let i = 0; i < values.length; i++) {
    const b = Math.min(255, Math.round(Math.abs(values[i]) * k));
    if (values[i] > 0) pos[i] = b;
    else if (values[i] < 0) neg[i] = b;
  }
  return { pos, neg };
}

/**
 * Heads by mean JSD, largest first (ties: lower layer, then head), leaving
 * out heads without a value.
 * @param {Array<Array<number | null>>} jsd [layer index][head]
 * @param {number[]} layerIds
 * @returns {Array<{layer: number, head: number, value: number}>}
 */
export function rankHeads(jsd, layerIds) {
  const out = [];
  jsd.forEach((row, l) => row.forEach((v, h) => {
    if (v !== null && Number.isFinite(v)) out.push({ layer: layerIds[l], head: h, value: v, l });
  }));
  out.sort((x, y) => y.value - x.value || x.l - y.l || x.head - y.head);
  return out.map(({ layer, head, value }) => ({ layer, head, value }));
}

const DIFF_LUTS = new Map();
/**
 * The theme's diverging scale with its middle at exactly the background:
 * index 128 (divergingIndex of 0) and its neighbour 127 are the background.
 */
export function diffLut(theme) {
  if (!DIFF_LUTS.has(theme.name)) {
    const bg = /** @type {[number, number, number]} */ (theme.background.match(/[0-9a-f]{2}/gi).map((h) => parseInt(h, 16)));
    const lut = makeLut([theme.div[0], theme.div[1], bg, theme.div[3], theme.div[4]]);
    for (const i of [127, 128]) lut.set([bg[0], bg[1], bg[2], 255], i * 4);
    DIFF_LUTS.set(theme.name, lut);
  }
  return DIFF_LUTS.get(theme.name);
}

// -- the view -----------------------------------------------------------------

/** A titled canvas of the view (titleName and canvasName are data-name values). */
function comparePanel(canvasName, titleName) {
  const title = el("div", { className: "tba-compare-title", attrs: { "data-name": titleName } });
  const canvas = el("canvas", { attrs: { "data-name": canvasName } });
  const box = el("div", { className: "tba-compare-panel" }, title, canvas);
  return { title, canvas, box, geo: null };
}

/** The row labels of a layers x heads grid: L and the stored layer's id. */
function gridLabels(kind, rows) {
  return kind.layer_ids.slice(0, rows).map((id) => `L${id}`);
}

export class CompareView {
  constructor(app) {
    this.app = app;
    this.modeBox = el("div", { className: "tba-tabs", attrs: { role: "group", "aria-label": "Compare mode", "data-name": "cmode" } });
    this.modeButtons = {};
    for (const m of CMODES) {
      const b = el("button", { text: MODE_NAMES[m], attrs: { "data-cmode": m, "aria-pressed": "false" }, on: { click: () => app.setState({ cmode: m }) } });
      this.modeButtons[m] = b;
      this.modeBox.appendChild(b);
    }
    this.brunSel = el("select", { attrs: { "data-name": "brun" }, title: "B: a run that logged this probe", on: { change: () => app.setState({ brun: this.brunSel.value, bstep: null }) } });
    this.bstepSel = el("select", { attrs: { "data-name": "bstep" }, title: "B: a step of that run (A is the main step)", on: { change: () => app.setState({ bstep: Number(this.bstepSel.value) }) } });
    this.layer = layerControl(app);
    this.head = headControl(app);
    this.aLabel = el("span", { className: "tba-hint", attrs: { "data-name": "compare-a" } });
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "compare-readout" } });
    this.note = el("span", { className: "tba-hint tba-note", attrs: { "data-name": "compare-note" } });
    this.controls = el("div", { className: "tba-controls" },
      this.modeBox, this.aLabel,
      labelled("B run", this.brunSel), labelled("B step", this.bstepSel),
      this.layer.field, this.head.field, this.readout, this.note);

    this.message = el("div", { className: "tba-notice tba-compare-message", attrs: { "data-name": "compare-message", role: "status" } });
    this.message.hidden = true;
    this.tile = document.createElement("canvas");
    this.panels = {};
    const panelBox = el("div", { className: "tba-compare-panels" });
    for (const name of ["a", "b", "diff"]) {
      const p = comparePanel(`compare-${name}`, `compare-title-${name}`);
      p.canvas.addEventListener("mousemove", (e) => this.onPanelMove(name, e));
      p.canvas.addEventListener("mouseleave", () => this.setReadout(""));
      this.panels[name] = p;
      panelBox.appendChild(p.box);
    }
    this.modelPanels = {};
    this.modelBox = el("div", { className: "tba-compare-panels tba-compare-grids" });
    for (const name of ["a", "b", "diff"]) {
      const p = comparePanel(`compare-model-${name}`, `compare-model-title-${name}`);
      p.canvas.style.cursor = "pointer";
      p.canvas.addEventListener("mousemove", (e) => this.onModelMove(p.canvas, e));
      p.canvas.addEventListener("mouseleave", () => this.setReadout(""));
      p.canvas.addEventListener("click", (e) => this.onModelClick(p.canvas, e));
      this.modelPanels[name] = p;
      this.modelBox.appendChild(p.box);
    }
    this.gridCanvas = el("canvas", { attrs: { "data-name": "compare-grid" } });
    this.gridCanvas.style.cursor = "pointer";
    this.gridCanvas.addEventListener("mousemove", (e) => this.onGridMove(e));
    this.gridCanvas.addEventListener("mouseleave", () => this.setReadout(""));
    this.gridCanvas.addEventListener("click", (e) => this.onGridClick(e));
    this.gridBox = el("div", {}, this.gridCanvas);
    this.scroll = el("div", { className: "tba-scroll" }, panelBox, this.modelBox, this.gridBox);
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "compare-view" } }, this.message, this.scroll);
    this.panelBox = panelBox;
    this.ctx = null;
    this.b = null;
    this.data = null;
    this.info = {};
  }

  /** GET compare (cached like every step's data: it never changes). */
  fetchCompare(s, b) {
    const api = this.app.api;
    const url = api.url("compare", { tag: s.tag, kind: s.kind, run_a: s.run, step_a: s.step, run_b: b.run, step_b: b.step });
    return api.cache.through(url, async () => {
      const text = await (await api.request(url)).text();
      return { value: JSON.parse(text), size: text.length * 2 };
    });
  }

  async show(ctx) {
    const { state, kind } = ctx;
    const api = this.app.api;
    for (const m of CMODES) this.modeButtons[m].setAttribute("aria-pressed", String(m === state.cmode));
    // B's run may not be A's: its steps are fetched (once per `tags` answer) first
    const brun = pickBRun(state, this.app.tags);
    if (brun !== null) await this.app.loadSteps(brun, state.tag);
    if (!ctx.isCurrent()) return;
    const b = resolveB(state, this.app.tags);
    if (!b || b.step === null) throw new Error(`no run has steps of probe "${state.tag}"`);
    setOptions(this.brunSel, b.runs.map((r) => ({ value: r, label: r })), b.run);
    setOptions(this.bstepSel, b.steps.map((st) => ({ value: intText(st), label: intText(st) })), intText(b.step));
    this.aLabel.textContent = `A: ${state.run} \u00b7 step ${intText(state.step)} (the main scrubber)`;
    this.layer.update(kind, state);
    this.head.update(kind, state);
    const perHead = state.cmode === "matrix" || state.cmode === "head";
    this.layer.field.hidden = !perHead;
    this.head.field.hidden = !perHead;

    const headerB = await api.header(b.run, state.tag, b.step);
    if (!ctx.isCurrent()) return;
    const kindB = headerB.kinds.find((k) => k.name === kind.name) || null;
    let problem = kindB ? structureMismatch(kind, kindB) : `B has no ${kind.name} attention (its kinds: ${headerB.kinds.map((k) => k.name).join(", ")})`;
    const tokens = kindB && !problem ? tokenMismatch(kind, kindB) : null;
    const info = { mode: state.cmode, brun: b.run, bstep: b.step, tokens: tokens ? "differ" : problem ? "n/a" : "match", diff: "none" };
    const bState = { ...state, run: b.run, step: b.step };
    let data = null;
    if (problem) {
      // nothing lines up: say why, draw nothing
    } else if (state.cmode === "rank") {
      if (!tokens) {
        data = await this.fetchCompare(state, b);
        if (!data.tokens.match) {
          // the server's check is the same as tokenMismatch: this is only a safety net
          problem = data.tokens.message;
          data = null;
        }
      }
    } else if (state.cmode === "model") {
      // with different tokens A and B are still drawn, each with its own
      const [oa, ob] = await Promise.all([state, bState].map((s) => api.overview(s.run, s.tag, s.step, s.kind, OVERVIEW_SIZE)));
      data = { oa, ob };
    } else {
      const [wa, wb] = await Promise.all([state, bState].map((s) => api.attention(s.run, s.tag, s.step, s.kind, s.layer, s.head)));
      data = { wa, wb };
    }
    if (!ctx.isCurrent()) return;
    this.ctx = { ...ctx, kindB, labelsB: kindB ? this.app.labelsFor(kindB, state.raw) : null };
    this.b = b;
    this.data = data;
    this.info = info;
    this.problem = problem || (tokens ? mismatchMessage(tokens) : null);
    this.draw();
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
    const mode = this.ctx.state.cmode;
    const s = this.ctx.state;
    this.message.textContent = this.problem || "";
    this.message.hidden = !this.problem;
    this.setReadout("");
    this.note.textContent = "";
    this.info = { mode: this.info.mode, brun: this.info.brun, bstep: this.info.bstep, tokens: this.info.tokens, diff: "none" };
    const titles = {
      a: `A: ${s.run} \u00b7 step ${intText(s.step)}`,
      b: `B: ${this.b.run} \u00b7 step ${intText(this.b.step)}`,
    };
    const lines = mode === "head";
    const panels = (mode === "matrix" || lines) && this.data && this.data.wa;
    this.panelBox.hidden = !panels;
    this.gridBox.hidden = panels || !this.data || mode !== "rank";
    this.modelBox.hidden = !(this.data && mode === "model");
    if (panels) {
      this.panels.a.title.textContent = titles.a;
      this.panels.b.title.textContent = titles.b;
      const tokensMatch = this.info.tokens === "match";
      const d = tokensMatch ? difference(this.data.wa, this.data.wb) : null;
      this.panels.diff.box.hidden = !d;
      if (d) {
        this.diff = d;
        this.info.diff = "drawn";
        this.info.maxabs = d.maxAbs;
        this.panels.diff.title.textContent = `B \u2212 A \u00b7 layer ${s.layer} head ${s.head} \u00b7 ` +
          (d.maxAbs > 0 ? `red: B higher, blue: A higher (scale \u00b1${d.maxAbs.toFixed(3)})` : "no difference");
      }
      if (lines) this.drawLinePanels(d);
      else this.drawMatrixPanels(d);
    } else if (this.data && mode === "model") {
      this.drawModel(titles);
    } else if (this.data && mode === "rank") {
      this.drawRank();
    }
  }

  availPanel() {
    return Math.max(180, Math.floor(((this.scroll.clientWidth || this.app.root.clientWidth || 1200) - 40) / 3));
  }

  /** The three panels of matrix mode (A, B, B - A), one cell size for all. */
  drawMatrixPanels(d) {
    const { kind, kindB, labels, labelsB, theme } = this.ctx;
    const { wa, wb } = this.data;
    const seq = lutToUint32(seqLut(theme));
    const sides = [
      { p: this.panels.a, w: wa, kind, labels },
      { p: this.panels.b, w: wb, kind: kindB, labels: labelsB },
    ];
    if (d) {
      const div = lutToUint32(diffLut(theme));
      const v = d.values;
      const m = d.maxAbs;
      sides.push({ p: this.panels.diff, w: wa, kind, labels, color: (k) => div[divergingIndex(v[k], m)] });
    }
    // one layout for the three panels: the cell, font and gutters that fit
    // the widest labels and the longest side of A and B
    const all = { q: [...labels.q, ...labelsB.q], k: [...labels.k, ...labelsB.k] };
    const Tq0 = Math.max(wa.shape[1], wb.shape[1]);
    const Tk0 = Math.max(wa.shape[2], wb.shape[2]);
    const shared = heatmapLayout(this.tile, all, Tq0, Tk0, this.availPanel(), 0);
    for (const x of sides) {
      const [, Tq, Tk] = x.w.shape;
      const g = { ...shared, Tq, Tk, width: shared.ox + Tk * shared.cell + 2, height: shared.oy + Tq * shared.cell + 2 };
      x.p.box.style.width = `${g.width}px`;
      const bytes = x.w.bytes;
      const color = x.color || ((k) => seq[bytes[k]]);
      renderHeatmap(x.p.canvas, this.tile, g, 0, 0, g.width, g.height, x.labels, theme, cellFill(x.kind, Tq, Tk, theme, color));
      x.p.geo = { type: "matrix", ...g, labels: x.labels, w: x.w };
      x.p.canvas.dataset.geometry = JSON.stringify({ ox: g.ox, oy: g.oy, cell: g.cell, fontPx: g.fontPx, Tq, Tk, width: g.width, height: g.height });
    }
  }

  /** The three panels of head mode: A's and B's lines, and B - A's by sign. */
  drawLinePanels(d) {
    const { state, kind, kindB, labels, labelsB, theme } = this.ctx;
    const { wa, wb } = this.data;
    const color = css(headColor(state.head));
    const sides = [
      { p: this.panels.a, w: wa, labels, strokes: [[wa.bytes, color]] },
      { p: this.panels.b, w: wb, labels: labelsB, strokes: [[wb.bytes, color]] },
    ];
    if (d) {
      const { pos, neg } = signedBytes(d.values, d.maxAbs);
      sides.push({ p: this.panels.diff, w: wa, labels, strokes: [[neg, css(theme.div[0])], [pos, css(theme.div[4])]] });
    }
    const rowH = rowHeight(Math.max(kind.query_tokens.length, kind.key_tokens.length, kindB.query_tokens.length, kindB.key_tokens.length), state.zoom, HEAD_MAX_HEIGHT);
    const fontPx = Math.min(13, rowH - 3);
    const showText = fontPx >= 6;
    for (const x of sides) {
      const [, Tq, Tk] = x.w.shape;
      const c0 = this.tile.getContext("2d");
      c0.font = `${fontPx}px ${FONT}`;
      const leftW = showText ? Math.min(140, Math.ceil(maxLabelWidth(c0, x.labels.q))) + 6 : 4;
      const rightW = showText ? Math.min(140, Math.ceil(maxLabelWidth(c0, x.labels.k))) + 6 : 4;
      const gap = Math.max(80, Math.min(300, this.availPanel() - leftW - rightW - 24));
      const L = headViewLayout({ Tq, Tk, rowH, leftW, rightW, boxW: 0, nBox: 0, gap });
      const ctx = sizeCanvas(x.p.canvas, L.width, L.height);
      ctx.fillStyle = theme.background;
      ctx.fillRect(0, 0, L.width, L.height);
      if (showText) {
        ctx.font = `${fontPx}px ${FONT}`;
        ctx.textBaseline = "middle";
        ctx.fillStyle = theme.text;
        for (let i = 0; i < Tq; i++) fitText(ctx, x.labels.q[i], L.leftTextX, L.y(i), leftW - 4, "right");
        for (let j = 0; j < Tk; j++) fitText(ctx, x.labels.k[j], L.rightTextX, L.y(j), rightW - 4, "left");
      }
      ctx.lineWidth = Math.max(Tq, Tk) <= 64 ? 2 : 1;
      ctx.lineCap = "butt";
      const geo = { budget: LINE_BUDGET / x.strokes.length, gap: L.lineX1 - L.lineX0, rowQ: rowH, rowK: rowH };
      let drawn = 0;
      for (const [bytes, col] of x.strokes) {
        const cut = budgetCutoff(bytes, Tq, Tk, [0], geo);
        if (cut.cutoff > 255) continue;
        const e = collectEdges(bytes, Tq, Tk, [0], { minByte: cut.cutoff })[0];
        drawn += strokeEdges(ctx, e, col, L.lineX0, L.lineX1, L.top, rowH, rowH);
      }
      x.p.box.style.width = `${L.width}px`;
      x.p.geo = { type: "head", ...L, Tq, Tk, labels: x.labels, w: x.w };
      x.p.canvas.dataset.geometry = JSON.stringify({
        top: L.top, rowH, lineX0: L.lineX0, lineX1: L.lineX1, leftTextX: L.leftTextX, rightTextX: L.rightTextX,
        width: L.width, height: L.height, Tq, Tk, lines: drawn,
      });
    }
  }

  /** A layers x heads grid on the grid canvas: cell colours from colorAt(l, h, px) filling a Sq x Sk tile. */
  gridFrame(rows, cols, opts) {
    const { kind, theme } = this.ctx;
    const avail = Math.max(400, (this.scroll.clientWidth || 1000) - 4);
    const g = gridLayout({ rows, cols, availWidth: avail, ...opts });
    const ctx = drawGridFrame(this.gridCanvas, g, gridLabels(kind, rows), [...Array(cols).keys()], theme);
    return { g, ctx };
  }

  /**
   * Model mode: A | B | B - A, each a layers x heads grid of heatmap
   * thumbnails of one size, so a head sits at the same place in all three.
   * The difference is left out (hidden) when the tokens differ.
   */
  drawModel(titles) {
    const { kind, theme } = this.ctx;
    const { oa, ob } = this.data;
    const [L, H] = oa.shape;
    const d = this.info.tokens === "match" ? difference(oa, ob) : null;
    const g = gridLayout({ rows: L, cols: H, availWidth: this.availPanel(), gap: MODEL_GAP, minThumb: MODEL_MIN_THUMB });
    const seq = lutToUint32(seqLut(theme));
    const div = lutToUint32(diffLut(theme));
    const grids = [
      { p: this.modelPanels.a, o: oa, title: titles.a, src: oa.bytes, color: (v) => seq[v] },
      { p: this.modelPanels.b, o: ob, title: titles.b, src: ob.bytes, color: (v) => seq[v] },
    ];
    if (d) {
      grids.push({ p: this.modelPanels.diff, o: oa, src: d.values, signed: true, color: (v) => div[divergingIndex(v, d.maxAbs)],
        title: "B \u2212 A \u00b7 " + (d.maxAbs > 0 ? `red: B higher, blue: A higher (scale \u00b1${d.maxAbs.toFixed(3)})` : "no difference") });
    }
    this.modelPanels.diff.box.hidden = !d;
    let repooled = null;
    for (const x of grids) {
      const [, , Sq, Sk] = x.o.shape;
      const ctx = drawGridFrame(x.p.canvas, g, gridLabels(kind, L), [...Array(H).keys()], theme);
      // scaled down without smoothing a map loses whole rows and columns:
      // pool it to the thumbnail's device pixels first (the difference by
      // magnitude, so its strongest change of either sign stays)
      const S = Math.max(1, Math.floor((g.thumb * x.p.canvas.width) / g.width));
      const n = Sq * Sk;
      const maps = [];
      for (let k = 0; k < L * H; k++) {
        maps.push(Sq <= S && Sk <= S ? { data: x.src.subarray(k * n, (k + 1) * n), rows: Sq, cols: Sk } : maxPool(x.src, k * n, Sq, Sk, S, x.signed));
      }
      const { rows, cols } = maps[0];
      if (rows < Sq || cols < Sk) repooled = [rows, cols];
      drawHeatmapThumbs(ctx, this.tile, g, L, H, rows, cols, (px, l, h) => {
        const v = maps[l * H + h].data;
        for (let i = 0; i < v.length; i++) px[i] = x.color(v[i]);
      });
      drawThumbBorders(ctx, g, L, H, theme);
      x.p.title.textContent = x.title;
      x.p.box.style.width = `${g.width}px`;
      x.p.canvas.dataset.geometry = JSON.stringify({ labelW: g.labelW, labelH: g.labelH, gap: g.gap, thumb: g.thumb, rows: L, cols: H, Sq, Sk, pool: x.o.pool, drawn: [rows, cols] });
    }
    this.modelGrid = g;
    const pools = [oa, ob].filter((o) => o.pool[0] > 1 || o.pool[1] > 1);
    const pool = pools.length ? ` \u00b7 max-pooled to ${pools[0].shape[2]}\u00d7${pools[0].shape[3]} (${pools[0].pool[0]}\u00d7${pools[0].pool[1]} tokens per cell)` +
      (d ? ", so B \u2212 A is of the pooled maps" : "") : "";
    const again = repooled ? ` \u00b7 max-pooled again to ${repooled[0]}\u00d7${repooled[1]} to fit the thumbnails` : "";
    if (d) {
      this.info.diff = "drawn";
      this.info.maxabs = d.maxAbs;
    }
    this.note.textContent = `A | B | B \u2212 A of every head${pool}${again} \u00b7 click a thumbnail to open that head`;
  }

  /** Rank mode: the layers x heads heatmap of mean JSD. */
  drawRank() {
    const data = this.data;
    const { theme } = this.ctx;
    const L = data.layer_ids.length;
    const H = data.num_heads;
    const ranked = rankHeads(data.jsd, data.layer_ids);
    const max = ranked.length ? ranked[0].value : 0;
    const { g, ctx } = this.gridFrame(L, H, { minThumb: 16, maxThumb: 44 });
    const lut = seqLut(theme);
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const v = data.jsd[l][h];
        let rgb = theme.masked;
        if (v !== null) {
          const i = max > 0 ? Math.round((v / max) * 255) : 0;
          rgb = [lut[i * 4], lut[i * 4 + 1], lut[i * 4 + 2]];
        }
        ctx.fillStyle = css(rgb);
        ctx.fillRect(g.x(h), g.y(l), g.thumb, g.thumb);
      }
    }
    drawThumbBorders(ctx, g, L, H, theme);
    this.grid = { g, rows: L, cols: H, kind: "rank", ranked };
    this.gridCanvas.dataset.geometry = JSON.stringify({ labelW: g.labelW, labelH: g.labelH, gap: g.gap, thumb: g.thumb, rows: L, cols: H, max });
    this.info.max = max;
    this.info.top = ranked.length && max > 0 ? `${ranked[0].layer},${ranked[0].head}` : "";
    const top = ranked.filter((r) => r.value > 0).slice(0, TOP_LISTED).map((r) => `L${r.layer} H${r.head} ${r.value.toFixed(4)}`);
    this.note.textContent = (top.length ? `most changed: ${top.join(" \u00b7 ")}` : "no head changed") +
      ` \u00b7 mean Jensen-Shannon divergence over query rows, nats (0 to ln 2 = ${data.max.toFixed(3)}) \u00b7 click a cell to open that head`;
  }

  setReadout(text) {
    this.readout.textContent = text;
  }

  gridHit(e, canvas = this.gridCanvas, g = this.grid && this.grid.g) {
    if (!g) return null;
    const p = canvasPoint(canvas, e);
    const hit = g.hit(p.x, p.y);
    return hit ? { l: hit.row, layer: this.ctx.kind.layer_ids[hit.row], head: hit.col } : null;
  }

  onGridMove(e) {
    const c = this.gridHit(e);
    if (!c) {
      this.setReadout("");
      return;
    }
    const v = this.data.jsd[c.l][c.head];
    const rank = this.grid.ranked.findIndex((r) => r.layer === c.layer && r.head === c.head);
    this.setReadout(`layer ${c.layer} \u00b7 head ${c.head}: ` +
      (v === null ? "no query row to compare" : `mean JSD ${v.toFixed(4)} nats (rank ${rank + 1} of ${this.grid.ranked.length})`));
  }

  onGridClick(e) {
    this.openHead(this.gridHit(e));
  }

  onModelMove(canvas, e) {
    const c = this.gridHit(e, canvas, this.modelGrid);
    this.setReadout(c ? `layer ${c.layer} \u00b7 head ${c.head}: click to open A | B | B \u2212 A` : "");
  }

  onModelClick(canvas, e) {
    this.openHead(this.gridHit(e, canvas, this.modelGrid));
  }

  /** Open a head of a grid (or nothing) in matrix mode. */
  openHead(c) {
    if (c) this.app.setState({ cmode: "matrix", layer: c.layer, head: c.head });
  }

  onPanelMove(name, e) {
    const p = this.panels[name];
    const g = p.geo;
    if (!g || !this.ctx) return;
    const pt = canvasPoint(p.canvas, e);
    if (g.type !== "matrix") return;
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
    this.setReadout(cell + `A ${a.toFixed(3)}` + (both ? ` \u00b7 B ${(a + d).toFixed(3)} \u00b7 B \u2212 A ${d >= 0 ? "+" : "\u2212"}${Math.abs(d).toFixed(3)}` : ""));
  }

  exportCanvas() {
    const panels = !this.panelBox.hidden;
    if (!this.modelBox.hidden) return this.modelPanels[this.modelPanels.diff.box.hidden ? "a" : "diff"].canvas;
    if (!panels) return this.gridCanvas;
    return this.panels.diff.box.hidden ? this.panels.a.canvas : this.panels.diff.canvas;
  }
}
