// Stats view: a layers x heads grid of sparklines, one per head, of a per-head
// statistic (the `stats` route: entropy, max weight, ... of every kept step,
// read from the step headers) across the steps. The moment a head
// specialises shows as a cell whose line jumps and whose tint stands out.
//
// Choices (see frontend/README.md, "Stats view"):
// - One y scale per statistic, shared by every cell, so heads compare at a
//   glance: weights (max_weight, first_token, special_tokens, previous_token)
//   are probabilities and use 0..1; entropy and distance use 0..the largest
//   value anywhere in the grid.
// - x is proportional to the step number (uneven logging stays honest), the
//   same in every cell; the current step is a translucent band in every cell.
// - A null value (a step without statistics, an unreadable step, a statistic
//   not defined for the kind) breaks the line: gaps are gaps, never
//   interpolated. A value with no neighbour is a short tick.
// - Each cell's tint is its latest value on the shared scale (stronger = more
//   specialised: lower entropy, higher everything else), so the heads that
//   formed stand out before any line is read. Cells with no value are grey.
// - One canvas. A sparkline never draws more than one vertical stroke per
//   pixel column (the min..max envelope of the steps in it), so hundreds of
//   steps in 32 x 32 cells cost what the pixels cost. Hover moves a DOM dot
//   and a text readout; nothing is redrawn.
// - Click a point: the head view at that step and layer with only that head
//   shown (heads=[h], head=h so the matrix and neuron views follow).

import { css, seqLut } from "../colors.js";
import { canvasPoint, el, FONT, labelled, setOptions, sizeCanvas } from "../dom.js";
import { STATS, intText } from "../state.js";

/** Statistics that are probabilities: fixed 0..1 scale. */
export const UNIT_STATS = new Set(["max_weight", "first_token", "special_tokens", "previous_token"]);
/** Statistics where a low value is the specialised one (a focused head). */
export const LOW_IS_STRONG = new Set(["entropy"]);
export const UNITS = { entropy: "nats", distance: "tokens" };
export const LABELS = {
  entropy: "entropy", max_weight: "max weight", first_token: "first token",
  special_tokens: "special tokens", distance: "distance", previous_token: "previous token",
};
// Tint: at most this far along the theme's sequential scale, so the
// sparkline (text colour) stays readable on the strongest tint.
const MAX_TINT = 150;
const ACCENT = { light: "rgba(245, 124, 0, 0.45)", dark: "rgba(255, 167, 38, 0.45)" };
const LIST_MAX = 12;

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

/**
 * Integer x offsets (0..width) of the steps, proportional to the step
 * numbers; a single step sits in the middle.
 * @param {readonly number[]} steps ascending
 * @param {number} width
 */
export function stepOffsets(steps, width) {
  const n = steps.length;
  if (n === 0) return [];
  const a = steps[0];
  const span = steps[n - 1] - a;
  if (!(span > 0)) return steps.map(() => Math.round(width / 2));
  return steps.map((s) => Math.round(((s - a) / span) * width));
}

/**
 * The last step index with a value in cell `index`, and that value.
 * @param {Array<Array<number | null>>} rows
 * @param {number} index layer * num_heads + head
 * @returns {{s: number, v: number} | null}
 */
export function latestValue(rows, index) {
  for (let s = rows.length - 1; s >= 0; s--) {
    const v = rows[s][index];
    if (v !== null && v !== undefined && Number.isFinite(v)) return { s, v };
  }
  return null;
}

/**
 * Step indices where no statistic has any value (steps written before
 * statistics existed, or unreadable).
 * @param {Record<string, Array<Array<number | null>>>} stats
 * @param {number} count number of steps
 */
export function stepsWithout(stats, count) {
  const out = [];
  for (let s = 0; s < count; s++) {
    let any = false;
    for (const name of Object.keys(stats)) {
      const row = stats[name][s];
      if (row && row.some((v) => v !== null)) {
        any = true;
        break;
      }
    }
    if (!any) out.push(s);
  }
  return out;
}

