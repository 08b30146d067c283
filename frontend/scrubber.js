// The step scrubber: previous / play / next buttons, the slider and the step
// label, the arrow keys, and play (a step every PLAY_INTERVAL_MS, each after
// the previous one has drawn, stopping at the last).

import { el } from "./dom.js";
import { intText, stepBy } from "./state.js";

const PLAY_INTERVAL_MS = 700;

export class Scrubber {
  /**
   * @param {Window} win
   * @param {{steps: () => number[], step: () => number | null, go: (step: number) => void}} probe
   *   the kept steps on screen, the step shown, and how to show another
   * @param {EventTarget} [keys] where the arrow keys are heard: the window
   *   (the dashboard is the whole page), or an output's own element in a
   *   page that holds other things (a notebook)
   */
  constructor(win, probe, keys = win) {
    this.win = win;
    this.probe = probe;
    this.playing = false;
    this.timer = 0;
    this.prevBtn = el("button", { text: "\u25c0\u25c0", title: "Previous step (\u2190)", attrs: { "data-name": "prev" }, on: { click: () => this.stepBy(-1) } });
    this.playBtn = el("button", { text: "\u25b6", title: "Play through the steps", attrs: { "data-name": "play" }, on: { click: () => this.togglePlay() } });
    this.nextBtn = el("button", { text: "\u25b6\u25b6", title: "Next step (\u2192)", attrs: { "data-name": "next" }, on: { click: () => this.stepBy(1) } });
    this.slider = el("input", {
      attrs: { type: "range", min: "0", max: "0", step: "1", value: "0", "data-name": "step-slider", "aria-label": "Step" },
      on: { input: () => this.onSlider() },
    });
    this.label = el("span", { className: "tba-step-label", attrs: { "data-name": "step-label" } });
    this.element = el("div", { className: "tba-steps" }, this.prevBtn, this.playBtn, this.nextBtn, this.slider, this.label);
    keys.addEventListener("keydown", (e) => this.onKey(e));
  }

  /** Show where `step` is among the kept `steps`. */
  update(steps, step) {
    const idx = Math.max(0, steps.indexOf(step));
    this.slider.max = String(Math.max(0, steps.length - 1));
    if (this.slider.value !== String(idx)) this.slider.value = String(idx);
    this.slider.disabled = steps.length < 2;
    this.prevBtn.disabled = idx <= 0;
    this.nextBtn.disabled = idx >= steps.length - 1;
    this.playBtn.disabled = steps.length < 2;
    this.label.textContent = `step ${intText(step)}  (${idx + 1} of ${steps.length})`;
  }

  stepBy(delta) {
    const steps = this.probe.steps();
    const step = this.probe.step();
    if (!steps.length || step === null) return;
    const next = stepBy(steps, step, delta);
    if (next !== step) this.probe.go(next);
  }

  onSlider() {
    const st = this.probe.steps()[Number(this.slider.value)];
    if (st !== undefined && st !== this.probe.step()) this.probe.go(st);
  }

  togglePlay() {
    if (this.playing) {
      this.stop();
      return;
    }
    const steps = this.probe.steps();
    if (steps.length < 2) return;
    this.playing = true;
    this.setPlayButton("\u275a\u275a", "Pause", true);
    if (this.probe.step() === steps[steps.length - 1]) this.probe.go(steps[0]);
    else this.tick();
  }

  stop() {
    this.playing = false;
    this.win.clearTimeout(this.timer);
    this.setPlayButton("\u25b6", "Play through the steps", false);
  }

  setPlayButton(text, title, pressed) {
    this.playBtn.textContent = text;
    this.playBtn.title = title;
    this.playBtn.setAttribute("aria-pressed", String(pressed));
  }

  /** The step shown has drawn: while playing, the next one after a pause. */
  tick() {
    if (!this.playing) return;
    this.win.clearTimeout(this.timer);
    this.timer = this.win.setTimeout(() => {
      if (!this.playing) return;
      const step = this.probe.step();
      const next = stepBy(this.probe.steps(), step, 1);
      if (next === step) this.stop();
      else this.probe.go(next);
    }, PLAY_INTERVAL_MS);
  }

  /**
   * The arrow keys pressed while TensorBoard's own page has the focus (the
   * frame not clicked yet) step too: its window is of the same origin, so the
   * keys are heard there while this frame is on screen and nothing there
   * takes them (a text field, a select, an editable element).
   */
  listenToParent() {
    let top;
    try {
      top = this.win.parent !== this.win && this.win.parent.document ? this.win.parent : null;
    } catch (e) {
      return; // another origin: only keys pressed in this frame
    }
    if (!top) return;
    const onKey = (e) => {
      const frame = this.win.frameElement;
      if (!frame || !frame.isConnected) {
        top.removeEventListener("keydown", onKey);
        return;
      }
      if (!frame.getClientRects().length) return; // another TensorBoard tab is shown
      const t = (e.composedPath && e.composedPath()[0]) || e.target;
      if (t && t.isContentEditable) return;
      this.onKey(e);
    };
    top.addEventListener("keydown", onKey);
  }

  onKey(e) {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    // the element pressed in, also inside a shadow root (a page's output)
    const t = (e.composedPath && e.composedPath()[0]) || e.target;
    const tag = t && t.tagName;
    if (tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && t.type !== "checkbox")) return;
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      this.stepBy(e.key === "ArrowLeft" ? -1 : 1);
    }
  }
}
