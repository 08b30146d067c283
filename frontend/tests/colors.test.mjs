import test from "node:test";
import assert from "node:assert/strict";
import { headColor, HEAD_COLOR_TABLE, extendHeadColors, deltaE, THEMES, seqLut, divLut, divergingIndex, divergingColor, makeLut, hex, css, lutToUint32, oklchToRgb, rgbToOklab } from "../colors.js";

test("head colours are distinct for 32 heads and unique for 64", () => {
  const cs = [];
  for (let i = 0; i < 64; i++) cs.push(headColor(i));
  let min32 = Infinity;
  for (let i = 0; i < 32; i++) for (let j = 0; j < i; j++) min32 = Math.min(min32, deltaE(cs[i], cs[j]));
  // 0.02 is about a just noticeable difference in OKLab
  assert.ok(min32 > 0.06, `closest pair of the first 32 head colours: ${min32}`);
  assert.equal(new Set(cs.map(String)).size, 64);
  let min10 = Infinity;
  for (let i = 0; i < 10; i++) for (let j = 0; j < i; j++) min10 = Math.min(min10, deltaE(cs[i], cs[j]));
  assert.ok(min10 > 0.12, `closest pair of the first 10: ${min10}`);
});

test("head colours are stable and visible on both themes", () => {
  assert.deepEqual(headColor(5), headColor(5));
  for (let i = 0; i < 32; i++) {
    assert.ok(deltaE(headColor(i), hex(THEMES.light.background)) > 0.15);
    assert.ok(deltaE(headColor(i), hex(THEMES.dark.background)) > 0.15);
  }
  assert.deepEqual(headColor(0), [31, 119, 180]);
  assert.deepEqual(headColor(-3), headColor(0));
});

test("OKLab conversions invert", () => {
  const rgb = oklchToRgb(0.6, 0.1, 200);
  assert.ok(rgb);
  const lab = rgbToOklab(rgb);
  assert.ok(Math.abs(lab[0] - 0.6) < 0.01);
  assert.equal(oklchToRgb(0.6, 0.5, 200), null); // out of gamut
});

test("sequential LUT runs from background to the strongest colour", () => {
  for (const theme of [THEMES.light, THEMES.dark]) {
    const lut = seqLut(theme);
    assert.equal(lut.length, 1024);
    assert.deepEqual([...lut.slice(0, 3)], hex(theme.background));
    assert.deepEqual([...lut.slice(1020, 1023)], theme.seq[theme.seq.length - 1]);
    assert.equal(lut[3], 255);
  }
  // light: stronger weight = darker
  const l = seqLut(THEMES.light);
  const lum = (i) => l[i * 4] + l[i * 4 + 1] + l[i * 4 + 2];
  for (let i = 1; i < 256; i++) assert.ok(lum(i) <= lum(i - 1));
});

test("diverging scale: sign picks the side, zero is neutral", () => {
  assert.equal(divergingIndex(0, 1), 128);
  assert.equal(divergingIndex(-1, 1), 0);
  assert.equal(divergingIndex(5, 1), 255);
  assert.equal(divergingIndex(1, 0), 128);
  assert.equal(divergingIndex(NaN, 1), 128);
  const lut = divLut(THEMES.light);
  const neg = divergingColor(-2, 2, lut);
  const pos = divergingColor(2, 2, lut);
  assert.ok(neg[2] > neg[0], "negative is blue");
  assert.ok(pos[0] > pos[2], "positive is red");
});

test("LUT helpers", () => {
  const lut = makeLut([[0, 0, 0], [255, 255, 255]]);
  assert.deepEqual([...lut.slice(128 * 4, 128 * 4 + 4)], [128, 128, 128, 255]);
  const u32 = lutToUint32(lut);
  assert.equal(u32[255], 0xffffffff);
  assert.equal(u32[0], 0xff000000);
  assert.equal(css([1, 2, 3]), "rgb(1,2,3)");
  assert.equal(css([1, 2, 3], 0.5), "rgba(1,2,3,0.5)");
});

test("the written-out head colours are what the search finds, and the search goes on past them", () => {
  const searched = extendHeadColors([], 40);
  assert.deepEqual(searched.slice(0, HEAD_COLOR_TABLE.length), HEAD_COLOR_TABLE);
  for (let i = 0; i < 40; i++) assert.deepEqual(headColor(i), searched[i], `head ${i}`);
});
