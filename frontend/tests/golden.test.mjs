// Golden vectors shared with pytest (tests/fixtures/golden/*.json): logic that
// exists in Python and in JS is pinned by the same expected values on both sides.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { maxPool } from "../layout.js";
import { aggregateMaps, aggParams } from "../aggregate.js";
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

test("aggregateMaps matches the golden aggregate vectors", () => {
  const { cases } = golden("aggregate.json");
  assert.ok(cases.length >= 12);
  for (const c of cases) {
    const n = c.N * c.Tq * c.Tk;
    const w = c.dtype === "uint8"
      ? { shape: [c.N, c.Tq, c.Tk], dtype: "uint8", bytes: Uint8Array.from(c.values), values: null }
      : { shape: [c.N, c.Tq, c.Tk], dtype: "float16", bytes: new Uint8Array(n), values: Float32Array.from(c.values) };
    const got = aggregateMaps(w, c.how);
    assert.deepEqual(got.shape, [1, c.Tq, c.Tk], c.name);
    if (c.dtype === "uint8") assert.deepEqual(Array.from(got.bytes), c.expected, c.name);
    else {
      c.expected.forEach((v, i) => assert.ok(Math.abs(got.values[i] - v) <= 1e-6, `${c.name}: ${got.values[i]} vs ${v}`));
      c.expected.forEach((v, i) => assert.equal(got.bytes[i], Math.round(v * 255), c.name));
    }
  }
  // [L, H, Tq, Tk] is every map: the aggregate over all layers
  const four = aggregateMaps({ shape: [2, 2, 1, 1], dtype: "uint8", bytes: Uint8Array.from([0, 1, 1, 1]), values: null }, "mean");
  assert.deepEqual(Array.from(four.bytes), [1]); // 3 / 4 = 0.75 rounds up
  assert.deepEqual(aggParams("mean", 3), { layer: 3, head: "mean" });
  assert.deepEqual(aggParams("max-all", 3), { layer: "all", head: "max" });
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
