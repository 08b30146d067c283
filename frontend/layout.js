// Pure geometry and edge selection for the canvas views (no DOM here, so node
// tests cover it).
//
// Weights arrive as bytes: uint8 attention is weight * 255 already, float16 is
// quantized to bytes for drawing (see api.js). A line is drawn only when its
// byte is at least `minByte` (1 = weight 1/255, the faintest a canvas can show),
// and at most `maxPerRow` of a query's strongest keys, so the number of lines
// stays bounded at any sequence length.

export const ALPHA_BUCKETS = 32;

/** Opacity a bucket is drawn with (its bytes' midpoint). */
export function bucketAlpha(b) {
  return Math.min(1, ((b << 3) + 4) / 255);
}

/**
 * The smallest byte a row must reach to be among its `k` strongest entries
 * (ties at the cutoff are all kept; the caller caps them).
 * @param {Uint8Array} w
 * @param {number} start
 * @param {number} len
 * @param {number} k
 * @param {Uint32Array} hist scratch, length 256
 */
export function rowCutoff(w, start, len, k, hist) {
  if (k >= len) return 0;
  hist.fill(0);
  for (let j = 0; j < len; j++) hist[w[start + j]]++;
  let seen = 0;
  for (let b = 255; b > 0; b--) {
    seen += hist[b];
    if (seen >= k) return b;
  }
  return 1;
}

/**
 * How many lines per query row to allow so that about `budget` lines are
 * drawn over all rows and heads.
 */
export function rowCap(queryCount, keyLen, heads, budget = 160000) {
  const perRow = Math.floor(budget / Math.max(1, queryCount * Math.max(1, heads)));
  return Math.max(4, Math.min(keyLen, perRow));
}

/**
 * @typedef {{
 *   head: number,
 *   offsets: Int32Array,  // ALPHA_BUCKETS + 1: bucket b's edges are [offsets[b], offsets[b+1])
 *   q: Int32Array, k: Int32Array, // query and key index of each edge
 *   count: number,
 *   capped: boolean,      // some row had more visible lines than maxPerRow
 * }} HeadEdges
 */

/**
 * Select the lines to draw for some heads of one layer.
 * @param {Uint8Array} w  bytes, row-major [H, Tq, Tk]
 * @param {number} Tq
 * @param {number} Tk
 * @param {readonly number[]} heads  indices into the first axis
 * @param {{
 *   minByte?: number, maxPerRow?: number,
 *   qRange?: [number, number], kRange?: [number, number],
 *   hover?: {side: "q" | "k", index: number} | null,
 *   headOffset?: number, // when `w` holds only some heads: index of heads[i] in w is heads[i] - headOffset
 * }} [opts]
 * @returns {HeadEdges[]}
 */
export function collectEdges(w, Tq, Tk, heads, opts = {}) {
  const minByte = Math.max(1, opts.minByte || 1);
  const maxPerRow = opts.maxPerRow || Tk;
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
  const off = opts.headOffset || 0;
  const hist = new Uint32Array(256);
  const result = [];
  for (const h of heads) {
    const base = (h - off) * Tq * Tk;
    const counts = new Int32Array(ALPHA_BUCKETS);
    let capped = false;
    // pass 1: count per bucket (and per-row cutoffs when capping)
    const cutoffs = new Uint8Array(Math.max(0, q1 - q0));
    const kLen = Math.max(0, k1 - k0);
    for (let i = q0; i < q1; i++) {
      const row = base + i * Tk;
      let cut = minByte;
      if (maxPerRow < kLen) {
        const c = rowCutoff(w, row + k0, kLen, maxPerRow, hist);
        if (c > cut) {
          cut = c;
        }
      }
      cutoffs[i - q0] = cut;
      let n = 0;
      let visible = 0;
      for (let j = k0; j < k1; j++) {
        const v = w[row + j];
        if (v >= minByte) visible++;
        if (v >= cut && n < maxPerRow) {
          n++;
          counts[v >> 3]++;
        }
      }
      if (visible > n) capped = true;
    }
    const offsets = new Int32Array(ALPHA_BUCKETS + 1);
    for (let b = 0; b < ALPHA_BUCKETS; b++) offsets[b + 1] = offsets[b] + counts[b];
    const total = offsets[ALPHA_BUCKETS];
    const qa = new Int32Array(total);
    const ka = new Int32Array(total);
    const fill = offsets.slice(0, ALPHA_BUCKETS);
    // pass 2: place edges by bucket (same row rule as pass 1)
    for (let i = q0; i < q1; i++) {
      const row = base + i * Tk;
      const cut = cutoffs[i - q0];
      let n = 0;
      for (let j = k0; j < k1; j++) {
        const v = w[row + j];
        if (v >= cut) {
          if (n >= maxPerRow) continue;
          n++;
          const p = fill[v >> 3]++;
          qa[p] = i;
          ka[p] = j;
        }
      }
    }
    result.push({ head: h, offsets, q: qa, k: ka, count: total, capped });
  }
  return result;
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
 * Row height of a token column: the requested zoom, or automatic (18 px,
 * shrinking for long lists so the canvas stays under maxHeight).
 */
export function rowHeight(count, zoom, maxHeight = 16000) {
  if (zoom > 0) return Math.max(1, Math.min(64, zoom, Math.floor(maxHeight / Math.max(1, count)) || 1));
  return Math.max(1, Math.min(18, Math.floor(maxHeight / Math.max(1, count))));
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
 * @param {{rows: number, cols: number, availWidth: number, labelW?: number,
 *   labelH?: number, gap?: number, minThumb?: number, maxThumb?: number}} p
 */
export function gridLayout(p) {
  const labelW = p.labelW ?? 34;
  const labelH = p.labelH ?? 18;
  const gap = p.gap ?? 6;
  const minThumb = p.minThumb ?? 40;
  const maxThumb = p.maxThumb ?? 120;
  const fit = Math.floor((p.availWidth - labelW - gap) / Math.max(1, p.cols) - gap);
  const thumb = Math.max(minThumb, Math.min(maxThumb, fit));
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
 * Downsample (max-pool) a [Tq, Tk] byte map to at most [S, S]. Used by the
 * model view when drawing a layer fetched at full size; the backend's
 * overview route does the same pooling server-side.
 * @param {Uint8Array} src
 * @param {number} offset start of the map in src
 * @returns {{data: Uint8Array, rows: number, cols: number}}
 */
export function maxPool(src, offset, Tq, Tk, S) {
  const pq = Math.ceil(Tq / S);
  const pk = Math.ceil(Tk / S);
  const rows = Math.ceil(Tq / pq);
  const cols = Math.ceil(Tk / pk);
  const out = new Uint8Array(rows * cols);
  for (let i = 0; i < Tq; i++) {
    const r = (i / pq) | 0;
    const srow = offset + i * Tk;
    const orow = r * cols;
    for (let j = 0; j < Tk; j++) {
      const v = src[srow + j];
      const o = orow + ((j / pk) | 0);
      if (v > out[o]) out[o] = v;
    }
  }
  return { data: out, rows, cols };
}
