import test from "node:test";
import assert from "node:assert/strict";
import {
  parseRange, formatRange, decodeState, encodeState, defaultState, resolveState, clampToKind, nearestStep, stepBy,
  VIEWS, intText,
} from "../state.js";
import { parseHash, buildHash, readPluginKeys, writePluginKeys, UrlStore } from "../url.js";

test("ranges parse and format", () => {
  assert.deepEqual(parseRange("0-3,5"), [0, 1, 2, 3, 5]);
  assert.deepEqual(parseRange(" 5, 1 ,1-2"), [1, 2, 5]);
  assert.equal(parseRange(""), null);
  assert.equal(parseRange("all"), null);
  assert.equal(parseRange("x"), null);
  assert.equal(parseRange("3-1"), null);
  assert.equal(formatRange([5, 0, 1, 2, 3, 7, 8]), "0-3,5,7-8");
  assert.equal(formatRange([]), "");
  for (const s of ["0", "0-11", "1,3,5-9"]) assert.equal(formatRange(parseRange(s)), s);
});

test("state round-trips through URL keys", () => {
  const s = {
    ...defaultState(), run: "exp/1 a&b=c", tag: "probe/cat", step: 50, kind: "cross", view: "matrix",
    layer: 3, heads: [0, 2, 3], head: 7, query: 4, hover: { side: "k", index: 12 }, pair: "ab",
    raw: true, mlayers: [1, 2], mheads: [0], zoom: 9, stat: "previous_token", nmode: "lines", mfocus: { layer: 3, head: 11 },
  };
  const keys = encodeState(s);
  assert.deepEqual(decodeState(keys), s);
  // through a hash too
  const hash = writePluginKeys("#attention", keys);
  assert.deepEqual(decodeState(readPluginKeys(hash)), s);
});

test("the compare view's B and mode round-trip and fall back", () => {
  const s = { ...defaultState(), run: "a", view: "compare", brun: "ft run/2 &x", btag: "probe/b", bstep: 30, cmode: "head" };
  const keys = encodeState(s);
  assert.deepEqual([keys.view, keys.brun, keys.bstep, keys.cmode], ["compare", "ft run/2 &x", "30", "head"]);
  assert.deepEqual(decodeState(readPluginKeys(writePluginKeys("#attention", keys))), s);
  // defaults stay out of the URL: B chosen by the view, the ranking
  const d = encodeState({ ...defaultState(), view: "compare" });
  assert.deepEqual(Object.keys(d), ["view"]);
  const bad = decodeState({ bstep: "-3", cmode: "evil", brun: "" });
  assert.deepEqual([bad.bstep, bad.cmode, bad.brun], [null, "rank", null]);
  assert.equal(decodeState({ bstep: "0" }).bstep, 0);
});

test("defaults are left out of the URL and no heads is not all heads", () => {
  assert.deepEqual(encodeState(defaultState()), {});
  const none = { ...defaultState(), heads: [] };
  assert.deepEqual(decodeState(encodeState(none)).heads, []);
  assert.equal(decodeState({}).heads, null);
});

test("a URL step is digits only: text after a number is no step", () => {
  // parseInt would read "12abc" as 12 and "1.5" as 1: a step nobody asked for
  for (const bad of ["12abc", "1.5", "1e3", " 7", "7 ", "+7", "0x10", "-1", ""]) {
    assert.equal(decodeState({ step: bad }).step, null, JSON.stringify(bad));
    assert.equal(decodeState({ bstep: bad }).bstep, null, JSON.stringify(bad));
  }
  assert.equal(decodeState({ step: "12" }).step, 12);
  assert.equal(decodeState({ step: "007" }).step, 7);
  assert.equal(decodeState({ step: "9223372036854775807" }).step, 2 ** 63);
});

test("garbage in the URL falls back to defaults", () => {
  const s = decodeState({ step: "abc", view: "evil", layer: "-1", heads: "1-x", hover: "z9", pair: "q", zoom: "9999" });
  assert.equal(s.step, null);
  assert.equal(s.view, "head");
  assert.equal(s.layer, null);
  assert.equal(s.heads, null);
  assert.equal(s.hover, null);
  assert.equal(s.pair, "all");
  assert.equal(s.zoom, 64);
});

test("hash parsing matches TensorBoard's tf_storage format", () => {
  assert.deepEqual(parseHash("#scalars&tagFilter=loss&p.attention.run=a%26b"), {
    __tab__: "scalars", tagFilter: "loss", "p.attention.run": "a&b",
  });
  assert.equal(buildHash({ __tab__: "attention", a: "1 2" }), "attention&a=1%202");
  assert.deepEqual(parseHash(""), {});
  assert.deepEqual(parseHash("#x&bad=%E0%A4%A&ok=1"), { __tab__: "x", ok: "1" });
});

