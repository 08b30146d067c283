// The page host: the dashboard's views in a notebook output or a standalone
// HTML file (tb_attention/page.py writes both, tools/bundle.py puts this and
// every module it needs into one script). The second host of host.js, next to
// TensorBoard's app.js: no TensorBoard, no iframe protocol, no HTTP and no
// URL. The data comes with the page (payload.js), the state lives here.
//
// Everything is drawn inside the output element's own shadow root: several
// outputs in one notebook share no ids, no styles and no state, and the
// notebook's styles do not reach in. The element's light-DOM children (the
// static fallback page.py writes for a notebook whose scripts do not run) are
// hidden by the shadow root as soon as there is one.
//
// A re-run cell's old output is simply dropped by the notebook: nothing here
// holds on to it (the one theme watcher forgets outputs no longer in the page,
// the arrow keys are heard on the output's own element).

import { Catalogue } from "./catalogue.js";
import { THEMES } from "./colors.js";
import { el } from "./dom.js";
import { exportPng, exportTitle } from "./export.js";
import { resolveContext } from "./host.js";
import { fromBase64, inflate, pageData, split } from "./payload.js";
import { Scrubber } from "./scrubber.js";
import { Shell } from "./shell.js";
import { decodeState } from "./state.js";
import { detectTheme, watchTheme } from "./theme.js";
import { labelCache } from "./tokens.js";
import { loadView } from "./views/registry.js";

// The page's own rules on top of the dashboard's: the output is a box of the
// height page.py asked for (the dashboard fills the window instead).
const PAGE_CSS = ":host { display: block; } .tba { height: 100%; }";

/** @type {Set<PageHost>} outputs in the page (for the theme watcher; tests count them) */
const LIVE = new Set();
let stopWatching = null;

function watch(win) {
  if (stopWatching) return;
  stopWatching = watchTheme(win, (name) => {
    for (const host of LIVE) {
      if (host.node.isConnected) host.followTheme(name);
      else LIVE.delete(host); // removed (a re-run cell); re-added if it comes back
    }
  });
}

/**
 * Draw a page's data into `node`.
 * @param {HTMLElement} node the output's element
 * @param {string} text the payload, base64 (payload.js)
 * @param {string} css the dashboard's style.css
 * @param {{keys?: "window" | "node"}} [options] where the arrow keys step:
 *   the whole window (a standalone file) or keys pressed in the output (a notebook)
 * @returns {Promise<PageHost | null>}
 */
export async function mount(node, text, css, options = {}) {
  const shadow = node.shadowRoot || node.attachShadow({ mode: "open" });
  const style = el("style", { text: css + "\n" + PAGE_CSS });
  shadow.replaceChildren(style);
  const win = node.ownerDocument.defaultView;
  try {
    const page = split(await inflate(fromBase64(text)));
    const host = new PageHost(node, shadow, page, options.keys === "window" ? win : node);
    LIVE.add(host);
    watch(win);
    globalThis.tbAttentionPages = LIVE;
    host.refresh();
    return host;
  } catch (e) {
    shadow.append(el("div", { className: "tba-error", attrs: { "data-name": "error", role: "alert" } },
      el("strong", { text: "tb-attention could not open this page's data: " }), el("span", { text: String(e && e.message ? e.message : e) })));
    node.setAttribute("data-state", "error");
    return null;
  }
}

