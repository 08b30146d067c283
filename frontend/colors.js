// Colours: one distinct colour per head, a sequential scale for weights, a
// diverging scale for signed values, and the two themes.
//
// Head colours are chosen greedily in OKLab (a perceptual space): each next
// head gets the in-gamut colour farthest from every colour chosen before it.
// The sequence does not depend on the head count, so head 5 has the same
// colour in every layer, run and view; BertViz's d3 category10 repeats after
// 10 heads, this stays distinguishable well past 32.

/** @typedef {[number, number, number]} RGB  0..255 each */

/** sRGB channel (0..1) from linear light. */
function encodeSrgb(x) {
  return x <= 0.0031308 ? 12.92 * x : 1.055 * Math.pow(x, 1 / 2.4) - 0.055;
}
function decodeSrgb(x) {
  return x <= 0.04045 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
}

/**
 * OKLab -> linear sRGB (may fall outside 0..1).
 * @returns {[number, number, number]}
 */
export function oklabToLinear(L, a, b) {
  const l_ = L + 0.3963377774 * a + 0.2158037573 * b;
  const m_ = L - 0.1055613458 * a - 0.0638541728 * b;
  const s_ = L - 0.0894841775 * a - 1.291485548 * b;
  const l = l_ * l_ * l_;
  const m = m_ * m_ * m_;
  const s = s_ * s_ * s_;
  return [
    4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s,
    -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s,
    -0.0041960863 * l - 0.7034186147 * m + 1.707614701 * s,
  ];
}

/**
 * sRGB (0..255) -> OKLab.
 * @param {RGB} rgb
 * @returns {[number, number, number]}
 */
export function rgbToOklab(rgb) {
  const [r, g, b] = rgb.map((v) => decodeSrgb(v / 255));
  const l = Math.cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
  const m = Math.cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
  const s = Math.cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
  return [
    0.2104542553 * l + 0.793617785 * m - 0.0040720468 * s,
    1.9779984951 * l - 2.428592205 * m + 0.4505937099 * s,
    0.0259040371 * l + 0.7827717662 * m - 0.808675766 * s,
  ];
}

/**
 * OKLCH -> sRGB bytes, or null when out of the sRGB gamut.
 * @returns {RGB | null}
 */
export function oklchToRgb(L, C, hDeg) {
  const h = (hDeg * Math.PI) / 180;
  const lin = oklabToLinear(L, C * Math.cos(h), C * Math.sin(h));
  if (lin.some((v) => v < -1e-4 || v > 1 + 1e-4)) return null;
  return /** @type {RGB} */ (lin.map((v) => Math.round(255 * encodeSrgb(Math.min(1, Math.max(0, v))))));
}

/** Distance in OKLab between two sRGB colours (about 0.02 = just noticeable). */
export function deltaE(a, b) {
  const p = rgbToOklab(a);
  const q = rgbToOklab(b);
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

let CANDIDATES = null;
/** In-gamut candidates: lightness 0.5..0.8 (visible on white and on near-black). */
function candidates() {
  if (CANDIDATES) return CANDIDATES;
  CANDIDATES = [];
  for (const L of [0.5, 0.56, 0.62, 0.68, 0.74, 0.8]) {
    for (let h = 0; h < 360; h += 7.5) {
      // the most chroma that fits, capped so colours stay alike in weight
      let best = null;
      for (const C of [0.2, 0.17, 0.14, 0.11, 0.08]) {
        const rgb = oklchToRgb(L, C, h);
        if (rgb) {
          best = rgb;
          break;
        }
      }
      if (best) CANDIDATES.push({ rgb: best, lab: rgbToOklab(best) });
    }
  }
  return CANDIDATES;
}

const FIRST = /** @type {RGB} */ ([31, 119, 180]); // BertViz's (d3's) first blue
// The search below's first 32 answers, written out: searching them cold cost
// ~5-10 ms of a page's first draw. colors.test.mjs checks that the search
// still gives exactly these.
export const HEAD_COLOR_TABLE = /** @type {RGB[]} */ ([
  FIRST, [250, 94, 43], [129, 217, 67], [228, 121, 243], [101, 105, 3], [175, 14, 110], [87, 212, 212], [119, 58, 193],
  [234, 180, 68], [251, 159, 177], [154, 164, 240], [161, 66, 6], [25, 159, 100], [244, 86, 147], [89, 120, 253], [25, 114, 107],
  [154, 160, 35], [47, 185, 244], [178, 120, 52], [208, 42, 57], [0, 121, 0], [168, 62, 183], [169, 124, 240], [62, 222, 146],
  [68, 147, 161], [192, 200, 34], [56, 181, 51], [78, 75, 209], [246, 140, 17], [224, 161, 251], [249, 167, 130], [148, 195, 239],
]);
/** @type {RGB[]} */
const HEAD_COLORS = HEAD_COLOR_TABLE.slice();

/**
 * Colour of head `i` (0-based), stable across head counts.
 * @param {number} i
 * @returns {RGB}
 */
export function headColor(i) {
  if (i < 0) i = 0;
  if (i >= HEAD_COLORS.length) extendHeadColors(HEAD_COLORS, i + 1);
  return HEAD_COLORS[i];
}

/**
 * Grow `colors` to n head colours: each next one the candidate farthest from
 * every colour chosen so far.
 * @param {RGB[]} colors
 * @param {number} n
 */
export function extendHeadColors(colors, n) {
  const cands = candidates();
  while (colors.length < n) {
    if (colors.length === 0) {
      colors.push(FIRST);
      continue;
    }
    if (colors.length >= 240) {
      // past a few hundred heads only repeats are left: cycle.
      colors.push(colors[colors.length % 240]);
      continue;
    }
    const chosen = colors.map(rgbToOklab);
    let best = null;
    let bestD = -1;
    for (const c of cands) {
      let d = Infinity;
      for (const q of chosen) {
        // weigh lightness less: hue and chroma carry head identity on lines
        const dd = Math.hypot(0.6 * (c.lab[0] - q[0]), c.lab[1] - q[1], c.lab[2] - q[2]);
        if (dd < d) d = dd;
      }
      if (d > bestD) {
        bestD = d;
        best = c.rgb;
      }
    }
    colors.push(best);
  }
  return colors;
}

/** @param {RGB} rgb @param {number} [alpha] */
export function css(rgb, alpha = 1) {
  return alpha >= 1 ? `rgb(${rgb[0]},${rgb[1]},${rgb[2]})` : `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${alpha})`;
}

/**
 * A 256-entry lookup table (RGBA bytes) interpolating between anchors.
 * @param {RGB[]} anchors
 * @returns {Uint8ClampedArray} length 1024
 */
export function makeLut(anchors) {
  const lut = new Uint8ClampedArray(256 * 4);
  const n = anchors.length - 1;
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * n;
    const k = Math.min(n - 1, Math.floor(t));
    const f = t - k;
    for (let c = 0; c < 3; c++) lut[i * 4 + c] = Math.round(anchors[k][c] * (1 - f) + anchors[k + 1][c] * f);
    lut[i * 4 + 3] = 255;
  }
  return lut;
}

