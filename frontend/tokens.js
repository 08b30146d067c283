// Token display: turn tokenizer strings into readable labels.
//
// Tokens are user text. Nothing here produces HTML: the results go to canvas
// fillText or element.textContent only.
//
// Rules ("prettify"; the raw strings stay available through a toggle):
//   - byte-level BPE (GPT-2, RoBERTa, BART, Qwen2, LLaMA-3): every character of
//     a token stands for one byte (GPT-2's bytes_to_unicode table). When a token
//     list uses that alphabet (it contains a `Ġ` or `Ċ`), each token is mapped
//     back to its bytes and decoded as UTF-8, so `Ġthe` -> ` the` and
//     `Ã©` -> `é`. A token whose bytes are not valid UTF-8 on their own (a
//     multi-byte character split over two tokens) keeps its raw string.
//   - SentencePiece (T5, ALBERT, XLNet, LLaMA-2): `▁` marks a word start and
//     stands for a space.
//   - WordPiece (BERT, ELECTRA, DistilBERT): `##` marks a continuation.
//   - `</w>` (XLM, CLIP BPE) marks a word end.
//   - SentencePiece byte fallback `<0x0A>` is shown as the character it encodes
//     when that is printable or whitespace.
// Word-boundary markers and the leading space they stand for are dropped, so
// labels line up, but word boundaries stay visible: a piece that continues
// the word before it (WordPiece `##bel`; a byte-level or SentencePiece piece
// with no leading space glued to a letter or digit; the piece after one
// without `</w>`) is labelled `##bel`, whatever the tokenizer, so
// "unbelievably" reads `un ##bel ##ie ##va ##bly`, never `un bel ie va bly`
// (tokenPieces gives the text view the pieces and their spacing instead);
// whitespace-only tokens and control characters get visible symbols
// (␣ ↵ ⇥ ␀...) so no label is blank; invisible format characters (bidi
// controls, zero-width spaces, BOM) and lone surrogates become escapes
// (\u202e), and labels with right-to-left letters are isolated (FSI ... PDI).

/** @type {Map<string, number> | null} */
let BYTE_DECODER = null;

/** GPT-2's bytes_to_unicode, inverted: character -> byte. */
export function byteDecoder() {
  if (BYTE_DECODER) return BYTE_DECODER;
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  BYTE_DECODER = new Map();
  for (let i = 0; i < bs.length; i++) BYTE_DECODER.set(String.fromCharCode(cs[i]), bs[i]);
  return BYTE_DECODER;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Decode one byte-level BPE token back to text, or null when it is not one
 * (a character outside the byte alphabet, or bytes that are not valid UTF-8).
 * @param {string} token
 * @returns {string | null}
 */
export function decodeByteLevel(token) {
  const dec = byteDecoder();
  const bytes = new Uint8Array(token.length);
  let n = 0;
  for (const ch of token) {
    const b = dec.get(ch);
    if (b === undefined) return null;
    bytes[n++] = b;
  }
  try {
    return UTF8.decode(bytes.subarray(0, n));
  } catch (e) {
    return null;
  }
}

/**
 * Whether a token list comes from a byte-level BPE tokenizer: some token
 * uses the characters that stand for a space or a newline.
 * @param {readonly string[]} tokens
 */
export function isByteLevel(tokens) {
  for (const t of tokens) {
    if (t.includes("\u0120") || t.includes("\u010a")) return true;
  }
  return false;
}

const CONTROL_NAMES = new Map([
  ["\n", "\u21b5"], // ↵
  ["\r", "\u240d"], // ␍
  ["\t", "\u21e5"], // ⇥
  ["\u0000", "\u2400"], // ␀
]);

// Invisible characters that change how text around them is shown: bidi
// embeddings, overrides, isolates and marks (an RLO in a token would flip the
// rest of a readout: "Trojan Source"), zero-width spaces and joiners' kin,
// the BOM, line / paragraph separators, and Unicode tag characters (text
// smuggled invisibly). A token is user text, so they are shown as escapes,
// as editors do. ZWJ / ZWNJ are left alone (emoji sequences, Persian).
const INVISIBLE = /[\u00ad\u061c\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\u{e0000}-\u{e007f}]/u;

/** Replace whitespace, control and invisible format characters that would draw as nothing. */
export function visible(text) {
  let out = "";
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (CONTROL_NAMES.has(ch)) out += CONTROL_NAMES.get(ch);
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) {
      out += "\\x" + code.toString(16).padStart(2, "0");
    } else if ((code >= 0xd800 && code <= 0xdfff) || INVISIBLE.test(ch)) {
      // lone surrogates (a str Python wrote with surrogatepass) included
      out += code > 0xffff ? "\\u{" + code.toString(16) + "}" : "\\u" + code.toString(16).padStart(4, "0");
    } else out += ch;
  }
  return out;
}

const FSI = "\u2068";
const PDI = "\u2069";
// strong right-to-left letters: Hebrew, Arabic, Syriac, Thaana, NKo, ...
const RTL = /[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\u{10800}-\u{10fff}\u{1e800}-\u{1efff}]/u;

/**
 * A label with right-to-left letters wrapped in a first-strong isolate, so
 * its direction does not spill onto the text around it (a number after a
 * Hebrew label in a readout would otherwise jump to its left). Labels come
 * from visible(), so they hold no isolate or PDI of their own to unbalance it.
 * @param {string} label
 */
export function isolate(label) {
  return RTL.test(label) ? FSI + label + PDI : label;
}

