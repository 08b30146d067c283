// Talking to the plugin's routes (docs/routes.md) and decoding their binary
// answers. The decoders are pure and tested in node; `Api` adds fetch and a
// cache of decoded arrays (responses for a step never change, so a decoded
// layer is kept and reused until the cache's byte budget pushes it out).

import { intText } from "./state.js";

/** Largest side of the model view's max-pooled maps (the `overview` route's size). */
export const OVERVIEW_SIZE = 64;

/** @type {Float32Array | null} */
let HALF_TABLE = null;

/** float16 bit pattern -> float32, for all 65536 patterns. */
export function halfTable() {
  if (HALF_TABLE) return HALF_TABLE;
  HALF_TABLE = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) HALF_TABLE[h] = halfToFloat(h);
  return HALF_TABLE;
}

/** One IEEE 754 half (as its 16 bits) to a number. */
export function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * Math.pow(2, -24); // zero and subnormals
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * Math.pow(2, e - 15);
}

/**
 * Decode little-endian float16 values.
 * @param {ArrayBuffer} buffer
 * @param {number} [byteOffset]
 * @param {number} [count] number of values (default: to the end)
 * @returns {Float32Array}
 */
export function decodeFloat16(buffer, byteOffset = 0, count) {
  const n = count === undefined ? Math.floor((buffer.byteLength - byteOffset) / 2) : count;
  const table = halfTable();
  const out = new Float32Array(n);
  if (byteOffset % 2 === 0 && littleEndianHost()) {
    const u16 = new Uint16Array(buffer, byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = table[u16[i]];
  } else {
    const dv = new DataView(buffer, byteOffset, n * 2);
    for (let i = 0; i < n; i++) out[i] = table[dv.getUint16(i * 2, true)];
  }
  return out;
}

let LE = null;
function littleEndianHost() {
  if (LE === null) LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  return LE;
}

/**
 * Parse a shape header ("12,128,128").
 * @param {string | null} text
 * @param {number} rank
 * @returns {number[]}
 */
export function parseShape(text, rank) {
  if (text === null || text === undefined) throw new Error("response has no shape header");
  const parts = String(text)
    .split(",")
    .map((s) => s.trim());
  if (parts.length !== rank || parts.some((p) => !/^\d+$/.test(p))) {
    throw new Error(`bad shape header "${text}" (expected ${rank} integers)`);
  }
  return parts.map(Number);
}

/**
 * @typedef {{
 *   shape: number[],          // [H, Tq, Tk] or [L, H, Sq, Sk]
 *   dtype: "uint8" | "float16",
 *   bytes: Uint8Array,        // weight * 255, rounded: what the canvas draws
 *   values: Float32Array | null, // exact weights for float16 data
 * }} Weights
 */

/**
 * Decode an attention (or overview) payload.
 * @param {ArrayBuffer} buffer
 * @param {number[]} shape
 * @param {string} dtype  uint8 | float16
 * @returns {Weights}
 */
export function decodeWeights(buffer, shape, dtype) {
  const n = shape.reduce((a, b) => a * b, 1);
  if (dtype === "uint8") {
    if (buffer.byteLength !== n) {
      throw new Error(`attention payload has ${buffer.byteLength} bytes, shape ${shape.join("x")} needs ${n}`);
    }
    return { shape, dtype: "uint8", bytes: new Uint8Array(buffer), values: null };
  }
  if (dtype === "float16") {
    if (buffer.byteLength !== 2 * n) {
      throw new Error(`attention payload has ${buffer.byteLength} bytes, shape ${shape.join("x")} needs ${2 * n}`);
    }
    const values = decodeFloat16(buffer, 0, n);
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      bytes[i] = v <= 0 || !(v === v) ? 0 : v >= 1 ? 255 : Math.round(v * 255);
    }
    return { shape, dtype: "float16", bytes, values };
  }
  throw new Error(`unknown attention dtype "${dtype}"`);
}

/** Weight at a flat index (exact for float16, byte/255 for uint8). */
export function weightAt(w, index) {
  return w.values ? w.values[index] : w.bytes[index] / 255;
}

