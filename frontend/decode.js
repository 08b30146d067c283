// Decoding the plugin's binary answers (docs/routes.md) into what the views
// draw: float16 through a lookup table, attention bytes, neuron vectors, and
// the neuron view's numbers. Pure: any data source (HTTP or in memory) and
// node tests use them.

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
 *   softcap?: number, sink?: number | null,
 * }} Neurons
 * softcap: logit soft-capping (0 or absent: none): the scaled score s
 *   becomes softcap * tanh(s / softcap) before the bias.
 * sink: this head's sink logit (null or absent: none): it takes part in the
 *   softmax and its weight is dropped after it.
 */

/**
 * Decode a `neurons` payload, in the order the step stores them: queries f16
 * [Tq,D], keys f16 [Tk,D], masked u8 [Tq,Tk], bias f16 [Tq,Tk] (when hasBias).
 * @param {ArrayBuffer} buffer
 * @param {{Tq: number, Tk: number, D: number, scale: number, hasBias: boolean}} meta
 * @returns {Neurons}
 */
export function decodeNeurons(buffer, meta) {
  const { Tq, Tk, D, scale, hasBias, softcap = 0, sink = null } = meta;
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
  return { Tq, Tk, D, scale, hasBias, queries, keys, bias, masked, softcap, sink };
}

/**
 * The neuron view's numbers for one query token, each step of the model's
 * own order (proto/attention.proto NeuronLayer): q x k per dimension, q . k,
 * scaled, soft-capped (when the model caps), plus bias, masked, and the
 * softmax over the keys and the sink logit (when the model has one); sinkP
 * is the weight the sink takes (0 without one).
 * @param {Neurons} n
 * @param {number} qi
 */
export function neuronScores(n, qi) {
  const { Tk, D, scale } = n;
  const cap = n.softcap > 0 ? n.softcap : 0;
  const sink = typeof n.sink === "number" && Number.isFinite(n.sink) ? n.sink : null;
  const q = n.queries.subarray(qi * D, (qi + 1) * D);
  const prod = new Float32Array(Tk * D);
  const dot = new Float64Array(Tk);
  const scaled = new Float64Array(Tk);
  const capped = new Float64Array(Tk);
  const score = new Float64Array(Tk);
  const masked = new Uint8Array(Tk);
  const softmax = new Float64Array(Tk);
  let max = sink === null ? -Infinity : sink;
  for (let j = 0; j < Tk; j++) {
    let s = 0;
    for (let d = 0; d < D; d++) {
      const p = q[d] * n.keys[j * D + d];
      prod[j * D + d] = p;
      s += p;
    }
    dot[j] = s;
    scaled[j] = s * scale;
    capped[j] = cap ? cap * Math.tanh(scaled[j] / cap) : scaled[j];
    score[j] = capped[j] + (n.bias ? n.bias[qi * Tk + j] : 0);
    masked[j] = n.masked[qi * Tk + j];
    if (!masked[j] && score[j] > max) max = score[j];
  }
  let sum = sink === null || max === -Infinity ? 0 : Math.exp(sink - max);
  const sinkExp = sum;
  for (let j = 0; j < Tk; j++) {
    softmax[j] = masked[j] || max === -Infinity ? 0 : Math.exp(score[j] - max);
    sum += softmax[j];
  }
  if (sum > 0) for (let j = 0; j < Tk; j++) softmax[j] /= sum;
  return { q, prod, dot, scaled, capped, score, masked, softmax, cap, sink, sinkP: sum > 0 ? sinkExp / sum : 0 };
}
