// Entry point TensorBoard loads (FrontendMetadata es_module_path
// "/static/index.js"): its plugin_entry.html imports this module and calls
// render(), which builds the dashboard into document.body.
//
// Startup without a waterfall: this module imports only what it needs to start
// the network early (the data source, the URL state, the view registry).
// render() then, all at once, asks for every other module (modulepreload), the
// stylesheet, the run list, and the data the URL's state will need: its
// probe's steps, its step's header, and what the URL's view declares it needs
// (its static needs(), as soon as that module and the header are there), before
// the app's module graph has even arrived. The app reuses those requests
// through the data source's cache.
import { Api } from "./api.js";
import { STEP_ROUTES, load } from "./host.js";
import { clampToKind, decodeState } from "./state.js";
import { UrlStore } from "./url.js";
import { VIEWS, loadView, viewUrl } from "./views/registry.js";

// Every module the app and the views import, besides the views (registry.js)
// and this module's own imports; frontend/tests/modules.test.mjs checks that
// the list is the whole graph.
export const SHARED_MODULES = [
  "app.js", "catalogue.js", "colors.js", "comparing.js", "connection.js", "decode.js", "dom.js", "export.js",
  "ipc.js", "layout.js", "scrubber.js", "shell.js", "theme.js", "tokens.js",
  "draw/compare.js", "draw/grid.js", "draw/heatmap.js", "draw/lines.js", "draw/scroll.js", "draw/sparklines.js",
  "views/controls.js",
];

function preload(doc) {
  const urls = [...VIEWS.map((v) => viewUrl(v.name)), ...SHARED_MODULES.map((m) => new URL("./" + m, import.meta.url).href)];
  for (const href of urls) {
    const link = doc.createElement("link");
    link.rel = "modulepreload";
    link.href = href;
    doc.head.appendChild(link);
  }
  const css = doc.createElement("link");
  css.rel = "stylesheet";
  css.href = new URL("./style.css", import.meta.url).href;
  css.dataset.tba = "style";
  doc.head.appendChild(css);
}

/**
 * Start the requests the state in the URL will make: its step's header, then
 * what its view needs for it (failures are ignored here: the app reports them).
 */
function speculate(api, s) {
  const quiet = (p) => p.catch(() => {});
  if (!s.run || !s.tag || s.step === null) return;
  const header = api.header(s.run, s.tag, s.step);
  quiet(Promise.all([header, loadView(s.view)]).then(([h, View]) => {
    const kind = h.kinds.find((k) => k.name === s.kind) || h.kinds[0];
    if (!kind) return;
    const state = clampToKind(s, kind);
    for (const n of View.needs({ state, kind, header: h })) if (STEP_ROUTES.has(n.route)) quiet(load(api, n));
  }));
}

export function render() {
  preload(document);
  const api = new Api(new URL("../", import.meta.url).href);
  const store = new UrlStore(window);
  const tags = api.tags();
  tags.catch(() => {}); // the app awaits it and reports failures
  const s = decodeState(store.read());
  // the URL's probe's steps, alongside the listing: no waterfall before the
  // first draw (the app uses it if the listing still has that run and probe)
  const steps = s.run && s.tag ? { run: s.run, tag: s.tag, answer: api.steps(s.run, s.tag) } : undefined;
  speculate(api, s);
  return import("./app.js").then(({ App }) => {
    const app = new App(window, { api, store, tags, steps }).start();
    // for benchmarks and debugging from the console
    window.tbAttention = app;
    return app;
  });
}
