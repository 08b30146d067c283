// The shipped modules: the entry point preloads exactly the shared module
// graph (a module missing from the list would load late, one import level at
// a time), views do not import each other, and files and functions stay small.
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { SHARED_MODULES } from "../index.js";
import { VIEWS } from "../views/registry.js";

const ROOT = new URL("../", import.meta.url);
const read = (rel) => readFileSync(new URL(rel, ROOT), "utf8");
const importsOf = (rel) => [...read(rel).matchAll(/^import [^;]*? from "(\.[^"]+)";$/gms)]
  .map((m) => new URL(m[1], new URL(rel, ROOT)).href.slice(ROOT.href.length));

function graph(start) {
  const seen = new Set();
  const todo = [...start];
  while (todo.length) {
    const rel = todo.pop();
    if (seen.has(rel)) continue;
    seen.add(rel);
    todo.push(...importsOf(rel));
  }
  return seen;
}

const shipped = () => ["", "draw/", "views/"].flatMap((dir) =>
  readdirSync(new URL(dir || ".", ROOT)).filter((f) => f.endsWith(".js")).map((f) => dir + f));

test("the entry point preloads the app's modules and those views share, flat", () => {
  const early = graph(["index.js"]);
  const views = VIEWS.map((v) => "views/" + v.module);
  const app = graph(["app.js"]);
  const users = new Map(); // module -> how many views reach it
  for (const v of views) for (const m of graph([v])) users.set(m, (users.get(m) || 0) + 1);
  const shared = [...new Set([...app, ...[...users].filter(([, n]) => n >= 2).map(([m]) => m)])]
    .filter((m) => !early.has(m) && !views.includes(m)).sort();
  assert.deepEqual([...SHARED_MODULES].sort(), shared, "SHARED_MODULES in index.js: the app's modules and those 2+ views share");
  // every shipped module is used: by the app, a view, or the page host (embed.js: notebooks, HTML files)
  const reached = graph(["index.js", "app.js", "embed.js", ...views]);
  const unused = shipped().filter((m) => !reached.has(m));
  assert.deepEqual(unused, []);
});

test("views do not import each other, and every view is in the registry", () => {
  const views = new Set(VIEWS.map((v) => "views/" + v.module));
  for (const v of views) {
    const others = importsOf(v).filter((m) => views.has(m));
    assert.deepEqual(others, [], `${v} imports another view`);
  }
  const files = readdirSync(new URL("views/", ROOT)).filter((f) => f.endsWith(".js") && !["controls.js", "registry.js"].includes(f));
  assert.deepEqual(files.sort(), [...views].map((v) => v.slice(6)).sort());
});

/** Functions (declarations, methods, arrows assigned at the top level) and their line counts. */
function functions(text) {
  const lines = text.split("\n");
  const out = [];
  const start = /^(\s*)(?:export\s+)?(?:default\s+)?(?:static\s+)?(?:async\s+)?(?:function\s*\*?\s*[\w$]+\s*\(|(?!if\b|for\b|while\b|switch\b|catch\b|return\b)[\w$]+\s*\([^;]*\)\s*\{\s*$|(?:const|let)\s+[\w$]+\s*=\s*(?:async\s*)?\([^)]*\)\s*=>\s*\{\s*$)/;
  for (let i = 0; i < lines.length; i++) {
    const m = start.exec(lines[i]);
    if (!m || !lines[i].trimEnd().endsWith("{")) continue;
    const indent = m[1];
    let j = i + 1;
    while (j < lines.length && !(lines[j].startsWith(indent + "}") && !lines[j].startsWith(indent + " "))) j++;
    out.push({ name: lines[i].trim().slice(0, 60), lines: j - i + 1 });
  }
  return out;
}

test("no shipped file over 400 lines, no function over 60", () => {
  for (const rel of shipped()) {
    const text = read(rel);
    assert.ok(text.split("\n").length <= 400, `${rel}: ${text.split("\n").length} lines`);
    for (const f of functions(text)) assert.ok(f.lines <= 60, `${rel}: ${f.name} has ${f.lines} lines`);
  }
});
