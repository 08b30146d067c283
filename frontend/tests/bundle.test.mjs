// tb_attention/page_bundle.js (tools/bundle.py): the frontend as one classic
// script. Evaluated here as a page would (a plain script, a window global):
// every module loads, the view registry's import() reaches the bundled views,
// and the bundle holds exactly the modules the page host and the views use.
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";
import { VIEWS } from "../views/registry.js";

const text = readFileSync(new URL("../../tb_attention/page_bundle.js", import.meta.url), "utf8");
const meta = JSON.parse(/^\/\/ tba-meta: (.*)$/m.exec(text)[1]);

function load() {
  const window = {};
  vm.runInNewContext(text, { window, globalThis: window, URL, Promise, console, TextDecoder, TextEncoder });
  return window.__tbAttention[meta.version];
}

test("the bundle is one script whose modules all load, and whose import() finds the views", async () => {
  const b = load();
  const ids = [...text.matchAll(/^factories\["([^"]+)"\]/gm)].map((m) => m[1]);
  for (const id of ids) assert.equal(typeof b.require(id), "object", id);
  assert.equal(typeof b.require("frontend/embed.js").mount, "function");
  const registry = b.require("frontend/views/registry.js");
  for (const v of VIEWS) {
    const View = await registry.loadView(v.name);
    assert.equal(View, b.require("frontend/views/" + v.module).default, v.name);
    assert.equal(typeof View.needs, "function");
  }
  assert.deepEqual(meta.views, VIEWS.map((v) => v.name));
  assert.ok(b.css.includes(".tba-controls"));
});

test("a second copy of the bundle (a second output) keeps the first", () => {
  const window = {};
  vm.runInNewContext(text, { window, globalThis: window, URL, Promise, console, TextDecoder, TextEncoder });
  const first = window.__tbAttention[meta.version];
  vm.runInNewContext(text, { window, globalThis: window, URL, Promise, console, TextDecoder, TextEncoder });
  assert.equal(window.__tbAttention[meta.version], first);
});
