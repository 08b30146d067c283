// Small DOM and canvas helpers. Text always goes in through textContent (or
// canvas fillText): token strings are user text and are never parsed as HTML.

/**
 * Create an element.
 * @param {string} tag
 * @param {{
 *   className?: string, text?: string, title?: string, attrs?: Record<string, string>,
 *   style?: Record<string, string>, on?: Record<string, (e: any) => void>,
 *   props?: Record<string, any>,
 * }} [opts]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {any}
 */
export function el(tag, opts = {}, ...children) {
  const e = document.createElement(tag);
  if (opts.className) e.className = opts.className;
  if (opts.text !== undefined) e.textContent = opts.text;
  if (opts.title) e.title = opts.title;
  if (opts.attrs) for (const k of Object.keys(opts.attrs)) e.setAttribute(k, opts.attrs[k]);
  if (opts.style) for (const k of Object.keys(opts.style)) e.style.setProperty(k, opts.style[k]);
  if (opts.props) Object.assign(e, opts.props);
  if (opts.on) for (const k of Object.keys(opts.on)) e.addEventListener(k, opts.on[k]);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

/** Remove all children. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/**
 * A <select> filled with options (labels via textContent).
 * @param {Array<{value: string, label: string}>} options
 * @param {string} value
 * @param {(value: string) => void} onChange
 * @param {{className?: string, title?: string, name?: string}} [opts]
 */
export function select(options, value, onChange, opts = {}) {
  const s = el("select", { className: opts.className || "", title: opts.title || "", attrs: opts.name ? { "data-name": opts.name } : {} });
  for (const o of options) {
    const opt = el("option", { text: o.label });
    opt.value = o.value;
    s.appendChild(opt);
  }
  s.value = value;
  s.addEventListener("change", () => onChange(s.value));
  return s;
}

/** A labelled control: <label>text <control></label>. */
export function labelled(text, control) {
  return el("label", { className: "tba-field" }, el("span", { text }), control);
}

/**
 * Size a canvas for the device pixel ratio and return its 2D context, scaled
 * so drawing uses CSS pixels. Widths / heights are clamped to what browsers
 * can allocate.
 * @param {HTMLCanvasElement} canvas
 * @param {number} width CSS px
 * @param {number} height CSS px
 */
export function sizeCanvas(canvas, width, height) {
  const maxSide = 32000;
  let dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  dpr = Math.min(dpr, maxSide / Math.max(1, width), maxSide / Math.max(1, height));
  // keep the backing store under ~120 M pixels
  dpr = Math.min(dpr, Math.sqrt(120e6 / Math.max(1, width * height)));
  const w = Math.max(1, Math.round(width * dpr));
  const h = Math.max(1, Math.round(height * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  canvas.style.width = width + "px";
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(w / width, 0, 0, h / height, 0, 0);
  ctx.imageSmoothingEnabled = false;
  return ctx;
}

/** Mouse position in a canvas's CSS pixels. */
export function canvasPoint(canvas, event) {
  const r = canvas.getBoundingClientRect();
  const sx = r.width ? parseFloat(canvas.style.width || String(r.width)) / r.width : 1;
  const sy = r.height ? parseFloat(canvas.style.height || String(r.height)) / r.height : 1;
  return { x: (event.clientX - r.left) * sx, y: (event.clientY - r.top) * sy };
}

const WIDTHS = new WeakMap();
/**
 * Widest label in px with the context's current font (cached per array+font).
 * @param {CanvasRenderingContext2D} ctx
 * @param {string[]} labels
 */
export function maxLabelWidth(ctx, labels) {
  let byFont = WIDTHS.get(labels);
  if (!byFont) {
    byFont = new Map();
    WIDTHS.set(labels, byFont);
  }
  if (byFont.has(ctx.font)) return byFont.get(ctx.font);
  let m = 0;
  for (const s of labels) m = Math.max(m, ctx.measureText(s).width);
  byFont.set(ctx.font, m);
  return m;
}

/**
 * Draw text clipped to a width (ellipsis), left or right aligned.
 * @param {CanvasRenderingContext2D} ctx
 */
export function fitText(ctx, text, x, y, maxWidth, align = "left", stroke = false) {
  ctx.textAlign = align;
  const put = (t) => (stroke ? ctx.strokeText(t, x, y) : ctx.fillText(t, x, y));
  if (ctx.measureText(text).width <= maxWidth) {
    put(text);
    return;
  }
  const chars = [...text];
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(chars.slice(0, mid).join("") + "\u2026").width <= maxWidth) lo = mid;
    else hi = mid - 1;
  }
  put(chars.slice(0, lo).join("") + "\u2026");
}

export const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
export const MONO = "ui-monospace, 'SF Mono', Menlo, Consolas, monospace";

/**
 * Replace a select's options only when they differ, then set its value
 * (keeps focus and an open dropdown intact on redraws).
 * @param {HTMLSelectElement} sel
 * @param {Array<{value: string, label: string}>} options
 * @param {string} value
 */
export function setOptions(sel, options, value) {
  const key = JSON.stringify(options);
  if (sel.dataset.options !== key) {
    clear(sel);
    for (const o of options) {
      const opt = document.createElement("option");
      opt.value = o.value;
      opt.textContent = o.label;
      sel.appendChild(opt);
    }
    sel.dataset.options = key;
  }
  if (sel.value !== value) sel.value = value;
}
