// Every view of the dashboard, in tab order: its name (the URL's `view`), its
// tab's title and its module, one file in this directory whose default export
// is the view class (the View of host.js). Adding a view is writing that file
// and adding its line here: the tabs, the URL, the entry point's preloads and
// early requests, and the app all read this list. No imports: the entry point
// reads it before any view module has arrived.

export const VIEWS = [
  { name: "head", title: "Head", module: "head.js" },
  { name: "model", title: "Model", module: "model.js" },
  { name: "neuron", title: "Neuron", module: "neuron.js" },
  { name: "matrix", title: "Matrix", module: "matrix.js" },
  { name: "text", title: "Text", module: "text.js" },
  { name: "stats", title: "Stats", module: "stats.js" },
  { name: "compare", title: "Compare", module: "compare.js" },
];

export const VIEW_NAMES = VIEWS.map((v) => v.name);

/** The URL of a view's module. */
export function viewUrl(name) {
  const entry = VIEWS.find((v) => v.name === name);
  if (!entry) throw new Error(`no view "${name}" (views: ${VIEW_NAMES.join(", ")})`);
  return new URL("./" + entry.module, import.meta.url).href;
}

/** A view's class (its module's default export). */
export async function loadView(name) {
  return (await import(viewUrl(name))).default;
}
