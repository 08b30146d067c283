// The dashboard: navigation chrome (run / probe / kind / view, step scrubber,
// notices), state in the URL, loading / empty / error states, and the views.
//
// One render pipeline: setState(patch) -> refresh(): resolve the state against
// what the backend has, fetch the step's header (cached), update the chrome in
// place, and ask the current view to show itself. A generation counter drops
// results of superseded refreshes. When a view has drawn, the root element
// gets data-state="drawn" plus data-view / data-step / data-layer / ... of what
// is on screen (tests and benchmarks wait for those; nothing here sleeps).

import { Api, ApiError, isUnreachable } from "./api.js";
import { THEMES } from "./colors.js";
import { clear, el, labelled, setOptions } from "./dom.js";
import { DATA_RELOADED, HostChannel } from "./ipc.js";
import {
  UrlStore, clampToKind, decodeState, encodeState, formatRange, intText, resolveState, stepBy,
} from "./state.js";
import { tokenLabels } from "./tokens.js";
import { CompareView } from "./views/compare.js";
import { HeadView } from "./views/head.js";
import { MatrixView } from "./views/matrix.js";
import { ModelView } from "./views/model.js";
import { NeuronView } from "./views/neuron.js";
import { StatsView } from "./views/stats.js";

export const SNIPPET = [
  "record = tb_attention.capture(model, inputs, tokenizer=tok)",
  'with tb_attention.AttentionWriter("runs/exp") as w:',
  '    w.add_attention("probe", record, global_step=step)',
];

const VIEW_CLASSES = { head: HeadView, model: ModelView, neuron: NeuronView, matrix: MatrixView, stats: StatsView, compare: CompareView };
const VIEW_NAMES = { head: "Head", model: "Model", neuron: "Neuron", matrix: "Matrix", stats: "Stats", compare: "Compare" };
const PLAY_INTERVAL_MS = 700;

export class App {
  /**
   * @param {Window} win
   * @param {{api?: Api, store?: UrlStore, tags?: Promise<any>,
   *   steps?: {run: string, tag: string, answer: Promise<any>}}} [early]
   *   what index.js already started: the API (with requests in flight), the
   *   URL store, the pending `tags` request and the `steps` request of the
   *   URL's run and probe
   */
  constructor(win, early = {}) {
    this.win = win;
    this.doc = win.document;
    this.api = early.api || new Api(new URL("../", import.meta.url).href);
    this.store = early.store || new UrlStore(win);
    this.state = decodeState(this.store.read());
    this.tags = null;
    this.earlyTags = early.tags || null;
    this.earlySteps = early.steps || null;
    // tag entry of the current `tags` answer -> its pending `steps` request
    this.stepRequests = new WeakMap();
    this.gen = 0;
    this.draws = 0;
    this.playing = false;
    this.playTimer = 0;
    this.urlTimer = 0;
    this.scheduled = false;
    /** @type {Record<string, any>} */
    this.views = {};
    this.labelCache = new WeakMap();
    this.theme = THEMES.light;
    this.context = null;
    // TensorBoard unreachable: {attempt, since}; the retry loop runs while set
    this.offline = null;
    this.reconnectToken = null;
    // after (re)listing the steps: say so when the step asked for is gone
    this.checkStep = true;
    this.stepNotice = "";
  }

  start() {
    if (!this.doc.querySelector('link[data-tba="style"]')) {
      const link = this.doc.createElement("link");
      link.rel = "stylesheet";
      link.href = new URL("./style.css", import.meta.url).href;
      link.dataset.tba = "style";
      this.doc.head.appendChild(link);
    }
    this.buildChrome();
    this.doc.body.appendChild(this.root);
    this.setupTheme();
    this.host = new HostChannel(this.win);
    this.host.listen(DATA_RELOADED, () => this.reload());
    this.store.onExternalChange((keys) => {
      // back / forward or an edited link: show what the URL says now
      this.stopPlay();
      this.state = decodeState(keys);
      this.schedule();
    });
    this.win.addEventListener("keydown", (e) => this.onKey(e));
    this.win.addEventListener("resize", () => this.onResize());
    this.refresh();
    return this;
  }

