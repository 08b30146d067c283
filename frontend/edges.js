// Which lines to draw (no DOM here, so node tests cover it): the head view,
// the model view's thumbnails and compare's head mode draw BertViz's lines.
//
// Weights arrive as bytes: uint8 attention is weight * 255 already, float16 is
// quantized to bytes for drawing (see decode.js). A line is drawn only when its
// byte is at least 1 (weight 1/255, the faintest a canvas can show) and, so a
// draw takes bounded time at any sequence length, only the strongest lines
// whose total length fits a pixel budget (budgetCutoff, pickCutoff).

export const ALPHA_BUCKETS = 32;

/** Opacity a bucket is drawn with (its bytes' midpoint). */
export function bucketAlpha(b) {
  return Math.min(1, ((b << 3) + 4) / 255);
}

/**
 * @typedef {{
 *   head: number,
 *   offsets: Int32Array,  // ALPHA_BUCKETS + 1: bucket b's edges are [offsets[b], offsets[b+1])
 *   q: Int32Array, k: Int32Array, // query and key index of each edge
 *   count: number,
 * }} HeadEdges
 */

/**
 * Select the lines to draw for some heads of one layer: every weight of at
 * least `minByte` (use budgetCutoff to pick it), grouped by opacity bucket so
 * each group is drawn as one path.
 * @param {Uint8Array} w  bytes, row-major [H, Tq, Tk]
 * @param {number} Tq
 * @param {number} Tk
 * @param {readonly number[]} heads  indices into the first axis
 * @param {{
 *   minByte?: number,
 *   qRange?: [number, number], kRange?: [number, number],
 *   hover?: {side: "q" | "k", index: number} | null,
 *   headOffset?: number, // when `w` holds only some heads: index of heads[i] in w is heads[i] - headOffset
 *   band?: [number, number] | null, rowQ?: number, rowK?: number, // only lines crossing the band (see budgetCutoff)
 *   skip?: [number, number] | null, // leave out lines whose query and key are both in these rows
 * }} [opts]
 * @returns {HeadEdges[]}
 */
export function collectEdges(w, Tq, Tk, heads, opts = {}) {
  const minByte = Math.max(1, opts.minByte || 1);
  const [q0, q1, k0, k1] = edgeRanges(Tq, Tk, opts);
  const off = opts.headOffset || 0;
  const band = opts.band || null;
  const rowQ = opts.rowQ || 1;
  const rowK = opts.rowK || 1;
  const seg = rowKeys(q0, q1, k0, k1, band, rowQ, rowK, opts.skip);
  const result = [];
  for (let hi = 0; hi < heads.length; hi++) {
    const h = heads[hi];
    const base = (h - off) * Tq * Tk;
    const counts = new Int32Array(ALPHA_BUCKETS);
    // pass 1: count per bucket
    for (let i = q0; i < q1; i++) {
      const row = base + i * Tk;
      for (let s = 4 * (i - q0), last = s + 4; s < last; s += 2) {
        for (let j = seg[s], end = seg[s + 1]; j < end; j++) {
          const v = w[row + j];
          if (v >= minByte) counts[v >> 3]++;
        }
      }
    }
    const offsets = new Int32Array(ALPHA_BUCKETS + 1);
    for (let b = 0; b < ALPHA_BUCKETS; b++) offsets[b + 1] = offsets[b] + counts[b];
    const total = offsets[ALPHA_BUCKETS];
    const qa = new Int32Array(total);
    const ka = new Int32Array(total);
    if (total > 0) {
      // pass 2: place edges by bucket
      const fill = offsets.slice(0, ALPHA_BUCKETS);
      for (let i = q0; i < q1; i++) {
        const row = base + i * Tk;
        for (let s = 4 * (i - q0), last = s + 4; s < last; s += 2) {
          for (let j = seg[s], end = seg[s + 1]; j < end; j++) {
            const v = w[row + j];
            if (v < minByte) continue;
            const p = fill[v >> 3]++;
            qa[p] = i;
            ka[p] = j;
          }
        }
      }
    }
    result.push({ head: h, offsets, q: qa, k: ka, count: total });
  }
  return result;
}

/**
 * The keys of each query row q0..q1: at most two ranges a row, 4 numbers
 * [a0, b0, a1, b1] (half-open): the keys reaching the band (all without
 * one: see bandKeys), less the rows `skip` of a query in `skip`.
 * @returns {Int32Array}
 */
function rowKeys(q0, q1, k0, k1, band, rowQ, rowK, skip) {
  const [s0, s1] = skip || [0, 0];
  const seg = new Int32Array(4 * Math.max(0, q1 - q0));
  for (let i = q0; i < q1; i++) {
    const [a, b] = bandKeys((i + 0.5) * rowQ, band, rowK, k0, k1);
    const r = 4 * (i - q0);
    if (i >= s0 && i < s1 && s0 < b && s1 > a) {
      seg.set([a, Math.max(a, s0), Math.min(b, s1), b], r);
    } else seg.set([a, b, b, b], r);
  }
  return seg;
}

/**
 * The query and key index ranges lines are drawn for: the pair filter's
 * ranges, narrowed to the hovered token.
 * @returns {[number, number, number, number]} q0, q1, k0, k1 (half-open)
 */
export function edgeRanges(Tq, Tk, opts = {}) {
  let [q0, q1] = opts.qRange || [0, Tq];
  let [k0, k1] = opts.kRange || [0, Tk];
  const hover = opts.hover || null;
  if (hover && hover.side === "q") {
    q0 = Math.max(q0, hover.index);
    q1 = Math.min(q1, hover.index + 1);
  }
  if (hover && hover.side === "k") {
    k0 = Math.max(k0, hover.index);
    k1 = Math.min(k1, hover.index + 1);
  }
  return [q0, q1, k0, k1];
}

