// Pure geometry and edge selection for the canvas views (no DOM here, so node
// tests cover it).
//
// Weights arrive as bytes: uint8 attention is weight * 255 already, float16 is
// quantized to bytes for drawing (see api.js). A line is drawn only when its
// byte is at least 1 (weight 1/255, the faintest a canvas can show) and, so a
// draw takes bounded time at any sequence length, only the strongest lines
// whose total length fits a pixel budget (budgetCutoff).

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
  // key range per query row (all keys without a band)
  const ja = new Int32Array(Math.max(0, q1 - q0));
  const jb = new Int32Array(Math.max(0, q1 - q0));
  for (let i = q0; i < q1; i++) {
    const r = bandKeys((i + 0.5) * rowQ, band, rowK, k0, k1);
    ja[i - q0] = r[0];
    jb[i - q0] = r[1];
  }
  const result = [];
  for (let hi = 0; hi < heads.length; hi++) {
    const h = heads[hi];
    const base = (h - off) * Tq * Tk;
    const counts = new Int32Array(ALPHA_BUCKETS);
    // pass 1: count per bucket
    for (let i = q0; i < q1; i++) {
      const row = base + i * Tk;
      for (let j = ja[i - q0], end = jb[i - q0]; j < end; j++) {
        const v = w[row + j];
        if (v >= minByte) counts[v >> 3]++;
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
        for (let j = ja[i - q0], end = jb[i - q0]; j < end; j++) {
          const v = w[row + j];
          if (v >= minByte) {
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
 * The smallest weight byte to draw so that the drawn lines' total length
 * stays within `budget` pixels: the strongest lines go first. A line from
 * query i to key j between columns `gap` px apart costs
 * max(gap, |y_i - y_j|) (a rasterizer's work is about one step per pixel
 * along the longer axis, and at long sequences the lines are long).
 * @param {Uint8Array} w bytes [H, Tq, Tk]
 * @param {{budget: number, gap: number, rowQ: number, rowK: number,
 *   minByte?: number, qRange?: [number, number], kRange?: [number, number],
 *   hover?: {side: "q" | "k", index: number} | null, headOffset?: number,
 *   band?: [number, number] | null}} opts
 *   rowQ / rowK: px per query / key row; band: only the part of each line
 *   inside these y limits is drawn (the visible part of a scrolled view):
 *   lines outside it are skipped, and a line costs only its visible part.
 * @returns {{cutoff: number, lines: number, drawn: number, cost: number}}
 *   cutoff: draw bytes >= cutoff (256 = nothing fits); lines: candidates at
 *   or above minByte; drawn: lines at or above cutoff; cost: their length.
 */
export function budgetCutoff(w, Tq, Tk, heads, opts) {
  const minByte = Math.max(1, opts.minByte || 1);
  const [q0, q1, k0, k1] = edgeRanges(Tq, Tk, opts);
  const off = opts.headOffset || 0;
  const cost = new Float64Array(256);
  const count = new Float64Array(256);
  const { gap, rowQ, rowK } = opts;
  const band = opts.band || null;
  const b0 = band ? band[0] : -Infinity;
  const b1 = band ? band[1] : Infinity;
  for (const h of heads) {
    const base = (h - off) * Tq * Tk;
    for (let i = q0; i < q1; i++) {
      const row = base + i * Tk;
      const yi = (i + 0.5) * rowQ;
      const [ja, jb] = bandKeys(yi, band, rowK, k0, k1);
      const ci = yi < b0 ? b0 : yi > b1 ? b1 : yi;
      for (let j = ja; j < jb; j++) {
        const v = w[row + j];
        if (v < minByte) continue;
        const yj = (j + 0.5) * rowK;
        let len;
        if (band) {
          // the visible part: its vertical extent, and its share of the gap
          const cj = yj < b0 ? b0 : yj > b1 ? b1 : yj;
          const vis = ci > cj ? ci - cj : cj - ci;
          const dy = yi > yj ? yi - yj : yj - yi;
          const wide = dy < 1 ? gap : (gap * vis) / dy;
          len = vis > wide ? vis : wide;
        } else {
          const dy = yi - yj;
          len = dy > gap ? dy : -dy > gap ? -dy : gap;
        }
        cost[v] += len;
        count[v] += 1;
      }
    }
  }
  let lines = 0;
  for (let b = minByte; b < 256; b++) lines += count[b];
  let total = 0;
  let drawn = 0;
  let cutoff = 256;
  for (let b = 255; b >= minByte; b--) {
    if (count[b] === 0) continue;
    if (total + cost[b] > opts.budget && total > 0) break;
    total += cost[b];
    drawn += count[b];
    cutoff = b;
  }
  if (drawn === 0) cutoff = 256;
  return { cutoff, lines, drawn, cost: total };
}

/**
 * Token index ranges of a sentence-pair filter.
 * @param {string} pair  all | aa | bb | ab | ba  (query segment, key segment)
 * @param {number} qSegB first query token of sentence B (0 = no pair)
 * @param {number} kSegB
 * @param {number} Tq
 * @param {number} Tk
 * @returns {{qRange: [number, number], kRange: [number, number]}}
 */
export function pairRanges(pair, qSegB, kSegB, Tq, Tk) {
  /** @type {[number, number]} */
  let qRange = [0, Tq];
  /** @type {[number, number]} */
  let kRange = [0, Tk];
  if (!pair || pair === "all") return { qRange, kRange };
  const qb = qSegB > 0 ? qSegB : Tq;
  const kb = kSegB > 0 ? kSegB : Tk;
  qRange = pair[0] === "a" ? [0, qb] : [Math.min(qb, Tq), Tq];
  kRange = pair[1] === "a" ? [0, kb] : [Math.min(kb, Tk), Tk];
  return { qRange, kRange };
}

/** Whether a kind has a sentence pair to filter by. */
export function hasSegments(kind) {
  return (kind.query_segment_b || 0) > 0 || (kind.key_segment_b || 0) > 0;
}

/**
 * Row height of a token column: the requested zoom, or automatic: 18 px up
 * to 128 tokens, then shrinking (to 4 px at 576 tokens and beyond, where the
 * labels need a zoom) so lines stay short enough to draw quickly; never
 * taller than maxHeight in all.
 */
export function rowHeight(count, zoom, maxHeight = 16000) {
  if (zoom > 0) return Math.max(1, Math.min(64, zoom, Math.floor(maxHeight / Math.max(1, count)) || 1));
  return Math.max(1, Math.min(18, Math.max(4, Math.floor(2304 / Math.max(1, count))), Math.floor(maxHeight / Math.max(1, count))));
}

/**
 * Geometry of the head view: two token columns with lines between them.
 * @param {{Tq: number, Tk: number, rowH: number, leftW: number, rightW: number,
 *   boxW: number, nBox: number, gap?: number, top?: number}} p
 */
export function headViewLayout(p) {
  const gap = p.gap || 260;
  const top = p.top || 8;
  const pad = 6;
  const boxesW = p.nBox * p.boxW;
  const leftTextX = pad + boxesW + p.leftW; // right edge of left labels
  const lineX0 = leftTextX + pad;
  const lineX1 = lineX0 + gap;
  const rightTextX = lineX1 + pad; // left edge of right labels
  const width = Math.ceil(rightTextX + p.rightW + boxesW + pad);
  const height = Math.ceil(top + Math.max(p.Tq, p.Tk) * p.rowH + top);
  return {
    top,
    rowH: p.rowH,
    leftBoxX: pad,
    leftTextX,
    lineX0,
    lineX1,
    rightTextX,
    rightBoxX: rightTextX + p.rightW,
    boxW: p.boxW,
    width,
    height,
    /** y of the middle of row i */
    y: (i) => top + (i + 0.5) * p.rowH,
  };
}

/**
 * Which token of the head view is under a point, or null.
 * @returns {{side: "q" | "k", index: number} | null}
 */
export function headViewHit(L, Tq, Tk, x, y) {
  const i = Math.floor((y - L.top) / L.rowH);
  if (i < 0) return null;
  if (x <= L.lineX0 && i < Tq) return { side: "q", index: i };
  if (x >= L.lineX1 && i < Tk) return { side: "k", index: i };
  return null;
}

/**
 * Grid of thumbnails (rows = layers, columns = heads) for the model view.
 * @param {{rows: number, cols: number, availWidth: number, availHeight?: number,
 *   labelW?: number, labelH?: number, gap?: number, minThumb?: number, maxThumb?: number}} p
 */
export function gridLayout(p) {
  const labelW = p.labelW ?? 34;
  const labelH = p.labelH ?? 18;
  const gap = p.gap ?? 6;
  const minThumb = p.minThumb ?? 40;
  const maxThumb = p.maxThumb ?? 120;
  const fit = Math.floor((p.availWidth - labelW - gap) / Math.max(1, p.cols) - gap);
  // and, given a height, every row in it too (the model view fits the window)
  const fitH = p.availHeight ? Math.floor((p.availHeight - labelH - gap) / Math.max(1, p.rows) - gap) : Infinity;
  const thumb = Math.max(minThumb, Math.min(maxThumb, fit, fitH));
  const width = labelW + gap + p.cols * (thumb + gap);
  const height = labelH + gap + p.rows * (thumb + gap);
  return {
    thumb,
    gap,
    labelW,
    labelH,
    width,
    height,
    x: (c) => labelW + gap + c * (thumb + gap),
    y: (r) => labelH + gap + r * (thumb + gap),
    /** @returns {{row: number, col: number} | null} */
    hit(x, y) {
      const c = Math.floor((x - labelW - gap) / (thumb + gap));
      const r = Math.floor((y - labelH - gap) / (thumb + gap));
      if (c < 0 || r < 0 || c >= p.cols || r >= p.rows) return null;
      const cx = x - (labelW + gap + c * (thumb + gap));
      const cy = y - (labelH + gap + r * (thumb + gap));
      if (cx > thumb || cy > thumb) return null;
      return { row: r, col: c };
    },
  };
}

/**
 * Cell size of the matrix view: fit the keys into the width, 1..28 px, or the
 * requested zoom.
 */
export function matrixCell(Tk, availWidth, labelW, zoom) {
  if (zoom > 0) return Math.max(1, Math.min(64, zoom));
  return Math.max(1, Math.min(28, Math.floor((availWidth - labelW) / Math.max(1, Tk))));
}

/**
 * The cell under a point of the matrix view, or null.
 * @returns {{i: number, j: number} | null}
 */
export function matrixHit(x, y, originX, originY, cell, Tq, Tk) {
  const j = Math.floor((x - originX) / cell);
  const i = Math.floor((y - originY) / cell);
  if (i < 0 || j < 0 || i >= Tq || j >= Tk) return null;
  return { i, j };
}

/**
 * Downsample (max-pool) a [Tq, Tk] map to at most [S, S]: each cell is the
 * largest value of its block or, with `magnitude`, the value of largest
 * |v| with its sign (so a pooled difference keeps its strongest change
 * either way). The backend's overview route does the same pooling of bytes
 * server-side; the compare view pools its thumbnails again to their pixels.
 * @template {Uint8Array | Float32Array} A
 * @param {A} src
 * @param {number} offset start of the map in src
 * @returns {{data: A, rows: number, cols: number}} data of src's type
 */
export function maxPool(src, offset, Tq, Tk, S, magnitude = false) {
  const pq = Math.ceil(Tq / S);
  const pk = Math.ceil(Tk / S);
  const rows = Math.ceil(Tq / pq);
  const cols = Math.ceil(Tk / pk);
  const out = new /** @type {any} */ (src.constructor)(rows * cols);
  for (let i = 0; i < Tq; i++) {
    const r = (i / pq) | 0;
    const srow = offset + i * Tk;
    const orow = r * cols;
    for (let j = 0; j < Tk; j++) {
      const v = src[srow + j];
      const o = orow + ((j / pk) | 0);
      if (magnitude ? Math.abs(v) > Math.abs(out[o]) : v > out[o]) out[o] = v;
    }
  }
  return { data: out, rows, cols };
}
