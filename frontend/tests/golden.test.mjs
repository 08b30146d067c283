// Golden vectors shared with pytest (tests/fixtures/golden/*.json): logic that
// exists in Python and in JS is pinned by the same expected values on both sides.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { maxPool } from "../layout.js";

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