/**
 * @typedef {{
 *   Tq: number, Tk: number, D: number, scale: number, hasBias: boolean,
 *   queries: Float32Array, keys: Float32Array,
 *   bias: Float32Array | null, masked: Uint8Array,
 * }} Neurons
 */

/**
 * Decode a `neurons` payload, in the order the step stores them: queries f16
 * [Tq,D], keys f16 [Tk,D], masked u8 [Tq,Tk], bias f16 [Tq,Tk] (when hasBias).
 * @param {ArrayBuffer} buffer
 * @param {{Tq: number, Tk: number, D: number, scale: number, hasBias: boolean}} meta
 * @returns {Neurons}
 */
export function decodeNeurons(buffer, meta) {
  const { Tq, Tk, D, scale, hasBias } = meta;
  const need = 2 * Tq * D + 2 * Tk * D + (hasBias ? 2 * Tq * Tk : 0) + Tq * Tk;
  if (buffer.byteLength !== need) {
    throw new Error(`neurons payload has ${buffer.byteLength} bytes, Tq=${Tq} Tk=${Tk} D=${D} bias=${hasBias ? 1 : 0} needs ${need}`);
  }
  let off = 0;
  const queries = decodeFloat16(buffer, off, Tq * D);
  off += 2 * Tq * D;
  const keys = decodeFloat16(buffer, off, Tk * D);
  off += 2 * Tk * D;
  const masked = new Uint8Array(buffer, off, Tq * Tk);
  off += Tq * Tk;
  // decodeFloat16 reads an odd offset (after an odd-sized mask) through a DataView
  const bias = hasBias ? decodeFloat16(buffer, off, Tq * Tk) : null;
  return { Tq, Tk, D, scale, hasBias, queries, keys, bias, masked };
}

/**
 * The neuron view's numbers for one query token: q x k per dimension,
 * q . k, scaled, plus bias, masked, softmax.
 * @param {Neurons} n
 * @param {number} qi
 */
export function neuronScores(n, qi) {
  const { Tk, D, scale } = n;
  const q = n.queries.subarray(qi * D, (qi + 1) * D);
  const prod = new Float32Array(Tk * D);
  const dot = new Float64Array(Tk);
  const scaled = new Float64Array(Tk);
  const score = new Float64Array(Tk);
  const masked = new Uint8Array(Tk);
  const softmax = new Float64Array(Tk);
  let max = -Infinity;
  for (let j = 0; j < Tk; j++) {
    let s = 0;
    for (let d = 0; d < D; d++) {
      const p = q[d] * n.keys[j * D + d];
      prod[j * D + d] = p;
      s += p;
    }
    dot[j] = s;
    scaled[j] = s * scale;
    score[j] = scaled[j] + (n.bias ? n.bias[qi * Tk + j] : 0);
    masked[j] = n.masked[qi * Tk + j];
    if (!masked[j] && score[j] > max) max = score[j];
  }
  let sum = 0;
  for (let j = 0; j < Tk; j++) {
    softmax[j] = masked[j] || max === -Infinity ? 0 : Math.exp(score[j] - max);
    sum += softmax[j];
  }
  if (sum > 0) for (let j = 0; j < Tk; j++) softmax[j] /= sum;
  return { q, prod, dot, scaled, score, masked, softmax };
}

/**
 * The message of a failed response: TensorBoard answers errors as text/plain
 * ("Not found: ..."); routes may also answer JSON {"error": {"message"}} or
 * {"error": "..."}.
 * @param {number} status
 * @param {string} body
 */
export function errorMessage(status, body) {
  const text = (body || "").trim();
  if (text.startsWith("{")) {
    try {
      const j = JSON.parse(text);
      const e = j && j.error;
      if (e && typeof e === "object" && typeof e.message === "string") return e.message;
      if (typeof e === "string") return e;
      if (typeof j.message === "string") return j.message;
    } catch (err) {
      // not JSON after all: fall through to the raw text
    }
  }
  if (text) return text.length > 2000 ? text.slice(0, 2000) + "\u2026" : text;
  return `HTTP ${status}`;
}

