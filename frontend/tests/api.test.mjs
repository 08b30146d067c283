import test from "node:test";
import assert from "node:assert/strict";
import {
  errorMessage, query, Cache, Api, ApiError, isUnreachable, retryDelay, RETRY_FIRST_MS, RETRY_MAX_MS,
} from "../api.js";
import {
  halfToFloat, decodeFloat16, decodeWeights, weightAt, decodeNeurons, neuronScores, parseShape,
} from "../decode.js";

/** float32 -> float16 bits (round to nearest even), reference encoder for tests */
function toHalf(v) {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  let e = ((x >>> 23) & 0xff) - 127 + 15;
  let m = x & 0x7fffff;
  if (((x >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    const shift = 14 - e;
    let hm = m >> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && hm & 1)) hm++;
    return sign | hm;
  }
  let hm = m >> 13;
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && hm & 1)) {
    hm++;
    if (hm === 0x400) { hm = 0; e++; if (e >= 31) return sign | 0x7c00; }
  }
  return sign | (e << 10) | hm;
}

function f16buffer(values) {
  const b = new ArrayBuffer(values.length * 2);
  const dv = new DataView(b);
  values.forEach((v, i) => dv.setUint16(i * 2, toHalf(v), true));
  return b;
}

test("float16 special values", () => {
  assert.equal(halfToFloat(0x0000), 0);
  assert.ok(Object.is(halfToFloat(0x8000), -0));
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), 2 ** -24); // smallest subnormal
  assert.equal(halfToFloat(0x03ff), 1023 * 2 ** -24);
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.equal(halfToFloat(0xfc00), -Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.equal(halfToFloat(0x3555), 0.333251953125);
});

test("decodeFloat16 is little-endian and handles odd offsets", () => {
  const vals = [0, 1, -1.5, 0.1, 1000, 6e-8, -65504, 0.33325];
  const buf = f16buffer(vals);
  const out = decodeFloat16(buf);
  vals.forEach((v, i) => assert.ok(Math.abs(out[i] - v) <= Math.abs(v) * 1e-3 + 6e-8, `${v} -> ${out[i]}`));
  // odd byte offset: goes through DataView
  const shifted = new Uint8Array(buf.byteLength + 1);
  shifted.set(new Uint8Array(buf), 1);
  assert.deepEqual([...decodeFloat16(shifted.buffer, 1, vals.length)], [...out]);
  assert.deepEqual([...decodeFloat16(buf, 2, 2)], [...out.slice(1, 3)]);
});

test("decodeWeights: uint8 as is, float16 to values and bytes", () => {
  const u = decodeWeights(new Uint8Array([0, 128, 255, 1]).buffer, [1, 2, 2], "uint8");
  assert.equal(u.values, null);
  assert.equal(weightAt(u, 2), 1);
  assert.equal(weightAt(u, 1), 128 / 255);
  const f = decodeWeights(f16buffer([0, 0.5, 1, 0.001]), [1, 2, 2], "float16");
  assert.deepEqual([...f.bytes], [0, 128, 255, 0]);
  assert.equal(weightAt(f, 1), 0.5);
  assert.throws(() => decodeWeights(new ArrayBuffer(3), [1, 2, 2], "uint8"), /3 bytes/);
  assert.throws(() => decodeWeights(new ArrayBuffer(4), [1, 2, 2], "float16"), /needs 8/);
  assert.throws(() => decodeWeights(new ArrayBuffer(4), [1, 2, 2], "int8"), /dtype/);
});

test("shape headers", () => {
  assert.deepEqual(parseShape("12,128, 64", 3), [12, 128, 64]);
  assert.throws(() => parseShape("12,128", 3), /bad shape/);
  assert.throws(() => parseShape(null, 3), /no shape/);
  assert.throws(() => parseShape("1,a,2", 3), /bad shape/);
});

function neuronPayload({ Tq, Tk, D, q, k, bias, masked }) {
  const parts = [f16buffer(q), f16buffer(k), new Uint8Array(masked).buffer];
  if (bias) parts.push(f16buffer(bias));
  const total = parts.reduce((a, b) => a + b.byteLength, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) { out.set(new Uint8Array(p), o); o += p.byteLength; }
  return out.buffer;
}

