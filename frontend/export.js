// Export PNG: the view's whole drawing (exportCanvas(), not only what is on
// screen) under a title band naming what it shows (wrapped, never cut),
// downloaded through the bar's link (which stays, to download it again).
// Save as HTML: the server writes the probe's steps as one standalone page
// (tb_attention.page), asked for again after a yes when it is over the size
// the server keeps to.

import { ApiError } from "./api.js";
import { intText } from "./state.js";
import { wrapText } from "./draw/legend.js";
import { isolate, visible } from "./tokens.js";
import { VIEWS } from "./views/registry.js";

/** Longest run / probe / kind name in a title, in characters; longer ones keep both ends. */
export const TITLE_NAME_MAX = 40;

/**
 * A name as a title shows it: invisible and bidi controls as escapes (a
 * U+202E in a run name reversed the whole title), right-to-left names
 * isolated, long names cut in the middle (they pushed step / view / layer
 * off the image).
 */
export function titleName(name) {
  const chars = [...visible(String(name))];
  const half = Math.floor((TITLE_NAME_MAX - 1) / 2);
  const cut = chars.length > TITLE_NAME_MAX ? chars.slice(0, half).join("") + "\u2026" + chars.slice(-half).join("") : chars.join("");
  return isolate(cut);
}

/**
 * The title of an exported image: run, probe, step, kind, view, and what in
 * the view (its describe(), like " \u00b7 layer 3 \u00b7 head 1").
 */
export function exportTitle(s, caption = "") {
  const view = (VIEWS.find((v) => v.name === s.view) || { title: s.view }).title;
  return `${titleName(s.run)} \u00b7 ${titleName(s.tag)} \u00b7 step ${intText(s.step)} \u00b7 ${titleName(s.kind)} \u00b7 ${view} view${caption}`;
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
  out.toBlob((blob) => blob && download(link, blob, name), "image/png");
}

/** Hand `blob` to the browser as a download named `name` through `link`. */
function download(link, blob, name) {
  if (link.href && link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.textContent = name;
  link.title = "Download again";
  link.click();
}

/**
 * Save the probe on screen (every kept step, opening on the state `s`) as
 * one HTML file through the `html` route; over its size limit (HTTP 413)
 * ask before asking for it without one.
 * @param {import("./api.js").Api} api
 */
export async function saveHtml(win, api, s, shell) {
  const params = { run: s.run, tag: s.tag, step: s.step, kind: s.kind, view: s.view, layer: s.layer, head: s.head };
  const name = `attention-${s.run}-${s.tag}.html`.replace(/[^A-Za-z0-9._-]+/g, "_");
  shell.saveBtn.disabled = true;
  try {
    let res;
    try {
      res = await api.request(api.url("html", params), { cache: "no-store" });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 413 && win.confirm(`${e.message}\n\nWrite it anyway?`))) throw e;
      res = await api.request(api.url("html", { ...params, max_mb: 0 }), { cache: "no-store" });
    }
    download(shell.exportLink, await res.blob(), name);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 413)) win.alert(`Save as HTML failed: ${e && e.message ? e.message : e}`);
  } finally {
    shell.saveBtn.disabled = false;
  }
}
