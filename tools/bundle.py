"""Build tb_attention/page_bundle.js: the dashboard's views and the page
host (frontend/embed.js) as ONE classic script, for notebook outputs and
standalone HTML files.

Why a bundle: a notebook output is HTML put into someone else's page
(JupyterLab, VS Code's output webview, Colab's output frame, a file opened
from disk). There an ES module import cannot reach our files (no server, a
file:// page refuses module scripts, inline module scripts are not run by
every host), so everything a page needs is one inline <script>. The source
of truth stays frontend/: this script rewrites its ES modules into functions
of one file, with no npm toolchain and no minifier, byte for byte the same
on every run (tests/test_bundle.py rebuilds it and fails if the committed file
differs: the bundle cannot drift from frontend/).

    python tools/bundle.py           # write tb_attention/page_bundle.js
    python tools/bundle.py --check   # exit 1 if it is out of date

What the rewriting handles is exactly the module syntax frontend/ uses, and
it refuses anything else rather than guess:
  import { a, b as c } from "./x.js";   -> const { a, b: c } = __tba_require("frontend/x.js");
  import "./x.js";                      -> __tba_require("frontend/x.js");
  export function / async function / class / const / let NAME
  export default class NAME
  import(url)                           -> __tba_import(url) (the view registry's loadView)
  import.meta.url                       -> "tba:/frontend/<module path>"
Modules are evaluated on first use, like ES modules once each; an import
cycle is an error. Exports are getters, so they read like live bindings.
"""
import argparse
import hashlib
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTEND = os.path.join(REPO, "frontend")
OUT = os.path.join(REPO, "tb_attention", "page_bundle.js")
ENTRY = "frontend/embed.js"
REGISTRY = "frontend/views/registry.js"
STYLE = "frontend/style.css"
STATE = "frontend/state.js"

_IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"([^"]+)";?[ \t]*$', re.M)
_SIDE_IMPORT = re.compile(r'^import\s*"([^"]+)";?', re.M)
_EXPORT = re.compile(r"^export\s+(default\s+)?(async\s+function|function|class|const|let)\s+([A-Za-z_$][\w$]*)", re.M)
_DYNAMIC = re.compile(r"\bimport\((?![\"'])")
_META = re.compile(r"\bimport\.meta\.url\b")


class BundleError(Exception):
    pass


def _read(module_id):
    with open(os.path.join(REPO, *module_id.split("/")), encoding="utf-8") as f:
        return f.read()


def _resolve(module_id, spec):
    if not spec.startswith("."):
        raise BundleError("%s imports %r: only relative imports are bundled" % (module_id, spec))
    return os.path.normpath(os.path.join(os.path.dirname(module_id), spec)).replace(os.sep, "/")


def _names(module_id, clause):
    out = []
    for part in clause.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([A-Za-z_$][\w$]*)(?:\s+as\s+([A-Za-z_$][\w$]*))?", part)
        if not m:
            raise BundleError("%s: cannot bundle the import %r" % (module_id, part))
        out.append(m.group(1) if not m.group(2) else "%s: %s" % (m.group(1), m.group(2)))
    return out


def view_modules():
    """The view modules the registry loads with import(): every VIEWS entry's file."""
    return ["frontend/views/" + m for m in re.findall(r'module:\s*"([^"]+)"', _read(REGISTRY))]


def rewrite(module_id, source):
    """(the body of the module's factory function, the module ids it imports)."""
    deps = []

    def imported(m):
        target = _resolve(module_id, m.group(2))
        deps.append(target)
        return "const { %s } = __tba_require(%s);" % (", ".join(_names(module_id, m.group(1))), json.dumps(target))

    def side(m):
        target = _resolve(module_id, m.group(1))
        deps.append(target)
        return "__tba_require(%s);" % json.dumps(target)

    body = _IMPORT.sub(imported, source)
    body = _SIDE_IMPORT.sub(side, body)
    exports = []

    def exported(m):
        name = m.group(3)
        exports.append(("default" if m.group(1) else name, name))
        return "%s %s" % (m.group(2), name)

    body = _EXPORT.sub(exported, body)
    leftover = re.search(r"^\s*(import|export)\b(?!\()(?!\.meta)", body, re.M)
    if leftover:
        line = body[leftover.start():].splitlines()[0]
        raise BundleError("%s: cannot bundle %r" % (module_id, line.strip()))
    body = _META.sub(json.dumps("tba:/" + module_id), body)
    body = _DYNAMIC.sub("__tba_import(", body)
    getters = ", ".join("%s: { enumerable: true, get: () => %s }" % (json.dumps(k), v) for k, v in exports)
    return "Object.defineProperties(__tba_exports, { %s });\n%s" % (getters, body), deps


