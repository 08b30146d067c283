// A data source from arrays in memory (the `Data` of host.js, like api.js's
// `Api`, but with no HTTP): what a host without TensorBoard (a notebook, a
// standalone page) hands the views. Each step is its `header` answer (JSON,
// as the route sends it), its attention as uint8 bytes (weight * 255) per
// kind, [layers, heads, Tq, Tk] row-major, and optionally neurons. Answers
// computed from many steps (stats, compare) are handed in as the routes would
// send them, or their requests fail (404) saying so.

import { ApiError, OVERVIEW_SIZE } from "./api.js";
import { maxPool } from "./layout.js";
import { aggregateMaps } from "./aggregate.js";

/**
 * @typedef {{
 *   run: string, tag: string, step: number, header: any,
 *   attention: Record<string, Uint8Array>,
 *   neurons?: Record<string, Record<string, import("./decode.js").Neurons>>,
 * }} MemoryStep
 * neurons: per kind, per "layer,head" (layer as in layer_ids).
 */

const missing = (what) => Promise.reject(new ApiError(404, what, "memory"));

export class MemoryData {
  /**
   * @param {MemoryStep[]} steps
   * @param {{stats?: Record<string, any>, compare?: (tag: string, kind: string, a: any, b: any, verdict: boolean) => any}} [derived]
   *   stats: answers by JSON.stringify([run, tag, kind]); compare: answers a compare
   */
  constructor(steps, derived = {}) {
    /** @type {Map<string, Map<string, Map<number, MemoryStep>>>} run -> tag -> step */
    this.runs = new Map();
    for (const s of steps) {
      if (!this.runs.has(s.run)) this.runs.set(s.run, new Map());
      const tags = this.runs.get(s.run);
      if (!tags.has(s.tag)) tags.set(s.tag, new Map());
      tags.get(s.tag).set(s.step, s);
    }
    this.derived = derived;
  }

  /** @returns {MemoryStep | undefined} */
  find(run, tag, step) {
    const tags = this.runs.get(run);
    const steps = tags && tags.get(tag);
    return steps && steps.get(step);
  }

  /** A step and one of its kinds (index in the header, stored layers), or a 404. */
  kindOf(run, tag, step, kind) {
    const s = this.find(run, tag, step);
    if (!s) return { error: `no step ${step} of probe "${tag}" in run "${run}"` };
    const k = s.header.kinds.find((x) => x.name === kind);
    if (!k || !s.attention[kind]) return { error: `no attention kind "${kind}" at step ${step} of run "${run}"` };
    return { s, k, H: k.num_heads, Tq: k.query_tokens.length, Tk: k.key_tokens.length };
  }

  async tags() {
    const runs = [...this.runs].sort(([a], [b]) => (a < b ? -1 : 1)).map(([run, tags]) => ({
      run, tags: [...tags.keys()].sort().map((tag) => ({ tag, max_step: Math.max(...tags.get(tag).keys()) })),
    }));
    return { runs };
  }

  async steps(run, tag) {
    const steps = this.runs.has(run) && this.runs.get(run).get(tag);
    if (!steps) return missing(`no probe "${tag}" in run "${run}"`);
    const list = [...steps.keys()].sort((a, b) => a - b);
    const newest = steps.get(list[list.length - 1]).header;
    const kinds = newest.kinds.map((k) => ({
      name: k.name, layer_ids: k.layer_ids, num_heads: k.num_heads, query_len: k.query_tokens.length,
      key_len: k.key_tokens.length, has_neurons: Boolean(k.has_neurons), causal: Boolean(k.causal),
    }));
    return { run, tag, steps: list, kept: list.length, written: list.length, model_type: newest.model_type || "", kinds };
  }

  async header(run, tag, step) {
    const s = this.find(run, tag, step);
    return s ? s.header : missing(`no step ${step} of probe "${tag}" in run "${run}"`);
  }

  /** One layer's heads, one head, or an aggregate (head "mean" / "max" of the layer, or of layer "all"). */
  async attention(run, tag, step, kind, layer, head = null) {
    const { s, k, H, Tq, Tk, error } = this.kindOf(run, tag, step, kind);
    if (error) return missing(error);
    if (head === "mean" || head === "max") {
      const src = s.attention[kind];
      const maps = layer === "all" ? src : (await this.attention(run, tag, step, kind, layer)).bytes;
      return aggregateMaps({ shape: [maps.length / (Tq * Tk), Tq, Tk], dtype: "uint8", bytes: maps, values: null }, head);
    }
    const l = k.layer_ids.indexOf(layer);
    if (l < 0 || (head !== null && !(head >= 0 && head < H))) return missing(`no layer ${layer} head ${head} of kind "${kind}"`);
    const n = Tq * Tk;
    const from = (l * H + (head === null ? 0 : head)) * n;
    const bytes = s.attention[kind].subarray(from, from + (head === null ? H : 1) * n);
    return { shape: [head === null ? H : 1, Tq, Tk], dtype: "uint8", bytes, values: null };
  }

  /** Every layer and head max-pooled to at most size x size, as the `overview` route pools them. */
  async overview(run, tag, step, kind, size = OVERVIEW_SIZE) {
    const { s, k, H, Tq, Tk, error } = this.kindOf(run, tag, step, kind);
    if (error) return missing(error);
    const L = k.layer_ids.length;
    const src = s.attention[kind];
    const maps = [];
    for (let m = 0; m < L * H; m++) maps.push(maxPool(src, m * Tq * Tk, Tq, Tk, size));
    const { rows, cols } = maps[0];
    const bytes = new Uint8Array(L * H * rows * cols);
    maps.forEach((p, m) => bytes.set(p.data, m * rows * cols));
    return { shape: [L, H, rows, cols], dtype: "uint8", bytes, values: null, pool: [Math.ceil(Tq / size), Math.ceil(Tk / size)].map((p) => Math.max(1, p)) };
  }

  async neurons(run, tag, step, kind, layer, head) {
    const s = this.find(run, tag, step);
    const n = s && s.neurons && s.neurons[kind] && s.neurons[kind][`${layer},${head}`];
    return n || missing(`step ${step} of probe "${tag}" has no query/key vectors for layer ${layer} head ${head}`);
  }

  async stats(run, tag, kind) {
    const answer = this.derived.stats && this.derived.stats[JSON.stringify([run, tag, kind])];
    return answer || missing(`no statistics of probe "${tag}" were handed in`);
  }

  async compare(tag, kind, a, b, verdict = false) {
    return this.derived.compare ? this.derived.compare(tag, kind, a, b, verdict) : missing("no comparison was handed in");
  }
}
