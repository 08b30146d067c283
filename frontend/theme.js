// Light or dark: TensorBoard's own dark mode (its setting follows the browser
// unless overridden) when this page is its plugin iframe, else the browser's
// prefers-color-scheme. Watched: a change redraws the view in the new theme.

/** TensorBoard's <body>, when this page is its (same-origin) plugin iframe. */
function tensorBoardBody(win) {
  try {
    const p = win.parent;
    if (p && p !== win && p.tensorboard && p.document && p.document.body) return p.document.body;
  } catch (e) {
    // cross-origin parent
  }
  return null;
}

/** "light" or "dark" now. */
export function detectTheme(win) {
  const tb = tensorBoardBody(win);
  if (tb) return tb.classList.contains("dark-mode") ? "dark" : "light";
  return win.matchMedia && win.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/**
 * Call onChange(name) now and whenever the theme may have changed.
 * @param {Window} win
 * @param {(name: "light" | "dark") => void} onChange
 */
export function watchTheme(win, onChange) {
  const check = () => onChange(detectTheme(win));
  check();
  try {
    win.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", check);
  } catch (e) {
    // old browsers: theme fixed at load
  }
  const tb = tensorBoardBody(win);
  if (tb) new MutationObserver(check).observe(tb, { attributes: true, attributeFilter: ["class"] });
}