/** Query string of route parameters (skipping null / undefined). */
export function query(params) {
  const parts = [];
  for (const k of Object.keys(params)) {
    const v = params[k];
    if (v === null || v === undefined) continue;
    parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(typeof v === "number" ? intText(v) : String(v)));
  }
  return parts.join("&");
}

/** An error from the backend, with its HTTP status and message. */
export class ApiError extends Error {
  constructor(status, message, url) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.url = url;
  }
}

// Answers that mean "TensorBoard is not there" rather than "TensorBoard said
// no": a failed fetch (connection refused while it restarts; status 0) and
// what a proxy in front of it answers when it is down or slow.
const UNREACHABLE_STATUS = new Set([0, 502, 503, 504]);

/** Whether an error means the server is unreachable (worth retrying), not a real answer. */
export function isUnreachable(e) {
  return e instanceof ApiError && UNREACHABLE_STATUS.has(e.status);
}

export const RETRY_FIRST_MS = 500;
export const RETRY_MAX_MS = 5000;

/** Wait before reconnection attempt `attempt` (0, 1, ...): 0.5 s doubling to 5 s. */
export function retryDelay(attempt) {
  return Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * Math.pow(2, Math.min(attempt, 16)));
}

/**
 * A cache of decoded responses by URL with a byte budget; least recently
 * used entries go first. Concurrent requests for one URL share one fetch.
 */
export class Cache {
  constructor(budget = 384 * 1024 * 1024) {
    this.budget = budget;
    this.size = 0;
    /** @type {Map<string, {value: any, size: number}>} */
    this.map = new Map();
    /** @type {Map<string, Promise<any>>} */
    this.pending = new Map();
  }
  get(key) {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }
  has(key) {
    return this.map.has(key);
  }
  set(key, value, size) {
    if (this.map.has(key)) {
      this.size -= this.map.get(key).size;
      this.map.delete(key);
    }
    this.map.set(key, { value, size });
    this.size += size;
    for (const [k, e] of this.map) {
      if (this.size <= this.budget || this.map.size <= 1) break;
      this.map.delete(k);
      this.size -= e.size;
    }
  }
  /**
   * The cached value of `key`, or the result of `load()` (shared by
   * concurrent callers; failures are not cached).
   * @param {string} key
   * @param {() => Promise<{value: any, size: number}>} load
   */
  async through(key, load) {
    if (this.map.has(key)) return this.get(key);
    if (this.pending.has(key)) return this.pending.get(key);
    const p = load().then(
      ({ value, size }) => {
        this.pending.delete(key);
        this.set(key, value, size);
        return value;
      },
      (err) => {
        this.pending.delete(key);
        throw err;
      },
    );
    this.pending.set(key, p);
    return p;
  }
  clear() {
    this.map.clear();
    this.pending.clear();
    this.size = 0;
  }
}

/**
 * Client of the plugin's routes.
 */
export class Api {
  /**
   * @param {string} base URL of the plugin's data routes, ending in '/'
   * @param {typeof fetch} [fetchFn]
   */
  constructor(base, fetchFn) {
    this.base = base;
    this.fetch = fetchFn || ((...a) => fetch(...a));
    this.cache = new Cache();
    // Step responses are sent as immutable, so the browser's HTTP cache keeps
    // them by URL; a TensorBoard restarted on rewritten logs answers the same
    // URLs differently. After a reconnect, ask the server every time.
    this.revalidate = false;
  }

  url(route, params) {
    const q = params ? query(params) : "";
    return this.base + route + (q ? "?" + q : "");
  }

  async request(url, init = {}) {
    let res;
    try {
      res = await this.fetch(url, { credentials: "same-origin", ...(this.revalidate ? { cache: "no-cache" } : {}), ...init });
    } catch (e) {
      throw new ApiError(0, `could not reach TensorBoard (${e && e.message ? e.message : e})`, url);
    }
    if (!res.ok) {
      let body = "";
      try {
        body = await res.text();
      } catch (e) {
        body = "";
      }
      throw new ApiError(res.status, errorMessage(res.status, body), url);
    }
    return res;
  }

