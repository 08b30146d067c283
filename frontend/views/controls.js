// Controls the views share: layer, single head (or aggregate over heads), zoom
// and sentence-pair selects, the head colour squares of the head view, and
// the keys of a focusable drawing area.

import { css, headColor } from "../colors.js";
import { clear, el, labelled, setOptions } from "../dom.js";
import { hasSegments, pairRanges } from "../layout.js";
import { PAIR_LABELS, PAIRS } from "../state.js";
import { AGGREGATES, AGG_LABELS } from "../aggregate.js";
import { imageOf } from "../draw/image.js";

/** The swatch of an aggregate over heads: a band of the first heads' colours. */
export const AGG_SWATCH = `linear-gradient(90deg, ${[0, 1, 2, 3, 4].map((h) => css(headColor(h))).join(", ")})`;

/** Layer select bound to state.layer. */
export function layerControl(host) {
  const sel = el("select", { attrs: { "data-name": "layer" }, title: "Layer (\u2191/\u2193 in the list)", on: { change: () => host.setState({ layer: Number(sel.value) }) } });
  return {
    field: labelled("Layer", sel),
    select: sel,
    update(kind, state) {
      setOptions(sel, kind.layer_ids.map((id) => ({ value: String(id), label: String(id) })), String(state.layer));
    },
  };
}

/**
 * Single-head select bound to state.head, with the aggregates over heads
 * (state.agg: the mean or max of the layer or of all layers) after the heads;
 * without them (aggregates: false, the neuron view) it says when an
 * aggregate chosen elsewhere does not apply.
 */
export function headControl(host, { aggregates = true } = {}) {
  const sel = el("select", {
    attrs: { "data-name": "head" }, title: "Head, or an aggregate over heads",
    on: { change: () => host.setState(AGGREGATES.includes(sel.value) ? { agg: sel.value } : { head: Number(sel.value), agg: null }) },
  });
  const swatch = el("span", { className: "tba-head", attrs: { "aria-hidden": "true" }, style: { display: "inline-block" } });
  const note = el("span", { className: "tba-hint", attrs: { "data-name": "head-agg-note" } });
  return {
    field: labelled("Head", el("span", { className: "tba-field" }, swatch, sel, note)),
    select: sel,
    update(kind, state) {
      const opts = [];
      for (let h = 0; h < kind.num_heads; h++) opts.push({ value: String(h), label: String(h) });
      if (aggregates) opts.push(...AGGREGATES.map((a) => ({ value: a, label: AGG_LABELS[a] })));
      const agg = aggregates ? state.agg : null;
      setOptions(sel, opts, agg || String(state.head));
      swatch.style.background = agg ? AGG_SWATCH : css(headColor(state.head));
      note.textContent = !aggregates && state.agg
        ? `one head at a time here: its query and key vectors are per head (not the ${AGG_LABELS[state.agg]})` : "";
    },
  };
}

/** Image-mode checkbox bound to state.image, shown for steps captured from an image. */
export function imageControl(host) {
  const box = el("input", { attrs: { type: "checkbox", "data-name": "image-mode" }, title: "Draw the attention over the image", on: { change: () => host.setState({ image: box.checked }) } });
  const field = labelled("Image", box);
  return {
    field,
    /** Whether the view draws in image mode now. */
    update(ctx) {
      const has = imageOf(ctx) !== null;
      field.hidden = !has;
      box.checked = ctx.state.image;
      return has && ctx.state.image;
    },
  };
}

export const ZOOMS = [0, 2, 4, 8, 12, 18, 24, 32];

/** Zoom (row or cell size) select bound to state.zoom. */
export function zoomControl(host, title) {
  const sel = el("select", { attrs: { "data-name": "zoom" }, title, on: { change: () => host.setState({ zoom: Number(sel.value) }) } });
  return {
    field: labelled("Zoom", sel),
    select: sel,
    update(state) {
      const zs = ZOOMS.includes(state.zoom) ? ZOOMS : [...ZOOMS, state.zoom].sort((a, b) => a - b);
      setOptions(sel, zs.map((z) => ({ value: String(z), label: z === 0 ? "auto" : `${z} px` })), String(state.zoom));
    },
  };
}

