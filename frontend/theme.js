// Light or dark: TensorBoard's own dark mode (its setting follows the browser
// unless overridden) when this page is its plugin iframe; in a notebook the
// notebook's theme (JupyterLab marks its <body> with data-jp-theme-light,
// VS Code's output webview with a vscode-dark / vscode-light class); else
// the browser's prefers-color-scheme. Watched: a change redraws the view in
// the new theme.

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

/** The theme a notebook's page says it has, or null (not a notebook we know). */
function notebookTheme(body) {
  if (!body) return null;
  const jp = body.getAttribute("data-jp-theme-light");
  if (jp === "true" || jp === "false") return jp === "true" ? "light" : "dark";
  const c = body.classList;
  if (c.contains("vscode-dark") || c.contains("vscode-high-contrast")) return "dark";
  if (c.contains("vscode-light") || c.contains("vscode-high-contrast-light")) return "light";
  return null;
}

/** "light" or "dark" now. */
export function detectTheme(win) {
  const tb = tensorBoardBody(win);
  if (tb) return tb.classList.contains("dark-mode") ? "dark" : "light";
  const nb = notebookTheme(win.document && win.document.body);
  if (nb) return nb;
  return win.matchMedia && win.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/**
 * Call onChange(name) now and whenever the theme may have changed.
 * @param {Window} win
 * @param {(name: "light" | "dark") => void} onChange
 * @returns {() => void} stops watching
 */
export function watchTheme(win, onChange) {
  const check = () => onChange(detectTheme(win));
  check();
  let media = null;
  try {
    media = win.matchMedia("(prefers-color-scheme: dark)");
    media.addEventListener("change", check);
  } catch (e) {
    media = null; // old browsers: theme fixed at load
  }
  const observer = new MutationObserver(check);
  const tb = tensorBoardBody(win);
  if (tb) observer.observe(tb, { attributes: true, attributeFilter: ["class"] });
  else if (win.document && win.document.body) observer.observe(win.document.body, { attributes: true, attributeFilter: ["class", "data-jp-theme-light"] });
  return () => {
    observer.disconnect();
    if (media) media.removeEventListener("change", check);
  };
}
