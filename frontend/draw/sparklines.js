// A layers x heads grid of sparklines (the stats view): the grid's geometry,
// the x offsets of the steps, each cell's latest value (its tint), and the
// tracing of one sparkline into a path with at most one vertical stroke per
// pixel column, and the step axis under the grid. Pure but for that axis
// (a canvas context): tested in node.

/**
 * Step indices where no statistic has any value (steps written before
 * statistics existed, or unreadable).
 * @param {Record<string, Array<Array<number | null>>>} stats
 * @param {number} count number of steps
 */
export function stepsWithout(stats, count) {
  const out = [];
  for (let s = 0; s < count; s++) {
    let any = false;
    for (const name of Object.keys(stats)) {
      const row = stats[name][s];
      if (row && row.some((v) => v !== null)) {
        any = true;
        break;
      }
    }
    if (!any) out.push(s);
  }
  return out;
}

/**
 * Integer x offsets (0..width) of the steps, proportional to the step
 * numbers; a single step sits in the middle.
 * @param {readonly number[]} steps ascending
 * @param {number} width
 */
export function stepOffsets(steps, width) {
  const n = steps.length;
  if (n === 0) return [];
  const a = steps[0];
  const span = steps[n - 1] - a;
  if (!(span > 0)) return steps.map(() => Math.round(width / 2));
  return steps.map((s) => Math.round(((s - a) / span) * width));
}

/**
 * The last step index with a value in cell `index`, and that value.
 * @param {Array<Array<number | null>>} rows
 * @param {number} index layer * num_heads + head
 * @returns {{s: number, v: number} | null}
 */
export function latestValue(rows, index) {
  for (let s = rows.length - 1; s >= 0; s--) {
    const v = rows[s][index];
    if (v !== null && v !== undefined && Number.isFinite(v)) return { s, v };
  }
  return null;
}

/**
 * Trace one sparkline into a path (anything with moveTo / lineTo). Steps in
 * the same pixel column become one vertical min..max stroke; a null value
 * lifts the pen; a run of one value is a short tick.
 * @param {{moveTo(x: number, y: number): void, lineTo(x: number, y: number): void}} path
 * @param {ArrayLike<number | null>} values one per step
 * @param {readonly number[]} xs pixel column of each step, from x0
 * @param {number} x0
 * @param {(v: number) => number} yOf
 */
export function traceSparkline(path, values, xs, x0, yOf) {
  let down = false;
  let col = NaN;
  let lo = 0;
  let hi = 0;
  let last = 0;
  let run = 0;
  const endColumn = () => {
    if (hi - lo > 0.5) {
      path.moveTo(col + 0.5, lo);
      path.lineTo(col + 0.5, hi);
      path.moveTo(col + 0.5, last);
    }
  };
  const endRun = () => {
    if (!down) return;
    endColumn();
    if (run === 1) {
      path.moveTo(col - 1, last);
      path.lineTo(col + 2, last);
    }
    down = false;
  };
  for (let s = 0; s < values.length; s++) {
    const v = values[s];
    if (v === null || v === undefined || !Number.isFinite(v)) {
      endRun();
      continue;
    }
    const x = x0 + xs[s];
    const y = yOf(v);
    if (!down) {
      path.moveTo(x + 0.5, y);
      down = true;
      run = 1;
      col = x;
      lo = hi = last = y;
      continue;
    }
    run++;
    if (x === col) {
      if (y < lo) lo = y;
      if (y > hi) hi = y;
      last = y;
      continue;
    }
    endColumn();
    path.lineTo(x + 0.5, y);
    col = x;
    lo = hi = last = y;
  }
  endRun();
}

/**
 * Grid geometry: cell (r, c) has its top-left corner at
 * (labelW + gap + c * (cellW + gap), labelH + gap + r * (cellH + gap)); its
 * plot area is inset by padX / padY; step s is the pixel column
 * cellX + padX + xs[s] and a value v the pixel row
 * floor(cellY + padY + (1 - (v - lo) / (hi - lo)) * plotH) (lines run
 * through pixel centres, so they stay crisp). The step axis is the axisH
 * px under the last row.
 */
export function statsLayout({ rows, cols, availWidth }) {
  const labelW = 36;
  const labelH = 18;
  const gap = 3;
  const cellW = Math.max(24, Math.min(160, Math.floor((availWidth - labelW - gap - 2) / Math.max(1, cols)) - gap));
  const cellH = Math.max(20, Math.min(60, Math.round(cellW * 0.55)));
  const padX = 3;
  const padY = 3;
  const axisH = 16; // the step axis under the last row
  return {
    labelW, labelH, gap, cellW, cellH, padX, padY, rows, cols, axisH,
    plotW: cellW - 2 * padX - 1, plotH: cellH - 2 * padY,
    width: labelW + gap + cols * (cellW + gap), height: labelH + gap + rows * (cellH + gap) + axisH,
    x: (c) => labelW + gap + c * (cellW + gap),
    y: (r) => labelH + gap + r * (cellH + gap),
  };
}

/**
 * The step axis under each column of the last row: a tick and the step at
 * both ends of the x range (the first and last kept steps), "step" in the
 * label column. Where a cell is too narrow for both numbers, the last step
 * shows under the last column only.
 * @param {CanvasRenderingContext2D} ctx
 * @param {ReturnType<typeof statsLayout>} g
 * @param {number} rows the grid's rows
 * @param {readonly number[]} steps
 * @param {(n: number) => string} text a step's text
 * @returns {{y: number, first: string, last: string}} the axis's baseline and its end labels
 */
export function drawStepAxis(ctx, g, rows, steps, text, theme, font) {
  const y = g.y(rows - 1) + g.cellH + g.gap + g.axisH / 2;
  const first = text(steps[0]);
  const last = text(steps[steps.length - 1]);
  ctx.font = font;
  ctx.textBaseline = "middle";
  ctx.fillStyle = theme.muted;
  ctx.strokeStyle = theme.muted;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.fillText("step", g.labelW - 4, y);
  const both = ctx.measureText(first).width + ctx.measureText(last).width + 8 <= g.plotW;
  ctx.beginPath();
  for (let c = 0; c < g.cols; c++) {
    const x0 = g.x(c) + g.padX;
    const x1 = x0 + g.plotW;
    ctx.moveTo(x0 + 0.5, y - g.axisH / 2);
    ctx.lineTo(x0 + 0.5, y - g.axisH / 2 + 3);
    ctx.moveTo(x1 + 0.5, y - g.axisH / 2);
    ctx.lineTo(x1 + 0.5, y - g.axisH / 2 + 3);
    ctx.textAlign = "left";
    ctx.fillText(first, x0, y + 2);
    if (both || c === g.cols - 1) {
      ctx.textAlign = "right";
      ctx.fillText(last, x1 + 1, y + 2);
    }
  }
  ctx.stroke();
  return { y, first, last };
}