/** Hex "#rrggbb" -> RGB. */
export function hex(h) {
  const v = parseInt(h.replace("#", ""), 16);
  return /** @type {RGB} */ ([(v >> 16) & 255, (v >> 8) & 255, v & 255]);
}

// Each property of the two themes: [light, dark].
const THEME_VALUES = {
  name: ["light", "dark"],
  background: ["#ffffff", "#1e1e1e"],
  text: ["#1f1f1f", "#e6e6e6"],
  muted: ["#6b6b6b", "#9a9a9a"],
  grid: ["#d0d0d0", "#3a3a3a"],
  highlight: ["rgba(255, 200, 0, 0.35)", "rgba(255, 200, 0, 0.28)"],
  masked: [[225, 225, 225], [58, 58, 58]],
  // weight 0 -> the background, 1 -> dark blue (ColorBrewer Blues) / pale yellow (inferno)
  seq: [["#ffffff", "#deebf7", "#9ecae1", "#4292c6", "#2171b5", "#08306b"].map(hex),
    ["#1e1e1e", "#3b0f70", "#8c2981", "#de4968", "#fe9f6d", "#fcfdbf"].map(hex)],
  // negative -> blue, 0 -> near the background, positive -> red (ColorBrewer RdBu)
  div: [["#2166ac", "#67a9cf", "#f7f7f7", "#ef8a62", "#b2182b"].map(hex),
    ["#4393c3", "#2b5a7a", "#2a2a2a", "#8a3b2e", "#d6604d"].map(hex)],
};

/**
 * The two themes, {light, dark}: colours by property. Canvas views read
 * colours from here; the page chrome uses style.css with the same values.
 */
export const THEMES = Object.fromEntries(["light", "dark"].map((name, i) =>
  [name, Object.fromEntries(Object.entries(THEME_VALUES).map(([k, v]) => [k, v[i]]))]));

const LUTS = new Map();
/** Sequential LUT of a theme: index = weight byte (weight * 255). */
export function seqLut(theme) {
  const key = theme.name + ":seq";
  if (!LUTS.has(key)) LUTS.set(key, makeLut(theme.seq));
  return LUTS.get(key);
}
/** Diverging LUT of a theme: index 0 = -max, 128 = 0, 255 = +max. */
export function divLut(theme) {
  const key = theme.name + ":div";
  if (!LUTS.has(key)) LUTS.set(key, makeLut(theme.div));
  return LUTS.get(key);
}

/**
 * Diverging colour of a signed value, scaled by `maxAbs`.
 * @param {number} v
 * @param {number} maxAbs
 * @param {Uint8ClampedArray} lut from divLut
 * @returns {RGB}
 */
export function divergingColor(v, maxAbs, lut) {
  const i = divergingIndex(v, maxAbs);
  return [lut[i * 4], lut[i * 4 + 1], lut[i * 4 + 2]];
}

/** LUT index (0..255, 0 at 127.5) of a signed value. */
export function divergingIndex(v, maxAbs) {
  if (!(maxAbs > 0) || !Number.isFinite(v)) return 128;
  const t = Math.max(-1, Math.min(1, v / maxAbs));
  return Math.max(0, Math.min(255, Math.round(127.5 + t * 127.5)));
}

/** Packed little-endian RGBA (for Uint32Array views on ImageData). */
export function lutToUint32(lut) {
  const out = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    out[i] = (lut[i * 4 + 3] << 24) | (lut[i * 4 + 2] << 16) | (lut[i * 4 + 1] << 8) | lut[i * 4];
  }
  return out;
}
