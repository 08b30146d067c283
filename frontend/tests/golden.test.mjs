// Golden vectors shared with pytest (tests/fixtures/golden/*.json): logic that
// exists in Python and in JS is pinned by the same expected values on both sides.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { maxPool } from "../layout.js";
import { neuronScores } from "../decode.js";

const golden = (name) => JSON.parse(readFileSync(new URL(`../../tests/fixtures/golden/${name}`, import.meta.url), "utf8"));

test("maxPool matches the golden max-pool vectors", () => {
  const { cases } = golden("max_pool.json");
  assert.ok(cases.length >= 10);
  for (const c of cases) {
    const src = c.dtype === "uint8" ? Uint8Array.from(c.values) : Float32Array.from(c.values);
    const n = c.Tq * c.Tk;
    const m = c.expected.rows * c.expected.cols;
    for (let h = 0; h < c.H; h++) {
      const got = maxPool(src, h * n, c.Tq, c.Tk, c.size, c.magnitude);
      assert.equal(got.rows, c.expected.rows, c.name);
      assert.equal(got.cols, c.expected.cols, c.name);
      assert.deepEqual(Array.from(got.data), c.expected.data.slice(h * m, (h + 1) * m), c.name);
    }
  }
});

test("neuronScores matches the golden neuron score vectors (soft-cap, bias, mask, sink)", () => {
  const { cases } = golden("neuron_scores.json");
  assert.ok(cases.length >= 7);
  for (const c of cases) {
    const n = {
      Tq: 1, Tk: c.Tk, D: c.D, scale: c.scale, hasBias: c.bias !== null,
      queries: Float32Array.from(c.q), keys: Float32Array.from(c.keys),
      bias: c.bias === null ? null : Float32Array.from(c.bias), masked: Uint8Array.from(c.masked),
      softcap: c.softcap, sink: c.sink,
    };
    const got = neuronScores(n, 0);
    for (let j = 0; j < c.Tk; j++) {
      assert.ok(Math.abs(got.softmax[j] - c.expected.softmax[j]) < 1e-6, `${c.name}: softmax[${j}]`);
      if (!c.masked[j]) assert.ok(Math.abs(got.score[j] - c.expected.score[j]) < 1e-5, `${c.name}: score[${j}]`);
    }
    assert.ok(Math.abs(got.sinkP - c.expected.sink_p) < 1e-6, `${c.name}: sink weight`);
  }
});