/**
 * Readable label of one token (on its own: tokenLabels adds the `##` of a
 * continuation, which needs the token before).
 * @param {string} token the tokenizer's string
 * @param {{byteLevel?: boolean}} [opts]
 * @returns {string}
 */
export function prettify(token, opts = {}) {
  return piece(token, opts).text;
}

// A letter, mark or digit: a piece starting with one, glued to a piece ending
// with one, is a continuation of that word.
const WORD_START = /^[\p{L}\p{M}\p{N}]/u;
const WORD_END = /[\p{L}\p{M}\p{N}]$/u;

/**
 * One token as text: its visible text without word-boundary markers, and
 * what the markers said. space: a space stood before it (`Ġ`, `▁`, a leading
 * space); wordPiece: it was `##...`; open: it had no `</w>` while its list uses
 * `</w>` (the next piece continues it).
 * @returns {{text: string, space: boolean, wordPiece: boolean, endMark: boolean}}
 */
function piece(token, opts) {
  let t = String(token);
  if (opts.byteLevel) {
    const decoded = decodeByteLevel(t);
    if (decoded !== null) t = decoded;
  }
  const fallback = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
  if (fallback) {
    const code = parseInt(fallback[1], 16);
    if (code < 0x80) t = String.fromCharCode(code);
  }
  let space = false;
  let wordPiece = false;
  let endMark = false;
  if (t.length > 1 && t.startsWith("\u2581")) {
    t = t.slice(1); // ▁ (SentencePiece word start)
    space = true;
  } else if (t.length > 2 && t.startsWith("##")) {
    t = t.slice(2); // WordPiece
    wordPiece = true;
  }
  if (t.length > 4 && t.endsWith("</w>")) {
    t = t.slice(0, -4);
    endMark = true;
  }
  t = t.replace(/\u2581/g, " ");
  if (t.length > 0 && t.trim() === "") {
    // A token that is only whitespace: show each character.
    return { text: [...t].map((c) => (c === " " ? "\u2423" : visible(c))).join(""), space, wordPiece, endMark };
  }
  if (t.length > 1 && t.startsWith(" ") && t.trim() !== "") {
    t = t.replace(/^ +/, "");
    space = true;
  }
  if (t === "") return { text: "\u2205", space, wordPiece, endMark }; // ∅
  return { text: visible(t), space, wordPiece, endMark };
}

/**
 * A token list as pieces of text: each token's visible text (no markers),
 * whether a space stands before it (the text view puts one there) and
 * whether it continues the word before it (`cont`: labels get `##`).
 * WordPiece gives no spaces: every piece that is not `##...` starts a word.
 * @param {readonly string[]} tokens
 * @returns {Array<{text: string, space: boolean, cont: boolean}>}
 */
export function tokenPieces(tokens) {
  const byteLevel = isByteLevel(tokens);
  const endMarks = tokens.some((t) => t.length > 4 && t.endsWith("</w>"));
  const spaced = byteLevel || tokens.some((t) => t.startsWith("\u2581"));
  const out = [];
  let prev = null;
  for (const tok of tokens) {
    const p = piece(tok, { byteLevel });
    let cont = p.wordPiece;
    if (!cont && prev && (spaced || endMarks) && !p.space) {
      // glued to the piece before (no space marker; no word end before it)
      cont = !(endMarks && prev.endMark) && WORD_END.test(prev.text) && WORD_START.test(p.text);
    }
    const space = out.length > 0 && !cont && (spaced ? p.space : endMarks ? prev.endMark : true);
    out.push({ text: p.text, space, cont });
    prev = p;
  }
  return out;
}

/**
 * Labels for a token list: prettified (the default) or raw.
 * Raw labels still make control characters visible; pretty ones mark a
 * continuation piece with `##` (tokenPieces).
 * @param {readonly string[]} tokens
 * @param {boolean} pretty
 * @returns {string[]}
 */
export function tokenLabels(tokens, pretty = true) {
  if (!pretty) return tokens.map((t) => (t === "" ? "\u2205" : isolate(visible(t))));
  return tokenPieces(tokens).map((p) => isolate(p.cont ? "##" + p.text : p.text));
}

/**
 * Shorten a label to at most `max` characters (code points) with an ellipsis.
 * @param {string} label
 * @param {number} max
 */
export function truncate(label, max) {
  const chars = [...label];
  if (chars.length <= max) return label;
  return chars.slice(0, Math.max(1, max - 1)).join("") + "\u2026";
}

/** Longest label (code points) a text readout shows; the full one is in its title. */
export const READOUT_CHARS = 60;

/**
 * A label shortened for a readout, keeping its isolate balanced (a cut-off
 * PDI would isolate the rest of the readout).
 * @param {string} label
 * @param {number} [max]
 */
export function shortLabel(label, max = READOUT_CHARS) {
  if (label.startsWith(FSI) && label.endsWith(PDI)) return FSI + truncate(label.slice(1, -1), max) + PDI;
  return truncate(label, max);
}

/**
 * A `labels(kind, raw)` for a host: a kind's query and key labels, pretty or
 * raw, computed once per kind object.
 * @returns {(kind: {query_tokens: string[], key_tokens: string[]}, raw: boolean) => {q: string[], k: string[]}}
 */
export function labelCache() {
  const cache = new WeakMap();
  return (kind, raw) => {
    let byRaw = cache.get(kind);
    if (!byRaw) {
      byRaw = {};
      cache.set(kind, byRaw);
    }
    const which = raw ? "raw" : "pretty";
    if (!byRaw[which]) byRaw[which] = { q: tokenLabels(kind.query_tokens, !raw), k: tokenLabels(kind.key_tokens, !raw) };
    return byRaw[which];
  };
}
