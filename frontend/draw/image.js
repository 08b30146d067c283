// Image mode of the head and matrix views, for steps captured from an image
// (the header's `image`: patch grid and thumbnail). One panel per head: the
// thumbnail, and over each patch the query's attention on it (the heat colour
// at an opacity of weight / the row's largest weight on a patch, or / 4 times
// the uniform weight when that is larger, so that a head spreading its
// attention evenly stays faint instead of painting every patch); the query
// patch outlined. Click a patch to make it the query; the tokens before the
// patches ([CLS], ...) are buttons above the panels, with the weight the
// query puts on each.

import { css, headColor, seqLut } from "../colors.js";
import { canvasPoint, clear, el, FONT, sizeCanvas } from "../dom.js";
import { weightAt } from "../decode.js";
import { queryIndex } from "../state.js";

const thumbs = new WeakMap(); // header image -> canvas of its thumbnail
const MAX_ALPHA = 0.75;

/**
 * The step's image when this kind's queries and keys are its positions
 * (self or encoder attention over the image's tokens), else null.
 * @param {import("../host.js").ViewContext} ctx
 */
export function imageOf(ctx) {
  const im = ctx && ctx.header && ctx.header.image;
  const k = ctx && ctx.kind;
  if (!im || !k || !(k.name === "self" || k.name === "encoder")) return null;
  const n = im.first_patch + im.rows * im.cols;
  return k.key_tokens.length >= n && k.query_tokens.length === k.key_tokens.length ? im : null;
}

/** The thumbnail as a canvas (decoded once per header). */
function thumbnail(im) {
  let c = thumbs.get(im);
  if (c) return c;
  c = document.createElement("canvas");
  c.width = Math.max(1, im.thumbnail_width);
  c.height = Math.max(1, im.thumbnail_height);
  if (im.thumbnail_rgb) {
    const rgb = Uint8Array.from(atob(im.thumbnail_rgb), (ch) => ch.charCodeAt(0));
    const data = new ImageData(c.width, c.height);
    for (let i = 0, p = 0; i + 2 < rgb.length; i += 3, p += 4) {
      data.data[p] = rgb[i];
      data.data[p + 1] = rgb[i + 1];
      data.data[p + 2] = rgb[i + 2];
      data.data[p + 3] = 255;
    }
    c.getContext("2d").putImageData(data, 0, 0);
  }
  thumbs.set(im, c);
  return c;
}

export class ImagePanels {
  /** @param {import("../host.js").Host} host @param {string} name */
  constructor(host, name) {
    this.host = host;
    this.canvas = el("canvas", { attrs: { "data-name": `${name}-image` } });
    this.prefix = el("div", { className: "tba-controls", attrs: { "data-name": `${name}-image-prefix` } });
    this.readout = el("div", { className: "tba-readout", attrs: { "data-name": `${name}-image-readout` } });
    this.root = el("div", { className: "tba-viewroot", attrs: { "data-name": `${name}-image-view` } },
      this.prefix, this.canvas, this.readout);
    this.root.hidden = true;
    this.canvas.addEventListener("click", (e) => {
      const q = this.hit(e);
      if (q !== null && q !== queryIndex(this.ctx.state, this.ctx.kind)) host.setState({ query: q });
    });
    this.canvas.addEventListener("mousemove", (e) => {
      this.canvas.style.cursor = this.hit(e) === null ? "default" : "pointer";
    });
    this.geo = null;
  }

  /**
   * Draw one panel per [index into the weights, head number or an aggregate's name] of `heads`.
   * @param {import("../host.js").ViewContext} ctx
   * @param {import("../decode.js").Weights} weights [heads, Tq, Tk]
   * @param {Array<[number, number | string]>} heads
   */
  draw(ctx, weights, heads) {
    this.ctx = ctx;
    const im = imageOf(ctx);
    const [, Tq, Tk] = weights.shape;
    const q = Math.min(queryIndex(ctx.state, ctx.kind), Tq - 1);
    const avail = Math.max(240, (this.root.clientWidth || 900) - 8);
    const side = Math.max(96, Math.min(360, Math.floor(avail / Math.max(1, heads.length)) - 12));
    const pw = im.width >= im.height ? side : Math.round(side * im.width / im.height);
    const ph = im.width >= im.height ? Math.round(side * im.height / im.width) : side;
    const perRow = Math.max(1, Math.floor(avail / (pw + 12)));
    const panels = heads.map(([, head], i) => ({
      head, x: 6 + (i % perRow) * (pw + 12), y: 22 + Math.floor(i / perRow) * (ph + 30), w: pw, h: ph,
    }));
    const height = panels.length ? panels[panels.length - 1].y + ph + 8 : 40;
    const g = sizeCanvas(this.canvas, avail, height);
    g.fillStyle = ctx.theme.background;
    g.fillRect(0, 0, avail, height);
    const heat = seqLut(ctx.theme);
    const color = `rgb(${heat[255 * 4]},${heat[255 * 4 + 1]},${heat[255 * 4 + 2]})`;
    panels.forEach((p, i) => this.panel(g, p, im, weights, heads[i][0], q, Tk, color));
    this.geo = { panels, rows: im.rows, cols: im.cols, first_patch: im.first_patch, query: q, pw, ph };
    this.canvas.dataset.geometry = JSON.stringify(this.geo);
    this.describe(ctx, im, weights, heads, q, Tk);
  }