  // -- chrome ---------------------------------------------------------------

  buildChrome() {
    const onSel = (key) => (e) => this.setState({ [key]: e.target.value });
    this.runSel = el("select", { attrs: { "data-name": "run" }, title: "Run", on: { change: onSel("run") } });
    this.tagSel = el("select", { attrs: { "data-name": "tag" }, title: "Probe (tag)", on: { change: onSel("tag") } });
    this.kindSel = el("select", { attrs: { "data-name": "kind" }, title: "Attention kind", on: { change: onSel("kind") } });
    this.kindField = labelled("Kind", this.kindSel);
    this.tabs = el("div", { className: "tba-tabs", attrs: { role: "group" } });
    this.tabButtons = {};
    for (const v of Object.keys(VIEW_CLASSES)) {
      const b = el("button", {
        text: VIEW_NAMES[v], attrs: { "data-view": v, "aria-pressed": "false" },
        on: { click: () => this.setState({ view: v }) },
      });
      this.tabButtons[v] = b;
      this.tabs.appendChild(b);
    }
    this.prettyBox = el("input", { attrs: { type: "checkbox", "data-name": "pretty" }, on: { change: (e) => this.setState({ raw: !e.target.checked }) } });
    this.exportBtn = el("button", { text: "Export PNG", attrs: { "data-name": "export" }, title: "Save the current view as a PNG image", on: { click: () => this.exportPng() } });
    this.exportLink = el("a", { className: "tba-hint", attrs: { "data-name": "export-link" } });
    this.bar = el("div", { className: "tba-bar" },
      labelled("Run", this.runSel),
      labelled("Probe", this.tagSel),
      this.kindField,
      this.tabs,
      el("label", { className: "tba-field", title: "Show tokens without tokenizer markers (\u0120 \u2581 ## </w>)" }, this.prettyBox, el("span", { text: "Prettify tokens" })),
      el("span", { className: "tba-spacer" }),
      this.exportLink,
      this.exportBtn,
    );

    this.prevBtn = el("button", { text: "\u25c0\u25c0", title: "Previous step (\u2190)", attrs: { "data-name": "prev" }, on: { click: () => this.stepBy(-1) } });
    this.playBtn = el("button", { text: "\u25b6", title: "Play through the steps", attrs: { "data-name": "play" }, on: { click: () => this.togglePlay() } });
    this.nextBtn = el("button", { text: "\u25b6\u25b6", title: "Next step (\u2192)", attrs: { "data-name": "next" }, on: { click: () => this.stepBy(1) } });
    this.slider = el("input", {
      attrs: { type: "range", min: "0", max: "0", step: "1", value: "0", "data-name": "step-slider", "aria-label": "Step" },
      on: { input: () => this.onSlider() },
    });
    this.stepLabel = el("span", { className: "tba-step-label", attrs: { "data-name": "step-label" } });
    this.steps = el("div", { className: "tba-steps" }, this.prevBtn, this.playBtn, this.nextBtn, this.slider, this.stepLabel);
    this.notice = el("div", { className: "tba-notice", attrs: { "data-name": "notice" } });
    this.notice.hidden = true;
    this.controls = el("div", { className: "tba-controls", attrs: { "data-name": "controls" } });
    this.viewHost = el("div", { className: "tba-view" });
    this.message = el("div", { className: "tba-message-host" });
    this.loading = el("div", { className: "tba-loading", text: "Loading\u2026" });
    this.main = el("div", { className: "tba-main" }, this.loading, this.message, this.viewHost);
    this.root = el("div", { className: "tba", attrs: { id: "tba", "data-state": "loading" } },
      this.bar, this.steps, this.notice, this.controls, this.main);
  }

