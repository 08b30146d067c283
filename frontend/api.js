// The plugin's routes over HTTP (docs/routes.md): `Api` is the dashboard's
// data source (the `Data` of host.js), with a cache of decoded answers
// (responses for a step never change, so a decoded layer is kept and reused
// until the cache's byte budget pushes it out), error answers told apart from
// an unreachable server, and the reconnect backoff.

import { decodeNeurons, decodeWeights, parseShape } from "./decode.js";
import { intText } from "./state.js";

/** Largest side of the model view's max-pooled maps (the `overview` route's size). */
export const OVERVIEW_SIZE = 64;

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
 * The plugin's routes over HTTP: one method per route, each resolving with
 * the decoded answer (see `Data` in host.js).
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
    // run \0 tag -> Map(step -> version): each kept step's version as the
    // last `steps` answer listed it. Step URLs carry it (`v`), so the data of
    // a step logged again (a rewritten run) is another URL, never the old
    // answer from a cache; a URL without it is not stored by the browser.
    /** @type {Map<string, Map<number, number>>} */
    this.versions = new Map();
  }

  /** Remember the versions a `steps` answer lists (answers without them: none). */
  noteVersions(run, tag, answer) {
    const steps = (answer && answer.steps) || [];
    const versions = (answer && answer.versions) || [];
    if (versions.length !== steps.length) return;
    this.versions.set(run + "\0" + tag, new Map(steps.map((s, i) => [s, versions[i]])));
  }

  /** The version of a step as last listed, or null (then URLs go without it). */
  version(run, tag, step) {
    const m = this.versions.get(run + "\0" + tag);
    const v = m ? m.get(step) : undefined;
    return v === undefined ? null : v;
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

  /** A JSON answer that changes as steps arrive: never cached here, nor (no-store) by the browser. */
  async fresh(route, params, init = { cache: "no-store" }) {
    const res = await this.request(this.url(route, params), init);
    return res.json();
  }

  /** A JSON answer about fixed steps, cached (it never changes). */
  json(route, params) {
    const url = this.url(route, params);
    return this.cache.through(url, async () => {
      const text = await (await this.request(url)).text();
      return { value: JSON.parse(text), size: text.length * 2 };
    });
  }

  /**
   * A binary answer about one step, decoded and cached.
   * @param {(res: Response, buffer: ArrayBuffer) => {value: any, size: number}} decode
   */
  binary(route, params, decode) {
    const url = this.url(route, params);
    return this.cache.through(url, async () => {
      const res = await this.request(url);
      return decode(res, await res.arrayBuffer());
    });
  }

  /** The `tags` route (runs and their probes, no steps). */
  tags() {
    return this.fresh("tags", null, {});
  }

  /** The kept steps of one probe of one run and what its newest readable step holds. */
  async steps(run, tag) {
    const answer = await this.fresh("steps", { run, tag });
    this.noteVersions(run, tag, answer);
    return answer;
  }

  /** Per-head statistics of every kept step of a probe, and their names and descriptions. */
  stats(run, tag, kind) {
    return this.fresh("stats", { run, tag, kind });
  }

  /** A step's header. */
  header(run, tag, step) {
    return this.json("header", { run, tag, step, v: this.version(run, tag, step) });
  }

  /**
   * Two steps compared: mean JSD per head and the token verdict; a 400 whose
   * message is the verdict when their layers or heads differ. B may be of
   * another probe (b.tag); verdict: only whether they line up (the two
   * headers are read, no divergence computed).
   * @param {{run: string, step: number}} a of probe `tag`
   * @param {{run: string, step: number, tag?: string}} b
   * @param {boolean} [verdict]
   */
  compare(tag, kind, a, b, verdict = false) {
    const tagB = b.tag || tag;
    const params = {
      tag, kind, run_a: a.run, step_a: a.step, run_b: b.run, step_b: b.step,
      v_a: this.version(a.run, tag, a.step), v_b: this.version(b.run, tagB, b.step),
    };
    if (tagB !== tag) params.tag_b = tagB;
    if (verdict) params.verdict = 1;
    return this.json("compare", params);
  }

  /**
   * One layer's attention, all heads (or one head, or an aggregate over heads:
   * head "mean" | "max" of the layer, or of layer "all": [1, Tq, Tk]).
   * @returns {Promise<import("./decode.js").Weights>}
   */
  attention(run, tag, step, kind, layer, head = null) {
    return this.binary("attention", { run, tag, step, kind, layer, head, v: this.version(run, tag, step) }, (res, buffer) => {
      const w = decodeWeights(buffer, parseShape(res.headers.get("X-Attention-Shape"), 3), res.headers.get("X-Attention-Dtype") || "uint8");
      return { value: w, size: w.bytes.byteLength + (w.values ? w.values.byteLength : 0) };
    });
  }

  /**
   * Every layer x head, max-pooled to at most size x size.
   * @returns {Promise<import("./decode.js").Weights & {pool: number[]}>}
   */
  overview(run, tag, step, kind, size = OVERVIEW_SIZE) {
    return this.binary("overview", { run, tag, step, kind, size, v: this.version(run, tag, step) }, (res, buffer) => {
      const w = decodeWeights(buffer, parseShape(res.headers.get("X-Attention-Shape"), 4), res.headers.get("X-Attention-Dtype") || "uint8");
      const poolHeader = res.headers.get("X-Overview-Pool");
      return { value: { ...w, pool: poolHeader ? parseShape(poolHeader, 2) : [1, 1] }, size: w.bytes.byteLength };
    });
  }

  /** @returns {Promise<import("./decode.js").Neurons>} */
  neurons(run, tag, step, kind, layer, head) {
    return this.binary("neurons", { run, tag, step, kind, layer, head, v: this.version(run, tag, step) }, (res, buffer) => {
      const [Tq, Tk, D] = parseShape(res.headers.get("X-Neuron-Shape"), 3);
      const scale = Number(res.headers.get("X-Neuron-Scale"));
      const hasBias = res.headers.get("X-Neuron-Has-Bias") === "1";
      // format 3's score steps; absent from older servers' answers
      const softcap = Number(res.headers.get("X-Neuron-Softcap") || 0);
      const sinkText = res.headers.get("X-Neuron-Sink") || "";
      const n = decodeNeurons(buffer, {
        Tq, Tk, D, scale: Number.isFinite(scale) ? scale : 1, hasBias,
        softcap: Number.isFinite(softcap) && softcap > 0 ? softcap : 0,
        sink: sinkText === "" || !Number.isFinite(Number(sinkText)) ? null : Number(sinkText),
      });
      return { value: n, size: 4 * (Tq * D + Tk * D) + Tq * Tk * (hasBias ? 5 : 1) };
    });
  }
}
