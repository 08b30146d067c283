// Pure geometry for the canvas views (no DOM here, so node tests cover it):
// row heights, the head view's columns, grids, matrix cells, the pair
// filter's ranges and max-pooling. Which lines to draw is edges.js.

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
 * to 128 tokens, then shrinking to `least` px (4: 576 tokens and beyond,
 * where the labels need a zoom; the head view asks for 14, readable, and
 * scrolls); never taller than maxHeight in all.
 */
export function rowHeight(count, zoom, maxHeight = 16000, least = 4) {
  if (zoom > 0) return Math.max(1, Math.min(64, zoom, Math.floor(maxHeight / Math.max(1, count)) || 1));
  return Math.max(1, Math.min(18, Math.max(least, Math.floor(2304 / Math.max(1, count))), Math.floor(maxHeight / Math.max(1, count))));
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
