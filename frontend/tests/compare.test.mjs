import test from "node:test";
import assert from "node:assert/strict";
import {
  compareVerdict, diffLut, difference, nothingToCompare, pickBRun, rankHeads, resolveB, runsWithTag, signedBytes,
} from "../comparing.js";
import { THEMES, divergingIndex } from "../colors.js";
import { defaultState } from "../state.js";

const TAGS = {
  runs: [
    { run: "train", tags: [{ tag: "probe", steps: [0, 10, 20] }, { tag: "other", steps: [5] }] },
    { run: "lonely", tags: [{ tag: "other", steps: [1] }] },
    { run: "ft", tags: [{ tag: "probe", steps: [3, 7] }] },
  ],
};
const state = (patch) => ({ ...defaultState(), run: "train", tag: "probe", step: 10, ...patch });

test("B: only runs with the probe; newest step, or the first other one", () => {
  assert.deepEqual(runsWithTag(TAGS, "probe").map((r) => r.run), ["train", "ft"]);
  let b = resolveB(state({}), TAGS);
  assert.deepEqual(b, { run: "train", tag: "probe", step: 20, steps: [0, 10, 20], runs: ["train", "ft"] });
  // A is the newest step: B is the first other step
  assert.equal(resolveB(state({ step: 20 }), TAGS).step, 0);
  // a chosen step, the nearest kept one when it is gone
  assert.equal(resolveB(state({ bstep: 10 }), TAGS).step, 10);
  assert.equal(resolveB(state({ bstep: 12 }), TAGS).step, 10);
  // another run: its newest step unless one is chosen
  b = resolveB(state({ brun: "ft" }), TAGS);
  assert.deepEqual([b.run, b.step], ["ft", 7]);
  assert.equal(resolveB(state({ brun: "ft", bstep: 3 }), TAGS).step, 3);
  // a run without the probe is not a B: back to A's run
  assert.equal(resolveB(state({ brun: "lonely" }), TAGS).run, "train");
  // one step only: B is A, and there is nothing to compare (said, not "no head changed")
  const one = { runs: [{ run: "r", tags: [{ tag: "t", steps: [4] }] }] };
  const s1 = { ...defaultState(), run: "r", tag: "t", step: 4 };
  assert.equal(resolveB(s1, one).step, 4);
  assert.equal(nothingToCompare(s1, resolveB(s1, one)),
    "nothing to compare: probe \u201ct\u201d has one logged step (4), in run \u201cr\u201d only; log more steps or another run, or choose another probe as B");
  // B chosen as A while there are other steps: drawn (all zero), not refused
  assert.equal(nothingToCompare(state({ bstep: 10 }), resolveB(state({ bstep: 10 }), TAGS)), null);
  assert.equal(nothingToCompare(state({}), resolveB(state({}), TAGS)), null);
  assert.equal(resolveB(state({ tag: "missing" }), TAGS), null);
});

test("B may be another probe: its runs and steps are that probe's", () => {
  const b = resolveB(state({ btag: "other" }), TAGS);
  assert.deepEqual(b, { run: "train", tag: "other", step: 5, steps: [5], runs: ["train", "lonely"] });
  assert.equal(nothingToCompare(state({ btag: "other" }), b), null);
  assert.equal(resolveB(state({ btag: "other", brun: "lonely" }), TAGS).run, "lonely");
  assert.equal(resolveB(state({ btag: "other", brun: "ft" }), TAGS).run, "train"); // ft has no "other"
});

test("B before its steps are fetched: the listing names the run, resolveB waits for the steps", () => {
  // the `tags` route lists probes without steps; Catalogue.probe merges them in
  const listed = { runs: [{ run: "train", tags: [{ tag: "probe", max_step: 20 }] }, { run: "ft", tags: [{ tag: "probe", max_step: 7 }] }] };
  assert.deepEqual(runsWithTag(listed, "probe").map((r) => r.run), ["train", "ft"]);
  assert.equal(pickBRun(state({ brun: "ft" }), listed), "ft");
  assert.equal(pickBRun(state({ brun: "nope" }), listed), "train");
  assert.equal(pickBRun(state({ tag: "missing" }), listed), null);
  const b = resolveB(state({ brun: "ft" }), listed);
  assert.deepEqual([b.run, b.step, b.steps], ["ft", null, []]);
  Object.assign(listed.runs[1].tags[0], { steps: [3, 7], kept: 2, written: 2 });
  assert.deepEqual([resolveB(state({ brun: "ft" }), listed).step], [7]);
  // fetched and empty: not a B any more
  listed.runs[1].tags[0].steps = [];
  assert.equal(pickBRun(state({ brun: "ft" }), listed), "train");
});

