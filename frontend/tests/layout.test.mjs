import test from "node:test";
import assert from "node:assert/strict";
import {
  pairRanges, hasSegments, rowHeight, headViewLayout, headViewHit, gridLayout, matrixCell, matrixHit, maxPool,
} from "../layout.js";
import { collectEdges, budgetCutoff, bandKeys, edgeRanges, bucketAlpha, lineCosts, pickCutoff, ALPHA_BUCKETS } from "../edges.js";

function edgesOf(he) {
  const out = [];
  for (let b = 0; b < ALPHA_BUCKETS; b++) {
    for (let p = he.offsets[b]; p < he.offsets[b + 1]; p++) out.push([he.q[p], he.k[p], b]);
  }
  return out.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
}

// 2 heads, 3 x 3
const W = new Uint8Array([
  // head 0
  255, 0, 0,
  100, 155, 0,
  0, 1, 254,
  // head 1
  0, 0, 255,
  85, 85, 85,
  0, 0, 0,
]);

test("edges: only weights >= 1/255, bucketed by opacity", () => {
  const [h0, h1] = collectEdges(W, 3, 3, [0, 1]);
  assert.equal(h0.head, 0);
  assert.deepEqual(edgesOf(h0), [[0, 0, 31], [1, 0, 12], [1, 1, 19], [2, 1, 0], [2, 2, 31]]);
  assert.equal(h0.count, 5);
  assert.equal(h1.count, 4);
  const [strict] = collectEdges(W, 3, 3, [0], { minByte: 2 });
  assert.equal(strict.count, 4);
});

test("edges: hover keeps one token's lines", () => {
  const [q] = collectEdges(W, 3, 3, [0], { hover: { side: "q", index: 1 } });
  assert.deepEqual(edgesOf(q), [[1, 0, 12], [1, 1, 19]]);
  const [k] = collectEdges(W, 3, 3, [0], { hover: { side: "k", index: 1 } });
  assert.deepEqual(edgesOf(k), [[1, 1, 19], [2, 1, 0]]);
});

test("edges: ranges and head offset", () => {
  const [h] = collectEdges(W, 3, 3, [1], { qRange: [1, 3], kRange: [0, 2] });
  assert.deepEqual(edgesOf(h), [[1, 0, 10], [1, 1, 10]]);
  const one = W.slice(9);
  const [o] = collectEdges(one, 3, 3, [1], { headOffset: 1 });
  assert.equal(o.count, 4);
});

test("bucket opacity", () => {
  assert.ok(bucketAlpha(31) <= 1 && bucketAlpha(0) > 0);
  assert.ok(Math.abs(bucketAlpha(12) - 100 / 255) < 0.02);
});

test("a bucket is drawn at its bytes' midpoint: every byte within half a bucket (4/255)", () => {
  // bucket b holds bytes 8b .. 8b + 7 (v >> 3); hand-computed midpoints
  assert.equal(bucketAlpha(0), 4 / 255);
  assert.equal(bucketAlpha(12), 100 / 255);
  assert.equal(bucketAlpha(31), 252 / 255);
  for (let v = 0; v < 256; v++) {
    const err = Math.abs(bucketAlpha(v >> 3) - v / 255);
    assert.ok(err <= 4 / 255 + 1e-12, `byte ${v}: drawn at ${bucketAlpha(v >> 3) * 255}/255`);
  }
});

test("sentence pair ranges", () => {
  assert.deepEqual(pairRanges("all", 4, 4, 10, 10), { qRange: [0, 10], kRange: [0, 10] });
  assert.deepEqual(pairRanges("ab", 4, 4, 10, 10), { qRange: [0, 4], kRange: [4, 10] });
  assert.deepEqual(pairRanges("ba", 4, 4, 10, 10), { qRange: [4, 10], kRange: [0, 4] });
  assert.deepEqual(pairRanges("bb", 4, 6, 10, 12), { qRange: [4, 10], kRange: [6, 12] });
  assert.deepEqual(pairRanges("aa", 0, 0, 10, 10), { qRange: [0, 10], kRange: [0, 10] });
  assert.ok(hasSegments({ query_segment_b: 3 }));
  assert.ok(!hasSegments({ query_segment_b: 0, key_segment_b: 0 }));
});