test("writing plugin keys keeps the tab and other plugins' keys", () => {
  const h = writePluginKeys("#attention&p.other.x=1&p.attention.step=5&darkMode=true", { run: "r", step: "7" });
  const d = parseHash(h);
  assert.equal(d.__tab__, "attention");
  assert.equal(d["p.other.x"], "1");
  assert.equal(d.darkMode, "true");
  assert.equal(d["p.attention.step"], "7");
  assert.equal(d["p.attention.run"], "r");
  assert.ok(h.startsWith("attention&"));
  // removed keys disappear
  assert.equal(parseHash(writePluginKeys(h, {}))["p.attention.run"], undefined);
});

const TAGS = {
  runs: [
    { run: "empty", tags: [] },
    {
      run: "gpt", tags: [
        { tag: "probe", steps: [0, 50, 100], kept: 3, written: 3,
          kinds: [{ name: "self", layer_ids: [0, 2, 4], num_heads: 4, query_len: 10, key_len: 10 }] },
      ],
    },
    {
      run: "t5", tags: [
        { tag: "p", steps: [1], kept: 1, written: 9, kinds: [
          { name: "encoder", layer_ids: [0, 1], num_heads: 8, query_len: 6, key_len: 6 },
          { name: "cross", layer_ids: [0, 1], num_heads: 8, query_len: 3, key_len: 6 },
        ] },
      ],
    },
  ],
};

test("resolveState picks what exists", () => {
  assert.equal(resolveState(defaultState(), { runs: [] }), null);
  assert.equal(resolveState(defaultState(), { runs: [{ run: "a", tags: [] }] }), null);
  const r = resolveState(defaultState(), TAGS);
  assert.equal(r.state.run, "gpt");
  assert.equal(r.state.tag, "probe");
  assert.equal(r.state.step, 100);
  assert.equal(r.state.kind, "self");
  assert.equal(r.state.layer, 0);
  const r2 = resolveState({ ...defaultState(), run: "t5", kind: "cross", layer: 1, head: 9, heads: [1, 9], hover: { side: "q", index: 4 } }, TAGS);
  assert.equal(r2.state.kind, "cross");
  assert.equal(r2.state.layer, 1);
  assert.equal(r2.state.head, 0);
  assert.deepEqual(r2.state.heads, [1]);
  assert.equal(r2.state.hover, null); // query_len 3
  const r3 = resolveState({ ...defaultState(), run: "gpt", step: 60, layer: 3, heads: [0, 1, 2, 3] }, TAGS);
  assert.equal(r3.state.step, 50);
  assert.equal(r3.state.layer, 0);
  assert.equal(r3.state.heads, null); // every head = all
});

test("clampToKind works with a header's token lists", () => {
  const s = clampToKind({ ...defaultState(), query: 5, hover: { side: "k", index: 2 } },
    { name: "self", layer_ids: [3], num_heads: 2, query_tokens: ["a", "b"], key_tokens: ["a", "b", "c"] });
  assert.equal(s.query, null); // beyond the tokens: the kind's default (queryIndex)
  assert.deepEqual(s.hover, { side: "k", index: 2 });
  assert.equal(s.layer, 3);
});

test("step helpers", () => {
  assert.equal(nearestStep([0, 50, 100], null), 100);
  assert.equal(nearestStep([0, 50, 100], 74), 50);
  assert.equal(nearestStep([0, 50, 100], 75), 100);
  assert.equal(nearestStep([], 3), null);
  assert.equal(stepBy([0, 50, 100], 50, 1), 100);
  assert.equal(stepBy([0, 50, 100], 100, 1), 100);
  assert.equal(stepBy([0, 50, 100], 0, -1), 0);
  assert.equal(stepBy([0, 50, 100], 49, -1), 0);
});

function fakeWindow(href, parent) {
  const w = {
    location: null, parent: null,
    history: { state: null, calls: 0, replaceState(st, _t, url) { this.calls++; w.location = makeLoc(url); } },
  };
  w.location = makeLoc(href);
  w.parent = parent || w;
  return w;
}
function makeLoc(href) {
  const u = new URL(href);
  return { href: u.href, hash: u.hash, origin: u.origin };
}

test("UrlStore writes into TensorBoard's hash when the parent is reachable", () => {
  const top = fakeWindow("http://127.0.0.1:6006/#attention&p.attention.step=5&foo=1");
  const frame = fakeWindow("http://127.0.0.1:6006/data/plugin_entry.html?name=attention", top);
  const store = new UrlStore(frame);
  assert.equal(store.where, "TensorBoard's URL");
  assert.deepEqual(store.read(), { step: "5" });
  store.write({ step: "7", run: "a b" });
  assert.equal(top.location.hash, "#attention&foo=1&p.attention.step=7&p.attention.run=a%20b");
  assert.equal(frame.history.calls, 0);
  store.write({ step: "7", run: "a b" });
  assert.equal(top.history.calls, 1);
});

