// Layers x heads grids of thumbnails (the model view, compare's model mode
// and ranking): the frame (background, head colours, labels), heatmap
// thumbnails and their borders. Geometry comes from layout.js gridLayout.

import { css, headColor } from "../colors.js";
import { FONT, sizeCanvas } from "../dom.js";

/**
 * Size a canvas for a thumbnail grid (g from gridLayout) and draw its
 * background and labels: each column's head colour and H<n> on top, a row
 * label left of each row.
 * @param {string[]} rowLabels
 * @param {number[]} heads the head of each column
 * @returns {CanvasRenderingContext2D}
 */
export function drawGridFrame(canvas, g, rowLabels, heads, theme) {
  const ctx = sizeCanvas(canvas, g.width, g.height);
  ctx.fillStyle = theme.background;
  ctx.fillRect(0, 0, g.width, g.height);
  ctx.font = `11px ${FONT}`;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  // narrow columns (compare's three grids) keep the number and drop the "H"
  const last = `H${Math.max(0, ...heads)}`;
  const prefix = 11 + ctx.measureText(last).width <= g.thumb + g.gap - 2 ? "H" : "";
  heads.forEach((h, c) => {
    ctx.fillStyle = css(headColor(h));
    ctx.fillRect(g.x(c), 4, 8, 8);
    ctx.fillStyle = theme.muted;
    ctx.fillText(`${prefix}${h}`, g.x(c) + 11, 8);
  });
  ctx.fillStyle = theme.muted;
  ctx.textAlign = "right";
  rowLabels.forEach((text, r) => ctx.fillText(text, g.labelW - 2, g.y(r) + g.thumb / 2));
  return ctx;
}

/**
 * Fill every thumbnail of a rows x cols grid with an Sq x Sk map: one
 * pixel a cell on the scratch canvas `tile`, scaled up without smoothing.
 * fill(px, r, c) writes the packed RGBA of row r, column c's map into px
 * (row-major, Sq * Sk).
 */
export function drawHeatmapThumbs(ctx, tile, g, rows, cols, Sq, Sk, fill) {
  tile.width = Sk;
  tile.height = Sq;
  const tctx = tile.getContext("2d");
  const img = tctx.createImageData(Sk, Sq);
  const px = new Uint32Array(img.data.buffer);
  ctx.imageSmoothingEnabled = false;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      fill(px, r, c);
      tctx.putImageData(img, 0, 0);
      ctx.drawImage(tile, g.x(c), g.y(r), g.thumb, g.thumb);
    }
  }
}

/** A border in the theme's grid colour around each thumbnail. */
export function drawThumbBorders(ctx, g, rows, cols, theme) {
  ctx.strokeStyle = theme.grid;
  ctx.lineWidth = 1;
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) ctx.strokeRect(g.x(c) - 0.5, g.y(r) - 0.5, g.thumb + 1, g.thumb + 1);
}
