// A scrolled canvas for drawings larger than the screen (head, matrix and
// neuron views): the canvas covers only the scroller's visible area and is
// sticky inside a spacer as large as the whole drawing, so off-screen parts
// cost nothing; scrolling redraws (once per animation frame).

import { el } from "../dom.js";

export class ScrolledCanvas {
  /**
   * @param {string} name the canvas's data-name
   * @param {() => void} redraw called after a scroll, at most once a frame
   * @param {...HTMLElement} overlays elements placed over the drawing (in the spacer)
   */
  constructor(name, redraw, ...overlays) {
    this.canvas = el("canvas", { className: "tba-sticky", attrs: { "data-name": name } });
    this.sizer = el("div", { className: "tba-sizer" }, this.canvas, ...overlays);
    this.scroll = el("div", { className: "tba-scroll" }, this.sizer);
    this.frame = 0;
    this.scroll.addEventListener("scroll", () => {
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        redraw();
      });
    });
  }

  /**
   * Size the spacer to the whole drawing (CSS px) and return the part of it
   * on screen: its top-left corner (x0, y0) and size (vw x vh).
   * @param {number} [fallbackH] visible height while the scroller has none yet
   */
  visible(width, height, fallbackH = height) {
    this.sizer.style.width = width + "px";
    this.sizer.style.height = height + "px";
    const vw = Math.max(1, Math.min(width, this.scroll.clientWidth || width));
    const vh = Math.max(1, Math.min(height, this.scroll.clientHeight || fallbackH));
    const x0 = Math.max(0, Math.min(this.scroll.scrollLeft, width - vw));
    const y0 = Math.max(0, Math.min(this.scroll.scrollTop, height - vh));
    return { x0, y0, vw, vh };
  }
}
