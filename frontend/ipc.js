// TensorBoard's plugin host protocol for iframe plugins (the one its
// tensorboard-plugin-lib speaks): the iframe posts "experimental.bootstrap" to
// its parent with a MessagePort; over that port both sides exchange JSON
// strings {type, id, payload, error, isReply}. The host broadcasts
// "experimental.DataReloaded" after each reload (its reload button, or the
// periodic auto-reload), which is when new steps can have appeared.

export const DATA_RELOADED = "experimental.DataReloaded";
export const GET_URL_DATA = "experimental.GetURLPluginData";

export class HostChannel {
  /**
   * @param {Window} win the plugin's window
   */
  constructor(win) {
    this.win = win;
    this.port = null;
    this.nextId = 0;
    /** @type {Map<string, (payload: any) => any>} */
    this.listeners = new Map();
    /** @type {Map<number, {resolve: Function, reject: Function}>} */
    this.waiting = new Map();
    if (!win.parent || win.parent === win || typeof MessageChannel === "undefined") return;
    const channel = new MessageChannel();
    this.port = channel.port1;
    this.port.addEventListener("message", (e) => this.onMessage(e));
    this.port.start();
    try {
      win.parent.postMessage("experimental.bootstrap", "*", [channel.port2]);
    } catch (e) {
      this.port = null;
    }
  }

  /** @param {string} type @param {(payload: any) => any} fn */
  listen(type, fn) {
    this.listeners.set(type, fn);
  }

  /** Send a request to the host; resolves with its reply's payload. */
  send(type, payload) {
    if (!this.port) return Promise.reject(new Error("no TensorBoard host"));
    const id = this.nextId++;
    this.port.postMessage(JSON.stringify({ type, id, payload, error: null, isReply: false }));
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  async onMessage(event) {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (msg.isReply) {
      const w = this.waiting.get(msg.id);
      if (!w) return;
      this.waiting.delete(msg.id);
      if (msg.error) w.reject(new Error(String(msg.error)));
      else w.resolve(msg.payload);
      return;
    }
    let payload = null;
    let error = null;
    const fn = this.listeners.get(msg.type);
    if (fn) {
      try {
        payload = (await fn(msg.payload)) ?? null;
      } catch (e) {
        error = String(e && e.message ? e.message : e);
      }
    }
    this.port.postMessage(JSON.stringify({ type: msg.type, id: msg.id, payload, error, isReply: true }));
  }
}
