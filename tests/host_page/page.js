// A host of the dashboard's views without TensorBoard, its iframe protocol or
// HTTP data (what a notebook or a standalone file will be): the data are
// arrays handed in, the state a variable. tests/test_host_e2e.py serves this
// page next to the installed package's frontend/ and calls showView().
import { Catalogue } from "../frontend/catalogue.js";
import { THEMES } from "../frontend/colors.js";
import { el } from "../frontend/dom.js";
import { resolveContext } from "../frontend/host.js";
import { MemoryData } from "../frontend/memory.js";
import { defaultState } from "../frontend/state.js";
import { labelCache } from "../frontend/tokens.js";
import { loadView } from "../frontend/views/registry.js";

/**
 * Show one view of one step given as arrays.
 * @param {{view: string, state: object, header: object, attention: number[], theme?: string}} args
 *   attention: uint8 weights of the header's first kind, [layers, heads, Tq, Tk] row-major
 */
async function showView(args) {
  const state = { ...defaultState(), run: "memory", tag: "probe", step: args.header.step, view: args.view, ...args.state };
  const kind = args.header.kinds[0].name;
  const data = new MemoryData([{ run: "memory", tag: "probe", step: args.header.step, header: args.header, attention: { [kind]: Uint8Array.from(args.attention) } }]);
  const theme = THEMES[args.theme || "light"];
  const root = el("div", { className: "tba", attrs: { "data-theme": theme.name } });
  const host = {
    data, catalogue: new Catalogue(data), labels: labelCache(), drawn: () => root.setAttribute("data-hovered", "yes"),
    state: () => state, setState: (patch) => Object.assign(state, patch),
  };
  host.catalogue.set(await data.tags());
  const View = await loadView(args.view);
  const view = new View(host);
  const main = el("div", { className: "tba-main" }, el("div", { className: "tba-view" }, view.root));
  root.append(el("div", { className: "tba-controls" }, view.controls), main);
  document.body.appendChild(root);
  await view.show(await resolveContext(host, state, { theme }));
  root.setAttribute("data-state", "drawn");
  root.setAttribute("data-detail", view.detail ? view.detail() : "");
}

window.showView = showView;
window.pageReady = true;
