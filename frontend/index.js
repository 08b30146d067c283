// Entry point TensorBoard loads (FrontendMetadata es_module_path
// "/static/index.js"): its plugin_entry.html imports this module and calls
// render(), which builds the dashboard into document.body.
import { App } from "./app.js";

export function render() {
  const app = new App(window).start();
  // for benchmarks and debugging from the console
  window.tbAttention = app;
  return app;
}
