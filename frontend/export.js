// Export PNG: the view's whole drawing (exportCanvas(), not only what is on
// screen) under a title band naming what it shows (wrapped, never cut),
// downloaded through the bar's link (which stays, to download it again).

import { intText } from "./state.js";
import { wrapText } from "./draw/legend.js";
import { VIEWS } from "./views/registry.js";

/**
 * The title of an exported image: run, probe, step, kind, view, and what in
 * the view (its describe(), like " \u00b7 layer 3 \u00b7 head 1").
 */
export function exportTitle(s, caption = "") {
  const view = (VIEWS.find((v) => v.name === s.view) || { title: s.view }).title;
  return `${s.run} \u00b7 ${s.tag} \u00b7 step ${intText(s.step)} \u00b7 ${s.kind} \u00b7 ${view} view${caption}`;
}

/**
 * Draw `src` under a band with `title` and download it as a PNG through
 * `link`, named after the state `s`.
 * @param {HTMLCanvasElement} src
 * @param {HTMLAnchorElement} link
 */
export function exportPng(doc, src, title, s, theme, link) {
  const scale = src.width / Math.max(1, parseFloat(src.style.width) || src.width);
  const out = doc.createElement("canvas");
  const c = out.getContext("2d");
  const font = `${Math.round(13 * scale)}px system-ui, sans-serif`;
  c.font = font;
  // the whole title, on as many lines as the drawing's width needs
  const lines = wrapText(c, title, Math.max(src.width, 200 * scale) - Math.round(16 * scale));
  const lineH = Math.round(18 * scale);
  const band = lines.length * lineH + Math.round(6 * scale);
  out.width = Math.max(src.width, Math.round(200 * scale));
  out.height = src.height + band;
  c.fillStyle = theme.background;
  c.fillRect(0, 0, out.width, out.height);
  c.fillStyle = theme.text;
  c.font = font;
  c.textBaseline = "middle";
  lines.forEach((line, i) => c.fillText(line, Math.round(8 * scale), Math.round(3 * scale) + (i + 0.5) * lineH));
  c.drawImage(src, 0, band);
  const name = `attention-${s.run}-${s.tag}-step${intText(s.step)}-${s.view}.png`.replace(/[^A-Za-z0-9._-]+/g, "_");
  out.toBlob((blob) => {
    if (!blob) return;
    if (link.href && link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.textContent = name;
    link.title = "Download again";
    link.click();
  }, "image/png");
}
