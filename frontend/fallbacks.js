// Never a silent fallback: when a link (or a typed filter) asks for something
// that is not logged, or that the dashboard cannot read, the state falls back
// to something that is (state.js resolveState / clampToKind), and these
// notices say what was asked for and what is shown instead. Pure: tested in
// node; the app shows them in the notice bar.

import { CMODES, NMODES, PAIRS, VIEWS as VIEW_NAMES, formatRange, intText, parseRange, queryIndex } from "./state.js";

/** A piece of user text (a URL value, a name) in a notice: quoted, at most 60 characters. */
function quote(text) {
  const t = String(text);
  return `\u201c${t.length > 60 ? t.slice(0, 59) + "\u2026" : t}\u201d`;
}

const RANGE_HELP = "numbers and ranges, like 0-3,7";
const isRangeText = (t) => parseRange(t) !== null || ["", "all", "*"].includes(t.replace(/\s+/g, ""));
const isInt = (t) => /^\d{1,12}$/.test(t);

/**
 * URL keys whose values the state ignores, each with what is shown instead.
 * key: [can it be read, what it should be, what is shown instead].
 */
const READERS = {
  step: [(t) => /^\d{1,19}$/.test(t) && Number(t) <= 2 ** 63, "a step number", "the newest step"],
  bstep: [(t) => /^\d{1,19}$/.test(t) && Number(t) <= 2 ** 63, "a step number", "B's default step"],
  layer: [isInt, "a layer number", "the first layer"],
  head: [isInt, "a head number", "head 0"],
  query: [isInt, "a token number", "the default query"],
  zoom: [isInt, "a size in pixels", "automatic zoom"],
  heads: [(t) => t === "none" || isRangeText(t), `a list of heads (${RANGE_HELP})`, "every head"],
  mlayers: [isRangeText, `a list of layers (${RANGE_HELP})`, "every layer"],
  mheads: [isRangeText, `a list of heads (${RANGE_HELP})`, "every head"],
  view: [(t) => VIEW_NAMES.includes(t), `a view (${VIEW_NAMES.join(", ")})`, "the head view"],
  cmode: [(t) => CMODES.includes(t), `a compare mode (${CMODES.join(", ")})`, "the ranking"],
  nmode: [(t) => NMODES.includes(t), `a neuron view form (${NMODES.join(", ")})`, "the vectors"],
  mfocus: [(t) => /^\d{1,6}\.\d{1,6}$/.test(t), "a layer.head (3.7)", "no enlarged head"],
  pair: [(t) => PAIRS.includes(t), `a sentence pair filter (${PAIRS.join(", ")})`, "all pairs"],
  hover: [(t) => /^[qk]\d{1,7}$/.test(t), "a token (q3 or k7)", "no pinned token"],
  raw: [(t) => t === "0" || t === "1", "0 or 1", "prettified tokens"],
  stat: [(t) => /^[a-z][a-z0-9_]{0,63}$/.test(t), "a statistic's name", "the first statistic"],
};

/**
 * The plugin's URL keys (decodeState's input) whose values cannot be read:
 * decodeState falls back to the default for them; these say so.
 * @param {Record<string, string>} dict
 * @returns {Array<{key: string, text: string}>}
 */
export function unreadable(dict) {
  const out = [];
  for (const key of Object.keys(READERS)) {
    if (!Object.prototype.hasOwnProperty.call(dict, key)) continue;
    const value = String(dict[key]);
    const [ok, what, instead] = READERS[key];
    if (!ok(value)) out.push({ key, text: `${key} ${quote(value)} in the link is not ${what}: showing ${instead}` });
  }
  return out;
}

/** Numbers of `asked` not in `have`, and those that are. */
function split(asked, have) {
  const set = new Set(have);
  return { missing: asked.filter((x) => !set.has(x)), kept: asked.filter((x) => set.has(x)) };
}

