// The dashboard's state: what is shown (run, probe, step, view, layer, heads,
// tokens, filters, ...), its URL keys (decodeState / encodeState), and how a
// state is made valid for what the backend has (resolveState, clampToKind).
// Where the keys live in the URL is url.js. Pure: tested in node.

import { VIEW_NAMES } from "./views/registry.js";
import { AGGREGATES } from "./aggregate.js";

export const VIEWS = VIEW_NAMES;
// A statistic's name (its list comes from the `stats` route; the stats view
// checks the name against it): lower-case letters, digits and underscores.
const STAT_NAME = /^[a-z][a-z0-9_]{0,63}$/;
// The compare view's modes: head ranking, A | B | B-A matrices, model grid, head lines.
export const CMODES = ["rank", "matrix", "model", "head"];
export const PAIRS = ["all", "aa", "bb", "ab", "ba"];
// The neuron view's forms: every number of the shown query, or its lines (collapsed).
export const NMODES = ["vectors", "lines"];
export const PAIR_LABELS = { all: "All", aa: "A\u2192A", bb: "B\u2192B", ab: "A\u2192B", ba: "B\u2192A" };
// The text view's rows: how many kept steps, up to the one shown.
export const TEXT_STEPS = [1, 4, 8, 16];

/**
 * @typedef {{side: "q" | "k", index: number}} Hover
 * @typedef {{
 *   run: string | null, tag: string | null, step: number | null,
 *   kind: string | null, view: string, layer: number | null,
 *   heads: number[] | null, head: number, query: number | null,
 *   hover: Hover | null, pair: string, raw: boolean,
 *   mlayers: number[] | null, mheads: number[] | null, zoom: number,
 *   stat: string | null,
 *   brun: string | null, btag: string | null, bstep: number | null, cmode: string,
 *   nmode: string, mfocus: {layer: number, head: number} | null,
 *   tdir: "q" | "k", tsteps: number, agg: string | null,
 *   image: boolean,
 * }} State
 * heads: heads shown in the head view (null = all).
 * head: the one head of the matrix and neuron views.
 * agg: an aggregate over heads shown instead of the head(s) (aggregate.js
 *   AGGREGATES: "mean" / "max" of the layer, "mean-all" / "max-all" of every
 *   layer), or null; the neuron view (per-head vectors) ignores it.
 * query: the query token of the neuron view and of image mode (null: the
 *   kind's default, queryIndex: the last token of causal attention, where
 *   every key is visible, else the first).
 * hover: the pinned token of the head view.
 * mlayers / mheads: the model view's layer and head filters (null = all).
 * zoom: row / cell size in pixels (0 = automatic).
 * stat: the statistic the stats view charts (null: the first the `stats`
 *   route names).
 * brun / btag / bstep: the compare view's B (null = chosen by the view: the
 *   same run and probe, its newest other step); A is run / tag / step.
 *   cmode: its mode.
 * nmode: the neuron view's form (NMODES).
 * mfocus: the model view's thumbnail shown enlarged in place (null: none).
 * image: the head and matrix views draw over the image, for steps captured
 *   from one (URL: image=0 turns it off).
 */

/** @returns {State} */
export function defaultState() {
  return {
    run: null,
    tag: null,
    step: null,
    kind: null,
    view: "head",
    layer: null,
    heads: null,
    head: 0,
    query: null,
    hover: null,
    pair: "all",
    raw: false,
    mlayers: null,
    mheads: null,
    zoom: 0,
    stat: null,
    brun: null,
    btag: null,
    bstep: null,
    cmode: "rank",
    nmode: "vectors",
    mfocus: null,
    tdir: "q",
    tsteps: 4,
    agg: null,
    image: true,
  };
}

/**
 * Parse "0-3,5,7" into a sorted list of distinct non-negative integers.
 * Returns null for an empty string (meaning "all") and for garbage.
 * @param {string | null | undefined} text
 * @returns {number[] | null}
 */
