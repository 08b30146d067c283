// Never a silent fallback: what a link or a typed filter asks for and what is
// shown instead (fallbacks.js), the default run and the default query (state.js).
import test from "node:test";
import assert from "node:assert/strict";
import { fallbackNotices, unreadable } from "../fallbacks.js";
import { clampToKind, decodeState, defaultProbe, defaultRun, defaultState, encodeState, queryIndex } from "../state.js";

const KIND = { name: "self", layer_ids: [0, 1, 2, 3, 4, 5], num_heads: 12, query_tokens: Array(8).fill("t"), key_tokens: Array(8).fill("t") };
const shown = (asked) => clampToKind(asked, KIND);
const notices = (dict, extra = {}) => {
  const asked = { ...decodeState(dict), ...extra };
  return fallbackNotices(asked, { ...shown(asked), run: "r", tag: "p", ...extra.shown }, new Set(Object.keys(dict)), KIND);
};

test("a layer filter beyond the model names the missing layers and shows every layer", () => {
  const [n, ...rest] = notices({ run: "r", tag: "p", mlayers: "9-12" });
  assert.equal(rest.length, 0);
  assert.equal(n.key, "mlayers");
  assert.equal(n.text, "layer filter 9-12: layers 9-12 are not logged (layers 0-5): showing every layer");
  const [m] = notices({ run: "r", tag: "p", mlayers: "4-8" });
  assert.equal(m.text, "layer filter 4-8: layers 6-8 are not logged (layers 0-5): showing layers 4-5");
  assert.deepEqual(notices({ run: "r", tag: "p", mlayers: "1-3" }), []);
});

test("an unknown run is named, and what depends on it is not", () => {
  const asked = { ...defaultState(), run: "nope", step: 7, layer: 40 };
  const out = fallbackNotices(asked, { ...shown(asked), run: "train", step: 3 }, new Set(["run", "step", "layer"]), KIND);
  assert.deepEqual(out.map((n) => n.key), ["run"]);
  assert.match(out[0].text, /^run “nope” is not logged .*: showing run “train”, the one with the most steps$/);
});

test("a step, layer, head and query that are not logged are each named", () => {
  const asked = { ...defaultState(), run: "r", tag: "p", step: 7, layer: 9, head: 30, query: 20 };
  const out = fallbackNotices(asked, { ...shown(asked), step: 5 }, new Set(["run", "tag", "step", "layer", "head", "query"]), KIND);
  assert.deepEqual(out.map((n) => n.text), [
    "step 7 is not among the logged steps (any more): showing step 5, the nearest",
    "layer 9 is not logged (layers 0-5): showing layer 0",
    "head 30 does not exist (heads 0-11): showing head 0",
    "query token 20 is beyond the 8 query tokens: showing token 0",
  ]);
  // not asked for explicitly (a step kept from another run): nothing said
  assert.deepEqual(fallbackNotices(asked, { ...shown(asked), step: 5 }, new Set(["run"]), KIND), []);
});

test("values the link has but the state cannot read are said, with what is shown", () => {
  const out = unreadable({ mlayers: "abc", step: "x1", view: "nope", heads: "0-3", layer: "2", hover: "q3" });
  assert.deepEqual(out.map((n) => n.key), ["step", "mlayers", "view"]);
  assert.equal(out[1].text, "mlayers “abc” in the link is not a list of layers (numbers and ranges, like 0-3,7): showing every layer");
  assert.match(out[2].text, /^view “nope” in the link is not a view \(head, model, /);
  assert.deepEqual(unreadable({ mlayers: "", mheads: "all", heads: "none", raw: "1" }), []);
  // long values are cut
  assert.ok(unreadable({ cmode: "x".repeat(500) })[0].text.length < 200);
});

test("the default run is the one with the most steps, then the newest", () => {
  const runs = [
    { run: "a-ckpt", tags: [{ tag: "p", steps: [500], max_step: 500 }] },
    { run: "b-train", tags: [{ tag: "p", steps: [0, 100, 200], max_step: 200 }] },
    { run: "c-train", tags: [{ tag: "p", steps: [0, 10, 20], max_step: 20 }] },
  ];
  assert.equal(defaultRun(runs).run, "b-train");
  // steps not fetched (many runs): the newest max_step
  assert.equal(defaultRun(runs.map((r) => ({ run: r.run, tags: [{ tag: "p", max_step: r.tags[0].max_step }] }))).run, "a-ckpt");
  // a run's probe of the most steps counts, and is the probe opened
  const two = [runs[0], { run: "z", tags: [{ tag: "a-one", steps: [9], max_step: 9 }, { tag: "b-many", steps: [1, 2, 3, 4], max_step: 4 }] }];
  assert.equal(defaultRun(two).run, "z");
  assert.equal(defaultProbe(two[1].tags).tag, "b-many");
});

test("the neuron view's query: the last token of causal attention unless one is chosen", () => {
  const s = defaultState();
  assert.equal(s.query, null);
  assert.equal(queryIndex(s, { causal: true, query_len: 12 }), 11);
  assert.equal(queryIndex(s, { causal: false, query_tokens: ["a", "b"] }), 0);
  assert.equal(queryIndex({ ...s, query: 0 }, { causal: true, query_len: 12 }), 0);
  // a chosen query 0 stays in the URL (absent means the default)
  assert.equal(encodeState({ ...s, query: 0 }).query, "0");
  assert.equal(decodeState({ query: "0" }).query, 0);
  assert.equal(decodeState({}).query, null);
});