def collect():
    """Every module the entry and the views need, in a fixed order (each after its imports)."""
    order, bodies, visiting = [], {}, []

    def visit(module_id):
        if module_id in bodies:
            return
        if module_id in visiting:
            raise BundleError("import cycle: %s" % " -> ".join(visiting + [module_id]))
        visiting.append(module_id)
        body, deps = rewrite(module_id, _read(module_id))
        for dep in deps:
            visit(dep)
        visiting.pop()
        bodies[module_id] = body
        order.append(module_id)

    for root in [ENTRY] + view_modules():
        visit(root)
    return order, bodies


def state_keys():
    """The state's keys (defaultState() in state.js): what show(**state) may set."""
    block = re.search(r"export function defaultState\(\) \{\s*return \{(.*?)\};", _read(STATE), re.S)
    return re.findall(r"^\s*([a-z]+):", block.group(1), re.M)


def state_choices(name):
    """A list constant of state.js (CMODES, PAIRS): the values a state key may take."""
    block = re.search(r"export const %s = \[([^\]]*)\]" % name, _read(STATE))
    return re.findall(r'"([^"]+)"', block.group(1))


def build():
    order, bodies = collect()
    css = _read(STYLE)
    sources = hashlib.sha256()
    for module_id in order + [STYLE]:
        sources.update(module_id.encode() + b"\0" + _read(module_id).encode("utf-8") + b"\0")
    version = sources.hexdigest()[:16]
    views = [os.path.basename(m)[:-3] for m in view_modules()]
    meta = {"version": version, "views": views, "state_keys": state_keys(),
            "cmodes": state_choices("CMODES"), "pairs": state_choices("PAIRS")}
    parts = [
        "// tb-attention: the dashboard's views and the page host in one classic script, for\n"
        "// notebook outputs and standalone HTML files. GENERATED by tools/bundle.py from\n"
        "// frontend/ (%d modules); do not edit: change frontend/ and rerun the script.\n" % len(order),
        "// tba-meta: %s\n" % json.dumps(meta, sort_keys=True),
        "(function (global) {\n\"use strict\";\n",
        "const VERSION = %s;\n" % json.dumps(version),
        "const all = global.__tbAttention || (global.__tbAttention = {});\n",
        "if (all[VERSION]) return;\n",
        "const factories = {};\nconst done = {};\nconst started = {};\n",
        "function __tba_require(id) {\n"
        "  if (done[id]) return done[id];\n"
        "  if (!factories[id]) throw new Error(\"tb-attention bundle: no module \" + id);\n"
        "  if (started[id]) throw new Error(\"tb-attention bundle: import cycle at \" + id);\n"
        "  started[id] = true;\n"
        "  const exports = {};\n"
        "  factories[id](exports, __tba_require, __tba_import);\n"
        "  done[id] = exports;\n"
        "  return exports;\n"
        "}\n",
        "function __tba_import(url) {\n"
        "  return new Promise((resolve) => resolve(__tba_require(String(url).replace(/^tba:\\//, \"\"))));\n"
        "}\n",
    ]
    for module_id in order:
        parts.append("\n// ---- %s\n" % module_id)
        parts.append("factories[%s] = function (__tba_exports, __tba_require, __tba_import) {\n" % json.dumps(module_id))
        parts.append(bodies[module_id].rstrip("\n") + "\n};\n")
    parts.append("\nall[VERSION] = { version: VERSION, css: %s, require: __tba_require };\n" % _js_string(css))
    parts.append("})(typeof window !== \"undefined\" ? window : globalThis);\n")
    code = "".join(parts)
    # The bundle goes inside <script>...</script> as it is: the HTML parser
    # must not see an end tag or a comment opener in it.
    for bad in ("</script", "<!--", "<script"):
        if bad in code.lower():
            raise BundleError("the bundle contains %r, which would end or confuse its <script> element" % bad)
    return code


def _js_string(text):
    return json.dumps(text).replace("<", "\\u003c")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if %s is not what frontend/ builds" % os.path.relpath(OUT, REPO))
    args = p.parse_args(argv)
    code = build()
    if args.check:
        try:
            with open(OUT, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != code:
            print("%s is out of date: run python tools/bundle.py" % os.path.relpath(OUT, REPO), file=sys.stderr)
            return 1
        return 0
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(code)
    print("wrote %s (%d bytes)" % (os.path.relpath(OUT, REPO), len(code.encode("utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
