import test from "node:test";
import assert from "node:assert/strict";
import { Catalogue } from "../catalogue.js";
import { resolveState, defaultState } from "../state.js";

const freeze = (o) => {
  if (o && typeof o === "object") {
    Object.values(o).forEach(freeze);
    Object.freeze(o);
  }
  return o;
};

/** A data source whose answers are frozen (any edit throws) and counted. */
function source() {
  const calls = [];
  return {
    calls,
    tags: async () => freeze({ runs: [{ run: "a", tags: [{ tag: "p", max_step: 5 }, { tag: "q", max_step: 1 }] }, { run: "b", tags: [] }] }),
    steps: async (run, tag) => {
      calls.push([run, tag]);
      return freeze({ run, tag, steps: [0, 5], kept: 2, written: 3, kinds: [{ name: "self" }] });
    },
  };
}

test("the listing merges each probe's steps into new objects; the answers stay as sent", async () => {
  const data = source();
  const cat = new Catalogue(data);
  const tags = await data.tags();
  cat.set(tags);
  assert.equal(cat.find("a", "p").steps, undefined);
  const before = cat.listing();
  const probe = await cat.probe("a", "p");
  assert.deepEqual([probe.tag, probe.max_step, probe.steps, probe.kept, probe.written], ["p", 5, [0, 5], 2, 3]);
  const after = cat.listing();
  assert.notEqual(after, before); // a new listing object once steps arrived
  assert.deepEqual(after.runs[0].tags[0].steps, [0, 5]);
  assert.equal(after.runs[0].tags[1].steps, undefined); // q not looked at
  assert.equal(tags.runs[0].tags[0].steps, undefined); // the answer itself is untouched (and frozen)
  // resolveState reads the merged listing
  const r = resolveState({ ...defaultState(), run: "a", tag: "p" }, after);
  assert.equal(r.state.step, 5);
  assert.equal(await cat.probe("a", "nope"), null);
});

test("a probe's steps are fetched once per listing, again for a new one; an early request is used", async () => {
  const data = source();
  const cat = new Catalogue(data);
  const early = data.steps("a", "p");
  cat.expect("a", "p", early);
  cat.set(await data.tags());
  assert.equal(cat.generation, 1);
  await Promise.all([cat.probe("a", "p"), cat.probe("a", "p")]);
  await cat.probe("a", "p");
  assert.equal(data.calls.length, 1); // the early one only
  cat.set(await data.tags()); // TensorBoard reloaded
  assert.equal(cat.generation, 2);
  assert.equal(cat.find("a", "p").steps, undefined);
  await cat.probe("a", "p");
  assert.equal(data.calls.length, 2);
});

test("a failed steps request is not kept: the next look asks again", async () => {
  let fail = true;
  const data = { ...source(), steps: async () => {
    if (fail) throw new Error("down");
    return { steps: [1] };
  } };
  const cat = new Catalogue(data);
  cat.set(await data.tags());
  await assert.rejects(cat.probe("a", "p"), /down/);
  fail = false;
  assert.deepEqual((await cat.probe("a", "p")).steps, [1]);
});
