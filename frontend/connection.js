// TensorBoard not answering (stopped, restarting, a proxy's 502-504): a
// banner says so with the attempt count, the last drawing stays (dimmed by
// data-state="offline"), and the `tags` route is polled with backoff
// (Api.reconnect) until it answers; then the app re-lists and draws again.

import { el } from "./dom.js";

export class Connection {
  /**
   * @param {Window} win
   * @param {import("./api.js").Api} api
   * @param {import("./shell.js").Shell} shell
   * @param {{back: (tags: any) => void, failed: (e: any) => void}} on
   *   back: TensorBoard answered the listing again; failed: it answered an error
   */
  constructor(win, api, shell, on) {
    this.win = win;
    this.api = api;
    this.shell = shell;
    this.on = on;
    // {attempt, since} while unreachable: the retry loop runs while set
    this.offline = null;
    this.token = null;
    this.detail = null;
  }

  /** Say TensorBoard is unreachable, and start retrying (once). */
  show(e) {
    const first = !this.offline;
    if (first) this.offline = { attempt: 0, since: Date.now() };
    const msg = this.shell.message;
    while (msg.firstChild) msg.removeChild(msg.firstChild);
    this.detail = el("span", { attrs: { "data-name": "offline-detail" } });
    msg.appendChild(el("div", { className: "tba-error tba-offline", attrs: { "data-name": "offline", role: "status" } },
      el("strong", { text: "TensorBoard is not reachable \u2014 retrying\u2026" }), " ", this.detail));
    this.setDetail(e);
    this.shell.root.setAttribute("data-error", e && e.message ? e.message : String(e));
    this.shell.setStatus("offline");
    if (first) this.reconnect();
  }

  /** What failed, and when the next attempt is (`nextMs`), in the banner. */
  setDetail(e, nextMs) {
    if (!this.detail || !this.offline) return;
    const why = e && e.status ? `HTTP ${e.status}: ${e.message}` : e && e.message ? e.message : "";
    const next = nextMs ? ` \u00b7 attempt ${this.offline.attempt + 1} in ${(nextMs / 1000).toFixed(1)} s` : "";
    this.detail.textContent = `(${why}${next}). The view comes back by itself; nothing to reload.`;
  }

  async reconnect() {
    const token = {};
    this.token = token;
    const live = () => this.token === token;
    const root = this.shell.root;
    try {
      const tags = await this.api.reconnect({
        wait: (ms) => new Promise((resolve) => this.win.setTimeout(resolve, ms)),
        cancelled: () => !live(),
        onRetry: (attempt, delay, err) => {
          if (!this.offline) return;
          this.offline.attempt = attempt;
          if (root.getAttribute("data-state") === "offline") this.setDetail(err || { message: root.getAttribute("data-error") }, delay);
        },
      });
      if (!tags || !live()) return;
      this.online();
      // a restarted TensorBoard may serve other logs: drop what was decoded,
      // and what the browser cached
      this.api.cache.clear();
      this.api.revalidate = true;
      this.on.back(tags);
    } catch (e) {
      if (!live()) return;
      this.online();
      this.on.failed(e);
    }
  }

  /** TensorBoard answered: stop the retry loop. */
  online() {
    this.offline = null;
    this.token = null;
  }
}
