// fromBase64: the page's data decoded to the same bytes as Node's own base64
// decoder (the oracle), whichever path the runtime takes; Chromium takes the
// native Uint8Array.fromBase64 (test_page_e2e draws from it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromBase64 } from "../payload.js";

test("fromBase64 gives the bytes Buffer decodes, every byte value and padding length", () => {
  for (const n of [0, 1, 2, 3, 256, 1000, 4099]) {
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = (i * 131 + (i >> 8)) & 255;
    const text = Buffer.from(bytes).toString("base64");
    assert.deepEqual(Buffer.from(fromBase64(text)), Buffer.from(text, "base64"), `${n} bytes`);
  }
});

test("fromBase64 refuses text that is not base64", () => {
  assert.throws(() => fromBase64("not base64 at all!"));
});