  /** Update the chrome from a resolved state. */
  renderChrome(resolved, header, kind) {
    const s = this.state;
    const runs = this.tags.runs.filter((r) => r.tags && r.tags.length);
    setOptions(this.runSel, runs.map((r) => ({ value: r.run, label: r.run })), s.run);
    setOptions(this.tagSel, resolved.runInfo.tags.map((t) => ({ value: t.tag, label: t.tag })), s.tag);
    const kinds = header ? header.kinds : resolved.tagInfo.kinds || [];
    setOptions(this.kindSel, kinds.map((k) => ({ value: k.name, label: k.name })), s.kind || "");
    this.kindField.hidden = kinds.length < 2;
    for (const v of Object.keys(this.tabButtons)) this.tabButtons[v].setAttribute("aria-pressed", String(v === s.view));
    this.prettyBox.checked = !s.raw;

    const steps = resolved.tagInfo.steps || [];
    const idx = Math.max(0, steps.indexOf(s.step));
    this.slider.max = String(Math.max(0, steps.length - 1));
    if (this.slider.value !== String(idx)) this.slider.value = String(idx);
    this.slider.disabled = steps.length < 2;
    this.prevBtn.disabled = idx <= 0;
    this.nextBtn.disabled = idx >= steps.length - 1;
    this.playBtn.disabled = steps.length < 2;
    this.stepLabel.textContent = `step ${intText(s.step)}  (${idx + 1} of ${steps.length})`;

    const kept = resolved.tagInfo.kept ?? steps.length;
    const written = resolved.tagInfo.written ?? kept;
    clear(this.notice);
    if (kept < written) {
      this.notice.append(
        `showing ${kept} of ${written} logged steps: start TensorBoard with `,
        el("code", { text: "--samples_per_plugin=attention=0" }),
        " to keep all",
      );
      this.notice.hidden = false;
    } else if (resolved.tagInfo.error) {
      this.notice.append(`some steps of this probe could not be read: ${resolved.tagInfo.error}`);
      this.notice.hidden = false;
    } else {
      this.notice.hidden = true;
    }
    if (this.stepNotice) {
      if (!this.notice.hidden) this.notice.append(" \u00b7 ");
      this.notice.append(el("span", { text: this.stepNotice, attrs: { "data-name": "step-notice" } }));
      this.notice.hidden = false;
    }
  }

  // -- state ----------------------------------------------------------------

  /**
   * Merge a patch into the state, put it in the URL, and redraw.
   * @param {Partial<import("./state.js").State>} patch
   */
  setState(patch) {
    if ("run" in patch || "tag" in patch || "step" in patch) this.stepNotice = "";
    this.state = { ...this.state, ...patch };
    this.writeUrlSoon();
    this.schedule();
  }

  writeUrlSoon() {
    // Coalesce bursts (slider drags, play) into one history.replaceState.
    if (this.urlTimer) return;
    this.urlTimer = this.win.setTimeout(() => {
      this.urlTimer = 0;
      this.store.write(encodeState(this.state));
    }, 50);
  }