/** The filter notices (model view's layers and heads, head view's heads). */
function filterNotices(asked, shown, keys, kind) {
  const out = [];
  const H = kind.num_heads || 0;
  const heads = [...Array(H).keys()];
  const filters = [
    ["mlayers", "layer filter", "layers", kind.layer_ids, "every layer"],
    ["mheads", "head filter", "heads", heads, "every head"],
    ["heads", "heads", "heads", heads, "every head"],
  ];
  for (const [key, label, noun, have, all] of filters) {
    if (!keys.has(key) || !asked[key] || !asked[key].length) continue;
    const { missing, kept } = split(asked[key], have);
    if (!missing.length) continue;
    const showing = shown[key] && shown[key].length ? `${noun} ${formatRange(shown[key])}` : kept.length ? `${noun} ${formatRange(kept)}` : all;
    out.push({
      key,
      text: `${label} ${formatRange(asked[key])}: ${noun} ${formatRange(missing)} ${missing.length > 1 ? "are" : "is"} not logged ` +
        `(${noun} ${formatRange(have) || "none"}): showing ${showing}`,
    });
  }
  return out;
}

/**
 * What was explicitly asked for (keys: from the URL, a typed filter, a
 * reload) but is not what is shown, as notices. Once the run or probe fell
 * back, what depends on them (step, layer, ...) is not reported: it was asked
 * of another run.
 * @param {import("./state.js").State} asked the state before resolving
 * @param {import("./state.js").State} shown the state resolved (resolveContext)
 * @param {Set<string>} keys the state keys explicitly asked for
 * @param {any} kind the kind shown (header's: layer_ids, num_heads, tokens)
 * @returns {Array<{key: string, text: string}>}
 */
export function fallbackNotices(asked, shown, keys, kind) {
  const has = (k) => keys.has(k) && asked[k] !== null && asked[k] !== undefined;
  if (has("run") && asked.run !== shown.run) {
    return [{ key: "run", text: `run ${quote(asked.run)} is not logged (or logged no attention): showing run ${quote(shown.run)}, the one with the most steps` }];
  }
  if (has("tag") && asked.tag !== shown.tag) {
    return [{ key: "tag", text: `run ${quote(shown.run)} has no probe ${quote(asked.tag)}: showing probe ${quote(shown.tag)}` }];
  }
  const out = [];
  if (has("step") && asked.step !== shown.step) {
    out.push({ key: "step", text: `step ${intText(asked.step)} is not among the logged steps (any more): showing step ${intText(shown.step)}, the nearest` });
  }
  if (has("kind") && asked.kind !== shown.kind) out.push({ key: "kind", text: `this step has no ${quote(asked.kind)} attention: showing ${quote(shown.kind)}` });
  if (!kind) return out;
  if (has("layer") && asked.layer !== shown.layer) {
    out.push({ key: "layer", text: `layer ${asked.layer} is not logged (layers ${formatRange(kind.layer_ids)}): showing layer ${shown.layer}` });
  }
  if (has("head") && asked.head !== shown.head) {
    out.push({ key: "head", text: `head ${asked.head} does not exist (heads 0-${kind.num_heads - 1}): showing head ${shown.head}` });
  }
  if (has("query") && asked.query !== shown.query) {
    out.push({ key: "query", text: `query token ${asked.query} is beyond the ${kind.query_tokens.length} query tokens: showing token ${queryIndex(shown, kind)}` });
  }
  if (has("mfocus") && !shown.mfocus) {
    out.push({ key: "mfocus", text: `layer ${asked.mfocus.layer} head ${asked.mfocus.head} is not logged: no head enlarged` });
  }
  if (has("hover") && !shown.hover) {
    out.push({ key: "hover", text: `token ${asked.hover.side}${asked.hover.index} is beyond this step's tokens: nothing pinned` });
  }
  return out.concat(filterNotices(asked, shown, keys, kind));
}
