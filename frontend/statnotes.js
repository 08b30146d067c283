// What the stats view says beside its grid: steps it could not read, steps
// logged without statistics, and what a bounded answer left out.

const LIST_MAX = 12;

function listSteps(steps) {
  const head = steps.slice(0, LIST_MAX).join(", ");
  return steps.length > LIST_MAX ? `${head} and ${steps.length - LIST_MAX} more` : head;
}

/** What a bounded answer left out (docs/routes.md: at most max_values per statistic). */
export function boundedText(b, steps, layers, heads) {
  const cut = [[steps, b.steps, "steps, evenly spaced"], [layers, b.layers, "layers (the first)"], [heads, b.heads, "heads (the first)"]];
  return `showing ${cut.filter(([n, of]) => n < of).map(([n, of, what]) => `${n} of ${of} ${what}`).join(", ")}: at most ${b.max_values} values per statistic`;
}

/** The notices of a `stats` answer (docs/routes.md); missing: the indices of steps without statistics. */
export function noticeParts(data, missing) {
  const { steps, errors } = data;
  const parts = [];
  const errs = errors || [];
  if (errs.length) {
    const more = errs.length > 1 ? ` (and ${errs.length - 1} more)` : "";
    parts.push(`could not read the statistics of step${errs.length > 1 ? "s" : ""} ${listSteps(errs.map((e) => e.step))}: ${errs[0].message}${more}`);
  }
  const bad = new Set(errs.map((e) => e.step));
  const old = missing.map((s) => steps[s]).filter((st) => !bad.has(st));
  if (old.length && old.length < steps.length) {
    parts.push(`step${old.length > 1 ? "s" : ""} ${listSteps(old)} carr${old.length > 1 ? "y" : "ies"} no statistics (logged before tb-attention computed them): gaps in every line`);
  }
  if (data.bounded) parts.push(boundedText(data.bounded, steps.length, (data.layer_ids || []).length, data.num_heads || 0));
  return parts;
}