  writeUrlNow() {
    if (this.urlTimer) {
      this.win.clearTimeout(this.urlTimer);
      this.urlTimer = 0;
    }
    this.store.write(encodeState(this.state));
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.refresh();
    });
  }

  /** TensorBoard reloaded its data: re-list steps, keep the view. */
  reload() {
    this.tags = null;
    // the shown probe's steps alongside the new listing: one round trip
    const { run, tag } = this.state;
    this.earlySteps = run && tag ? { run, tag, answer: this.api.steps(run, tag) } : null;
    if (this.earlySteps) this.earlySteps.answer.catch(() => {}); // loadSteps reports failures
    this.checkStep = true;
    this.schedule();
  }

  setStatus(status) {
    this.root.setAttribute("data-state", status);
  }

  labelsFor(kind, raw) {
    let byRaw = this.labelCache.get(kind);
    if (!byRaw) {
      byRaw = {};
      this.labelCache.set(kind, byRaw);
    }
    const key = raw ? "raw" : "pretty";
    if (!byRaw[key]) {
      byRaw[key] = { q: tokenLabels(kind.query_tokens, !raw), k: tokenLabels(kind.key_tokens, !raw) };
    }
    return byRaw[key];
  }

  viewFor(name) {
    if (!this.views[name]) this.views[name] = new VIEW_CLASSES[name](this);
    return this.views[name];
  }

  async refresh() {
    const gen = ++this.gen;
    this.setStatus("loading");
    try {
      if (!this.tags) {
        const pending = this.earlyTags;
        this.earlyTags = null;
        const tags = await (pending || this.api.tags());
        if (gen !== this.gen) return;
        this.tags = tags;
        this.online();
      }
      let resolved = resolveState(this.state, this.tags);
      if (!resolved) {
        this.showEmpty();
        return;
      }
      if (!resolved.tagInfo.steps) {
        // the listing names probes only; their steps come one probe at a time
        await this.loadSteps(resolved.state.run, resolved.state.tag);
        if (gen !== this.gen) return;
        resolved = resolveState(this.state, this.tags);
      }
      let state = resolved.state;
      if (this.checkStep) {
        // the steps were (re)listed: a step that is gone (TensorBoard restarted
        // on changed logs, or sampled it away) moves to the nearest, visibly
        this.checkStep = false;
        const asked = this.state.step;
        const same = state.run === this.state.run && state.tag === this.state.tag;
        this.stepNotice = same && asked !== null && state.step !== null && state.step !== asked
          ? `step ${intText(asked)} is not among the logged steps (any more): showing step ${intText(state.step)}, the nearest`
          : "";
      }
      if (state.step === null) throw new Error(`probe "${state.tag}" of run "${state.run}" has no readable steps`);
      const header = await this.api.header(state.run, state.tag, state.step);
      if (gen !== this.gen) return;
      const kind = header.kinds.find((k) => k.name === state.kind) || header.kinds[0];
      if (!kind) throw new Error(`step ${state.step} of probe "${state.tag}" holds no attention`);
      state = clampToKind(state, kind);
      this.state = state;
      this.writeUrlSoon();
      this.clearMessage();
      this.renderChrome(resolved, header, kind);
      const view = this.viewFor(state.view);
      for (const name of Object.keys(this.views)) this.views[name].root.hidden = name !== state.view;
      if (view.root.parentNode !== this.viewHost) this.viewHost.appendChild(view.root);
      if (this.controls.firstChild !== view.controls) {
        clear(this.controls);
        this.controls.appendChild(view.controls);
      }
      const ctx = {
        state, header, kind,
        runInfo: resolved.runInfo, tagInfo: resolved.tagInfo,
        labels: this.labelsFor(kind, state.raw),
        theme: this.theme,
        isCurrent: () => gen === this.gen,
      };
      this.context = ctx;
      await view.show(ctx);
      if (gen !== this.gen) return;
      this.markDrawn(view);
      this.prefetch(ctx, view);
      if (this.playing) this.playTick();
    } catch (e) {
      if (gen !== this.gen) return;
      if (isUnreachable(e)) this.showOffline(e);
      else this.showError(e);
    }
  }

  /** Record on the root what is drawn now (tests wait on these attributes). */
  markDrawn(view) {
    const s = this.state;
    const r = this.root;
    this.draws++;
    r.setAttribute("data-view", s.view);
    r.setAttribute("data-run", s.run || "");
    r.setAttribute("data-tag", s.tag || "");
    r.setAttribute("data-step", intText(s.step));
    r.setAttribute("data-kind", s.kind || "");
    r.setAttribute("data-layer", String(s.layer));
    r.setAttribute("data-heads", s.heads ? formatRange(s.heads) || "none" : "all");
    r.setAttribute("data-head", String(s.head));
    r.setAttribute("data-query", String(s.query));
    const hover = view.hoverNow ? view.hoverNow() : null;
    r.setAttribute("data-hover", hover ? hover.side + hover.index : "");
    r.setAttribute("data-pair", s.pair);
    r.setAttribute("data-draws", String(this.draws));
    r.setAttribute("data-detail", view.detail ? view.detail() : "");
    this.setStatus("drawn");
  }

  /** Fetch the neighbouring steps' data in the background. */
  prefetch(ctx, view) {
    if (!view.prefetch) return;
    const steps = ctx.tagInfo.steps || [];
    const i = steps.indexOf(ctx.state.step);
    const near = [steps[i + 1], steps[i - 1]].filter((x) => x !== undefined);
    const gen = this.gen;
    this.win.setTimeout(() => {
      if (gen !== this.gen) return;
      for (const st of near) {
        this.api.header(ctx.state.run, ctx.state.tag, st)
          .then((h) => view.prefetch({ ...ctx, state: { ...ctx.state, step: st }, header: h }))
          .catch(() => {});
      }
    }, 0);
  }

  // -- messages -------------------------------------------------------------

  clearMessage() {
    clear(this.message);
    this.viewHost.hidden = false;
    this.controls.hidden = false;
    this.steps.hidden = false;
    this.bar.hidden = false;
  }

  showEmpty() {
    this.stopPlay();
    clear(this.message);
    this.viewHost.hidden = true;
    this.controls.hidden = true;
    this.steps.hidden = true;
    this.notice.hidden = true;
    this.bar.hidden = true;
    this.message.appendChild(el("div", { className: "tba-message tba-empty", attrs: { "data-name": "empty" } },
      el("h2", { text: "No attention logged yet" }),
      el("p", { text: "Log a probe input's attention from your training loop, then reload TensorBoard:" }),
      el("pre", { text: "import tb_attention\n\n" + SNIPPET.join("\n") }),
      el("p", {}, "Steps appear here as the writer logs them. Query/key vectors for the neuron view: ",
        el("code", { text: "capture(..., neurons=True)" }), "."),
    ));
    this.setStatus("empty");
  }

  showError(e) {
    this.stopPlay();
    const status = e instanceof ApiError && e.status ? ` (HTTP ${e.status})` : "";
    const what = e instanceof ApiError ? "TensorBoard answered" + status + ":" : "Something went wrong:";
    clear(this.message);
    this.viewHost.hidden = true;
    this.message.appendChild(el("div", { className: "tba-error", attrs: { "data-name": "error", role: "alert" } },
      el("strong", { text: what }), " ", el("span", { text: e && e.message ? e.message : String(e) })));
    this.root.setAttribute("data-error", e && e.message ? e.message : String(e));
    this.setStatus("error");
  }

  /**
   * TensorBoard did not answer (stopped, restarting, a proxy's 502-504): say
   * so, keep the last drawing (dimmed) and the chrome, and retry in the
   * background; when it answers, re-list the steps and draw the state again.
   */
  showOffline(e) {
    this.stopPlay();
    const first = !this.offline;
    if (first) this.offline = { attempt: 0, since: Date.now() };
    clear(this.message);
    this.offlineDetail = el("span", { attrs: { "data-name": "offline-detail" } });
    this.message.appendChild(el("div", { className: "tba-error tba-offline", attrs: { "data-name": "offline", role: "status" } },
      el("strong", { text: "TensorBoard is not reachable \u2014 retrying\u2026" }), " ", this.offlineDetail));
    this.setOfflineDetail(e);
    this.root.setAttribute("data-error", e && e.message ? e.message : String(e));
    this.setStatus("offline");
    if (first) this.reconnect();
  }

  /** What failed, and when the next attempt is (`nextMs`), in the offline banner. */
  setOfflineDetail(e, nextMs) {
    if (!this.offlineDetail || !this.offline) return;
    const why = e && e.status ? `HTTP ${e.status}: ${e.message}` : e && e.message ? e.message : "";
    const next = nextMs ? ` \u00b7 attempt ${this.offline.attempt + 1} in ${(nextMs / 1000).toFixed(1)} s` : "";
    this.offlineDetail.textContent = `(${why}${next}). The view comes back by itself; nothing to reload.`;
  }

  async reconnect() {
    const token = {};
    this.reconnectToken = token;
    const live = () => this.reconnectToken === token;
    try {
      const tags = await this.api.reconnect({
        wait: (ms) => new Promise((resolve) => this.win.setTimeout(resolve, ms)),
        cancelled: () => !live(),
        onRetry: (attempt, delay, err) => {
          if (!this.offline) return;
          this.offline.attempt = attempt;
          if (this.root.getAttribute("data-state") === "offline") this.setOfflineDetail(err || { message: this.root.getAttribute("data-error") }, delay);
        },
      });
      if (!tags || !live()) return;
      this.online();
      // a restarted TensorBoard may serve other logs: drop what was decoded,
      // and what the browser cached
      this.api.cache.clear();
      this.api.revalidate = true;
      this.tags = tags;
      this.earlySteps = null;
      this.checkStep = true;
      this.schedule();
    } catch (e) {
      if (!live()) return;
      this.online();
      this.showError(e);
    }
  }

  /** TensorBoard answered: stop the retry loop. */
  online() {
    this.offline = null;
    this.reconnectToken = null;
  }

  // -- steps ----------------------------------------------------------------

  /**
   * Fetch the `steps` answer of (run, tag) once per `tags` answer and merge it
   * into that answer's entry for the probe (steps, kept, written, kinds,
   * model_type, error): resolveState, the scrubber, the compare and stats
   * views read them there. A new `tags` answer (TensorBoard reloaded, a
   * reconnect) has new entries, so the steps are fetched again then.
   * @returns {Promise<any>} the entry, or null when the listing has no such probe
   */
  loadSteps(run, tag) {
    const runInfo = this.tags && this.tags.runs.find((r) => r.run === run);
    const entry = runInfo && (runInfo.tags || []).find((t) => t.tag === tag);
    if (!entry) return Promise.resolve(null);
    if (entry.steps) return Promise.resolve(entry);
    let pending = this.stepRequests.get(entry);
    if (!pending) {
      const early = this.earlySteps;
      const answer = early && early.run === run && early.tag === tag ? early.answer : this.api.steps(run, tag);
      this.earlySteps = null;
      pending = answer.then(
        (info) => Object.assign(entry, info),
        (e) => {
          this.stepRequests.delete(entry);
          throw e;
        });
      this.stepRequests.set(entry, pending);
    }
    return pending;
  }

  currentSteps() {
    if (!this.tags) return [];
    const run = this.tags.runs.find((r) => r.run === this.state.run);
    const tag = run && run.tags.find((t) => t.tag === this.state.tag);
    return (tag && tag.steps) || [];
  }

  stepBy(delta) {
    const steps = this.currentSteps();
    if (!steps.length || this.state.step === null) return;
    const next = stepBy(steps, this.state.step, delta);
    if (next !== this.state.step) this.setState({ step: next });
  }

  onSlider() {
    const steps = this.currentSteps();
    const st = steps[Number(this.slider.value)];
    if (st !== undefined && st !== this.state.step) this.setState({ step: st });
  }

  togglePlay() {
    if (this.playing) {
      this.stopPlay();
      return;
    }
    const steps = this.currentSteps();
    if (steps.length < 2) return;
    this.playing = true;
    this.playBtn.textContent = "\u275a\u275a";
    this.playBtn.title = "Pause";
    this.playBtn.setAttribute("aria-pressed", "true");
    if (this.state.step === steps[steps.length - 1]) this.setState({ step: steps[0] });
    else this.playTick();
  }

  stopPlay() {
    this.playing = false;
    this.win.clearTimeout(this.playTimer);
    this.playBtn.textContent = "\u25b6";
    this.playBtn.title = "Play through the steps";
    this.playBtn.setAttribute("aria-pressed", "false");
  }

  playTick() {
    this.win.clearTimeout(this.playTimer);
    this.playTimer = this.win.setTimeout(() => {
      if (!this.playing) return;
      const steps = this.currentSteps();
      const next = stepBy(steps, this.state.step, 1);
      if (next === this.state.step) {
        this.stopPlay();
        return;
      }
      this.setState({ step: next });
    }, PLAY_INTERVAL_MS);
  }

  onKey(e) {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
    const t = e.target;
    const tag = t && t.tagName;
    if (tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && t.type !== "checkbox")) return;
    if (e.key === "ArrowLeft") {
      e.preventDefault();
      this.stepBy(-1);
    } else if (e.key === "ArrowRight") {
      e.preventDefault();
      this.stepBy(1);
    }
  }

  onResize() {
    if (this.resizeTimer) this.win.clearTimeout(this.resizeTimer);
    this.resizeTimer = this.win.setTimeout(() => {
      if (this.context) this.redraw(this.views[this.state.view]);
    }, 100);
  }

  /**
   * Redraw a view from what it last showed (its `ctx`), after a resize or
   * with a new theme: every view keeps its data and context and has draw();
   * a view whose data may be missing says so with drawable().
   */
  redraw(view, theme) {
    if (!view || !view.ctx) return;
    if (theme) view.ctx = { ...view.ctx, theme };
    if (!view.drawable || view.drawable()) view.draw();
  }

  // -- theme ----------------------------------------------------------------

  setupTheme() {
    const apply = () => {
      const name = this.detectTheme();
      if (this.theme.name === name && this.root.getAttribute("data-theme") === name) return;
      this.theme = THEMES[name];
      this.root.setAttribute("data-theme", name);
      this.doc.body.style.background = this.theme.background;
      if (this.context) {
        this.context = { ...this.context, theme: this.theme };
        const v = this.views[this.state.view];
        if (v) {
          this.redraw(v, this.theme);
          this.markDrawn(v);
        }
      }
    };
    apply();
    try {
      this.win.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", apply);
    } catch (e) {
      // old browsers: theme fixed at load
    }
    const tbBody = this.tensorBoardBody();
    if (tbBody) new MutationObserver(apply).observe(tbBody, { attributes: true, attributeFilter: ["class"] });
  }

  /** TensorBoard's <body>, when this page is its (same-origin) plugin iframe. */
  tensorBoardBody() {
    try {
      const p = this.win.parent;
      if (p && p !== this.win && p.tensorboard && p.document && p.document.body) return p.document.body;
    } catch (e) {
      // cross-origin parent
    }
    return null;
  }

  detectTheme() {
    // TensorBoard's own dark mode (its setting follows the browser unless
    // overridden) wins; on its own the page follows prefers-color-scheme.
    const tb = this.tensorBoardBody();
    if (tb) return tb.classList.contains("dark-mode") ? "dark" : "light";
    return this.win.matchMedia && this.win.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  // -- export ---------------------------------------------------------------

  exportPng() {
    const v = this.views[this.state.view];
    if (!v || !v.exportCanvas || this.root.getAttribute("data-state") !== "drawn") return;
    const src = v.exportCanvas();
    const s = this.state;
    const title = `${s.run} \u00b7 ${s.tag} \u00b7 step ${intText(s.step)} \u00b7 ${s.kind} \u00b7 ${VIEW_NAMES[s.view]} view` +
      (s.view === "model" || s.view === "stats" ? "" : ` \u00b7 layer ${s.layer}`) +
      (s.view === "stats" ? ` \u00b7 ${s.stat}` : "") +
      (s.view === "matrix" || s.view === "neuron" ? ` \u00b7 head ${s.head}` : "");
    const scale = src.width / Math.max(1, parseFloat(src.style.width) || src.width);
    const band = Math.round(24 * scale);
    const out = this.doc.createElement("canvas");
    out.width = src.width;
    out.height = src.height + band;
    const c = out.getContext("2d");
    c.fillStyle = this.theme.background;
    c.fillRect(0, 0, out.width, out.height);
    c.fillStyle = this.theme.text;
    c.font = `${Math.round(13 * scale)}px system-ui, sans-serif`;
    c.textBaseline = "middle";
    c.fillText(title, Math.round(8 * scale), band / 2);
    c.drawImage(src, 0, band);
    const name = `attention-${s.run}-${s.tag}-step${intText(s.step)}-${s.view}.png`.replace(/[^A-Za-z0-9._-]+/g, "_");
    out.toBlob((blob) => {
      if (!blob) return;
      if (this.exportUrl) URL.revokeObjectURL(this.exportUrl);
      this.exportUrl = URL.createObjectURL(blob);
      this.exportLink.href = this.exportUrl;
      this.exportLink.download = name;
      this.exportLink.textContent = name;
      this.exportLink.title = "Download again";
      this.exportLink.click();
    }, "image/png");
  }
}
