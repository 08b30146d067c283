import test from "node:test";
import assert from "node:assert/strict";
import { prettify, tokenLabels, isByteLevel, decodeByteLevel, visible, truncate } from "../tokens.js";

test("byte-level BPE tokens decode to text", () => {
  assert.equal(decodeByteLevel("\u0120the"), " the");
  assert.equal(decodeByteLevel("\u00c3\u00a9"), "\u00e9"); // "Ã©" -> é
  assert.equal(decodeByteLevel("\u010a"), "\n");
  // half of a two-byte character is not valid UTF-8 on its own
  assert.equal(decodeByteLevel("\u00c3"), null);
  // a character outside the byte alphabet
  assert.equal(decodeByteLevel("\u4e2d"), null);
});

test("GPT-2 style list: Ġ dropped, spaces and newlines visible", () => {
  const toks = ["The", "\u0120cat", "\u0120sat", "\u010a", "\u0120", "\u00c3\u00a9t\u00c3\u00a9"];
  assert.ok(isByteLevel(toks));
  assert.deepEqual(tokenLabels(toks, true), ["The", "cat", "sat", "\u21b5", "\u2423", "\u00e9t\u00e9"]);
});

test("raw labels keep the tokenizer's strings", () => {
  const toks = ["\u0120cat", "##ing", "\u2581the", "a</w>"];
  assert.deepEqual(tokenLabels(toks, false), toks);
});

test("WordPiece, SentencePiece and </w> markers", () => {
  const bert = tokenLabels(["[CLS]", "play", "##ing", "##", "[SEP]"], true);
  assert.deepEqual(bert, ["[CLS]", "play", "ing", "##", "[SEP]"]);
  assert.deepEqual(tokenLabels(["\u2581The", "\u2581cat", "s", "\u2581", "</s>"], true), ["The", "cat", "s", "\u2423", "</s>"]);
  assert.deepEqual(tokenLabels(["hello</w>", "wor", "ld</w>", "</w>"], true), ["hello", "wor", "ld", "</w>"]);
});

test("byte fallback and control characters", () => {
  assert.equal(prettify("<0x0A>"), "\u21b5");
  assert.equal(prettify("<0x41>"), "A");
  assert.equal(prettify("<0xE2>"), "<0xE2>");
  assert.equal(visible("a\tb\u0001"), "a\u21e5b\\x01");
  assert.equal(prettify(""), "\u2205");
  assert.equal(tokenLabels([""], false)[0], "\u2205");
});

test("markup in tokens stays text", () => {
  const t = "<img src=x onerror=alert(1)>";
  assert.equal(prettify(t), t);
  assert.deepEqual(tokenLabels([t], false), [t]);
});

test("truncate counts code points", () => {
  assert.equal(truncate("abcdef", 4), "abc\u2026");
  assert.equal(truncate("ab", 4), "ab");
  assert.equal(truncate("\u{1F600}\u{1F600}\u{1F600}", 2), "\u{1F600}\u2026");
});
