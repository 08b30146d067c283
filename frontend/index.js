// Entry point TensorBoard loads (FrontendMetadata es_module_path
// "/static/index.js"): its plugin_entry.html imports this module and calls
// render(), which builds the dashboard into document.body.
//
// Startup without a waterfall: this module imports only what it needs to start
// the network early (the data source, the URL state, the view registry), each
// directly, so the browser asks for all of them at once. render() then asks
// for the run list and the data the URL's state will need (its probe's steps
// and its step's header) and, behind them on the connections, for the URL's
// view and every shared module (modulepreload) and the stylesheet; as soon
// as that view's module and the header are there, for what the view declares
// it needs (its static needs()), before the app's module graph has even
// arrived. The app reuses those requests through the data source's cache.
import { Api } from "./api.js";
import "./decode.js"; // api.js's, asked for with it
import { STEP_ROUTES, load } from "./host.js";
import { clampToKind, decodeState } from "./state.js";
import { UrlStore } from "./url.js";
import { loadView, viewUrl } from "./views/registry.js";

// The modules the app needs and those two or more views share (a view's own
// helpers load with it), besides this module's own imports: preloaded all at
// once with the URL's view, flat (inside TensorBoard's iframe, finding
// imports as modules arrive costs tens of ms a level: TensorBoard's page holds
// the main thread), in about the order a first draw needs them; the other
// views load after the first draw. frontend/tests/modules.test.mjs checks it.
export const SHARED_MODULES = [
  "app.js", "dom.js", "colors.js", "layout.js", "edges.js", "tokens.js", "views/controls.js", "draw/lines.js", "draw/scroll.js",
  "shell.js", "scrubber.js", "catalogue.js", "connection.js", "theme.js", "export.js", "ipc.js", "fallbacks.js",
  "draw/heatmap.js", "draw/grid.js", "draw/legend.js", "draw/image.js",
];

function preload(doc, view) {
  const urls = [viewUrl(view), ...SHARED_MODULES.map((m) => new URL("./" + m, import.meta.url).href)];
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
  const api = new Api(new URL("../", import.meta.url).href);
  const store = new UrlStore(window);
  const tags = api.tags();
  tags.catch(() => {}); // the app awaits it and reports failures
  const s = decodeState(store.read());
  // the URL's probe's steps, alongside the listing: no waterfall before the
  // first draw (the app uses it if the listing still has that run and probe)
  const steps = s.run && s.tag ? { run: s.run, tag: s.tag, answer: api.steps(s.run, s.tag) } : undefined;
  // handled by the catalogue once the app has arrived (a link to a run that is not logged: a 404)
  if (steps) steps.answer.catch(() => {});
  speculate(api, s);
  // after the data requests: the modules queue behind them, not before
  preload(document, s.view);
  return import("./app.js").then(({ App }) => {
    const app = new App(window, { api, store, tags, steps }).start();
    // for benchmarks and debugging from the console
    window.tbAttention = app;
    return app;
  });
}