test("neurons decode and reproduce the softmax", () => {
  const Tq = 2, Tk = 3, D = 2;
  const q = [1, 0, 0.5, 2];
  const k = [1, 1, 0, 1, -1, 0.5];
  const bias = [0, 0.5, -0.25, 1, 0, 0];
  const masked = [0, 1, 1, 0, 0, 0]; // causal-like on row 0
  const buf = neuronPayload({ Tq, Tk, D, q, k, bias, masked });
  const n = decodeNeurons(buf, { Tq, Tk, D, scale: 0.5, hasBias: true });
  assert.deepEqual([...n.keys], k);
  assert.deepEqual([...n.masked], masked);
  const r0 = neuronScores(n, 0);
  assert.deepEqual([...r0.softmax], [1, 0, 0]);
  const r1 = neuronScores(n, 1);
  // q1 = [0.5, 2]; dots = [2.5, 2, 0.5]; scaled = [1.25, 1, 0.25]; + bias [1, 0, 0]
  assert.deepEqual([...r1.dot], [2.5, 2, 0.5]);
  assert.deepEqual([...r1.score], [2.25, 1, 0.25]);
  const e = [Math.exp(2.25), Math.exp(1), Math.exp(0.25)];
  const s = e[0] + e[1] + e[2];
  r1.softmax.forEach((v, j) => assert.ok(Math.abs(v - e[j] / s) < 1e-12));
  assert.deepEqual([...r1.prod.slice(0, 2)], [0.5, 2]);
  // without bias
  const nb = decodeNeurons(neuronPayload({ Tq, Tk, D, q, k, masked }), { Tq, Tk, D, scale: 1, hasBias: false });
  assert.equal(nb.bias, null);
  assert.throws(() => decodeNeurons(buf, { Tq, Tk, D, scale: 1, hasBias: false }), /needs/);
});

test("error messages from TensorBoard's text and from JSON", () => {
  assert.equal(errorMessage(404, "Not found: no run 'x'"), "Not found: no run 'x'");
  assert.equal(errorMessage(400, '{"error": {"message": "layer 99 out of range"}}'), "layer 99 out of range");
  assert.equal(errorMessage(400, '{"error": "bad step"}'), "bad step");
  assert.equal(errorMessage(500, ""), "HTTP 500");
  assert.equal(errorMessage(500, "{not json"), "{not json");
});

test("query strings encode user text", () => {
  assert.equal(query({ run: "a b&c", tag: "x/y", step: 0, head: null }), "run=a%20b%26c&tag=x%2Fy&step=0");
});

test("cache: LRU by bytes, shared pending loads, failures not cached", async () => {
  const c = new Cache(10);
  c.set("a", 1, 4);
  c.set("b", 2, 4);
  c.get("a");
  c.set("c", 3, 4); // evicts b (least recently used)
  assert.ok(c.has("a") && c.has("c") && !c.has("b"));
  let loads = 0;
  const load = async () => { loads++; return { value: "v", size: 1 }; };
  const [x, y] = await Promise.all([c.through("k", load), c.through("k", load)]);
  assert.equal(x, "v"); assert.equal(y, "v"); assert.equal(loads, 1);
  await c.through("k", load);
  assert.equal(loads, 1);
  await assert.rejects(c.through("bad", async () => { throw new Error("boom"); }), /boom/);
  assert.equal(c.has("bad"), false);
});

function fakeResponse(status, body, headers = {}) {
  const h = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    ok: status >= 200 && status < 300, status,
    headers: { get: (k) => (h.has(k.toLowerCase()) ? h.get(k.toLowerCase()) : null) },
    text: async () => (typeof body === "string" ? body : ""),
    json: async () => JSON.parse(body),
    arrayBuffer: async () => body,
  };
}

test("Api decodes routes and caches per URL", async () => {
  const calls = [];
  const fetchFn = async (url) => {
    calls.push(url);
    if (url.includes("attention?")) return fakeResponse(200, new Uint8Array([1, 2, 3, 4]).buffer, { "X-Attention-Shape": "1,2,2", "X-Attention-Dtype": "uint8" });
    if (url.includes("overview?")) return fakeResponse(200, new Uint8Array(8).buffer, { "X-Attention-Shape": "2,1,2,2", "X-Attention-Dtype": "uint8", "X-Overview-Pool": "4,4" });
    if (url.endsWith("tags")) return fakeResponse(200, '{"runs": []}');
    return fakeResponse(404, "Not found: unknown run 'nope'");
  };
  const api = new Api("/data/plugin/attention/", fetchFn);
  const w = await api.attention("r", "t", 5, "self", 0);
  assert.deepEqual(w.shape, [1, 2, 2]);
  await api.attention("r", "t", 5, "self", 0);
  assert.equal(calls.length, 1);
  assert.equal(calls[0], "/data/plugin/attention/attention?run=r&tag=t&step=5&kind=self&layer=0");
  const o = await api.overview("r", "t", 5, "self");
  assert.deepEqual(o.pool, [4, 4]);
  assert.deepEqual(await api.tags(), { runs: [] });
  await assert.rejects(api.header("nope", "t", 1), (e) => e instanceof ApiError && e.status === 404 && /unknown run/.test(e.message));
});

