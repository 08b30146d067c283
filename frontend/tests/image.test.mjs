// Which steps image mode applies to (draw/image.js imageOf): self or encoder
// attention whose positions include the image's patches.
import { test } from "node:test";
import assert from "node:assert/strict";
import { imageOf } from "../draw/image.js";

const image = { rows: 2, cols: 3, first_patch: 1, patch_height: 8, patch_width: 8, height: 16, width: 24 };
const tokens = (n) => Array.from({ length: n }, (_, i) => `t${i}`);
const ctx = (name, q, k, im = image) => ({ header: { image: im }, kind: { name, query_tokens: tokens(q), key_tokens: tokens(k) } });

test("image mode applies to self and encoder attention over the image's positions", () => {
  assert.equal(imageOf(ctx("self", 7, 7)), image);
  assert.equal(imageOf(ctx("encoder", 7, 7)), image);
  assert.equal(imageOf(ctx("cross", 3, 7)), null); // decoder queries
  assert.equal(imageOf(ctx("self", 6, 6)), null); // fewer positions than [CLS] + 6 patches
  assert.equal(imageOf(ctx("self", 7, 7, null)), null); // no image in the header
  assert.equal(imageOf(null), null);
});