/**
 * One colour square per head: click toggles a head, double-click shows only
 * that head (double-click it again to show all).
 */
export function headSquares(host) {
  const box = el("div", { className: "tba-heads", attrs: { "data-name": "heads", role: "group", "aria-label": "Heads" } });
  let count = -1;
  const selected = () => {
    const H = count;
    const s = host.state().heads;
    return s === null ? [...Array(H).keys()] : s.slice();
  };
  const normalize = (list) => (list.length === count ? null : list.sort((a, b) => a - b));
  return {
    element: box,
    update(H, state) {
      if (H !== count) {
        count = H;
        clear(box);
        for (let h = 0; h < H; h++) {
          const b = el("button", {
            className: "tba-head",
            text: H <= 32 ? String(h) : "",
            title: `head ${h}: click to toggle, double-click to show only this head`,
            attrs: { "data-head": String(h), "aria-pressed": "true" },
            style: { background: css(headColor(h)) },
            on: {
              click: () => {
                if (host.state().agg) return host.setState({ heads: [h], agg: null }); // from an aggregate to this head
                const sel = selected();
                const i = sel.indexOf(h);
                if (i >= 0) sel.splice(i, 1);
                else sel.push(h);
                host.setState({ heads: normalize(sel), agg: null });
              },
              dblclick: () => {
                // the two clicks before this toggled h twice: the selection is as it was
                const sel = selected();
                const solo = sel.length === 1 && sel[0] === h;
                host.setState({ heads: solo ? null : [h], agg: null });
              },
            },
          });
          box.appendChild(b);
        }
      }
      const on = new Set(state.agg ? [] : state.heads === null ? [...Array(H).keys()] : state.heads);
      for (const b of box.children) b.setAttribute("aria-pressed", String(on.has(Number(b.dataset.head))));
    },
  };
}

/** Sentence-pair filter select bound to state.pair, shown only for kinds with a sentence B. */
export function pairControl(host) {
  const sel = el("select", { attrs: { "data-name": "pair" }, title: "Sentence pair filter: which segment the queries (left) and keys (right) are in", on: { change: () => host.setState({ pair: sel.value }) } });
  const field = labelled("Pair", sel);
  return {
    field,
    select: sel,
    /** @returns {{qRange: [number, number], kRange: [number, number]}} the tokens the filter keeps */
    update(kind, state) {
      const segs = hasSegments(kind);
      field.hidden = !segs;
      if (segs) setOptions(sel, PAIRS.map((p) => ({ value: p, label: PAIR_LABELS[p] })), state.pair);
      const Tq = kind.query_tokens.length;
      const Tk = kind.key_tokens.length;
      return segs ? pairRanges(state.pair, kind.query_segment_b, kind.key_segment_b, Tq, Tk) : { qRange: [0, Tq], kRange: [0, Tk] };
    },
  };
}

/**
 * Make a drawing area part of the keyboard's tab order, with a visible focus
 * ring (style.css) and keys of its own: keys[e.key] (e.g. "ArrowUp", or
 * "Shift+ArrowLeft") handles a key and returns false to let it through. The
 * plain left and right arrows stay the step scrubber's.
 * @param {HTMLElement} canvas
 * @param {string} label what the area is and its keys, for screen readers and the tooltip
 * @param {Record<string, (e: KeyboardEvent) => any>} keys
 */
export function keyboardArea(canvas, label, keys) {
  canvas.tabIndex = 0;
  canvas.setAttribute("aria-label", label);
  canvas.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const fn = keys[(e.shiftKey ? "Shift+" : "") + e.key];
    if (!fn || fn(e) === false) return;
    e.preventDefault();
    e.stopPropagation();
  });
}
/** The head view's aggregate select (state.agg), beside its head squares: none, or one of AGGREGATES. */
export function aggControl(host) {
  const sel = el("select", {
    attrs: { "data-name": "agg" }, title: "Show an aggregate over heads instead of the heads",
    on: { change: () => host.setState({ agg: sel.value || null }) },
  });
  return {
    field: labelled("or", sel),
    select: sel,
    update(state) {
      setOptions(sel, [{ value: "", label: "the heads" }, ...AGGREGATES.map((a) => ({ value: a, label: AGG_LABELS[a] }))], state.agg || "");
    },
  };
}