test("unreachable (no answer, 502/503/504) is told apart from a real error answer", () => {
  assert.ok(isUnreachable(new ApiError(0, "could not reach TensorBoard", "/x")));
  for (const s of [502, 503, 504]) assert.ok(isUnreachable(new ApiError(s, "Bad Gateway", "/x")), s);
  for (const s of [400, 404, 500]) assert.ok(!isUnreachable(new ApiError(s, "no", "/x")), s);
  assert.ok(!isUnreachable(new Error("decode failed")));
});

test("retry delays: 0.5 s doubling to 5 s", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 60].map(retryDelay), [500, 1000, 2000, 4000, 5000, 5000, 5000]);
  assert.equal(RETRY_FIRST_MS, 500);
  assert.equal(RETRY_MAX_MS, 5000);
});

test("reconnect polls tags with backoff until TensorBoard answers", async () => {
  let n = 0;
  const fetchFn = async () => {
    n++;
    if (n === 1) throw new TypeError("Failed to fetch");
    if (n === 2) return fakeResponse(503, "Service Unavailable");
    return fakeResponse(200, '{"runs": [{"run": "r", "tags": []}]}');
  };
  const api = new Api("/p/", fetchFn);
  const waits = [];
  const errors = [];
  const tags = await api.reconnect({
    wait: async (ms) => { waits.push(ms); },
    onRetry: (attempt, delay, err) => errors.push(err && err.status),
  });
  assert.deepEqual(tags, { runs: [{ run: "r", tags: [] }] });
  assert.deepEqual(waits, [500, 1000, 2000]);
  assert.deepEqual(errors, [null, 0, 503]);
});

test("reconnect stops on a real error answer and when cancelled", async () => {
  const api = new Api("/p/", async () => fakeResponse(404, "Not found: plugin inactive"));
  await assert.rejects(api.reconnect({ wait: async () => {} }), (e) => e instanceof ApiError && e.status === 404);
  let calls = 0;
  const down = new Api("/p/", async () => { calls++; throw new TypeError("Failed to fetch"); });
  let stop = false;
  const p = down.reconnect({ wait: async () => { if (calls === 3) stop = true; }, cancelled: () => stop });
  assert.equal(await p, null);
  assert.equal(calls, 3);
});

test("steps beyond 2**53 go to the server exactly", () => {
  assert.equal(String(2 ** 62), "4611686018427388000"); // why query() does not use String()
  assert.equal(query({ step: 2 ** 62 }), "step=4611686018427387904");
  assert.equal(query({ step: 0, layer: 3 }), "step=0&layer=3");
});

test("after a reconnect, requests skip the browser's HTTP cache", async () => {
  const opts = [];
  const api = new Api("/p/", async (url, o) => { opts.push(o); return fakeResponse(200, '{"kinds": []}'); });
  await api.header("r", "t", 1);
  api.revalidate = true;
  await api.header("r", "t", 2);
  assert.deepEqual(opts, [{ credentials: "same-origin" }, { credentials: "same-origin", cache: "no-cache" }]);
});

test("steps: one probe's step list, asked for every time (never from a cache)", async () => {
  const seen = [];
  const api = new Api("/p/", async (url, o) => {
    seen.push([url, o.cache]);
    return fakeResponse(200, '{"run": "a b", "tag": "t/1", "steps": [0, 5], "kept": 2, "written": 2}');
  });
  const first = await api.steps("a b", "t/1");
  assert.deepEqual(first.steps, [0, 5]);
  await api.steps("a b", "t/1");
  // new steps arrive on TensorBoard's reload: neither our cache nor the browser's
  assert.deepEqual(seen, [["/p/steps?run=a%20b&tag=t%2F1", "no-store"], ["/p/steps?run=a%20b&tag=t%2F1", "no-store"]]);
});

