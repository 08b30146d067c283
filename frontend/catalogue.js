// Runs, probes and their steps. The `tags` answer lists runs and probes only
// (it answers at once for any number of steps); a probe's kept steps, with
// kept / written, its kinds and any unreadable-step error, come from its
// `steps` answer, fetched when the probe is looked at, once per listing.
// `listing()` hands out new objects that merge the two; the answers stay as
// the data source sent them.

/** @typedef {{tag: string, steps?: number[], kept?: number, written?: number, kinds?: any[], error?: string}} Probe */

const key = (run, tag) => JSON.stringify([run, tag]);

export class Catalogue {
  /** @param {import("./host.js").Data} data */
  constructor(data) {
    this.data = data;
    // the `tags` answer and each looked-at probe's `steps` answer (by
    // key(run, tag)), as sent; the requests on their way; the merged listing
    this.answer = null;
    this.steps = new Map();
    this.pending = new Map();
    this.built = null;
    /** a new listing: new steps may exist (views that cache per listing look here) */
    this.generation = 0;
    /** @type {{run: string, tag: string, answer: Promise<any>} | null} a steps request started early */
    this.early = null;
  }

  /** Whether there is a listing yet. */
  get listed() {
    return this.answer !== null;
  }

  /**
   * A new `tags` answer (the first, TensorBoard's reload, a reconnect): the
   * probes' steps are fetched again as they are looked at.
   */
  set(answer) {
    this.answer = answer;
    this.generation++;
    this.steps.clear();
    this.pending.clear();
    this.built = null;
  }

  /**
   * A `steps` request already on its way (the entry point starts the URL's
   * probe's with the listing): the next probe(run, tag) uses it.
   */
  expect(run, tag, answer) {
    answer.catch(() => {}); // probe() reports failures
    this.early = { run, tag, answer };
  }

  /**
   * Runs and their probes, each probe merged with its `steps` answer when
   * that has arrived (no `steps` key before).
   * @returns {{runs: Array<{run: string, tags: Probe[]}>}}
   */
  listing() {
    if (!this.built) {
      const runs = (this.answer && this.answer.runs) || [];
      this.built = {
        runs: runs.map((r) => ({
          ...r,
          tags: (r.tags || []).map((t) => ({ ...t, ...this.steps.get(key(r.run, t.tag)) })),
        })),
      };
    }
    return this.built;
  }

  /** A probe of the listing (merged), or null. */
  find(run, tag) {
    const r = this.listing().runs.find((x) => x.run === run);
    return (r && r.tags.find((t) => t.tag === tag)) || null;
  }

  /** The steps known of a probe so far ([] before the listing or its steps answer). */
  knownSteps(run, tag) {
    const p = this.listed && this.find(run, tag);
    return (p && p.steps) || [];
  }

  /**
   * The probe with its steps: its `steps` answer is fetched once per listing.
   * @returns {Promise<Probe | null>} null when the listing has no such probe
   */
  probe(run, tag) {
    const found = this.find(run, tag);
    if (!found || found.steps) return Promise.resolve(found);
    const k = key(run, tag);
    let pending = this.pending.get(k);
    if (!pending) {
      const early = this.early;
      this.early = null;
      const answer = early && early.run === run && early.tag === tag ? early.answer : this.data.steps(run, tag);
      const generation = this.generation;
      pending = answer.then(
        (info) => {
          if (generation !== this.generation) return { ...found, ...info };
          this.steps.set(k, info);
          this.built = null;
          return this.find(run, tag);
        },
        (e) => {
          if (this.pending.get(k) === pending) this.pending.delete(k);
          throw e;
        });
      this.pending.set(k, pending);
    }
    return pending;
  }
}
