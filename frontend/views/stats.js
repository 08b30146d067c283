// Stats view: a layers x heads grid of sparklines, one per head, of a per-head
// statistic (the `stats` route: entropy, max weight, ... of every kept step,
// read from the step headers) across the steps. The moment a head
// specialises shows as a cell whose line jumps and whose tint stands out.
//
// Choices (frontend/README.md, "Stats view", says why): one y scale per
// statistic shared by every cell; x proportional to the step number, the
// current step a band in every cell; null values break the line; each cell
// tinted by its latest value; one canvas, at most one stroke per pixel column
// of a sparkline (draw/sparklines.js), hover moves a DOM dot and the readout;
// a click opens that head at that step in the head view.

import { css, seqLut } from "../colors.js";
import { canvasPoint, el, FONT, labelled, setOptions, sizeCanvas } from "../dom.js";
import { intText } from "../state.js";
import { need, loadAll } from "../host.js";
import { keyboardArea } from "./controls.js";
import { noticeParts } from "../statnotes.js";
import { drawStepAxis, latestValue, statsLayout, stepOffsets, stepsWithout, traceSparkline } from "../draw/sparklines.js";

// The statistics and their descriptions are the `stats` route's (in its
// order); what follows is only how some of them are drawn (any other name
// gets 0..max, "higher is stronger", no unit).
/** Statistics that are probabilities: fixed 0..1 scale. */
export const UNIT_STATS = new Set(["max_weight", "first_token", "special_tokens", "previous_token"]);
/** Statistics where a low value is the specialised one (a focused head). */
export const LOW_IS_STRONG = new Set(["entropy"]);
export const UNITS = { entropy: "nats", distance: "tokens" };
// Tint: at most this far along the theme's sequential scale, so the
// sparkline (text colour) stays readable on the strongest tint.
const MAX_TINT = 150;
const ACCENT = { light: "rgba(245, 124, 0, 0.45)", dark: "rgba(255, 167, 38, 0.45)" };

/**
 * The y range of a statistic, shared by the whole grid.
 * @param {string} name
 * @param {Array<Array<number | null>>} rows  stats[name]: per step, L*H values
 * @returns {{lo: number, hi: number}}
 */
export function statScale(name, rows) {
  if (UNIT_STATS.has(name)) return { lo: 0, hi: 1 };
  let hi = 0;
  for (const row of rows || []) {
    for (const v of row) if (v !== null && v > hi && Number.isFinite(v)) hi = v;
  }
  return { lo: 0, hi: hi > 0 ? hi : 1 };
}

/** A statistic's name as people read it: max_weight -> "max weight". */
export function statLabel(name) {
  return name.replace(/_/g, " ");
}

/**
 * The statistic to chart: the one asked for when the route names it, else
 * the route's first (the default); null when it names none.
 * @param {string[]} names the route's, in its order
 * @param {string | null} wanted
 */
export function pickStat(names, wanted) {
  return names.includes(wanted) ? wanted : names.length ? names[0] : null;
}

function formatValue(v) {
  return v.toFixed(3);
}

export default class StatsView {
  /** Every kept step's statistics of the probe (not of one step: never prefetched). */
  static needs({ state }) {
    return [need("stats", state)];
  }

  /** @param {import("../host.js").Host} host */
  constructor(host) {
    this.host = host;
    // the first statistic is the default, left out of the URL
    const choose = () => {
      this.statNotice = "";
      host.setState({ stat: this.statSel.value === this.names()[0] ? null : this.statSel.value });
    };
    this.statSel = el("select", { attrs: { "data-name": "stat" }, title: "Statistic", on: { change: choose } });
    this.caption = el("span", { className: "tba-hint tba-note", attrs: { "data-name": "stats-caption" } });
    this.readout = el("span", { className: "tba-readout", attrs: { "data-name": "stats-readout" }, text: "hover a sparkline" });
    this.notice = el("span", { className: "tba-hint tba-note", attrs: { "data-name": "stats-notice" } });
    this.controls = el("div", { className: "tba-controls" },
      labelled("Statistic", this.statSel),
      el("span", { className: "tba-hint", text: "click a point to open that head at that step" }),
      this.readout,
      this.caption,
      this.notice,
    );
    this.canvas = el("canvas", { attrs: { "data-name": "stats-canvas" } });
    this.canvas.style.cursor = "pointer";
    this.dot = el("div", {
      className: "tba-cross",
      style: { width: "7px", height: "7px", "margin-left": "-3.5px", "margin-top": "-3.5px", "border-radius": "50%", border: "2px solid #ff9800" },
    });
    this.dot.hidden = true;
    this.message = el("div", { className: "tba-message", attrs: { "data-name": "stats-message" } });
    this.message.hidden = true;
    this.sizer = el("div", { className: "tba-sizer" }, this.canvas, this.dot);
    this.scroll = el("div", { className: "tba-scroll" }, this.sizer);
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": "stats-view" } }, this.message, this.scroll);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.setPoint(null));
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    const move = (dr, dc) => () => this.movePoint(dr, dc);
    keyboardArea(this.canvas, "Stats view: up and down arrows move across layers, shift with left or right arrow across heads, Enter opens that head at the shown step", {
      ArrowUp: move(-1, 0), ArrowDown: move(1, 0), "Shift+ArrowLeft": move(0, -1), "Shift+ArrowRight": move(0, 1),
      Enter: () => this.point && this.open(this.point),
    });
    this.ctx = null;
    this.data = null;
    this.key = "";
    this.geo = null;
    this.summary = "";
  }