test("UrlStore falls back to its own hash for a cross-origin parent", () => {
  const top = { get location() { throw new Error("cross-origin"); } };
  const frame = fakeWindow("http://127.0.0.1:6006/data/plugin_entry.html?name=attention", top);
  const store = new UrlStore(frame);
  assert.equal(store.where, "own hash");
  store.write({ view: "model" });
  assert.equal(frame.location.hash, "#&p.attention.view=model");
  assert.deepEqual(store.read(), { view: "model" });
});

test("UrlStore reports changes made outside, not its own writes", () => {
  const listeners = {};
  const top = fakeWindow("http://127.0.0.1:6006/#attention&p.attention.step=5");
  top.addEventListener = (type, fn) => { (listeners[type] = listeners[type] || []).push(fn); };
  const frame = fakeWindow("http://127.0.0.1:6006/data/plugin_entry.html?name=attention", top);
  const store = new UrlStore(frame);
  const seen = [];
  store.onExternalChange((keys) => seen.push(keys));
  const fire = () => listeners.hashchange.forEach((f) => f());
  store.write({ step: "7" });
  fire();
  assert.deepEqual(seen, []);
  top.location = makeLoc("http://127.0.0.1:6006/#attention&p.attention.step=9&p.attention.view=model");
  fire();
  assert.deepEqual(seen, [{ step: "9", view: "model" }]);
  // TensorBoard rewriting its own part of the hash is not a change of ours
  top.location = makeLoc("http://127.0.0.1:6006/#scalars&p.attention.step=9&p.attention.view=model");
  fire();
  assert.equal(seen.length, 1);
});

test("the stats view's statistic lives in the URL as `stat`", () => {
  assert.ok(VIEWS.includes("stats"));
  // the names come from the `stats` route (the view checks `stat` against them):
  // here only their form is checked, and no name means the route's first
  assert.equal(defaultState().stat, null);
  assert.equal(decodeState({}).stat, null);
  for (const name of ["entropy", "max_weight", "previous_token", "loss"]) {
    const s = { ...defaultState(), view: "stats", stat: name };
    const keys = encodeState(s);
    assert.equal(keys.view, "stats");
    assert.equal(keys.stat, name);
    assert.equal(decodeState(keys).stat, name);
  }
  assert.equal(encodeState({ ...defaultState(), view: "stats" }).stat, undefined);
  // not a statistic's name at all (markup, capitals, empty): the default
  for (const bad of ["Entropy", "<b>x</b>", "", "a b", "x".repeat(65)]) assert.equal(decodeState({ stat: bad }).stat, null);
  const hash = writePluginKeys("#attention", encodeState({ ...defaultState(), view: "stats", stat: "distance" }));
  assert.equal(hash, "attention&p.attention.view=stats&p.attention.stat=distance");
  assert.equal(decodeState(readPluginKeys(hash)).stat, "distance");
});

test("int64 steps (2**62) round-trip through the URL exactly", () => {
  assert.equal(intText(2 ** 62), "4611686018427387904");
  assert.equal(intText(0), "0");
  assert.equal(intText(123456), "123456");
  const s = decodeState({ step: "4611686018427387904" });
  assert.equal(s.step, 2 ** 62);
  assert.equal(encodeState(s).step, "4611686018427387904");
  assert.equal(decodeState(encodeState({ ...defaultState(), step: 0 })).step, 0);
  assert.equal(decodeState({ step: "9223372036854775807" }).step, 2 ** 63); // as JSON.parse reads it
  assert.equal(decodeState({ step: "9999999999999999999" }).step, null); // beyond int64
  assert.equal(decodeState({ step: "12345678901234567890" }).step, null);
  assert.equal(nearestStep([0, 2 ** 62], 2 ** 62), 2 ** 62);
  assert.equal(stepBy([0, 2 ** 62], 2 ** 62, -1), 0);
});

test("the text view's keys and the aggregate round-trip through the URL", () => {
  const s = { ...defaultState(), view: "text", tdir: "k", tsteps: 8, agg: "mean-all" };
  const keys = encodeState(s);
  assert.deepEqual([keys.tdir, keys.tsteps, keys.agg], ["k", "8", "mean-all"]);
  const back = decodeState(keys);
  assert.deepEqual([back.view, back.tdir, back.tsteps, back.agg], ["text", "k", 8, "mean-all"]);
  // malformed values fall back to the defaults
  const bad = decodeState({ tdir: "x", tsteps: "5", agg: "median" });
  assert.deepEqual([bad.tdir, bad.tsteps, bad.agg], ["q", 4, null]);
  assert.deepEqual(encodeState(defaultState()), {});
});

test("image mode is on by default, off with image=0, and only off is written", () => {
  assert.equal(decodeState({}).image, true);
  assert.equal(decodeState({ image: "0" }).image, false);
  assert.equal(decodeState({ image: "yes" }).image, true);
  assert.deepEqual(encodeState({ ...defaultState(), image: false }), { image: "0" });
  assert.equal("image" in encodeState(defaultState()), false);
});