test("row height shrinks for long lists and honours zoom", () => {
  assert.equal(rowHeight(10, 0), 18);
  assert.equal(rowHeight(128, 0), 18);
  assert.equal(rowHeight(256, 0), 9);
  assert.equal(rowHeight(512, 0), 4);
  assert.equal(rowHeight(4096, 0), 3);
  assert.equal(rowHeight(10, 30), 30);
  assert.equal(rowHeight(4096, 30), 3);
  // the head view's rows stay readable (it scrolls)
  assert.equal(rowHeight(512, 0, 4e6, 14), 14);
  assert.equal(rowHeight(4096, 0, 4e6, 14), 14);
  assert.equal(rowHeight(100, 0, 4e6, 14), 18);
});

test("head view layout and hit testing", () => {
  const L = headViewLayout({ Tq: 5, Tk: 7, rowH: 10, leftW: 50, rightW: 60, boxW: 4, nBox: 3 });
  assert.ok(L.lineX0 < L.lineX1);
  assert.equal(L.height, 8 + 70 + 8);
  assert.equal(L.y(0), 13);
  assert.deepEqual(headViewHit(L, 5, 7, 10, 14), { side: "q", index: 0 });
  assert.deepEqual(headViewHit(L, 5, 7, L.lineX1 + 3, 8 + 65), { side: "k", index: 6 });
  assert.equal(headViewHit(L, 5, 7, 10, 8 + 65), null); // no 7th query
  assert.equal(headViewHit(L, 5, 7, (L.lineX0 + L.lineX1) / 2, 14), null);
});

test("head view hit testing at the edges: the padding below the last row is no token", () => {
  // Tq = 5 queries, Tk = 7 keys, rows 10 px from top 8: key j spans 8 + 10j .. 8 + 10(j + 1)
  const L = headViewLayout({ Tq: 5, Tk: 7, rowH: 10, leftW: 50, rightW: 60, boxW: 4, nBox: 3 });
  const kx = L.lineX1 + 3, qx = 10;
  assert.deepEqual(headViewHit(L, 5, 7, kx, 8 + 69.9), { side: "k", index: 6 });
  assert.equal(headViewHit(L, 5, 7, kx, 8 + 70), null); // row 7: the bottom padding
  assert.equal(headViewHit(L, 5, 7, kx, L.height - 1), null);
  assert.deepEqual(headViewHit(L, 5, 7, qx, 8 + 49.9), { side: "q", index: 4 });
  assert.equal(headViewHit(L, 5, 7, qx, 8 + 50), null);
  assert.equal(headViewHit(L, 5, 7, kx, 7.9), null); // the top padding
  // more queries than keys: the query side's bottom padding
  const M = headViewLayout({ Tq: 7, Tk: 5, rowH: 10, leftW: 50, rightW: 60, boxW: 4, nBox: 3 });
  assert.equal(headViewHit(M, 7, 5, qx, 8 + 70), null);
  assert.equal(headViewHit(M, 7, 5, M.lineX1 + 3, 8 + 50), null);
});

test("grid layout", () => {
  const g = gridLayout({ rows: 12, cols: 12, availWidth: 1200 });
  assert.ok(g.thumb >= 40 && g.thumb <= 120);
  assert.ok(g.width <= 1200);
  assert.deepEqual(g.hit(g.x(3) + 2, g.y(5) + 2), { row: 5, col: 3 });
  assert.equal(g.hit(g.x(3) - 1, g.y(5) + 2), null);
  assert.equal(g.hit(0, 0), null);
  const small = gridLayout({ rows: 2, cols: 64, availWidth: 800 });
  assert.equal(small.thumb, 40); // scrolls rather than shrinking below 40 px
});