  /**
   * Poll the `tags` route with backoff (retryDelay) until TensorBoard answers
   * again; resolves with its answer, or null when cancelled. A real error
   * answer (4xx, 500) rejects: retrying would not change it.
   * @param {{
   *   wait: (ms: number) => Promise<void>,
   *   cancelled?: () => boolean,
   *   onRetry?: (attempt: number, delayMs: number, error: ApiError | null) => void,
   * }} opts
   */
  async reconnect({ wait, cancelled = () => false, onRetry = () => {} }) {
    let last = null;
    for (let attempt = 0; ; attempt++) {
      const delay = retryDelay(attempt);
      onRetry(attempt, delay, last);
      await wait(delay);
      if (cancelled()) return null;
      try {
        const tags = await this.tags();
        return cancelled() ? null : tags;
      } catch (e) {
        if (!isUnreachable(e)) throw e;
        last = e;
      }
    }
  }

  /** The `tags` route (runs and their probes, no steps); never cached. */
  async tags() {
    const res = await this.request(this.url("tags"));
    return res.json();
  }

  /**
   * The kept steps of one probe of one run and what its newest readable step
   * holds (the `steps` route). Never cached, not even by the browser: new
   * steps appear on TensorBoard's reload.
   */
  async steps(run, tag) {
    const res = await this.request(this.url("steps", { run, tag }), { cache: "no-store" });
    return res.json();
  }

  /**
   * Per-head statistics of every kept step of a tag (the `stats` route).
   * Never cached, not even by the browser: the answer grows as steps arrive.
   */
  async stats(run, tag, kind) {
    const res = await this.request(this.url("stats", { run, tag, kind }), { cache: "no-store" });
    return res.json();
  }

  /** A step's header (cached: a step's responses never change). */
  header(run, tag, step) {
    const url = this.url("header", { run, tag, step });
    return this.cache.through(url, async () => {
      const res = await this.request(url);
      const text = await res.text();
      return { value: JSON.parse(text), size: text.length * 2 };
    });
  }

  /**
   * One layer's attention, all heads (or one head).
   * @returns {Promise<Weights>}
   */
  attention(run, tag, step, kind, layer, head = null) {
    const url = this.url("attention", { run, tag, step, kind, layer, head });
    return this.cache.through(url, async () => {
      const res = await this.request(url);
      const shape = parseShape(res.headers.get("X-Attention-Shape"), 3);
      const dtype = res.headers.get("X-Attention-Dtype") || "uint8";
      const w = decodeWeights(await res.arrayBuffer(), shape, dtype);
      return { value: w, size: w.bytes.byteLength + (w.values ? w.values.byteLength : 0) };
    });
  }

  /**
   * Every layer x head, max-pooled to at most size x size.
   * @returns {Promise<Weights & {pool: number[]}>}
   */
  overview(run, tag, step, kind, size = 64) {
    const url = this.url("overview", { run, tag, step, kind, size });
    return this.cache.through(url, async () => {
      const res = await this.request(url);
      const shape = parseShape(res.headers.get("X-Attention-Shape"), 4);
      const dtype = res.headers.get("X-Attention-Dtype") || "uint8";
      const w = decodeWeights(await res.arrayBuffer(), shape, dtype);
      const poolHeader = res.headers.get("X-Overview-Pool");
      const pool = poolHeader ? parseShape(poolHeader, 2) : [1, 1];
      return { value: { ...w, pool }, size: w.bytes.byteLength };
    });
  }

  /** @returns {Promise<Neurons>} */
  neurons(run, tag, step, kind, layer, head) {
    const url = this.url("neurons", { run, tag, step, kind, layer, head });
    return this.cache.through(url, async () => {
      const res = await this.request(url);
      const [Tq, Tk, D] = parseShape(res.headers.get("X-Neuron-Shape"), 3);
      const scale = Number(res.headers.get("X-Neuron-Scale"));
      const hasBias = res.headers.get("X-Neuron-Has-Bias") === "1";
      const n = decodeNeurons(await res.arrayBuffer(), { Tq, Tk, D, scale: Number.isFinite(scale) ? scale : 1, hasBias });
      return { value: n, size: 4 * (Tq * D + Tk * D) + Tq * Tk * (hasBias ? 5 : 1) };
    });
  }
}