// Whether A and B line up, and whether their tokens do, is the compare
// route's verdict (tb_attention/compare.py; tests/test_compare.py checks its
// messages): the view shows it as the route says it.
test("the compare route's verdict: tokens match or differ, layers or heads differ (400), or an error", () => {
  const ok = compareVerdict({ status: "fulfilled", value: { jsd: [[0]], tokens: { match: true, message: null } } });
  assert.deepEqual([ok.tokens, ok.problem, ok.message, ok.answer.jsd], ["match", null, null, [[0]]]);
  const differ = "the query tokens differ at position 3: A has 'sat', B has '<img>' (1 of 8 positions differ)";
  const d = compareVerdict({ status: "fulfilled", value: { jsd: null, tokens: { match: false, message: differ } } });
  assert.deepEqual([d.tokens, d.problem, d.message], ["differ", null, differ]);
  const layers = Object.assign(new Error("cannot compare self attention of run 'a' step 0 with run 'b' step 1: A stores layers [0, 1], B stores layers [0]"), { status: 400 });
  const s = compareVerdict({ status: "rejected", reason: layers });
  assert.deepEqual([s.tokens, s.problem, s.message, s.answer], ["n/a", layers.message, layers.message, null]);
  // anything else is not a verdict: the view fails with it (offline, a missing step, a server error)
  for (const status of [0, 404, 500]) {
    const e = Object.assign(new Error("no"), { status });
    assert.throws(() => compareVerdict({ status: "rejected", reason: e }), (x) => x === e);
  }
});

test("difference is B minus A, exact for uint8 and float16", () => {
  const u8 = (arr) => ({ shape: [1, 1, arr.length], bytes: Uint8Array.from(arr), values: null });
  const d = difference(u8([255, 0, 10]), u8([0, 255, 10]));
  assert.deepEqual(Array.from(d.values), [-1, 1, 0]);
  assert.equal(d.maxAbs, 1);
  const f = { shape: [1, 1, 3], bytes: Uint8Array.from([0, 0, 0]), values: Float32Array.from([0.25, 0, 0.5]) };
  const e = difference(f, u8([0, 51, 255]));
  assert.deepEqual(Array.from(e.values), [-0.25, 0.2, 0.5].map(Math.fround));
  assert.throws(() => difference(u8([1, 2]), u8([1, 2, 3])), /cannot subtract shape 1x1x2 from 1x1x3/);
  assert.equal(difference(u8([7, 8]), u8([7, 8])).maxAbs, 0);
});

test("signed bytes split a difference by sign, scaled to its largest magnitude", () => {
  const { pos, neg } = signedBytes(Float32Array.from([0.5, -0.25, 0, -0.5]), 0.5);
  assert.deepEqual(Array.from(pos), [255, 0, 0, 0]);
  assert.deepEqual(Array.from(neg), [0, 128, 0, 255]);
  const zero = signedBytes(new Float32Array(3), 0);
  assert.deepEqual([...zero.pos, ...zero.neg], [0, 0, 0, 0, 0, 0]);
});

test("heads rank by divergence, largest first, nulls left out", () => {
  const r = rankHeads([[0, 0.3, null], [0.3, 0.1, 0]], [4, 7]);
  assert.deepEqual(r.slice(0, 3), [{ layer: 4, head: 1, value: 0.3 }, { layer: 7, head: 0, value: 0.3 }, { layer: 7, head: 1, value: 0.1 }]);
  assert.equal(r.length, 5);
});

test("the difference scale is the background at zero and coloured at the ends", () => {
  for (const theme of [THEMES.light, THEMES.dark]) {
    const lut = diffLut(theme);
    const at = (i) => Array.from(lut.slice(i * 4, i * 4 + 3));
    const bg = theme.background.match(/[0-9a-f]{2}/gi).map((h) => parseInt(h, 16));
    assert.deepEqual(at(divergingIndex(0, 0.4)), bg);
    assert.deepEqual(at(divergingIndex(0, 0)), bg);
    assert.deepEqual(at(0), theme.div[0]);
    assert.deepEqual(at(255), theme.div[4]);
    assert.notDeepEqual(at(divergingIndex(0.05, 0.4)), bg);
  }
});
