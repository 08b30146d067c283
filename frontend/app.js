// The dashboard: TensorBoard's host of the views (host.js). State in the URL,
// data over HTTP (api.js), the chrome (shell.js), the step scrubber
// (scrubber.js), reconnecting (connection.js), the theme (theme.js) and PNG
// export (export.js).
//
// One render pipeline: setState(patch) -> refresh(): resolve the state against
// the catalogue, fetch the step's header (cached), update the chrome in
// place, and ask the current view to show itself. A generation counter drops
// results of superseded refreshes. When a view has drawn, the root element
// gets data-state="drawn" plus data-view / data-step / data-layer / ... of what
// is on screen (tests and benchmarks wait for those; nothing here sleeps).

import { Api, isUnreachable } from "./api.js";
import { Catalogue } from "./catalogue.js";
import { THEMES } from "./colors.js";
import { Connection } from "./connection.js";
import { exportPng, exportTitle, saveHtml } from "./export.js";
import { STEP_ROUTES, load, resolveContext } from "./host.js";
import { DATA_RELOADED, HostChannel } from "./ipc.js";
import { Scrubber } from "./scrubber.js";
import { Shell } from "./shell.js";
import { fallbackNotices, unreadable } from "./fallbacks.js";
import { decodeState, encodeState, queryIndex } from "./state.js";
import { watchTheme } from "./theme.js";
import { labelCache } from "./tokens.js";
import { UrlStore } from "./url.js";
import { VIEWS, loadView } from "./views/registry.js";

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
    /** @type {Map<string, string>} what was asked for and is not shown, by state key */
    this.notices = new Map();
    /** @type {Set<string>} state keys asked for explicitly since the last draw (the URL, a control, a reload) */
    this.asked = new Set();
    this.fromUrl(this.store.read());
    this.catalogue = new Catalogue(this.api);
    this.earlyTags = early.tags || null;
    if (early.steps) this.catalogue.expect(early.steps.run, early.steps.tag, early.steps.answer);
    this.gen = 0;
    this.draws = 0;
    this.urlTimer = 0;
    this.scheduled = false;
    /** @type {Record<string, any>} the views, made as they are first shown */
    this.views = {};
    this.theme = THEMES.light;
    /** @type {import("./host.js").ViewContext | null} what is on screen */
    this.context = null;
    // TensorBoard reloaded: fetch the listing again on the next refresh
    this.relist = false;
    /** @type {import("./host.js").Host} */
    this.host = {
      data: this.api, catalogue: this.catalogue, labels: labelCache(),
      state: () => this.state, setState: (patch) => this.setState(patch), drawn: (view) => this.markDrawn(view),
    };
    this.scrubber = new Scrubber(win, {
      steps: () => this.currentSteps(), step: () => this.state.step, go: (step) => this.setState({ step }),
    });
    this.shell = new Shell({
      setState: (p) => this.setState(p), exportPng: () => this.exportPng(), saveHtml: () => this.saveHtml(),
    }, this.scrubber.element);
    this.connection = new Connection(win, this.api, this.shell, {
      back: (tags) => this.relisted(tags),
      failed: (e) => this.showError(e),
    });
  }

  start() {
    if (!this.doc.querySelector('link[data-tba="style"]')) {
      const link = this.doc.createElement("link");
      link.rel = "stylesheet";
      link.href = new URL("./style.css", import.meta.url).href;
      link.dataset.tba = "style";
      this.doc.head.appendChild(link);
    }
    this.root = this.shell.root;
    this.doc.body.appendChild(this.root);
    watchTheme(this.win, (name) => this.setTheme(name));
    this.channel = new HostChannel(this.win);
    this.channel.listen(DATA_RELOADED, () => this.reload());
    this.store.onExternalChange((keys) => {
      // back / forward or an edited link: show what the URL says now
      this.scrubber.stop();
      this.fromUrl(keys);
      this.schedule();
    });
    this.win.addEventListener("resize", () => this.onResize());
    this.scrubber.listenToParent();
    /** @type {Record<string, Promise<any>>} view classes, loading or loaded */
    this.classes = {};
    this.refresh();
    return this;
  }

  // -- state ----------------------------------------------------------------

  /**
   * Merge a patch into the state, put it in the URL, and redraw.
   * @param {Partial<import("./state.js").State>} patch
   */
  setState(patch) {
    if ("run" in patch || "tag" in patch) this.notices.clear();
    for (const k of Object.keys(patch)) {
      this.notices.delete(k);
      this.asked.add(k);
    }
    this.state = { ...this.state, ...patch };
    this.writeUrlSoon();
    this.schedule();
  }

  /** The state a link asks for: every key in it is asked for, and what cannot be read is said. */
  fromUrl(keys) {
    this.state = decodeState(keys);
    this.notices.clear();
    this.asked = new Set(Object.keys(keys));
    for (const n of unreadable(keys)) {
      this.notices.set(n.key, n.text);
      this.asked.delete(n.key);
    }
  }

  writeUrlSoon() {
    // Coalesce bursts (slider drags, play) into one history.replaceState.
    if (this.urlTimer) return;
    this.urlTimer = this.win.setTimeout(() => {
      this.urlTimer = 0;
      this.store.write(encodeState(this.state));
    }, 50);
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.refresh();
    });
  }

  /** TensorBoard reloaded its data: re-list runs and steps, keep the view. */
  reload() {
    this.relist = true;
    // the shown probe's steps alongside the new listing: one round trip
    const { run, tag } = this.state;
    if (run && tag) this.catalogue.expect(run, tag, this.api.steps(run, tag));
    this.asked.add("step"); // gone from the new listing: say so
    this.schedule();
  }

  /** TensorBoard answered again after being unreachable: its listing, fresh. */
  relisted(tags) {
    this.catalogue.early = null;
    this.relist = false;
    this.catalogue.set(tags);
    this.asked.add("step");
    this.schedule();
  }

  currentSteps() {
    return this.catalogue.knownSteps(this.state.run, this.state.tag);
  }

  // -- the pipeline -----------------------------------------------------------

  async refresh() {
    const gen = ++this.gen;
    const isCurrent = () => gen === this.gen;
    this.shell.setStatus("loading");
    try {
      if (!this.catalogue.listed || this.relist) {
        const pending = this.earlyTags;
        this.earlyTags = null;
        const tags = await (pending || this.api.tags());
        if (!isCurrent()) return;
        this.relist = false;
        this.catalogue.set(tags);
        this.connection.online();
      }
      const ctx = await resolveContext(this.host, this.state, { theme: this.theme, isCurrent });
      if (!isCurrent()) return;
      if (!ctx) {
        this.scrubber.stop();
        this.shell.showEmpty();
        return;
      }
      this.noteFallbacks(ctx);
      this.state = ctx.state;
      this.writeUrlSoon();
      this.shell.clearMessage();
      this.shell.update(this.catalogue.listing(), ctx, ctx.header, ctx.state, [...this.notices]);
      this.scrubber.update(ctx.tagInfo.steps || [], ctx.state.step);
      const name = ctx.state.view;
      const View = await this.viewClass(name);
      if (!isCurrent()) return;
      if (!this.views[name]) this.views[name] = new View(this.host);
      const view = this.views[name];
      this.shell.place(name, this.views);
      this.context = ctx;
      await view.show(ctx);
      if (!isCurrent()) return;
      this.markDrawn(view);
      this.prefetch(ctx, View);
      this.loadViews();
      this.scrubber.tick();
    } catch (e) {
      if (!isCurrent()) return;
      if (isUnreachable(e)) {
        this.scrubber.stop();
        this.connection.show(e);
      } else {
        this.showError(e);
      }
    }
  }

  /** What was asked for (this.asked) and is not what ctx shows: notices, never a silent fallback. */
  noteFallbacks(ctx) {
    for (const n of fallbackNotices(this.state, ctx.state, this.asked, ctx.kind)) this.notices.set(n.key, n.text);
    this.asked.clear();
  }

  showError(e) {
    this.scrubber.stop();
    this.shell.showError(e);
  }

  viewClass(name) {
    if (!this.classes[name]) this.classes[name] = loadView(name);
    return this.classes[name];
  }

  /**
   * After the first draw, every other view's module (index.js preloads only
   * the URL's): a view can then be opened while TensorBoard is unreachable.
   */
  loadViews() {
    for (const v of VIEWS) this.viewClass(v.name).catch(() => {}); // reported when opened
  }

  /** Record on the root what is drawn now (tests wait on these attributes). */
  markDrawn(view) {
    const kind = this.context && this.context.kind;
    this.shell.markDrawn({ ...this.state, query: queryIndex(this.state, kind) }, view, ++this.draws);
  }

  /** Fetch what the view needs at the neighbouring steps, in the background. */
  prefetch(ctx, View) {
    const steps = ctx.tagInfo.steps || [];
    const i = steps.indexOf(ctx.state.step);
    const near = [steps[i + 1], steps[i - 1]].filter((x) => x !== undefined);
    const gen = this.gen;
    const quiet = (p) => p.catch(() => {});
    this.win.setTimeout(() => {
      if (gen !== this.gen) return;
      for (const step of near) {
        const state = { ...ctx.state, step };
        quiet(this.api.header(state.run, state.tag, step).then((header) => {
          const kind = header.kinds.find((k) => k.name === state.kind);
          if (!kind) return;
          for (const n of View.needs({ ...ctx, state, header, kind })) if (STEP_ROUTES.has(n.route)) quiet(load(this.api, n));
        }));
      }
    }, 0);
  }

  // -- redraws ----------------------------------------------------------------

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

  setTheme(name) {
    if (this.theme.name === name && this.root.getAttribute("data-theme") === name) return;
    this.theme = THEMES[name];
    this.root.setAttribute("data-theme", name);
    this.doc.body.style.background = this.theme.background;
    if (!this.context) return;
    this.context = { ...this.context, theme: this.theme };
    const v = this.views[this.state.view];
    if (v) {
      this.redraw(v, this.theme);
      this.markDrawn(v);
    }
  }

  exportPng() {
    const v = this.views[this.state.view];
    if (!v || !v.exportCanvas || this.root.getAttribute("data-state") !== "drawn") return;
    const title = exportTitle(this.state, v.describe ? v.describe() : "");
    exportPng(this.doc, v.exportCanvas(), title, this.state, this.theme, this.shell.exportLink);
  }

  saveHtml() {
    if (this.root.getAttribute("data-state") !== "drawn") return;
    saveHtml(this.win, this.api, this.state, this.shell);
  }
}
