// The compare view's logic, apart from drawing (tested in node): which run
// and step B is, B - A of two decoded arrays and its sign split for lines,
// the heads ranked by divergence, the difference scale, and the verdict of
// the `compare` route (whether A and B line up at all, and whether their
// tokens do: the server decides, so the rule exists once).

import { makeLut } from "./colors.js";
import { weightAt } from "./decode.js";
import { intText, nearestStep } from "./state.js";

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

/** The compare view's B probe: the one chosen (btag), else A's. */
export function bTag(s) {
  return s.btag || s.tag;
}

/**
 * The compare view's B run for a state: the chosen run (brun) when it logged
 * B's probe, else A's run, else the first that did; null when none did.
 * @param {import("../state.js").State} s
 * @returns {string | null}
 */
export function pickBRun(s, tags) {
  const runs = runsWithTag(tags, bTag(s));
  const b = runs.find((r) => r.run === s.brun) || runs.find((r) => r.run === s.run) || runs[0];
  return b ? b.run : null;
}

/**
 * The compare view's B for a state: its probe (btag, else A's); the chosen
 * run (brun) when it logged that probe, else A's run; the kept step nearest
 * bstep, or by default the newest step, and when that is A's own step, the
 * run's first other step.
 * @param {import("../state.js").State} s
 * @returns {{run: string, tag: string, step: number, steps: number[], runs: string[]} | null}
 *   null when no run logged B's probe; steps [] and step null while B's
 *   steps are not fetched yet (Catalogue.probe)
 */
export function resolveB(s, tags) {
  const tag = bTag(s);
  const runs = runsWithTag(tags, tag);
  if (!runs.length) return null;
  const b = runs.find((r) => r.run === pickBRun(s, tags));
  const steps = b.tagInfo.steps || [];
  let step = nearestStep(steps, s.bstep);
  if (s.bstep === null && b.run === s.run && tag === s.tag && step === s.step) {
    const other = steps.find((x) => x !== s.step);
    if (other !== undefined) step = other;
  }
  return { run: b.run, tag, step, steps, runs: runs.map((r) => r.run) };
}

/**
 * Why there is nothing to compare: B can only be A itself (the probe's only
 * logged step, in one run). null otherwise; B chosen as A while other steps,
 * runs or probes exist is drawn, all zero: a deliberate check of the chain.
 * @param {import("../state.js").State} s
 * @param {{run: string, tag: string, step: number, steps: number[], runs: string[]}} b from resolveB
 */
export function nothingToCompare(s, b) {
  if (!isA(s, b) || b.steps.length > 1 || b.runs.length > 1) return null;
  return `nothing to compare: probe \u201c${s.tag}\u201d has one logged step (${intText(s.step)}), in run \u201c${s.run}\u201d only; ` +
    "log more steps or another run, or choose another probe as B";
}

/** Whether B is A's own step. */
export function isA(s, b) {
  return b.run === s.run && b.tag === s.tag && b.step === s.step;
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

/**
 * What the `compare` route's settled request says about A and B.
 * @param {PromiseSettledResult<any>} settled
 * @returns {{answer: any, problem: string | null, tokens: "match" | "differ" | "n/a", message: string | null}}
 *   problem: why nothing lines up (layers or heads differ: the route's 400);
 *   message: what to tell the user (the problem, or where the tokens differ)
 * @throws the request's error when it is not a verdict (unreachable, 404, 500)
 */
export function compareVerdict(settled) {
  if (settled.status === "rejected") {
    const e = settled.reason;
    if (!(e && e.status === 400)) throw e;
    return { answer: null, problem: e.message, tokens: "n/a", message: e.message };
  }
  const t = settled.value.tokens;
  return { answer: settled.value, problem: null, tokens: t.match ? "match" : "differ", message: t.match ? null : t.message };
}