test("compare: one route for both steps, cached; a structure mismatch is its 400's message", async () => {
  const seen = [];
  const api = new Api("/p/", async (url) => {
    seen.push(url);
    if (url.includes("run_b=other")) return fakeResponse(400, '{"error": {"message": "A stores layers [0, 1], B stores layers [0]"}}');
    return fakeResponse(200, '{"jsd": [[0.5]], "tokens": {"match": true, "message": null}}');
  });
  const a = { run: "r", step: 1 };
  const got = await api.compare("t/1", "self", a, { run: "r", step: 2 });
  assert.deepEqual(got.jsd, [[0.5]]);
  await api.compare("t/1", "self", a, { run: "r", step: 2 });
  assert.deepEqual(seen, ["/p/compare?tag=t%2F1&kind=self&run_a=r&step_a=1&run_b=r&step_b=2"]);
  await assert.rejects(api.compare("t/1", "self", a, { run: "other", step: 2 }),
    (e) => e instanceof ApiError && e.status === 400 && e.message === "A stores layers [0, 1], B stores layers [0]");
  // B of another probe, and the verdict alone
  await api.compare("t/1", "self", a, { run: "r", step: 2, tag: "t/2" }, true);
  assert.equal(seen[seen.length - 1], "/p/compare?tag=t%2F1&kind=self&run_a=r&step_a=1&run_b=r&step_b=2&tag_b=t%2F2&verdict=1");
  // B of A's probe: the same URL as without (cached)
  const n = seen.length;
  await api.compare("t/1", "self", a, { run: "r", step: 2, tag: "t/1" });
  assert.equal(seen.length, n);
});

test("step URLs carry the version the steps answer listed: a step logged again is another URL", async () => {
  let versions = [11, 22];
  const seen = [];
  const api = new Api("/p/", async (url) => {
    seen.push(url);
    if (url.startsWith("/p/steps?")) return fakeResponse(200, JSON.stringify({ steps: [0, 5], versions }));
    if (/^\/p\/(header|compare)\?/.test(url)) return fakeResponse(200, JSON.stringify({ url }));
    return fakeResponse(200, new Uint8Array(4).buffer, { "X-Attention-Shape": "1,2,2", "X-Attention-Dtype": "uint8", "X-Overview-Pool": "1,1" });
  });
  // not listed yet: no version, and the server answers such URLs uncached
  assert.equal((await api.header("r", "t", 5)).url, "/p/header?run=r&tag=t&step=5");
  await api.steps("r", "t");
  assert.equal((await api.header("r", "t", 5)).url, "/p/header?run=r&tag=t&step=5&v=22");
  await api.attention("r", "t", 0, "self", 1);
  assert.equal(seen.at(-1), "/p/attention?run=r&tag=t&step=0&kind=self&layer=1&v=11");
  versions = [11, 33]; // step 5 logged again: the next listing names it anew
  await api.steps("r", "t");
  assert.equal((await api.header("r", "t", 5)).url, "/p/header?run=r&tag=t&step=5&v=33");
  await api.compare("t", "self", { run: "r", step: 0 }, { run: "r", step: 5 });
  assert.equal(seen.at(-1), "/p/compare?tag=t&kind=self&run_a=r&step_a=0&run_b=r&step_b=5&v_a=11&v_b=33");
});

test("a compare whose B is another probe carries the version of B's probe's step", async () => {
  const seen = [];
  const api = new Api("/p/", async (url) => {
    seen.push(url);
    if (url.startsWith("/p/steps?run=r&tag=a")) return fakeResponse(200, JSON.stringify({ steps: [0, 5], versions: [11, 22] }));
    if (url.startsWith("/p/steps?run=q&tag=b")) return fakeResponse(200, JSON.stringify({ steps: [5], versions: [77] }));
    return fakeResponse(200, JSON.stringify({ url }));
  });
  await api.steps("r", "a");
  await api.steps("q", "b");
  await api.compare("a", "self", { run: "r", step: 0 }, { run: "q", step: 5, tag: "b" }, true);
  assert.equal(seen.at(-1), "/p/compare?tag=a&kind=self&run_a=r&step_a=0&run_b=q&step_b=5&v_a=11&v_b=77&tag_b=b&verdict=1");
});
