// The host interface: what a view gets instead of the dashboard. A view
// (views/*.js) talks only to its Host and to the ViewContext it is shown
// with; it never sees TensorBoard, the URL, the iframe protocol or HTTP.
//
// TensorBoard's dashboard (app.js) is one host: its data is `Api` (HTTP), its
// state lives in the URL. A host for a notebook or a standalone HTML file can
// hand the same views in-memory data (memory.js) and keep its state in a
// variable: nothing in views/ changes. frontend/tests/host.test.mjs builds
// views against such a host in node; tests/test_host_e2e.py does it in
// Chromium from a static page.
//
// What data a view needs for a state it declares once, as request
// descriptors (`Need`) from its static `needs(ctx)`: its show() loads them,
// the dashboard prefetches them for the neighbouring steps and the entry
// point starts them before the app's modules have arrived.

import { resolveState, clampToKind } from "./state.js";
import { AGG_LABELS, aggParams } from "./aggregate.js";

/**
 * One answer a view needs: a route of docs/routes.md and its parameters.
 * @typedef {{
 *   route: "header" | "attention" | "overview" | "neurons" | "stats" | "compare",
 *   run?: string, tag: string, step?: number, kind?: string, layer?: number | "all",
 *   head?: number | "mean" | "max" | null, size?: number,
 *   a?: {run: string, step: number}, b?: {run: string, step: number, tag?: string}, verdict?: boolean,
 * }} Need
 */

/**
 * The data behind the views: one method per route, each resolving with the
 * decoded answer (decode.js types) or rejecting with an error that has the
 * route's HTTP `status` (404: no such run / step / layer / neurons; 400: a
 * compare whose layers or heads differ, the message saying how). compare's
 * B may be of another probe (b.tag); with `verdict` it answers only whether
 * A and B line up (jsd null). `Api`
 * (api.js) answers over HTTP; `MemoryData` (memory.js) from arrays.
 * @typedef {{
 *   tags(): Promise<{runs: Array<{run: string, tags: Array<{tag: string}>}>}>,
 *   steps(run: string, tag: string): Promise<any>,
 *   header(run: string, tag: string, step: number): Promise<any>,
 *   attention(run: string, tag: string, step: number, kind: string, layer: number, head?: number | null): Promise<import("./decode.js").Weights>,
 *   overview(run: string, tag: string, step: number, kind: string, size?: number): Promise<import("./decode.js").Weights & {pool: number[]}>,
 *   neurons(run: string, tag: string, step: number, kind: string, layer: number, head: number): Promise<import("./decode.js").Neurons>,
 *   stats(run: string, tag: string, kind: string): Promise<any>,
 *   compare(tag: string, kind: string, a: {run: string, step: number}, b: {run: string, step: number, tag?: string}, verdict?: boolean): Promise<any>,
 * }} Data
 */

/**
 * What a view gets from whoever shows it.
 * @typedef {{
 *   data: Data,
 *   catalogue: import("./catalogue.js").Catalogue,
 *   state(): import("./state.js").State,
 *   setState(patch: Partial<import("./state.js").State>): void,
 *   drawn(view: View): void,
 *   labels(kind: any, raw: boolean): {q: string[], k: string[]},
 * }} Host
 * data: answers of the routes (never build URLs: a host may have none).
 * catalogue: runs, probes and their steps (new objects; the answers behind
 *   them are never edited).
 * state() / setState(patch): the state on screen / change it (a host redraws
 *   through show(); the dashboard also writes it into the URL).
 * drawn(view): the view redrew by itself (hover): the host records what is
 *   on screen (the dashboard: #tba's data-* attributes).
 * labels(kind, raw): the kind's token labels (tokens.js), cached per kind.
 */

/**
 * What show() gets: the state resolved against the catalogue, the step's
 * header and kind, labels and theme.
 * @typedef {{
 *   state: import("./state.js").State, header: any, kind: any,
 *   runInfo: any, tagInfo: any, generation: number,
 *   labels: {q: string[], k: string[]}, theme: any,
 *   isCurrent: () => boolean,
 * }} ViewContext
 * generation: the catalogue's listing (a new one: new steps may exist).
 * theme: colours (colors.js THEMES); when the theme changes the host sets
 *   view.ctx = {...view.ctx, theme} and calls view.draw().
 * isCurrent(): false once a newer show() has started (drop late results).
 */

/**
 * A view: a module in views/ whose default export is a class
 * `new View(host)` with
 *   root, controls          its elements (the host places them)
 *   show(ctx)               load its needs and draw (a Promise)
 *   draw()                  redraw from what it last showed (resize, theme)
 *   drawable?()             whether draw() has its data
 *   detail?(), hoverNow?()  what is on screen, for data-detail / data-hover
 *   exportCanvas?()         a canvas of the whole view, for PNG export
 *   describe?()             what in it is shown (" \u00b7 layer 3"), for the export's title
 *   static needs(ctx)       the Needs of a state: ctx has state and kind,
 *                           and more when the view's show() passes it
 * @typedef {any} View
 */