export function parseRange(text) {
  if (text === null || text === undefined) return null;
  const s = String(text).replace(/\s+/g, "");
  if (s === "" || s === "all" || s === "*") return null;
  const out = new Set();
  for (const part of s.split(",")) {
    if (part === "") continue;
    const m = /^(\d{1,6})(?:-(\d{1,6}))?$/.exec(part);
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 100000) return null;
    for (let i = a; i <= b; i++) out.add(i);
  }
  if (out.size === 0) return null;
  return [...out].sort((x, y) => x - y);
}

/**
 * Format a list of integers compactly: [0,1,2,3,5] -> "0-3,5".
 * @param {readonly number[] | null} list
 */
export function formatRange(list) {
  if (!list) return "";
  const xs = [...new Set(list)].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    parts.push(j > i ? `${xs[i]}-${xs[j]}` : `${xs[i]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/**
 * Decimal text of an integer, exact beyond 2**53: String(2 ** 62) gives
 * "4611686018427388000", the shortest text that reads back as that double,
 * not the step TensorBoard has ("4611686018427387904").
 * @param {number} n
 */
export function intText(n) {
  return Number.isInteger(n) && !Number.isSafeInteger(n) ? BigInt(n).toString() : String(n);
}

/**
 * A step from URL text: int64 steps (up to 19 digits), read to the nearest
 * double as JSON.parse reads the `steps` answer, so they compare equal.
 */
function stepOr(text, fallback) {
  if (text === undefined || text === null || !/^\d{1,19}$/.test(String(text))) return fallback;
  const v = Number(text);
  return v <= 2 ** 63 ? v : fallback;
}

function intOr(text, fallback, min = 0) {
  if (text === undefined || text === null || !/^-?\d{1,12}$/.test(String(text))) return fallback;
  const v = Number(text);
  return v < min ? fallback : v;
}

/**
 * State from the plugin's URL keys (without the `p.attention.` prefix).
 * Unknown or malformed values fall back to defaults; nothing throws.
 * @param {Record<string, string>} dict
 * @returns {State}
 */
export function decodeState(dict) {
  const s = defaultState();
  const get = (k) => (Object.prototype.hasOwnProperty.call(dict, k) ? dict[k] : undefined);
  if (get("run")) s.run = String(get("run"));
  if (get("tag")) s.tag = String(get("tag"));
  s.step = stepOr(get("step"), null);
  if (get("kind")) s.kind = String(get("kind"));
  if (VIEWS.includes(get("view"))) s.view = get("view");
  s.layer = intOr(get("layer"), null, 0);
  const heads = get("heads");
  if (heads === "none") s.heads = [];
  else s.heads = parseRange(heads);
  s.head = intOr(get("head"), 0, 0);
  s.query = intOr(get("query"), null, 0);
  const hover = /^([qk])(\d{1,7})$/.exec(get("hover") || "");
  s.hover = hover ? { side: /** @type {"q"|"k"} */ (hover[1]), index: Number(hover[2]) } : null;
  if (PAIRS.includes(get("pair"))) s.pair = get("pair");
  s.raw = get("raw") === "1";
  s.mlayers = parseRange(get("mlayers"));
  s.mheads = parseRange(get("mheads"));
  s.zoom = Math.min(intOr(get("zoom"), 0, 0), 64);
  if (STAT_NAME.test(get("stat") || "")) s.stat = get("stat");
  if (get("brun")) s.brun = String(get("brun"));
  if (get("btag")) s.btag = String(get("btag"));
  s.bstep = stepOr(get("bstep"), null);
  if (CMODES.includes(get("cmode"))) s.cmode = get("cmode");
  if (NMODES.includes(get("nmode"))) s.nmode = get("nmode");
  const focus = /^(\d{1,6})\.(\d{1,6})$/.exec(get("mfocus") || "");
  s.mfocus = focus ? { layer: Number(focus[1]), head: Number(focus[2]) } : null;
  if (get("tdir") === "k") s.tdir = "k";
  const tsteps = intOr(get("tsteps"), s.tsteps, 1);
  if (TEXT_STEPS.includes(tsteps)) s.tsteps = tsteps;
  if (AGGREGATES.includes(get("agg"))) s.agg = get("agg");
  s.image = get("image") !== "0";
  return s;
}

/**
 * URL keys for a state, leaving out everything at its default.
 * @param {State} s
 * @returns {Record<string, string>}
 */
export function encodeState(s) {
  const d = defaultState();
  /** @type {Record<string, string>} */
  const out = {};
  if (s.run !== null && s.run !== undefined) out.run = s.run;
  if (s.tag !== null && s.tag !== undefined) out.tag = s.tag;
  if (s.step !== null && s.step !== undefined) out.step = intText(s.step);
  if (s.kind) out.kind = s.kind;
  if (s.view !== d.view) out.view = s.view;
  if (s.layer !== null && s.layer !== undefined) out.layer = String(s.layer);
  if (s.heads) out.heads = s.heads.length === 0 ? "none" : formatRange(s.heads);
  if (s.head) out.head = String(s.head);
  if (s.query !== null && s.query !== undefined) out.query = String(s.query);
  if (s.hover) out.hover = s.hover.side + s.hover.index;
  if (s.pair !== d.pair) out.pair = s.pair;
  if (s.raw) out.raw = "1";
  if (s.mlayers) out.mlayers = formatRange(s.mlayers);
  if (s.mheads) out.mheads = formatRange(s.mheads);
  if (s.zoom) out.zoom = String(s.zoom);
  if (s.stat) out.stat = s.stat;
  if (s.brun !== null && s.brun !== undefined) out.brun = s.brun;
  if (s.btag !== null && s.btag !== undefined) out.btag = s.btag;
  if (s.bstep !== null && s.bstep !== undefined) out.bstep = intText(s.bstep);
  if (s.cmode && s.cmode !== d.cmode) out.cmode = s.cmode;
  if (s.nmode && s.nmode !== d.nmode) out.nmode = s.nmode;
  if (s.mfocus) out.mfocus = `${s.mfocus.layer}.${s.mfocus.head}`;
  if (s.tdir && s.tdir !== d.tdir) out.tdir = s.tdir;
  if (s.tsteps && s.tsteps !== d.tsteps) out.tsteps = String(s.tsteps);
  if (s.agg) out.agg = s.agg;
  if (s.image === false) out.image = "0";
  return out;
}

/**
 * Make a state valid for what the backend has: pick a run, tag, step, kind,
 * layer and heads that exist, keeping the requested ones when they do.
 * @param {State} s
 * @param {{runs: Array<{run: string, tags: Array<any>}>}} tags the runs and
 *   probes (Catalogue.listing: the `tags` answer with the `steps` answers
 *   fetched so far merged in); an entry without steps resolves to step null
 * @returns {{state: State, runInfo: any, tagInfo: any, kindInfo: any} | null}
 *   null when nothing is logged at all.
 */
export function resolveState(s, tags) {
  const runs = (tags && tags.runs) || [];
  const withTags = runs.filter((r) => r.tags && r.tags.length > 0);
  if (withTags.length === 0) return null;
  const out = { ...s };
  const runInfo = withTags.find((r) => r.run === s.run) || defaultRun(withTags);
  out.run = runInfo.run;
  const tagInfo = runInfo.tags.find((t) => t.tag === s.tag) || defaultProbe(runInfo.tags);
  out.tag = tagInfo.tag;
  const steps = tagInfo.steps || [];
  out.step = nearestStep(steps, s.step);
  const kinds = tagInfo.kinds || [];
  const kindInfo = kinds.find((k) => k.name === s.kind) || kinds[0] || null;
  return { state: clampToKind(out, kindInfo), runInfo, tagInfo, kindInfo };
}

/** Which of two listing entries has more: kept steps where known, then the newer max_step. */
function more(a, b) {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

/** A probe's score: [kept steps (-1 while not fetched), max_step]. */
function probeScore(t) {
  return [t.steps ? t.steps.length : -1, typeof t.max_step === "number" ? t.max_step : -Infinity];
}

/**
 * The probe opened in a run when none (or one it did not log) is asked for:
 * the one with the most kept steps as far as the listing has them, then the
 * newest max_step, then the listing's order.
 * @param {Array<{tag: string, steps?: number[], max_step?: number}>} tags
 */
export function defaultProbe(tags) {
  let best = tags[0];
  for (const t of tags.slice(1)) if (more(probeScore(t), probeScore(best))) best = t;
  return best;
}

/**
 * The run opened when none (or one not logged) is asked for: the one with a
 * probe of the most kept steps (a training run, not a one-step checkpoint
 * run that sorts first), as far as the listing has their steps; then the
 * newest max_step; then the listing's order.
 * @param {Array<{run: string, tags: Array<{steps?: number[], max_step?: number}>}>} runs with probes
 */
export function defaultRun(runs) {
  const score = (r) => probeScore(defaultProbe(r.tags));
  let best = runs[0];
  for (const r of runs.slice(1)) if (more(score(r), score(best))) best = r;
  return best;
}

/**
 * Keep the kind, layer, heads and token choices of a state that exist in one
 * attention kind (from the `tags` route or from a step's header).
 * @param {State} s
 * @param {any} kindInfo  name, layer_ids, num_heads and query_len / key_len
 *   or query_tokens / key_tokens
 * @returns {State}
 */
export function clampToKind(s, kindInfo) {
  const out = { ...s };
  out.kind = kindInfo ? kindInfo.name : null;
  if (!kindInfo) return out;
  const ids = kindInfo.layer_ids || [];
  const qlen = kindInfo.query_tokens ? kindInfo.query_tokens.length : kindInfo.query_len || 0;
  const klen = kindInfo.key_tokens ? kindInfo.key_tokens.length : kindInfo.key_len || 0;
  out.layer = ids.includes(s.layer) ? s.layer : ids.length ? ids[0] : null;
  const H = kindInfo.num_heads || 0;
  if (out.heads) {
    const kept = out.heads.filter((h) => h < H);
    out.heads = kept.length === H ? null : kept;
  }
  out.head = s.head < H ? s.head : 0;
  out.query = s.query !== null && s.query < qlen ? s.query : null;
  if (out.hover) {
    const len = out.hover.side === "q" ? qlen : klen;
    if (!(out.hover.index < len)) out.hover = null;
  }
  if (out.mlayers) {
    const kept = out.mlayers.filter((l) => ids.includes(l));
    out.mlayers = kept.length ? kept : null;
  }
  if (out.mheads) {
    const kept = out.mheads.filter((h) => h < H);
    out.mheads = kept.length ? kept : null;
  }
  if (out.mfocus && !(ids.includes(out.mfocus.layer) && out.mfocus.head < H)) out.mfocus = null;
  return out;
}

/**
 * The query token a state shows in a kind: its own, or by default the last
 * of causal attention (the first token of a causal model sees only itself)
 * and the first otherwise.
 * @param {State} s
 * @param {any} kind  causal and query_tokens / query_len
 */
export function queryIndex(s, kind) {
  if (s.query !== null && s.query !== undefined) return s.query;
  const qlen = kind ? (kind.query_tokens ? kind.query_tokens.length : kind.query_len || 0) : 0;
  return kind && kind.causal && qlen > 0 ? qlen - 1 : 0;
}

/**
 * The kept step closest to `want` (the newest on a tie or when `want` is
 * null); null when there are no steps.
 * @param {readonly number[]} steps
 * @param {number | null} want
 */
export function nearestStep(steps, want) {
  if (!steps || steps.length === 0) return null;
  if (want === null || want === undefined) return steps[steps.length - 1];
  let best = steps[0];
  for (const st of steps) {
    if (Math.abs(st - want) <= Math.abs(best - want)) best = st;
  }
  return best;
}

/**
 * The step `delta` positions away in the kept steps, clamped.
 * @param {readonly number[]} steps sorted ascending
 * @param {number} step
 * @param {number} delta
 */
export function stepBy(steps, step, delta) {
  if (!steps.length) return null;
  let i = steps.indexOf(step);
  if (i < 0) i = steps.indexOf(nearestStep(steps, step));
  const j = Math.max(0, Math.min(steps.length - 1, i + delta));
  return steps[j];
}

