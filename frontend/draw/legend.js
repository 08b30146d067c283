// Legends drawn on the canvases (so PNG exports carry them): colour bars with
// what their ends mean, a key of head colours, and axis titles. Each returns
// where it drew, for data-geometry (tests read the pixels there).

import { css, headColor } from "../colors.js";
import { FONT, fitText, sizeCanvas } from "../dom.js";

/**
 * A horizontal colour bar of a 256-entry RGBA lut (colors.js seqLut /
 * divLut) from x to x + w, with `left` and `right` written beside its ends
 * and `caption` after it.
 * @returns {{x: number, y: number, w: number, h: number, end: number}} the bar; end: where the caption ends
 */
export function colorBar(ctx, lut, x, y, w, h, { left = "", right = "", caption = "", maxX = Infinity, theme }) {
  ctx.font = `10px ${FONT}`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.fillStyle = theme.muted;
  let at = x;
  if (left) {
    ctx.fillText(left, at, y + h / 2);
    at += ctx.measureText(left).width + 3;
  }
  const bar = { x: at, y, w, h };
  for (let i = 0; i < w; i++) {
    const k = Math.round((i / Math.max(1, w - 1)) * 255) * 4;
    ctx.fillStyle = `rgb(${lut[k]},${lut[k + 1]},${lut[k + 2]})`;
    ctx.fillRect(at + i, y, 1, h);
  }
  ctx.strokeStyle = theme.grid;
  ctx.lineWidth = 1;
  ctx.strokeRect(at - 0.5, y - 0.5, w + 1, h + 1);
  at += w + 3;
  ctx.fillStyle = theme.muted;
  if (right) {
    ctx.fillText(right, at, y + h / 2);
    at += ctx.measureText(right).width + 6;
  }
  if (caption && maxX - at > 20) {
    fitText(ctx, caption, at, y + h / 2, maxX - at, "left");
    at = Math.min(maxX, at + ctx.measureText(caption).width);
  }
  return { ...bar, end: at };
}

/**
 * A key of head colours: a swatch and "head h" per head, wrapping within
 * width px, from (x, y). With no ctx it only measures.
 * @returns {{height: number, items: Array<{head: number, x: number, y: number, size: number}>}}
 */
export function headKey(ctx, measure, heads, x, y, width, theme) {
  const size = 10;
  const lineH = 16;
  measure.font = `11px ${FONT}`;
  const items = [];
  let cx = x;
  let cy = y;
  for (const h of heads) {
    const text = `head ${h}`;
    const w = size + 4 + measure.measureText(text).width + 12;
    if (cx > x && cx + w > x + width) {
      cx = x;
      cy += lineH;
    }
    items.push({ head: h, x: cx, y: cy + (lineH - size) / 2, size });
    if (ctx) {
      ctx.fillStyle = css(headColor(h));
      ctx.fillRect(cx, cy + (lineH - size) / 2, size, size);
      ctx.fillStyle = theme.text;
      ctx.font = `11px ${FONT}`;
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      ctx.fillText(text, cx + size + 4, cy + lineH / 2);
    }
    cx += w;
  }
  return { height: cy - y + lineH, items };
}

/**
 * An axis title in the theme's muted colour: horizontal from (x, y) (or
 * ending there, align "right"), or rotated to read upwards (vertical)
 * centred on (x, y).
 * @returns {{text: string, x: number, y: number, w: number}} where it is (w: its length)
 */
export function axisTitle(ctx, text, x, y, theme, vertical = false, align = "left") {
  ctx.save();
  ctx.font = `italic 11px ${FONT}`;
  ctx.fillStyle = theme.muted;
  ctx.textBaseline = "middle";
  const w = ctx.measureText(text).width;
  if (vertical) {
    ctx.translate(x, y);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(text, 0, 0);
  } else {
    ctx.textAlign = align;
    ctx.fillText(text, x, y);
  }
  ctx.restore();
  return { text, x: align === "right" ? x - w : x, y, w };
}

/**
 * A copy of `src` (a canvas sized by dom.js sizeCanvas) with a key of head
 * colours under it, for exports of drawings in head colours.
 * @param {HTMLCanvasElement} src
 * @param {number[]} heads
 * @returns {HTMLCanvasElement} its dataset.key: the swatches (CSS px), JSON
 */
export function withHeadKey(src, heads, theme) {
  const w = parseFloat(src.style.width) || src.width;
  const h = parseFloat(src.style.height) || src.height;
  const out = document.createElement("canvas");
  const measure = out.getContext("2d");
  const width = Math.max(w, 240);
  const { height } = headKey(null, measure, heads, 8, 0, width - 16, theme);
  const ctx = sizeCanvas(out, width, h + height + 12);
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, width, h + height + 12);
  ctx.drawImage(src, 0, 0, w, h);
  const { items } = headKey(ctx, ctx, heads, 8, h + 6, width - 16, theme);
  out.dataset.key = JSON.stringify(items);
  return out;
}

/**
 * Words of `text` in lines no wider than `width` in ctx's font (a word
 * wider than that is a line of its own, cut by the caller's clip).
 * @returns {string[]}
 */
export function wrapText(ctx, text, width) {
  const lines = [];
  let line = "";
  for (const word of String(text).split(/\s+/).filter(Boolean)) {
    const next = line ? line + " " + word : word;
    if (line && ctx.measureText(next).width > width) {
      lines.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) lines.push(line);
  return lines.length ? lines : [""];
}