test("matrix cell and hit", () => {
  assert.equal(matrixCell(10, 1000, 100, 0), 28);
  assert.equal(matrixCell(512, 1000, 100, 0), 1);
  assert.equal(matrixCell(512, 1000, 100, 6), 6);
  assert.deepEqual(matrixHit(105, 52, 100, 50, 4, 3, 3), { i: 0, j: 1 });
  assert.equal(matrixHit(99, 52, 100, 50, 4, 3, 3), null);
  assert.equal(matrixHit(100 + 12, 52, 100, 50, 4, 3, 3), null);
});

test("max pool", () => {
  const src = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  assert.deepEqual(maxPool(src, 0, 4, 4, 2), { data: new Uint8Array([6, 8, 14, 16]), rows: 2, cols: 2 });
  const p = maxPool(src, 0, 4, 4, 8);
  assert.deepEqual([p.rows, p.cols], [4, 4]);
  const odd = maxPool(new Uint8Array(15).fill(1), 0, 3, 5, 2);
  assert.deepEqual([odd.rows, odd.cols], [2, 2]);
});

test("max pool by magnitude keeps the strongest value of a block with its sign", () => {
  const d = new Float32Array([0.1, -0.9, 0, 0.2, 0.3, 0, 0, -0.1, 0, 0, 0, 0, 0, 0, 0, 0]);
  const p = maxPool(d, 0, 4, 4, 2, true);
  assert.ok(p.data instanceof Float32Array);
  assert.deepEqual(Array.from(p.data, (v) => Math.round(v * 10) / 10), [-0.9, 0.2, 0, 0]);
  // plain max pooling would lose the negative change
  assert.deepEqual(Array.from(maxPool(d, 0, 4, 4, 2).data, (v) => Math.round(v * 10) / 10), [0.3, 0.2, 0, 0]);
});

test("budget: strongest lines first, within the total length", () => {
  // head 0 of W, rows 10 px apart, columns 100 px apart: every line costs
  // max(100, |dy|) = 100 here
  const geo = { gap: 100, rowQ: 10, rowK: 10 };
  const all = budgetCutoff(W, 3, 3, [0], { ...geo, budget: 1e9 });
  assert.deepEqual(all, { cutoff: 1, lines: 5, drawn: 5, cost: 500 });
  // room for two lines: the two 255/254 ones
  const two = budgetCutoff(W, 3, 3, [0], { ...geo, budget: 250 });
  assert.deepEqual(two, { cutoff: 254, lines: 5, drawn: 2, cost: 200 });
  // nothing fits: still the strongest level, so something is drawn
  const one = budgetCutoff(W, 3, 3, [0], { ...geo, budget: 10 });
  assert.equal(one.cutoff, 255);
  assert.equal(one.drawn, 1);
  // long lines cost their vertical extent
  const tall = budgetCutoff(W, 3, 3, [0], { gap: 1, rowQ: 100, rowK: 100, budget: 1e9 });
  assert.equal(tall.cost, 1 + 100 + 1 + 100 + 1);
  // ties at the cutoff are all in or all out
  const h1 = budgetCutoff(W, 3, 3, [1], { ...geo, budget: 250 });
  assert.equal(h1.cutoff, 255);
  assert.equal(h1.drawn, 1);
  // hover narrows the candidates
  const hov = budgetCutoff(W, 3, 3, [0], { ...geo, budget: 1e9, hover: { side: "q", index: 1 } });
  assert.equal(hov.lines, 2);
  // nothing to draw
  assert.equal(budgetCutoff(new Uint8Array(9), 3, 3, [0], { ...geo, budget: 1e9 }).cutoff, 256);
  // and collectEdges with that cutoff returns exactly the counted lines
  const [e] = collectEdges(W, 3, 3, [0], { minByte: two.cutoff });
  assert.equal(e.count, two.drawn);
});

test("edge ranges combine the pair filter and hover", () => {
  assert.deepEqual(edgeRanges(5, 6, {}), [0, 5, 0, 6]);
  assert.deepEqual(edgeRanges(5, 6, { qRange: [2, 5], hover: { side: "q", index: 3 } }), [3, 4, 0, 6]);
  assert.deepEqual(edgeRanges(5, 6, { qRange: [2, 5], hover: { side: "q", index: 0 } }), [2, 1, 0, 6]);
  assert.deepEqual(edgeRanges(5, 6, { kRange: [0, 3], hover: { side: "k", index: 2 } }), [0, 5, 2, 3]);
});