/**
 * Trace one sparkline into a path (anything with moveTo / lineTo). Steps in
 * the same pixel column become one vertical min..max stroke; a null value
 * lifts the pen; a run of one value is a short tick.
 * @param {{moveTo(x: number, y: number): void, lineTo(x: number, y: number): void}} path
 * @param {ArrayLike<number | null>} values one per step
 * @param {readonly number[]} xs pixel column of each step, from x0
 * @param {number} x0
 * @param {(v: number) => number} yOf
 */
export function traceSparkline(path, values, xs, x0, yOf) {
  let down = false;
  let col = NaN;
  let lo = 0;
  let hi = 0;
  let last = 0;
  let run = 0;
  const endColumn = () => {
    if (hi - lo > 0.5) {
      path.moveTo(col + 0.5, lo);
      path.lineTo(col + 0.5, hi);
      path.moveTo(col + 0.5, last);
    }
  };
  const endRun = () => {
    if (!down) return;
    endColumn();
    if (run === 1) {
      path.moveTo(col - 1, last);
      path.lineTo(col + 2, last);
    }
    down = false;
  };
  for (let s = 0; s < values.length; s++) {
    const v = values[s];
    if (v === null || v === undefined || !Number.isFinite(v)) {
      endRun();
      continue;
    }
    const x = x0 + xs[s];
    const y = yOf(v);
    if (!down) {
      path.moveTo(x + 0.5, y);
      down = true;
      run = 1;
      col = x;
      lo = hi = last = y;
      continue;
    }
    run++;
    if (x === col) {
      if (y < lo) lo = y;
      if (y > hi) hi = y;
      last = y;
      continue;
    }
    endColumn();
    path.lineTo(x + 0.5, y);
    col = x;
    lo = hi = last = y;
  }
  endRun();
}

/**
 * Grid geometry: cell (r, c) has its top-left corner at
 * (labelW + gap + c * (cellW + gap), labelH + gap + r * (cellH + gap)); its
 * plot area is inset by padX / padY; step s is the pixel column
 * cellX + padX + xs[s] and a value v the pixel row
 * floor(cellY + padY + (1 - (v - lo) / (hi - lo)) * plotH) (lines run
 * through pixel centres, so they stay crisp).
 */
export function statsLayout({ rows, cols, availWidth }) {
  const labelW = 36;
  const labelH = 18;
  const gap = 3;
  const cellW = Math.max(24, Math.min(160, Math.floor((availWidth - labelW - gap - 2) / Math.max(1, cols)) - gap));
  const cellH = Math.max(20, Math.min(60, Math.round(cellW * 0.55)));
  const padX = 3;
  const padY = 3;
  return {
    labelW, labelH, gap, cellW, cellH, padX, padY, rows, cols,
    plotW: cellW - 2 * padX - 1, plotH: cellH - 2 * padY,
    width: labelW + gap + cols * (cellW + gap), height: labelH + gap + rows * (cellH + gap),
    x: (c) => labelW + gap + c * (cellW + gap),
    y: (r) => labelH + gap + r * (cellH + gap),
  };
}

function formatValue(v) {
  return v.toFixed(3);
}

function listSteps(steps) {
  const head = steps.slice(0, LIST_MAX).join(", ");
  return steps.length > LIST_MAX ? `${head} and ${steps.length - LIST_MAX} more` : head;
}

export class StatsView {
  constructor(app) {
    this.app = app;
    this.statSel = el("select", { attrs: { "data-name": "stat" }, title: "Statistic", on: { change: () => app.setState({ stat: this.statSel.value }) } });
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
    this.ctx = null;
    this.data = null;
    this.key = "";
    this.tagInfo = null;
    this.geo = null;
    this.summary = "";
  }

  async show(ctx) {
    const { state } = ctx;
    const key = JSON.stringify([state.run, state.tag, state.kind]);
    // A new `tags` answer (TensorBoard reloaded) is a new tagInfo object:
    // that is when new steps can have arrived, so fetch again then.
    if (!this.data || this.key !== key || this.tagInfo !== ctx.tagInfo) {
      const data = await this.app.api.stats(state.run, state.tag, state.kind);
      if (!ctx.isCurrent()) return;
      this.data = data;
      this.key = key;
      this.tagInfo = ctx.tagInfo;
    }
    this.ctx = ctx;
    this.draw();
  }

  detail() {
    return this.summary;
  }