  async show(ctx) {
    const { state } = ctx;
    // fetched again for a new listing (TensorBoard reloaded): new steps may be there
    const key = JSON.stringify([state.run, state.tag, state.kind, ctx.generation]);
    if (!this.data || this.key !== key) {
      const [data] = await loadAll(this.host.data, StatsView.needs(ctx));
      if (!ctx.isCurrent()) return;
      this.data = data;
      this.key = key;
    }
    this.ctx = ctx;
    if (state.stat !== null && pickStat(this.names(), state.stat) !== state.stat) {
      // a statistic this server does not have (an old link, a typo): the default, said
      this.statNotice = `statistic \u201c${state.stat}\u201d is not one this server computes (${this.names().join(", ")}): showing ${this.names()[0]}`;
      this.host.setState({ stat: null });
    } else if (state.stat !== null) {
      this.statNotice = "";
    }
    this.draw();
  }

  /** What the view shows, for an export's title. */
  describe() {
    return ` \u00b7 ${this.statName()}`;
  }

  detail() {
    return this.summary;
  }

  /** The statistics the route names, in its order. */
  names() {
    return Object.keys((this.data && this.data.descriptions) || {});
  }

  statName() {
    return pickStat(this.names(), this.ctx.state.stat);
  }

  updateControls(name) {
    const d = this.data.descriptions || {};
    setOptions(this.statSel, this.names().map((n) => ({ value: n, label: statLabel(n) })), name);
    for (const opt of this.statSel.options) opt.title = d[opt.value] || opt.value;
    this.statSel.title = d[name] || name;
  }

  updateNotice(missing) {
    this.notice.textContent = [this.statNotice, ...noticeParts(this.data, missing)].filter(Boolean).join(" \u00b7 ");
  }

  draw() {
    const { state, theme } = this.ctx;
    const data = this.data;
    const name = this.statName();
    const steps = data.steps || [];
    const ids = data.layer_ids || [];
    const H = data.num_heads || 0;
    const S = steps.length;
    this.updateControls(name);
    const missing = stepsWithout(data.stats || {}, S);
    this.updateNotice(missing);
    this.setPoint(null);
    const errs = data.errors || [];
    if (S === 0 || ids.length === 0 || H === 0 || missing.length === S) {
      this.showMessage(S, errs.length);
      return;
    }
    this.message.hidden = true;
    this.scroll.hidden = false;
    const rows = data.stats[name] || [];
    const { lo, hi } = statScale(name, rows);
    const unit = UNITS[name] ? ` ${UNITS[name]}` : "";
    const hasAny = rows.some((r) => r.some((v) => v !== null));
    const desc = (data.descriptions || {})[name] || name;
    this.caption.textContent = `${desc} \u00b7 y: ${lo}\u2013${Number(hi.toPrecision(3))}${unit}, shared by every cell \u00b7 ` +
      `tint: latest value (stronger = ${LOW_IS_STRONG.has(name) ? "lower" : "higher"})` +
      (hasAny ? "" : ` \u00b7 no values: ${this.undefinedReason(name)}`);

    const avail = Math.max(300, (this.scroll.clientWidth || 1000) - 4);
    const g = statsLayout({ rows: ids.length, cols: H, availWidth: avail });
    const xs = stepOffsets(steps, g.plotW);
    const cur = steps.indexOf(state.step);
    this.geo = { ...g, xs, lo, hi, steps, ids, H, name, rows, cur };
    this.canvas.dataset.geometry = JSON.stringify({
      labelW: g.labelW, labelH: g.labelH, gap: g.gap, cellW: g.cellW, cellH: g.cellH, padX: g.padX, padY: g.padY,
      plotW: g.plotW, plotH: g.plotH, rows: ids.length, cols: H, layer_ids: ids, steps, xs, lo, hi,
      current: cur, width: g.width, height: g.height, axisH: g.axisH, axisY: g.y(ids.length - 1) + g.cellH + g.gap + g.axisH / 2,
    });
    this.render(this.canvas, theme);
    this.summary = `stat=${name};cells=${ids.length * H};steps=${S};missing=${missing.length};errors=${errs.length}`;
  }

