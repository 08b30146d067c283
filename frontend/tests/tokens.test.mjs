import test from "node:test";
import assert from "node:assert/strict";
import { prettify, tokenLabels, tokenPieces, isByteLevel, decodeByteLevel, visible, truncate, isolate, shortLabel } from "../tokens.js";

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
  assert.deepEqual(bert, ["[CLS]", "play", "##ing", "##", "[SEP]"]);
  assert.deepEqual(tokenLabels(["\u2581The", "\u2581cat", "s", "\u2581", "</s>"], true), ["The", "cat", "##s", "\u2423", "</s>"]);
  assert.deepEqual(tokenLabels(["hello</w>", "wor", "ld</w>", "</w>"], true), ["hello", "wor", "##ld", "</w>"]);
});

test("sub-word continuation stays visible in every tokenizer's labels", () => {
  // "unbelievably" as WordPiece, byte-level BPE and SentencePiece split it
  assert.deepEqual(tokenLabels(["[CLS]", "un", "##bel", "##ie", "##va", "##bly", "[SEP]"], true),
    ["[CLS]", "un", "##bel", "##ie", "##va", "##bly", "[SEP]"]);
  assert.deepEqual(tokenLabels(["<s>", "It", "\u0120was", "\u0120un", "bel", "iev", "ably", ",", "\u0120a", "\u0120cat", "</s>"], true),
    ["<s>", "It", "was", "un", "##bel", "##iev", "##ably", ",", "a", "cat", "</s>"]);
  assert.deepEqual(tokenLabels(["\u2581un", "bel", "iev", "ably", "\u2581good", ".", "</s>"], true),
    ["un", "##bel", "##iev", "##ably", "good", ".", "</s>"]);
  // a glued piece that is not a letter or digit (punctuation) is not a continuation
  assert.deepEqual(tokenLabels(["\u0120good", "!", "\u010a", "Next"], true), ["good", "!", "\u21b5", "Next"]);
});

test("tokenPieces: the text, the spaces between words, the continuations", () => {
  const text = (toks) => tokenPieces(toks).map((p) => (p.space ? " " : "") + p.text).join("");
  assert.equal(text(["It", "\u0120was", "\u0120un", "bel", "iev", "ably", ",", "\u0120a", "\u0120cat"]), "It was unbelievably, a cat");
  assert.equal(text(["[CLS]", "un", "##bel", "##ie", "##va", "##bly", "good", "[SEP]"]), "[CLS] unbelievably good [SEP]");
  assert.equal(text(["\u2581The", "\u2581cat", "s", "."]), "The cats.");
  assert.equal(text(["hello</w>", "wor", "ld</w>", "again</w>"]), "hello world again");
  assert.deepEqual(tokenPieces(["\u0120a", "b"]).map((p) => p.cont), [false, true]);
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

test("invisible and bidi characters are shown as escapes, in raw labels too", () => {
  assert.equal(visible("a\u202Eexe.txt"), "a\\u202eexe.txt"); // RLO: would flip what follows
  assert.equal(visible("\u200F"), "\\u200f");
  assert.equal(visible("x\u200By\uFEFF"), "x\\u200by\\ufeff");
  assert.equal(visible("\u2066\u2069"), "\\u2066\\u2069"); // an isolate of its own cannot unbalance ours
  assert.equal(visible("\u{E0041}"), "\\u{e0041}"); // tag characters (invisible text)
  assert.equal(visible("\ud800x"), "\\ud800x"); // a lone surrogate (Python surrogatepass)
  assert.equal(visible("\u{1F468}\u200D\u{1F469}"), "\u{1F468}\u200D\u{1F469}"); // ZWJ emoji stays
  assert.deepEqual(tokenLabels(["\u200B", "\uFEFF", "\u0000"], true), ["\\u200b", "\\ufeff", "\u2400"]);
  assert.deepEqual(tokenLabels(["\u202Eabc"], false), ["\\u202eabc"]);
  assert.ok(tokenLabels(["\u200B"], true)[0].length > 0);
});

test("labels with right-to-left letters are isolated; readout labels keep the isolate", () => {
  assert.equal(isolate("abc"), "abc");
  assert.equal(isolate("\u05e8\u05d5\u05d1"), "\u2068\u05e8\u05d5\u05d1\u2069");
  assert.deepEqual(tokenLabels(["\u200F\u05e8", "x"], true), ["\u2068\\u200f\u05e8\u2069", "x"]);
  const long = isolate("\u05d0".repeat(100));
  const s = shortLabel(long, 10);
  assert.ok(s.startsWith("\u2068") && s.endsWith("\u2069") && s.includes("\u2026"), s);
  assert.equal([...shortLabel("a".repeat(10000))].length, 60);
  assert.equal(shortLabel("short"), "short");
});
