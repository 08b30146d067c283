// The neuron view's layout (draw/neuron.js): the result columns fit the width.
import test from "node:test";
import assert from "node:assert/strict";
import { neuronLayout } from "../draw/neuron.js";

const measure = { font: "", measureText: (t) => ({ width: [...t].length * 7 }) };
const labels = (T, text = "token") => ({ q: Array(T).fill(text), k: Array(T).fill(text) });

test("at 800 px the scores and the softmax fit, the vectors shrinking down to a quarter pixel a dimension", () => {
  for (const D of [8, 64, 128]) {
    for (const hasBias of [false, true]) {
      const n = { Tq: 12, Tk: 12, D, hasBias };
      const g = neuronLayout(measure, n, labels(12, "a-long-token-label-x"), { zoom: 0, avail: 800, lines: false });
      assert.ok(g.width <= 800, `D=${D} bias=${hasBias}: ${g.width} px`);
      assert.ok(g.x.soft + g.softW <= 800);
      assert.ok(g.cw >= 0.25 && g.cw <= 8, String(g.cw));
      assert.ok(g.x.qv < g.x.k && g.x.k < g.x.kv && g.x.kv < g.x.prod && g.x.prod < g.x.dot, JSON.stringify(g.x));
    }
  }
  // wide screens: 8 px a dimension at most
  const wide = neuronLayout(measure, { Tq: 4, Tk: 4, D: 16, hasBias: false }, labels(4), { zoom: 0, avail: 3000, lines: false });
  assert.equal(wide.cw, 8);
});

test("the collapsed form has no vector columns, and lines between the token columns", () => {
  const g = neuronLayout(measure, { Tq: 5, Tk: 7, D: 64, hasBias: false }, labels(7), { zoom: 0, avail: 900, lines: true });
  assert.equal(g.lines, true);
  assert.ok(!("qv" in g.x) && !("kv" in g.x));
  assert.ok(g.x.lines0 < g.x.lines1 && g.x.lines1 < g.x.k && g.x.k < g.x.soft);
});
