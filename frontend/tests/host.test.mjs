// The host seam: views built against a host made of in-memory data (no
// TensorBoard, no HTTP, no URL), drawing into a recording fake of the DOM and
// the canvas 2D context. What a notebook or standalone page would do.
import test from "node:test";
import assert from "node:assert/strict";

// -- a recording fake of the DOM and the canvas -------------------------------

/** A 2D context that records its calls (with the fill and stroke colours at the time). */
function fakeContext(canvas) {
  const ops = [];
  const state = {
    canvas, ops, fillStyle: "", strokeStyle: "", globalAlpha: 1, font: "10px x",
    measureText: (t) => ({ width: [...t].length * 6 }),
    createImageData: (w, h) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4) }),
  };
  return new Proxy(state, {
    get: (target, key) => (key in target ? target[key] : (...args) => ops.push({ op: key, args, fill: target.fillStyle, stroke: target.strokeStyle })),
  });
}

class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.attributes = {};
    this.dataset = {};
    this.listeners = {};
    this.style = { setProperty: (k, v) => { this.style[k] = v; } };
    this.textContent = "";
    this.hidden = false;
    this.parentNode = null;
    this.width = 300;
    this.height = 150;
    this.clientWidth = 1000;
    this.clientHeight = 600;
    this.scrollTop = 0;
    this.scrollLeft = 0;
  }
  setAttribute(k, v) { this.attributes[k] = String(v); }
  getAttribute(k) { return k in this.attributes ? this.attributes[k] : null; }
  removeAttribute(k) { delete this.attributes[k]; }
  appendChild(c) { this.children.push(c); c.parentNode = this; return c; }
  append(...cs) { for (const c of cs) if (typeof c !== "string") this.appendChild(c); }
  removeChild(c) { this.children = this.children.filter((x) => x !== c); }
  get firstChild() { return this.children[0] || null; }
  get options() { return this.children; }
  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
  dispatch(type, event) { for (const fn of this.listeners[type] || []) fn(event); }
  setCustomValidity() {}
  matches() { return false; }
  getBoundingClientRect() {
    const w = parseFloat(this.style.width) || this.width;
    const h = parseFloat(this.style.height) || this.height;
    return { left: 0, top: 0, width: w, height: h };
  }
  getContext() {
    this.context ||= fakeContext(this);
    return this.context;
  }
}

globalThis.document = {
  createElement: (tag) => new FakeElement(tag),
  createTextNode: (text) => ({ text }),
  activeElement: null,
};
const frames = [];
globalThis.requestAnimationFrame = (fn) => frames.push(fn);
globalThis.fetch = () => {
  throw new Error("a view fetched over HTTP");
};

const { MemoryData } = await import("../memory.js");
const { Catalogue } = await import("../catalogue.js");
const { resolveContext } = await import("../host.js");
const { defaultState } = await import("../state.js");
const { labelCache } = await import("../tokens.js");
const { THEMES, css, headColor, lutToUint32, seqLut } = await import("../colors.js");
const { loadView } = await import("../views/registry.js");

// -- in-memory data: one step, one planted edge -------------------------------

const TOKENS = ["<s>", "the", "cat", "sat", "on", "the", "mat", "."];
const T = TOKENS.length;
const L = 2;
const H = 3;

/** Every token attends to itself; layer 0 head 0 query 2 attends to key 5 only. */
function attention() {
  const a = new Uint8Array(L * H * T * T);
  for (let m = 0; m < L * H; m++) for (let i = 0; i < T; i++) a[m * T * T + i * T + i] = 255;
  a[2 * T + 2] = 0;
  a[2 * T + 5] = 255;
  return a;
}

const HEADER = {
  step: 7, wall_time: 0, sequence: 0, model_type: "toy",
  kinds: [{ name: "self", query_tokens: TOKENS, key_tokens: TOKENS, num_heads: H, layer_ids: [0, 1],
    query_segment_b: 0, key_segment_b: 0, causal: false, dtype: "uint8", has_neurons: false }],
};