/** The parameters of each route's Data method, in order. */
const ARGS = {
  header: ["run", "tag", "step"],
  attention: ["run", "tag", "step", "kind", "layer", "head"],
  overview: ["run", "tag", "step", "kind", "size"],
  neurons: ["run", "tag", "step", "kind", "layer", "head"],
  stats: ["run", "tag", "kind"],
  compare: ["tag", "kind", "a", "b", "verdict"],
};

/**
 * Up to this many probes in all, the default run is the one with the most
 * steps (their steps are fetched, in parallel, to know); beyond, the newest
 * max_step decides.
 */
export const SCANNED_PROBES = 48;

/** Routes whose answers belong to one step and never change: worth prefetching. */
export const STEP_ROUTES = new Set(["header", "attention", "overview", "neurons"]);

/**
 * A Need for the state's run, probe, step and kind.
 * @param {Need["route"]} route
 * @param {import("./state.js").State} s
 * @param {Partial<Need>} [more]
 * @returns {Need}
 */
export function need(route, s, more = {}) {
  return { route, run: s.run, tag: s.tag, step: s.step, kind: s.kind, ...more };
}

/**
 * The `attention` route's layer and head of the one head a state shows (the
 * matrix, text and compare views): its head, or its aggregate over heads.
 * @param {import("./state.js").State} s
 * @returns {{layer: number | "all", head: number | "mean" | "max"}}
 */
export function headParams(s) {
  return s.agg ? aggParams(s.agg, s.layer) : { layer: s.layer, head: s.head };
}

/** What headParams shows, for an export's title: " · layer 3 · head 5", " · mean of all layers". */
export function headTitle(s) {
  if (s.agg && s.agg.endsWith("-all")) return ` \u00b7 ${AGG_LABELS[s.agg]}`;
  return ` \u00b7 layer ${s.layer} \u00b7 ` + (s.agg ? AGG_LABELS[s.agg] : `head ${s.head}`);
}

/**
 * Load one Need from a data source.
 * @param {Data} data
 * @param {Need} n
 */
export function load(data, n) {
  const args = ARGS[n.route];
  if (!args) throw new Error(`unknown route "${n.route}"`);
  return data[n.route](...args.map((k) => n[k]));
}

/** Load Needs together; resolves with their answers in order. */
export function loadAll(data, needs) {
  return Promise.all(needs.map((n) => load(data, n)));
}

/**
 * A view's usual show(): load what its class needs for ctx and, unless a
 * newer show() started meanwhile, keep ctx and the answers (keep(...answers))
 * and draw.
 * @returns {Promise<boolean>} whether it drew
 */
export async function showNeeds(view, ctx, keep) {
  const answers = await loadAll(view.host.data, view.constructor.needs(ctx));
  if (!ctx.isCurrent()) return false;
  view.ctx = ctx;
  keep(...answers);
  view.draw();
  return true;
}

/**
 * Resolve a state against the catalogue (fetching its probe's steps) and
 * fetch its step's header: the ViewContext to show it with (state clamped
 * to the kind), or null when nothing is logged.
 * @param {Host} host
 * @param {import("./state.js").State} state
 * @param {{theme: any, isCurrent?: () => boolean}} opts
 * @returns {Promise<ViewContext | null>} (check isCurrent() first: a
 *   superseded call resolves with null too)
 */
export async function resolveContext(host, state, { theme, isCurrent = () => true }) {
  const cat = host.catalogue;
  const runs = cat.listing().runs.filter((r) => r.tags && r.tags.length);
  const probes = runs.flatMap((r) => r.tags.map((t) => [r.run, t.tag]));
  if (!runs.some((r) => r.run === state.run) && probes.length <= SCANNED_PROBES) {
    // no run asked for (or one not logged): the default is the run with the
    // most steps, so the probes' steps are needed (failures: not counted)
    await Promise.allSettled(probes.map(([run, tag]) => cat.probe(run, tag)));
    if (!isCurrent()) return null;
  }
  let resolved = resolveState(state, cat.listing());
  if (!resolved) return null;
  if (!resolved.tagInfo.steps) {
    // the listing names probes only; their steps come one probe at a time
    await cat.probe(resolved.state.run, resolved.state.tag);
    if (!isCurrent()) return null;
    resolved = resolveState(state, cat.listing());
  }
  const s = resolved.state;
  if (s.step === null) throw new Error(`probe "${s.tag}" of run "${s.run}" has no readable steps`);
  const header = await host.data.header(s.run, s.tag, s.step);
  const kind = header.kinds.find((k) => k.name === s.kind) || header.kinds[0];
  if (!kind) throw new Error(`step ${s.step} of probe "${s.tag}" holds no attention`);
  const clamped = clampToKind(s, kind);
  return {
    state: clamped, header, kind, runInfo: resolved.runInfo, tagInfo: resolved.tagInfo,
    generation: cat.generation, labels: host.labels(kind, clamped.raw), theme, isCurrent,
  };
}