test("band: only lines crossing the visible rows, costed by their visible part", () => {
  // 1 head, 4 x 4, every weight visible; rows 10 px apart (row i at 10 i + 5)
  const all = new Uint8Array(16).fill(200);
  assert.deepEqual(bandKeys(5, null, 10, 0, 4), [0, 4]);
  // band [20, 40]: rows 2 and 3 (y 25, 35) are inside
  assert.deepEqual(bandKeys(5, [20, 40], 10, 0, 4), [2, 4]); // from above: keys reaching down
  assert.deepEqual(bandKeys(25, [20, 40], 10, 0, 4), [0, 4]); // inside: all
  assert.deepEqual(bandKeys(45, [20, 30], 10, 0, 4), [0, 3]); // from below: keys 0..2 (y <= 30 for 0, 1, 2)
  const [e] = collectEdges(all, 4, 4, [0], { band: [20, 40], rowQ: 10, rowK: 10 });
  // queries 0 and 1 reach keys 2, 3; queries 2 and 3 reach every key
  assert.equal(e.count, 2 + 2 + 4 + 4);
  const c = budgetCutoff(all, 4, 4, [0], { budget: 1e9, gap: 1, rowQ: 10, rowK: 10, band: [20, 40] });
  assert.equal(c.lines, 12);
  // query 0 (y 5) -> key 3 (y 35): visible from y 20 to 35 = 15 px (of 30)
  const one = new Uint8Array(16);
  one[3] = 255;
  const v = budgetCutoff(one, 4, 4, [0], { budget: 1e9, gap: 1, rowQ: 10, rowK: 10, band: [20, 40] });
  assert.equal(v.cost, 15);
  // a horizontal line inside the band costs the gap
  const h = new Uint8Array(16);
  h[2 * 4 + 2] = 255;
  assert.equal(budgetCutoff(h, 4, 4, [0], { budget: 1e9, gap: 100, rowQ: 10, rowK: 10, band: [20, 40] }).cost, 100);
  // a line entirely above the band is skipped
  const above = new Uint8Array(16);
  above[0] = 255;
  assert.equal(budgetCutoff(above, 4, 4, [0], { budget: 1e9, gap: 1, rowQ: 10, rowK: 10, band: [20, 40] }).lines, 0);
});

test("skip: lines between two rows of a window are left out, the others kept", () => {
  const all = new Uint8Array(16).fill(200); // 1 head, 4 x 4
  const [e] = collectEdges(all, 4, 4, [0], { skip: [1, 3] });
  assert.equal(e.count, 16 - 4);
  assert.ok(edgesOf(e).every(([q, k]) => !(q >= 1 && q < 3 && k >= 1 && k < 3)));
  const c = budgetCutoff(all, 4, 4, [0], { budget: 1e9, gap: 10, rowQ: 1, rowK: 1, skip: [1, 3] });
  assert.equal(c.lines, 12);
});

test("pickCutoff adds up the costs of several selections", () => {
  const w = new Uint8Array([255, 10, 10, 255]); // 1 head, 2 x 2
  const geo = { gap: 100, rowQ: 10, rowK: 10 };
  const a = lineCosts(w, 2, 2, [0], { ...geo, qRange: [0, 1] });
  const b = lineCosts(w, 2, 2, [0], { ...geo, qRange: [1, 2] });
  assert.deepEqual(pickCutoff([a, b], 1e9), { cutoff: 10, lines: 4, drawn: 4, cost: 400 });
  assert.deepEqual(pickCutoff([a, b], 250), { cutoff: 255, lines: 4, drawn: 2, cost: 200 });
  assert.deepEqual(pickCutoff([], 100), { cutoff: 256, lines: 0, drawn: 0, cost: 0 });
});