  panel(g, p, im, weights, index, q, Tk, color) {
    const { theme } = this.ctx;
    g.imageSmoothingEnabled = true;
    g.drawImage(thumbnail(im), p.x, p.y, p.w, p.h);
    const base = (index * weights.shape[1] + q) * Tk;
    let top = 0;
    for (let k = 0; k < im.rows * im.cols; k++) top = Math.max(top, weightAt(weights, base + im.first_patch + k));
    top = Math.max(top, 4 / (im.rows * im.cols));
    const sx = p.w / im.width;
    const sy = p.h / im.height;
    g.fillStyle = color;
    for (let r = 0; r < im.rows; r++) {
      for (let c = 0; c < im.cols; c++) {
        const w = weightAt(weights, base + im.first_patch + r * im.cols + c);
        if (top <= 0 || w <= 0) continue;
        g.globalAlpha = MAX_ALPHA * (w / top);
        g.fillRect(p.x + c * im.patch_width * sx, p.y + r * im.patch_height * sy, im.patch_width * sx, im.patch_height * sy);
      }
    }
    g.globalAlpha = 1;
    const qp = q - im.first_patch;
    if (qp >= 0 && qp < im.rows * im.cols) {
      g.strokeStyle = theme.text;
      g.lineWidth = 2;
      const r = Math.floor(qp / im.cols);
      const c = qp % im.cols;
      g.strokeRect(p.x + c * im.patch_width * sx + 1, p.y + r * im.patch_height * sy + 1,
        im.patch_width * sx - 2, im.patch_height * sy - 2);
    }
    // a head's number, or the name of an aggregate over heads ("mean of layer")
    const named = typeof p.head === "string";
    g.fillStyle = named ? theme.text : css(headColor(p.head));
    g.fillRect(p.x, p.y - 16, 10, 10);
    g.fillStyle = theme.text;
    g.font = `11px ${FONT}`;
    g.textBaseline = "middle";
    g.textAlign = "left";
    g.fillText(named ? p.head : `head ${p.head}`, p.x + 14, p.y - 11);
  }

  /** The prefix tokens as buttons with their weights, and the readout. */
  describe(ctx, im, weights, heads, q, Tk) {
    const labels = ctx.labels;
    const mean = (j) => heads.reduce((s, [i]) => s + weightAt(weights, (i * weights.shape[1] + q) * Tk + j), 0) / heads.length;
    clear(this.prefix);
    for (let j = 0; j < im.first_patch; j++) {
      this.prefix.append(el("button", {
        attrs: { "data-name": "image-prefix-token", "aria-pressed": String(j === q) },
        text: `${labels.k[j]} ${mean(j).toFixed(3)}`,
        on: { click: () => this.host.setState({ query: j }) },
      }));
    }
    const where = q < im.first_patch ? labels.q[q] : `patch (${Math.floor((q - im.first_patch) / im.cols)}, ${(q - im.first_patch) % im.cols})`;
    let patches = 0;
    for (let k = 0; k < im.rows * im.cols; k++) patches += mean(im.first_patch + k);
    this.readout.textContent = `query ${q}: ${where} \u00b7 ${patches.toFixed(3)} of its attention on patches` +
      `${heads.length > 1 ? " (mean over the heads shown)" : ""} \u00b7 click a patch to make it the query`;
  }

  /** The query index of the patch under the pointer, or null. */
  hit(e) {
    const g = this.geo;
    if (!g) return null;
    const pt = canvasPoint(this.canvas, e);
    for (const p of g.panels) {
      if (pt.x < p.x || pt.y < p.y || pt.x >= p.x + p.w || pt.y >= p.y + p.h) continue;
      const im = imageOf(this.ctx);
      const c = Math.floor((pt.x - p.x) / (im.patch_width * p.w / im.width));
      const r = Math.floor((pt.y - p.y) / (im.patch_height * p.h / im.height));
      return r < im.rows && c < im.cols ? im.first_patch + r * im.cols + c : null;
    }
    return null;
  }
}