/**
 * The keys whose line from query row y_i crosses the band [b0, b1] (all px,
 * rows at (i + 0.5) * rowQ on the left and (j + 0.5) * rowK on the right):
 * when the query's end is inside the band every key qualifies; above it only
 * keys reaching down into it; below it only keys reaching up into it.
 * @returns {[number, number]} half-open key range within [k0, k1)
 */
export function bandKeys(yi, band, rowK, k0, k1) {
  if (!band) return [k0, k1];
  const [b0, b1] = band;
  if (yi < b0) return [Math.max(k0, Math.ceil(b0 / rowK - 0.5)), k1];
  if (yi > b1) return [k0, Math.min(k1, Math.floor(b1 / rowK - 0.5) + 1)];
  return [k0, k1];
}

/**
 * The cost and count of the candidate lines at each weight byte: a line
 * from query i to key j between columns `gap` px apart costs
 * max(gap, |y_i - y_j|) (a rasterizer's work is about one step per pixel
 * along the longer axis, and at long sequences the lines are long).
 * @param {Uint8Array} w bytes [H, Tq, Tk]
 * @param {{gap: number, rowQ: number, rowK: number,
 *   minByte?: number, qRange?: [number, number], kRange?: [number, number],
 *   hover?: {side: "q" | "k", index: number} | null, headOffset?: number,
 *   band?: [number, number] | null, skip?: [number, number] | null}} opts
 *   rowQ / rowK: px per query / key row; band: only the part of each line
 *   inside these y limits is drawn (the visible part of a scrolled view):
 *   lines outside it are left out, and a line costs only its visible part;
 *   skip: as collectEdges'.
 * @returns {{cost: Float64Array, count: Float64Array}} by byte (256 each)
 */
export function lineCosts(w, Tq, Tk, heads, opts) {
  const minByte = Math.max(1, opts.minByte || 1);
  const [q0, q1, k0, k1] = edgeRanges(Tq, Tk, opts);
  const off = opts.headOffset || 0;
  const cost = new Float64Array(256);
  const count = new Float64Array(256);
  const { gap, rowQ, rowK } = opts;
  const band = opts.band || null;
  const b0 = band ? band[0] : -Infinity;
  const b1 = band ? band[1] : Infinity;
  const seg = rowKeys(q0, q1, k0, k1, band, rowQ, rowK, opts.skip);
  for (const h of heads) {
    const base = (h - off) * Tq * Tk;
    for (let i = q0; i < q1; i++) {
      const row = base + i * Tk;
      const yi = (i + 0.5) * rowQ;
      const ci = yi < b0 ? b0 : yi > b1 ? b1 : yi;
      for (let s = 4 * (i - q0), last = s + 4; s < last; s += 2) {
        for (let j = seg[s], end = seg[s + 1]; j < end; j++) {
          const v = w[row + j];
          if (v < minByte) continue;
          const len = lineLength(yi, ci, (j + 0.5) * rowK, gap, band);
          cost[v] += len;
          count[v] += 1;
        }
      }
    }
  }
  return { cost, count };
}

/**
 * The cost of a line from a query at yi (ci: yi clamped into the band) to a
 * key at yj: without a band, max(gap, |yi - yj|); with one, its visible part
 * (its vertical extent in the band, and its share of the gap).
 */
function lineLength(yi, ci, yj, gap, band) {
  if (!band) {
    const dy = yi - yj;
    return dy > gap ? dy : -dy > gap ? -dy : gap;
  }
  const cj = yj < band[0] ? band[0] : yj > band[1] ? band[1] : yj;
  const vis = ci > cj ? ci - cj : cj - ci;
  const dy = yi > yj ? yi - yj : yj - yi;
  const wide = dy < 1 ? gap : (gap * vis) / dy;
  return vis > wide ? vis : wide;
}

/**
 * The smallest weight byte to draw so that the drawn lines' total cost
 * stays within `budget`: the strongest lines go first (ties at the cutoff
 * are all in or all out; the strongest level is drawn even alone over the
 * budget). `costs`: lineCosts of one or more selections, added up.
 * @param {Array<{cost: Float64Array, count: Float64Array}>} costs
 * @returns {{cutoff: number, lines: number, drawn: number, cost: number}}
 *   cutoff: draw bytes >= cutoff (256 = nothing fits); lines: candidates;
 *   drawn: lines at or above cutoff; cost: their length.
 */
export function pickCutoff(costs, budget) {
  const cost = new Float64Array(256);
  const count = new Float64Array(256);
  for (const c of costs) {
    for (let b = 0; b < 256; b++) {
      cost[b] += c.cost[b];
      count[b] += c.count[b];
    }
  }
  let lines = 0;
  for (let b = 1; b < 256; b++) lines += count[b];
  let total = 0;
  let drawn = 0;
  let cutoff = 256;
  for (let b = 255; b >= 1; b--) {
    if (count[b] === 0) continue;
    if (total + cost[b] > budget && total > 0) break;
    total += cost[b];
    drawn += count[b];
    cutoff = b;
  }
  if (drawn === 0) cutoff = 256;
  return { cutoff, lines, drawn, cost: total };
}

/**
 * The smallest weight byte to draw so that the drawn lines' total length
 * stays within opts.budget pixels (lineCosts of one selection, pickCutoff).
 * @param {Uint8Array} w bytes [H, Tq, Tk]
 * @param {Parameters<typeof lineCosts>[4] & {budget: number}} opts
 */
export function budgetCutoff(w, Tq, Tk, heads, opts) {
  return pickCutoff([lineCosts(w, Tq, Tk, heads, opts)], opts.budget);
}