  statName() {
    const s = this.ctx.state.stat;
    return STATS.includes(s) ? s : STATS[0];
  }

  updateControls(name) {
    const d = this.data.descriptions || {};
    setOptions(this.statSel, STATS.map((n) => ({ value: n, label: LABELS[n] || n })), name);
    for (const opt of this.statSel.options) opt.title = d[opt.value] || opt.value;
    this.statSel.title = d[name] || name;
  }

  updateNotice(missing) {
    const { steps, errors } = this.data;
    const parts = [];
    const errs = errors || [];
    if (errs.length) {
      const more = errs.length > 1 ? ` (and ${errs.length - 1} more)` : "";
      parts.push(`could not read the statistics of step${errs.length > 1 ? "s" : ""} ${listSteps(errs.map((e) => e.step))}: ${errs[0].message}${more}`);
    }
    const bad = new Set(errs.map((e) => e.step));
    const old = missing.map((s) => steps[s]).filter((st) => !bad.has(st));
    if (old.length && old.length < steps.length) {
      parts.push(`step${old.length > 1 ? "s" : ""} ${listSteps(old)} carr${old.length > 1 ? "y" : "ies"} no statistics (logged before tb-attention computed them): gaps in every line`);
    }
    this.notice.textContent = parts.join(" \u00b7 ");
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
      current: cur, width: g.width, height: g.height,
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
    const { xs, lo, hi, ids, H, name, rows, cur } = g;
    const S = xs.length;
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

    // tints: the latest value of each cell on the shared scale
    const lut = seqLut(theme);
    const span = hi - lo || 1;
    const m = theme.masked;
    const values = new Array(S);
    for (let r = 0; r < ids.length; r++) {
      for (let h = 0; h < H; h++) {
        const i = r * H + h;
        const last = latestValue(rows, i);
        if (!last) {
          ctx.fillStyle = css(m);
        } else {
          let t = Math.max(0, Math.min(1, (last.v - lo) / span));
          if (LOW_IS_STRONG.has(name)) t = 1 - t;
          const k = Math.round(t * MAX_TINT);
          ctx.fillStyle = css([lut[4 * k], lut[4 * k + 1], lut[4 * k + 2]]);
        }
        ctx.fillRect(g.x(h), g.y(r), g.cellW, g.cellH);
      }
    }
    ctx.strokeStyle = theme.grid;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let r = 0; r < ids.length; r++) for (let h = 0; h < H; h++) ctx.rect(g.x(h) - 0.5, g.y(r) - 0.5, g.cellW + 1, g.cellH + 1);
    ctx.stroke();

    // the sparklines: one path for the whole grid
    ctx.strokeStyle = theme.text;
    ctx.lineWidth = 1;
    ctx.lineJoin = "round";
    ctx.lineCap = "square"; // a line that starts or ends in a column covers its pixel
    ctx.beginPath();
    for (let r = 0; r < ids.length; r++) {
      const yOf = (v) => this.valueY(r, v);
      for (let h = 0; h < H; h++) {
        const i = r * H + h;
        const x0 = g.x(h) + g.padX;
        for (let s = 0; s < S; s++) values[s] = rows[s][i];
        traceSparkline(ctx, values, xs, x0, yOf);
      }
    }
    ctx.stroke();

    // the current step, as a translucent band in every cell
    if (cur >= 0) {
      ctx.fillStyle = ACCENT[theme.name] || ACCENT.light;
      for (let r = 0; r < ids.length; r++) {
        for (let h = 0; h < H; h++) ctx.fillRect(g.x(h) + g.padX + xs[cur], g.y(r), 1, g.cellH);
      }
    }
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
    this.readout.textContent = `layer ${layer} \u00b7 head ${p.c} \u00b7 step ${intText(step)} \u00b7 ${LABELS[g.name] || g.name} ` +
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
    if (!p) return;
    const g = this.geo;
    const head = p.c;
    this.app.setState({ view: "head", step: g.steps[p.s], layer: g.ids[p.r], heads: [head], head, hover: null });
  }

  exportCanvas() {
    const c = document.createElement("canvas");
    if (this.geo) this.render(c, this.ctx.theme);
    return c;
  }
}