/** A host as a notebook would make it: data in memory, state in a variable. */
function memoryHost(state) {
  const data = new MemoryData([{ run: "nb", tag: "probe", step: 7, header: HEADER, attention: { self: attention() } }]);
  const host = {
    data, catalogue: new Catalogue(data), labels: labelCache(), drawnCount: 0,
    state: () => state, setState: (patch) => Object.assign(state, patch), drawn: () => host.drawnCount++,
  };
  return host;
}

async function show(name, patch) {
  const state = { ...defaultState(), view: name, ...patch };
  const host = memoryHost(state);
  host.catalogue.set(await host.data.tags());
  const ctx = await resolveContext(host, state, { theme: THEMES.light });
  const View = await loadView(name);
  const view = new View(host);
  await view.show(ctx);
  return { view, host, ctx };
}

const segments = (ops) => {
  const out = [];
  for (let i = 0; i + 1 < ops.length; i++) {
    if (ops[i].op === "moveTo" && ops[i + 1].op === "lineTo") out.push({ from: ops[i].args, to: ops[i + 1].args });
  }
  return out;
};

test("the head view draws a planted edge from in-memory data", async () => {
  const { view, ctx } = await show("head", {});
  assert.equal(ctx.state.run, "nb");
  assert.equal(ctx.state.step, 7);
  assert.equal(ctx.state.layer, 0);
  const geo = JSON.parse(view.canvas.dataset.geometry);
  const y = (i) => geo.top + (i + 0.5) * geo.rowH;
  const ops = view.canvas.context.ops;
  const lines = segments(ops);
  const has = (q, k) => lines.some((s) => s.from[0] === geo.lineX0 && s.from[1] === y(q) && s.to[0] === geo.lineX1 && s.to[1] === y(k));
  const count = (q, k) => lines.filter((s) => s.from[1] === y(q) && s.to[1] === y(k)).length;
  assert.ok(has(2, 5), "no line from 'cat' to the second 'the'");
  assert.equal(count(2, 5), 1);
  assert.equal(count(2, 2), H - 1); // head 0's query 2 attends elsewhere
  assert.equal(count(4, 4), H);
  // head 0's line is stroked in head 0's colour
  const strokes = ops.filter((o) => o.op === "stroke").map((o) => o.stroke);
  assert.ok(strokes.includes(css(headColor(0))));
  // T lines a head: T - 1 identity lines and the planted one in head 0
  assert.ok(view.detail().startsWith(`edges=${H * T};candidates=${H * T};`), view.detail());
  // the token labels are text on the canvas
  const texts = ops.filter((o) => o.op === "fillText").map((o) => o.args[0]);
  for (const t of ["cat", "mat"]) assert.ok(texts.includes(t), t);
});

test("hovering a token redraws only its lines and tells the host", async () => {
  const { view, host } = await show("head", {});
  const geo = JSON.parse(view.canvas.dataset.geometry);
  view.canvas.context.ops.length = 0;
  view.canvas.dispatch("mousemove", { clientX: geo.leftTextX - 4, clientY: geo.top + 2.5 * geo.rowH });
  assert.equal(frames.length, 1);
  frames.shift()();
  assert.deepEqual(view.hoverNow(), { side: "q", index: 2 });
  assert.equal(host.drawnCount, 1);
  // a 2-px line is two hairlines, the second a pixel lower: count the first
  const onRow = (y) => Number.isInteger((y - geo.top) / geo.rowH - 0.5);
  const lines = segments(view.canvas.context.ops).filter((s) => onRow(s.from[1]));
  assert.equal(lines.length, H); // query 2's line in each head: to 5 in head 0, to itself in the others
  assert.ok(view.detail().startsWith(`edges=${H};candidates=${H};`), view.detail());
  // a click pins it: the host's state
  view.canvas.dispatch("click", { clientX: geo.leftTextX - 4, clientY: geo.top + 2.5 * geo.rowH });
  assert.deepEqual(host.state().hover, { side: "q", index: 2 });
});

