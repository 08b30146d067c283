import test from "node:test";
import assert from "node:assert/strict";
import { pickStat, statLabel, statScale } from "../views/stats.js";
import { boundedText } from "../statnotes.js";
import { latestValue, statsLayout, stepOffsets, stepsWithout, traceSparkline } from "../draw/sparklines.js";

/** A path that records its calls. */
function recorder() {
  const ops = [];
  return { ops, moveTo: (x, y) => ops.push(["M", x, y]), lineTo: (x, y) => ops.push(["L", x, y]) };
}

test("one y scale per statistic: weights 0..1, the others 0..the grid's max", () => {
  const rows = [[0.5, null, 2.5], [null, 3.25, 0.1]];
  assert.deepEqual(statScale("entropy", rows), { lo: 0, hi: 3.25 });
  assert.deepEqual(statScale("distance", rows), { lo: 0, hi: 3.25 });
  for (const name of ["max_weight", "first_token", "special_tokens", "previous_token"]) {
    assert.deepEqual(statScale(name, rows), { lo: 0, hi: 1 });
  }
  assert.deepEqual(statScale("entropy", [[null, 0]]), { lo: 0, hi: 1 }); // nothing above 0: still a range
});

test("x follows the step numbers, not their indices", () => {
  assert.deepEqual(stepOffsets([0, 10, 40], 40), [0, 10, 40]);
  assert.deepEqual(stepOffsets([100, 150, 200], 11), [0, 6, 11]);
  assert.deepEqual(stepOffsets([7], 30), [15]);
  assert.deepEqual(stepOffsets([], 30), []);
});

test("latest value and steps without statistics", () => {
  const rows = [[1, 2], [3, null], [null, null]];
  assert.deepEqual(latestValue(rows, 0), { s: 1, v: 3 });
  assert.deepEqual(latestValue(rows, 1), { s: 0, v: 2 });
  assert.equal(latestValue([[null], [null]], 0), null);
  const stats = { entropy: [[null, null], [1, null], [null, null]], distance: [[null, null], [null, null], [null, 4]] };
  assert.deepEqual(stepsWithout(stats, 3), [0]);
});

test("sparklines: gaps lift the pen, lone values are ticks", () => {
  const p = recorder();
  const xs = [0, 10, 20, 30, 40];
  traceSparkline(p, [1, 2, null, 3, 4], xs, 100, (v) => 50 - v);
  assert.deepEqual(p.ops, [
    ["M", 100.5, 49], ["L", 110.5, 48], // steps 0-1
    ["M", 130.5, 47], ["L", 140.5, 46], // step 2 is null: a new line from step 3
  ]);
  const q = recorder();
  traceSparkline(q, [null, 5, null], [0, 4, 8], 0, (v) => v);
  assert.deepEqual(q.ops, [["M", 4.5, 5], ["M", 3, 5], ["L", 6, 5]]);
});

test("sparklines: many steps in one pixel column are one vertical stroke", () => {
  // 1000 steps over 10 pixel columns: the path stays a few ops per column
  const n = 1000;
  const values = Array.from({ length: n }, (_, i) => (i % 2 ? 0 : 10));
  const xs = stepOffsets(Array.from({ length: n }, (_, i) => i), 9);
  const p = recorder();
  traceSparkline(p, values, xs, 0, (v) => v);
  assert.ok(p.ops.length <= 10 * 4, `${p.ops.length} path ops`);
  // every column's envelope spans the full 0..10 range
  const verticals = p.ops.filter((op, i) => op[0] === "L" && i > 0 && p.ops[i - 1][0] === "M" && p.ops[i - 1][1] === op[1]);
  assert.ok(verticals.length >= 9, JSON.stringify(p.ops));
  assert.ok(verticals.every((op) => op[2] === 10));
});

test("grid layout fits 32 heads in a dashboard's width and caps small grids", () => {
  const g = statsLayout({ rows: 32, cols: 32, availWidth: 1150 });
  assert.ok(g.width <= 1150, g.width);
  assert.ok(g.cellW >= 24);
  assert.equal(g.x(1) - g.x(0), g.cellW + g.gap);
  assert.equal(g.y(31) + g.cellH + g.gap + g.axisH, g.height); // the step axis under the last row
  const small = statsLayout({ rows: 2, cols: 4, availWidth: 1150 });
  assert.equal(small.cellW, 160);
  assert.equal(small.plotH, small.cellH - 2 * small.padY);
});

test("the statistic charted is one the stats route names, else its first", () => {
  // the names and their order are the route's (tb_attention/stats.py NAMES)
  const names = ["entropy", "max_weight", "first_token", "special_tokens", "distance", "previous_token"];
  assert.equal(pickStat(names, "distance"), "distance");
  assert.equal(pickStat(names, null), "entropy");
  // unknown statistics (a typo, an old link, a newer server's name) fall back to the route's default
  for (const bad of ["loss", "Entropy", "<b>x</b>", ""]) assert.equal(pickStat(names, bad), "entropy");
  assert.equal(pickStat([], "entropy"), null);
  assert.deepEqual(names.map(statLabel), ["entropy", "max weight", "first token", "special tokens", "distance", "previous token"]);
});

test("a bounded stats answer says what it left out (issue 14)", () => {
  const b = { steps: 1500, layers: 1500, heads: 2, max_values: 262144 };
  assert.equal(boundedText(b, 87, 1500, 2), "showing 87 of 1500 steps, evenly spaced: at most 262144 values per statistic");
  assert.equal(boundedText({ steps: 3, layers: 2, heads: 2147483647, max_values: 100 }, 1, 1, 100),
    "showing 1 of 3 steps, evenly spaced, 1 of 2 layers (the first), 100 of 2147483647 heads (the first): at most 100 values per statistic");
});
