// Entry point TensorBoard loads (FrontendMetadata es_module_path
// "/static/index.js"): its plugin_entry.html imports this module and calls
// render(), which builds the dashboard into document.body.
//
// Startup without a waterfall: this module imports only what it needs to start
// the network early (api.js, state.js). render() then, all at once, asks for
// every other module (modulepreload), the stylesheet, the run list, and the
// data the URL's state will need (its probe's steps, its step header and the
// view's arrays),
// before the app's module graph has even arrived. The app reuses those
// requests through the API's cache.
import { Api, OVERVIEW_SIZE } from "./api.js";
import { UrlStore, decodeState } from "./state.js";

const MODULES = [
  "app.js", "dom.js", "colors.js", "tokens.js", "ipc.js", "layout.js",
  "views/controls.js", "views/head.js", "views/model.js", "views/neuron.js", "views/matrix.js", "views/stats.js", "views/compare.js",
];

function preload(doc) {
  for (const m of MODULES) {
    const link = doc.createElement("link");
    link.rel = "modulepreload";
    link.href = new URL("./" + m, import.meta.url).href;
    doc.head.appendChild(link);
  }
  const css = doc.createElement("link");
  css.rel = "stylesheet";
  css.href = new URL("./style.css", import.meta.url).href;
  css.dataset.tba = "style";
  doc.head.appendChild(css);
}

/** Start the requests the state in the URL will make (failures are ignored here). */
function speculate(api, s) {
  const quiet = (p) => p.catch(() => {});
  if (!s.run || !s.tag || s.step === null) return;
  quiet(api.header(s.run, s.tag, s.step));
  if (!s.kind) return;
  if (s.view === "model") quiet(api.overview(s.run, s.tag, s.step, s.kind, OVERVIEW_SIZE));
  else if (s.layer === null) return;
  else if (s.view === "head") quiet(api.attention(s.run, s.tag, s.step, s.kind, s.layer));
  else if (s.view === "matrix") quiet(api.attention(s.run, s.tag, s.step, s.kind, s.layer, s.head));
  else if (s.view === "neuron") quiet(api.neurons(s.run, s.tag, s.step, s.kind, s.layer, s.head));
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
  let steps;
  if (s.run && s.tag) {
    steps = { run: s.run, tag: s.tag, answer: api.steps(s.run, s.tag) };
    steps.answer.catch(() => {});
  }
  speculate(api, s);
  return import("./app.js").then(({ App }) => {
    const app = new App(window, { api, store, tags, steps }).start();
    // for benchmarks and debugging from the console
    window.tbAttention = app;
    return app;
  });
}