  undefinedReason(name) {
    if (name === "distance" || name === "previous_token") return "not defined when queries and keys are different sequences (cross attention)";
    if (name === "special_tokens") return "not known for raw tensors logged without special_tokens=";
    return "no step has it";
  }

  showMessage(S, errorCount) {
    const tag = this.ctx.state.tag;
    this.scroll.hidden = true;
    this.message.hidden = false;
    this.geo = null;
    this.caption.textContent = "";
    this.message.textContent = S === 0
      ? `probe \u201c${tag}\u201d has no kept steps`
      : errorCount >= S
        ? `none of the ${S} kept steps of probe \u201c${tag}\u201d could be read`
        : `the ${S} kept step${S > 1 ? "s" : ""} of probe \u201c${tag}\u201d carr${S > 1 ? "y" : "ies"} no per-head statistics: ` +
          "they were logged by a tb-attention older than statistics. Steps logged from now on carry them.";
    this.summary = `stat=${this.statName()};cells=0;steps=${S};no-stats`;
  }

  /** Draw the whole grid into `canvas` (the view's, or a copy for export). */
  render(canvas, theme) {
    const g = this.geo;
    const { xs, ids, H, cur } = g;
    const ctx = sizeCanvas(canvas, g.width, g.height);
    ctx.fillStyle = theme.background;
    ctx.fillRect(0, 0, g.width, g.height);
    ctx.font = `11px ${FONT}`;
    ctx.textBaseline = "middle";
    ctx.fillStyle = theme.muted;
    ctx.textAlign = "center";
    const every = ctx.measureText(`H${H - 1}`).width + 4 > g.cellW + g.gap ? 2 : 1;
    for (let h = 0; h < H; h += every) ctx.fillText(`H${h}`, g.x(h) + g.cellW / 2, g.labelH / 2 + 1);
    ctx.textAlign = "right";
    ids.forEach((id, r) => ctx.fillText(`L${id}`, g.labelW - 4, g.y(r) + g.cellH / 2));
    this.drawTints(ctx, theme);
    this.drawSparklines(ctx, theme);
    drawStepAxis(ctx, g, ids.length, g.steps, intText, theme, `10px ${FONT}`);
    // the current step, as a translucent band in every cell
    if (cur >= 0) {
      ctx.fillStyle = ACCENT[theme.name] || ACCENT.light;
      for (let r = 0; r < ids.length; r++) {
        for (let h = 0; h < H; h++) ctx.fillRect(g.x(h) + g.padX + xs[cur], g.y(r), 1, g.cellH);
      }
    }
  }

