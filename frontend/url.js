// Where the state's keys live: the URL.
//
// TensorBoard runs this plugin in an iframe (data/plugin_entry.html) and
// recreates that iframe, without any hash, whenever its page reloads. The
// iframe's own URL therefore survives nothing. TensorBoard's top-level URL
// hash does survive a reload, and TensorBoard already reserves a place in it
// for plugins: keys `p.<plugin>.<key>` next to its tab name
// (`#attention&p.attention.run=exp1&p.attention.step=50`); its plugin API
// message `experimental.GetURLPluginData` returns exactly those keys. There is
// no "set" message, so the dashboard writes them itself into the (same
// origin) parent window with history.replaceState, in TensorBoard's own
// format (tf_storage: `&`-separated, encodeURIComponent'ed key=value pairs,
// the tab name first), keeping every key it does not own. replaceState adds
// no history entry and fires no hashchange, so TensorBoard does not re-route.
// When there is no reachable parent (the page opened on its own, or a
// cross-origin embed) the same keys go into the page's own hash.
//
// Everything here except `UrlStore` is pure and tested in node.

export const PLUGIN = "attention";
export const PREFIX = `p.${PLUGIN}.`;
export const TAB_KEY = "__tab__";

/**
 * Parse a URL hash the way TensorBoard's tf_storage does: `&`-separated
 * parts; a part without `=` is the tab name; `key=value` parts are
 * URI-decoded. Parts with several `=` are ignored, as TensorBoard ignores them.
 * @param {string} hash with or without the leading '#'
 * @returns {Record<string, string>}
 */
export function parseHash(hash) {
  const h = hash.startsWith("#") ? hash.slice(1) : hash;
  /** @type {Record<string, string>} */
  const out = {};
  if (h === "") return out;
  for (const part of h.split("&")) {
    const kv = part.split("=");
    try {
      if (kv.length === 1) out[TAB_KEY] = kv[0];
      else if (kv.length === 2) out[decodeURIComponent(kv[0])] = decodeURIComponent(kv[1]);
    } catch (e) {
      // a malformed %-escape: skip the part, like an unknown key
    }
  }
  return out;
}

/**
 * Inverse of parseHash, in TensorBoard's order: the tab first, then keys.
 * @param {Record<string, string>} dict
 * @returns {string} without the leading '#'
 */
export function buildHash(dict) {
  let out = dict[TAB_KEY] !== undefined ? dict[TAB_KEY] : "";
  const rest = Object.keys(dict)
    .filter((k) => k !== TAB_KEY)
    .map((k) => encodeURIComponent(k) + "=" + encodeURIComponent(dict[k]))
    .join("&");
  return rest.length > 0 ? out + "&" + rest : out;
}

/**
 * The plugin's keys of a hash, prefix removed.
 * @param {string} hash
 */
export function readPluginKeys(hash) {
  const all = parseHash(hash);
  /** @type {Record<string, string>} */
  const out = {};
  for (const k of Object.keys(all)) if (k.startsWith(PREFIX)) out[k.slice(PREFIX.length)] = all[k];
  return out;
}

/**
 * A hash with the plugin's keys replaced by `keys`; every other key and the
 * tab name are kept as they were.
 * @param {string} hash
 * @param {Record<string, string>} keys
 * @returns {string} without the leading '#'
 */
export function writePluginKeys(hash, keys) {
  const all = parseHash(hash);
  /** @type {Record<string, string>} */
  const out = {};
  for (const k of Object.keys(all)) if (!k.startsWith(PREFIX)) out[k] = all[k];
  for (const k of Object.keys(keys)) out[PREFIX + k] = keys[k];
  return buildHash(out);
}

/**
 * Where the URL keys live: TensorBoard's top-level hash when the parent
 * window is reachable, else this page's own hash.
 */
export class UrlStore {
  /** @param {Window} win the plugin's window */
  constructor(win) {
    this.win = win;
    this.host = win;
    this.where = "own hash";
    try {
      const parent = win.parent;
      if (parent && parent !== win && parent.location.origin === win.location.origin) {
        // Accessing .location.hash throws for a cross-origin parent.
        void parent.location.hash;
        this.host = parent;
        this.where = "TensorBoard's URL";
      }
    } catch (e) {
      this.host = win;
    }
    this.lastWritten = null;
    this.remember = null;
  }

  /** @returns {Record<string, string>} */
  read() {
    return readPluginKeys(this.host.location.hash);
  }

  /**
   * Call fn(keys) when the plugin's keys in the URL change from outside
   * (back / forward, an edited or pasted link); not for this store's writes.
   * @param {(keys: Record<string, string>) => void} fn
   */
  onExternalChange(fn) {
    let last = JSON.stringify(this.read());
    const check = () => {
      const keys = this.read();
      const now = JSON.stringify(keys);
      if (now === last) return;
      last = now;
      if (this.host.location.hash.replace(/^#/, "") === this.lastWritten) return;
      fn(keys);
    };
    this.remember = (hash) => {
      last = JSON.stringify(readPluginKeys(hash));
    };
    try {
      this.host.addEventListener("hashchange", check);
      this.host.addEventListener("popstate", check);
    } catch (e) {
      // a host that does not let us listen: links still work on load
    }
  }

  /** @param {Record<string, string>} keys */
  write(keys) {
    const hash = writePluginKeys(this.host.location.hash, keys);
    if (hash === this.lastWritten) return;
    this.lastWritten = hash;
    if (this.remember) this.remember(hash);
    const url = new URL(this.host.location.href);
    url.hash = hash;
    if (url.href === this.host.location.href) return;
    try {
      this.host.history.replaceState(this.host.history.state, "", url.href);
    } catch (e) {
      // A host that refuses (sandboxed): the view still works, only unlinked.
    }
  }
}