export class PageHost {
  /**
   * @param {HTMLElement} node
   * @param {ShadowRoot} shadow
   * @param {{manifest: any, blobs: Uint8Array}} page
   * @param {EventTarget} keys
   */
  constructor(node, shadow, page, keys) {
    this.node = node;
    this.win = node.ownerDocument.defaultView;
    this.manifest = page.manifest;
    const data = pageData(page);
    this.catalogue = new Catalogue(data);
    this.state = decodeState(this.manifest.state || {});
    this.forcedTheme = THEMES[this.manifest.theme] ? this.manifest.theme : null;
    this.theme = THEMES[this.forcedTheme || detectTheme(this.win)];
    this.gen = 0;
    this.draws = 0;
    this.views = {};
    this.classes = {};
    this.context = null;
    /** @type {import("./host.js").Host} */
    this.host = {
      data, catalogue: this.catalogue, labels: labelCache(),
      state: () => this.state, setState: (patch) => this.setState(patch), drawn: (view) => this.markDrawn(view),
    };
    this.scrubber = new Scrubber(this.win, {
      steps: () => this.currentSteps(), step: () => this.state.step, go: (step) => this.setState({ step }),
    }, keys);
    this.shell = new Shell({ setState: (p) => this.setState(p), exportPng: () => this.exportPng() }, this.scrubber.element,
      { views: this.manifest.views, compact: true, source: "The page's data" });
    this.shell.root.setAttribute("data-theme", this.theme.name);
    shadow.appendChild(this.shell.root);
    this.resizeTimer = 0;
    this.width = -1;
    new ResizeObserver(() => this.onResize()).observe(node);
  }

  setState(patch) {
    this.state = { ...this.state, ...patch };
    if (!this.node.isConnected) this.scrubber.stop();
    else this.refresh();
  }

  currentSteps() {
    return this.catalogue.knownSteps(this.state.run, this.state.tag);
  }

  async refresh() {
    const gen = ++this.gen;
    const isCurrent = () => gen === this.gen;
    this.shell.setStatus("loading");
    try {
      if (!this.catalogue.listed) this.catalogue.set(await this.host.data.tags());
      const ctx = await resolveContext(this.host, this.state, { theme: this.theme, isCurrent });
      if (!isCurrent()) return;
      if (!ctx) {
        this.shell.showEmpty();
        return;
      }
      this.state = ctx.state;
      this.shell.clearMessage();
      this.shell.update(this.catalogue.listing(), ctx, ctx.header, ctx.state, "");
      const steps = ctx.tagInfo.steps || [];
      this.scrubber.update(steps, ctx.state.step);
      this.scrubber.element.hidden = steps.length < 2;
      const name = ctx.state.view;
      if (!this.classes[name]) this.classes[name] = loadView(name);
      const View = await this.classes[name];
      if (!isCurrent()) return;
      if (!this.views[name]) this.views[name] = new View(this.host);
      const view = this.views[name];
      this.shell.place(name, this.views);
      this.context = ctx;
      await view.show(ctx);
      if (!isCurrent()) return;
      this.markDrawn(view);
      this.scrubber.tick();
    } catch (e) {
      if (!isCurrent()) return;
      this.scrubber.stop();
      this.shell.showError(e);
    }
  }

  markDrawn(view) {
    this.shell.markDrawn(this.state, view, ++this.draws);
  }

  /** A new size (the notebook's width, the output shown again): redraw at it. */
  onResize() {
    if (!this.node.isConnected) return;
    LIVE.add(this);
    const width = this.node.clientWidth;
    if (width === this.width) return;
    const first = this.width < 0;
    this.width = width;
    if (first) return;
    this.win.clearTimeout(this.resizeTimer);
    this.resizeTimer = this.win.setTimeout(() => {
      if (!this.forcedTheme) this.followTheme(detectTheme(this.win));
      this.redraw();
    }, 100);
  }

  followTheme(name) {
    if (this.forcedTheme || this.theme.name === name) return;
    this.theme = THEMES[name];
    this.shell.root.setAttribute("data-theme", name);
    this.redraw();
  }

  /** Redraw the view on screen from what it last showed, in the current theme. */
  redraw() {
    const view = this.views[this.state.view];
    if (!this.context || !view || !view.ctx) return;
    this.context = { ...this.context, theme: this.theme };
    view.ctx = { ...view.ctx, theme: this.theme };
    if (!view.drawable || view.drawable()) {
      view.draw();
      this.markDrawn(view);
    }
  }

  exportPng() {
    const v = this.views[this.state.view];
    if (!v || !v.exportCanvas || this.shell.root.getAttribute("data-state") !== "drawn") return;
    const title = exportTitle(this.state, v.describe ? v.describe() : "");
    exportPng(this.win.document, v.exportCanvas(), title, this.state, this.theme, this.shell.exportLink);
  }
}
