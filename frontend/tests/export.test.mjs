// The exported PNG's title (issue 14): a U+202E in a run name reversed the
// whole title, and long names pushed step / view / layer off the image.
import test from "node:test";
import assert from "node:assert/strict";
import { exportTitle, titleName, TITLE_NAME_MAX } from "../export.js";

const state = { run: "r", tag: "t", step: 7, kind: "self", view: "head" };

test("bidi controls in names are escapes, right-to-left names isolated", () => {
  const title = exportTitle({ ...state, run: "\u202eevil.png", tag: "\u05e9\u05dc\u05d5\u05dd" });
  assert.ok(!title.includes("\u202e"), title);
  assert.ok(title.startsWith("\\u202eevil.png \u00b7 \u2068\u05e9\u05dc\u05d5\u05dd\u2069 \u00b7 step 7 \u00b7 self \u00b7 "), title);
});

test("long names are cut in the middle; step, kind and view stay", () => {
  const long = "a".repeat(500) + "END";
  const name = titleName(long);
  assert.equal([...name].length, TITLE_NAME_MAX - 1);
  assert.ok(name.startsWith("aaa") && name.endsWith("aEND") && name.includes("\u2026"), name);
  const title = exportTitle({ ...state, run: long, tag: long }, " \u00b7 layer 3");
  assert.ok(title.length < 3 * TITLE_NAME_MAX + 60, title);
  assert.ok(title.endsWith("\u00b7 step 7 \u00b7 self \u00b7 Head view \u00b7 layer 3") || /step 7 \u00b7 self \u00b7 .* view \u00b7 layer 3$/.test(title), title);
  assert.equal(titleName("short"), "short");
});
