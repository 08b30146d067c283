// The dashboard's chrome: the bar (run, probe, kind, view tabs, prettify,
// export), the notice bar, the place for a view's controls and the view, the
// loading / empty / error messages, and the root element's data-state and
// data-* attributes saying what is drawn (tests and benchmarks wait on them).
// It draws what it is told; app.js decides.

import { ApiError } from "./api.js";
import { clear, el, labelled, setOptions } from "./dom.js";
import { isolate, visible } from "./tokens.js";
import { formatRange, intText } from "./state.js";
import { VIEWS } from "./views/registry.js";

export const SNIPPET = [
  "record = tb_attention.capture(model, inputs, tokenizer=tok)",
  'with tb_attention.AttentionWriter("runs/exp") as w:',
  '    w.add_attention("probe", record, global_step=step)',
];

export class Shell {
  /**
   * @param {{setState: (patch: any) => void, exportPng: () => void, saveHtml?: () => void}} actions
   * @param {HTMLElement} steps the step scrubber's element
   * @param {{views?: string[], compact?: boolean, source?: string}} [options]
   *   views: the tabs (default every view); compact: hide a run or probe
   *   list of one entry; source: who gave an error answer ("TensorBoard")
   */
  constructor(actions, steps, options = {}) {
    this.compact = Boolean(options.compact);
    this.source = options.source || "TensorBoard";
    const onSel = (key) => (e) => actions.setState({ [key]: e.target.value });
    this.runSel = el("select", { attrs: { "data-name": "run" }, title: "Run", on: { change: onSel("run") } });
    this.tagSel = el("select", { attrs: { "data-name": "tag" }, title: "Probe (tag)", on: { change: onSel("tag") } });
    this.kindSel = el("select", { attrs: { "data-name": "kind" }, title: "Attention kind", on: { change: onSel("kind") } });
    this.kindField = labelled("Kind", this.kindSel);
    this.runField = labelled("Run", this.runSel);
    this.tagField = labelled("Probe", this.tagSel);
    this.tabs = el("div", { className: "tba-tabs", attrs: { role: "group" } });
    this.tabButtons = {};
    const shown = VIEWS.filter((v) => !options.views || options.views.includes(v.name));
    this.tabs.hidden = shown.length < 2;
    for (const v of shown) {
      const b = el("button", { text: v.title, attrs: { "data-view": v.name, "aria-pressed": "false" }, on: { click: () => actions.setState({ view: v.name }) } });
      this.tabButtons[v.name] = b;
      this.tabs.appendChild(b);
    }
    this.prettyBox = el("input", { attrs: { type: "checkbox", "data-name": "pretty" }, on: { change: (e) => actions.setState({ raw: !e.target.checked }) } });
    this.exportBtn = el("button", { text: "Export PNG", attrs: { "data-name": "export" }, title: "Save the current view as a PNG image", on: { click: () => actions.exportPng() } });
    this.exportLink = el("a", { className: "tba-hint", attrs: { "data-name": "export-link" } });
    // only a host that can write a page offers it (the dashboard; a page is one already)
    this.saveBtn = el("button", { text: "Save as HTML", attrs: { "data-name": "save-html" }, title: "Save this probe's steps as one HTML file that opens with no server", on: { click: () => actions.saveHtml() } });
    this.saveBtn.hidden = !actions.saveHtml;
    this.bar = el("div", { className: "tba-bar" },
      this.runField, this.tagField, this.kindField, this.tabs,
      el("label", { className: "tba-field", title: "Show tokens without tokenizer markers (\u0120 \u2581 ## </w>)" }, this.prettyBox, el("span", { text: "Prettify tokens" })),
      el("span", { className: "tba-spacer" }), this.exportLink, this.exportBtn, this.saveBtn);
    this.steps = steps;
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

  setStatus(status) {
    this.root.setAttribute("data-state", status);
  }

  /**
   * The bar and the notices for a state resolved against the listing.
   * @param {Array<[string, string]>} notices what was asked for and is not shown: [state key, text]
   */
  update(listing, resolved, header, state, notices) {
    const runs = listing.runs.filter((r) => r.tags && r.tags.length);
    // names as text shows them: a U+202E in a run name reversed its label
    setOptions(this.runSel, runs.map((r) => ({ value: r.run, label: isolate(visible(r.run)) })), state.run);
    setOptions(this.tagSel, resolved.runInfo.tags.map((t) => ({ value: t.tag, label: isolate(visible(t.tag)) })), state.tag);
    this.runField.hidden = this.compact && runs.length < 2;
    this.tagField.hidden = this.compact && resolved.runInfo.tags.length < 2;
    const kinds = header ? header.kinds : resolved.tagInfo.kinds || [];
    setOptions(this.kindSel, kinds.map((k) => ({ value: k.name, label: k.name })), state.kind || "");
    this.kindField.hidden = kinds.length < 2;
    for (const v of Object.keys(this.tabButtons)) this.tabButtons[v].setAttribute("aria-pressed", String(v === state.view));
    this.prettyBox.checked = !state.raw;
    this.updateNotice(resolved.tagInfo, notices);
  }

  /** Steps sampled away, unreadable steps, and what was asked for but is not shown (a step that is gone, ...). */
  updateNotice(tagInfo, notices) {
    const kept = tagInfo.kept ?? (tagInfo.steps || []).length;
    const written = tagInfo.written ?? kept;
    clear(this.notice);
    if (kept < written) {
      this.notice.append(`showing ${kept} of ${written} logged steps: start TensorBoard with `,
        el("code", { text: "--samples_per_plugin=attention=0" }), " to keep all");
    } else if (tagInfo.error) {
      this.notice.append(`some steps of this probe could not be read: ${tagInfo.error}`);
    }
    if (tagInfo.warning) {
      if (this.notice.firstChild) this.notice.append(" \u00b7 ");
      this.notice.append(el("span", { text: tagInfo.warning, attrs: { "data-name": "writers-notice" } }));
    }
    for (const [key, text] of notices) {
      if (this.notice.firstChild) this.notice.append(" \u00b7 ");
      this.notice.append(el("span", { text, attrs: { "data-name": key === "step" ? "step-notice" : "fallback-notice", "data-key": key } }));
    }
    this.notice.hidden = !this.notice.firstChild;
  }

  /** Put a view (of `views`, by name) and its controls on screen, hiding the others. */
  place(name, views) {
    const view = views[name];
    for (const n of Object.keys(views)) views[n].root.hidden = n !== name;
    if (view.root.parentNode !== this.viewHost) this.viewHost.appendChild(view.root);
    if (this.controls.firstChild !== view.controls) {
      clear(this.controls);
      this.controls.appendChild(view.controls);
    }
  }

  /** Record on the root what is drawn now (tests wait on these attributes). */
  markDrawn(s, view, draws) {
    const hover = view.hoverNow ? view.hoverNow() : null;
    const attrs = {
      view: s.view, run: s.run || "", tag: s.tag || "", step: intText(s.step), kind: s.kind || "",
      layer: String(s.layer), heads: s.heads ? formatRange(s.heads) || "none" : "all", head: String(s.head),
      query: String(s.query), hover: hover ? hover.side + hover.index : "", pair: s.pair, agg: s.agg || "", draws: String(draws),
      detail: view.detail ? view.detail() : "",
    };
    for (const k of Object.keys(attrs)) this.root.setAttribute("data-" + k, attrs[k]);
    this.setStatus("drawn");
  }

  /** Back from a message to the view. */
  clearMessage() {
    clear(this.message);
    for (const part of [this.viewHost, this.controls, this.steps, this.bar]) part.hidden = false;
  }

  /** Nothing is logged: how to log. */
  showEmpty() {
    clear(this.message);
    for (const part of [this.viewHost, this.controls, this.steps, this.notice, this.bar]) part.hidden = true;
    this.message.appendChild(el("div", { className: "tba-message tba-empty", attrs: { "data-name": "empty" } },
      el("h2", { text: "No attention logged yet" }),
      el("p", { text: "Log a probe input's attention from your training loop, then reload TensorBoard:" }),
      el("pre", { text: "import tb_attention\n\n" + SNIPPET.join("\n") }),
      el("p", {}, "Steps appear here as the writer logs them. Query/key vectors for the neuron view: ",
        el("code", { text: "capture(..., neurons=True)" }), "."),
    ));
    this.setStatus("empty");
  }

  /** A real answer that is an error (or a failure here): what was said. */
  showError(e) {
    const status = e instanceof ApiError && e.status ? ` (HTTP ${e.status})` : "";
    const what = e instanceof ApiError ? `${this.source} answered${status}:` : "Something went wrong:";
    clear(this.message);
    this.viewHost.hidden = true;
    this.message.appendChild(el("div", { className: "tba-error", attrs: { "data-name": "error", role: "alert" } },
      el("strong", { text: what }), " ", el("span", { text: e && e.message ? e.message : String(e) })));
    this.root.setAttribute("data-error", e && e.message ? e.message : String(e));
    this.setStatus("error");
  }
}