  /** Each cell tinted by its latest value on the shared scale (grey without one), and its border. */
  drawTints(ctx, theme) {
    const { lo, hi, ids, H, name, rows } = this.geo;
    const g = this.geo;
    const lut = seqLut(theme);
    const span = hi - lo || 1;
    for (let r = 0; r < ids.length; r++) {
      for (let h = 0; h < H; h++) {
        const last = latestValue(rows, r * H + h);
        let t = last ? Math.max(0, Math.min(1, (last.v - lo) / span)) : 0;
        if (LOW_IS_STRONG.has(name)) t = 1 - t;
        const k = Math.round(t * MAX_TINT);
        ctx.fillStyle = css(last ? [lut[4 * k], lut[4 * k + 1], lut[4 * k + 2]] : theme.masked);
        ctx.fillRect(g.x(h), g.y(r), g.cellW, g.cellH);
      }
    }
    ctx.strokeStyle = theme.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let r = 0; r < ids.length; r++) for (let h = 0; h < H; h++) ctx.rect(g.x(h) - 0.5, g.y(r) - 0.5, g.cellW + 1, g.cellH + 1);
    ctx.stroke();
  }

  /** The sparklines: one path for the whole grid. */
  drawSparklines(ctx, theme) {
    const g = this.geo;
    const { xs, ids, H, rows } = g;
    const values = new Array(xs.length);
    ctx.strokeStyle = theme.text;
    ctx.lineWidth = 1;
    ctx.lineJoin = "round";
    ctx.lineCap = "square"; // a line that starts or ends in a column covers its pixel
    ctx.beginPath();
    for (let r = 0; r < ids.length; r++) {
      const yOf = (v) => this.valueY(r, v);
      for (let h = 0; h < H; h++) {
        for (let s = 0; s < xs.length; s++) values[s] = rows[s][r * H + h];
        traceSparkline(ctx, values, xs, g.x(h) + g.padX, yOf);
      }
    }
    ctx.stroke();
  }

  /** Canvas y of value v in row r: a pixel centre. */
  valueY(r, v) {
    const g = this.geo;
    const t = Math.max(0, Math.min(1, (v - g.lo) / (g.hi - g.lo || 1)));
    return Math.floor(g.y(r) + g.padY + (1 - t) * g.plotH) + 0.5;
  }

  /** The cell and step under a mouse event, or null. */
  pointAt(e) {
    const g = this.geo;
    if (!g) return null;
    const p = canvasPoint(this.canvas, e);
    const c = Math.floor((p.x - g.labelW - g.gap) / (g.cellW + g.gap));
    const r = Math.floor((p.y - g.labelH - g.gap) / (g.cellH + g.gap));
    if (c < 0 || c >= g.H || r < 0 || r >= g.ids.length) return null;
    const dx = p.x - g.x(c) - g.padX;
    if (p.x > g.x(c) + g.cellW || p.y > g.y(r) + g.cellH) return null; // in a gap
    let s = 0;
    for (let k = 1; k < g.xs.length; k++) if (Math.abs(g.xs[k] - dx) < Math.abs(g.xs[s] - dx)) s = k;
    return { r, c, s };
  }

  onMove(e) {
    this.setPoint(this.pointAt(e));
  }

  setPoint(p) {
    const g = this.geo;
    this.point = p;
    if (!p || !g) {
      this.dot.hidden = true;
      this.readout.textContent = "hover a sparkline";
      this.readout.removeAttribute("data-cell");
      return;
    }
    const v = g.rows[p.s][p.r * g.H + p.c];
    const layer = g.ids[p.r];
    const step = g.steps[p.s];
    const unit = UNITS[g.name] ? ` ${UNITS[g.name]}` : "";
    this.readout.textContent = `layer ${layer} \u00b7 head ${p.c} \u00b7 step ${intText(step)} \u00b7 ${statLabel(g.name)} ` +
      (v === null ? "no value" : formatValue(v) + unit);
    this.readout.setAttribute("data-cell", `${layer},${p.c},${step}`);
    if (v === null) {
      this.dot.hidden = true;
      return;
    }
    this.dot.style.left = g.x(p.c) + g.padX + g.xs[p.s] + 0.5 + "px";
    this.dot.style.top = this.valueY(p.r, v) + "px";
    this.dot.hidden = false;
  }

  onClick(e) {
    const p = this.pointAt(e);
    if (p) this.open(p);
  }

  /** The head of cell p opened in the head view at p's step. */
  open(p) {
    const g = this.geo;
    this.host.setState({ view: "head", step: g.steps[p.s], layer: g.ids[p.r], heads: [p.c], head: p.c, hover: null });
  }

  /** The arrow keys: the readout's cell moves, at the step shown. */
  movePoint(dr, dc) {
    const g = this.geo;
    if (!g) return;
    const p = this.point || { r: 0, c: 0 };
    const r = this.point ? Math.max(0, Math.min(g.ids.length - 1, p.r + dr)) : 0;
    const c = this.point ? Math.max(0, Math.min(g.H - 1, p.c + dc)) : 0;
    this.setPoint({ r, c, s: Math.max(0, g.cur) });
  }

  exportCanvas() {
    const c = document.createElement("canvas");
    if (this.geo) this.render(c, this.ctx.theme);
    return c;
  }
}
