// Aggregates over heads, shown as one more "head": the mean or the max of a
// layer's heads, or of every head of every layer. The `attention` route
// computes them on the server (`head=mean|max`, `layer=<id>|all`: docs/
// routes.md); this is the same arithmetic in JS, for the head view (it has the
// layer's heads already) and for data handed in without a server
// (memory.js). tests/fixtures/golden/aggregate.json pins both sides.
//
// Bytes (uint8: weight = byte / 255): the mean is the mean of the bytes
// rounded half up, in integers (floor((2 sum + n) / 2n)); the max is exact.
// float16 values: the mean and max in float32, then bytes as decode.js
// quantises them for drawing.

/** The aggregates, as the state's `agg` and the route's (head, layer) say them. */
export const AGGREGATES = ["mean", "max", "mean-all", "max-all"];
export const AGG_LABELS = { mean: "mean of layer", max: "max of layer", "mean-all": "mean of all layers", "max-all": "max of all layers" };

/**
 * The `attention` route's parameters for an aggregate of a state.
 * @param {string} agg one of AGGREGATES
 * @param {number} layer the state's layer
 * @returns {{layer: number | "all", head: "mean" | "max"}}
 */
export function aggParams(agg, layer) {
  const all = agg.endsWith("-all");
  return { layer: all ? "all" : layer, head: /** @type {"mean" | "max"} */ (all ? agg.slice(0, -4) : agg) };
}

/**
 * Mean or max over the first axis of stacked maps.
 * @param {import("./decode.js").Weights} w [N, Tq, Tk] (or [L, H, Tq, Tk]: every map)
 * @param {"mean" | "max"} how
 * @returns {import("./decode.js").Weights} [1, Tq, Tk]
 */
export function aggregateMaps(w, how) {
  const Tq = w.shape[w.shape.length - 2];
  const Tk = w.shape[w.shape.length - 1];
  const n = Tq * Tk;
  const N = w.bytes.length / n;
  if (!(N >= 1) || !Number.isInteger(N)) throw new Error(`cannot aggregate shape ${w.shape.join("x")}`);
  if (how !== "mean" && how !== "max") throw new Error(`unknown aggregate "${how}"`);
  if (w.values) return aggregateValues(w.values, N, n, Tq, Tk, how);
  const out = new Uint8Array(n);
  if (how === "max") {
    for (let m = 0; m < N; m++) {
      const src = w.bytes.subarray(m * n, (m + 1) * n);
      for (let i = 0; i < n; i++) if (src[i] > out[i]) out[i] = src[i];
    }
  } else {
    const sum = new Uint32Array(n);
    for (let m = 0; m < N; m++) {
      const src = w.bytes.subarray(m * n, (m + 1) * n);
      for (let i = 0; i < n; i++) sum[i] += src[i];
    }
    for (let i = 0; i < n; i++) out[i] = Math.floor((2 * sum[i] + N) / (2 * N));
  }
  return { shape: [1, Tq, Tk], dtype: "uint8", bytes: out, values: null };
}

/** aggregateMaps of float values (float16 data). */
function aggregateValues(values, N, n, Tq, Tk, how) {
  const acc = new Float32Array(n);
  if (how === "max") acc.fill(-Infinity);
  for (let m = 0; m < N; m++) {
    for (let i = 0; i < n; i++) {
      const v = values[m * n + i];
      if (how === "max") acc[i] = v > acc[i] ? v : acc[i];
      else acc[i] += v;
    }
  }
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (how === "mean") acc[i] /= N;
    const v = acc[i];
    bytes[i] = v <= 0 || !(v === v) ? 0 : v >= 1 ? 255 : Math.round(v * 255);
  }
  return { shape: [1, Tq, Tk], dtype: "float16", bytes, values: acc };
}