test("the matrix view draws one head's cells from in-memory data", async () => {
  const { view } = await show("matrix", { layer: 0, head: 0 });
  const tile = view.tile.context.ops.find((o) => o.op === "putImageData").args[0];
  const lut = lutToUint32(seqLut(THEMES.light));
  const px = new Uint32Array(tile.data.buffer);
  const at = (i, j) => px[i * tile.width + j];
  assert.deepEqual([tile.width, tile.height], [T, T]);
  assert.equal(at(2, 5), lut[255]);
  assert.equal(at(2, 2), lut[0]);
  assert.equal(at(3, 3), lut[255]);
  // the tile is scaled up to the cells, beside the label gutters
  const geo = JSON.parse(view.canvas.dataset.geometry);
  const draw = view.canvas.context.ops.find((o) => o.op === "drawImage");
  assert.deepEqual(draw.args.slice(1), [geo.ox, geo.oy, T * geo.cell, T * geo.cell]);
  assert.ok(geo.ox > 4, "labels beside the rows");
});

test("aggregates over heads: the matrix view of every layer's mean and max, the head view's layer mean", async () => {
  const lut = lutToUint32(seqLut(THEMES.light));
  const tileAt = async (agg) => {
    const { view } = await show("matrix", { layer: 0, head: 0, agg });
    const tile = view.tile.context.ops.find((o) => o.op === "putImageData").args[0];
    const px = new Uint32Array(tile.data.buffer);
    return (i, j) => px[i * tile.width + j];
  };
  // 6 maps (2 layers x 3 heads): key 5 of query 2 is 255 in one, key 2 in the other five
  const mean = await tileAt("mean-all");
  assert.equal(mean(2, 5), lut[Math.floor((2 * 255 + 6) / 12)]);
  assert.equal(mean(2, 2), lut[Math.floor((2 * 5 * 255 + 6) / 12)]);
  const max = await tileAt("max-all");
  assert.equal(max(2, 5), lut[255]);
  assert.equal(max(2, 2), lut[255]);
  // the head view draws one map, the layer's mean, in the text's colour: one line a query
  const { view } = await show("head", { agg: "mean" });
  const strokes = view.canvas.context.ops.filter((o) => o.op === "stroke").map((o) => o.stroke);
  assert.ok(strokes.length > 0 && strokes.every((c) => c === THEMES.light.text), strokes.join());
  assert.ok(view.detail().startsWith(`edges=${T + 1};candidates=${T + 1};`), view.detail()); // query 2 has two
});

test("the model view draws every layer and head from the in-memory overview", async () => {
  const { view } = await show("model", {});
  assert.equal(view.detail(), `mode=lines;lines=${L * H * T}`);
  const geo = JSON.parse(view.canvas.dataset.geometry);
  assert.deepEqual([geo.rows, geo.cols], [L, H]);
  const lines = segments(view.canvas.context.ops);
  assert.equal(lines.length, L * H * T); // every line of every thumbnail fits the budget
});

test("in-memory data answers like the routes: 404s, and pooled overviews", async () => {
  const host = memoryHost(defaultState());
  await assert.rejects(host.data.attention("nb", "probe", 7, "self", 5), (e) => e.status === 404);
  await assert.rejects(host.data.neurons("nb", "probe", 7, "self", 0, 0), (e) => e.status === 404 && /query\/key vectors/.test(e.message));
  await assert.rejects(host.data.header("nb", "probe", 8), (e) => e.status === 404);
  const steps = await host.data.steps("nb", "probe");
  assert.deepEqual([steps.steps, steps.kept, steps.kinds[0].query_len], [[7], 1, T]);
  const o = await host.data.overview("nb", "probe", 7, "self", 4);
  assert.deepEqual([o.shape, o.pool], [[L, H, 4, 4], [2, 2]]);
  assert.equal(o.bytes[1 * 4 + 2], 255); // layer 0 head 0: query 2 -> key 5 is in cell (1, 2)
});
