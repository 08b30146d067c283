"""Browser benchmark: tb-attention's dashboard against BertViz's own pages.

    pip install -q . -r tests/benchmarks/requirements.txt   # TensorBoard serves the installed dashboard
    python tests/benchmarks/bench_dashboard.py

Same attention on both sides (12 layers x 12 heads, softmax of seeded random
logits, BERT-like tokens), headless Debian Chromium through Playwright, one
fresh browser context (empty cache) per navigation, scenarios interleaved
round by round so background load hits both sides alike. Medians of 5 (3 for
a scenario whose first run takes over 30 s; 1 for one that does not finish).
Writes tests/benchmarks/results/dashboard.md and prints it. README.md next to
this file says more.

"Fully drawn" (both sides): timed from navigation start (the top page's
performance.timeOrigin) to the start of the animation frame after the one in
which the view's DOM first is complete. A script injected before any page
script (Playwright init script) polls once per animation frame; when the
drawing is complete it asks for one more frame and stamps the time there, so
the frame holding the full drawing has been through style, layout and paint
(compositing and rasterisation on other threads are not waited for).
- BertViz draws synchronously (D3, in the require.js callback), so the poll
  can only ever see nothing or everything: complete = the page holds the
  expected number of <line> elements, L*H*T*T for the model view (one per
  layer, head, query and key token) and H*T*T for the head view (one layer).
- Our dashboard: complete = its root element #tba carries data-state="drawn"
  with data-view / data-tag / data-step / data-layer of the requested view
  (set by frontend/app.js once the view has drawn; see DASHBOARD).
Switches (BertViz's head-view layer, our layer and step) start once the page
has been network-idle after drawing and are timed inside the page, from just
before the change to the animation frame after the one that draws it.
"""
import argparse
import datetime
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "bertviz_harness"))
sys.path.insert(0, REPO)  # tests.conftest, tests.support

LAYERS, HEADS = 12, 12
VIEWPORT = {"width": 1280, "height": 900}
SLOW_S = 30.0  # a scenario slower than this gets 3 runs, not 5

# ---------------------------------------------------------------------------
# The data


def random_attention(layers, heads, tokens, seed=0):
    """float32 [L, H, T, T]: softmax over keys of N(0, 2.5^2) logits plus a
    per-head bias towards one relative position, so heads differ as real ones
    do. Row sums are 1."""
    rng = np.random.default_rng(seed)
    out = np.empty((layers, heads, tokens, tokens), np.float32)
    idx = np.arange(tokens)
    for l in range(layers):
        for h in range(heads):
            logits = rng.standard_normal((tokens, tokens), dtype=np.float32) * 2.5
            offset = int(rng.integers(-2, 3))
            j = np.clip(idx + offset, 0, tokens - 1)
            logits[idx, j] += 4.0
            logits -= logits.max(axis=1, keepdims=True)
            np.exp(logits, out=logits)
            logits /= logits.sum(axis=1, keepdims=True)
            out[l, h] = logits
    return out


_TEXT = ("the attention mechanism lets every token look at every other token in the "
         "sequence and the model learns which ones matter for predicting the next word "
         "while training on a large corpus of english text ##s from books and web ##pages "
         "tensor ##board shows how these patterns change over the course of training").split()


def bert_tokens(n):
    """n BERT-like wordpieces: [CLS] words ... [SEP]."""
    body = [_TEXT[i % len(_TEXT)] for i in range(max(0, n - 2))]
    return (["[CLS]"] + body + ["[SEP]"])[:n]


# ---------------------------------------------------------------------------
# In-page timing

# Init script, runs in every frame before the page's own scripts. READY is a JS
# expression that is truthy once the drawing is complete; FRAME a regexp the
# frame's URL must match for it to poll at all.
POLLER = r"""
(() => {
  if (!new RegExp(%(frame)s).test(location.href)) return;
  // when this frame's navigation started, on the top page's clock
  window.top.__benchFrameStart = performance.timeOrigin - window.top.performance.timeOrigin;
  const ready = () => { try { return !!(%(ready)s); } catch (e) { return false; } };
  const tick = () => {
    if (!ready()) { requestAnimationFrame(tick); return; }
    requestAnimationFrame(() => {
      const t = performance.timeOrigin + performance.now();
      window.top.__benchDrawn = t - window.top.performance.timeOrigin;
    });
  };
  requestAnimationFrame(tick);
})();
"""

# Times a change inside the page: CHANGE is the JS source of a function that
# starts it (what a user does), READY a JS expression, polled once per frame,
# that is truthy once the change is drawn ("true": the change draws
# synchronously, like BertViz's). The time runs to the frame after the one in
# which it is ready, as for navigations; -1 if not ready within LIMIT ms.
SWITCH = r"""
async () => {
  const change = %(change)s;
  const ready = () => { try { return !!(%(ready)s); } catch (e) { return false; } };
  const frame = () => new Promise(r => requestAnimationFrame(r));
  const t0 = performance.now();
  await change();
  await frame();
  while (!ready()) {
    if (performance.now() - t0 > %(limit)d) return -1;
    await frame();
  }
  await frame();
  return performance.now() - t0;
}
"""


class DidNotFinish(Exception):
    pass


def _descendants(pid):
    import psutil
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def renderer_rss_mb():
    """Largest RSS among the Chromium renderer processes started by this
    process (one page is open at a time, so that page's renderer)."""
    best = 0
    for p in _descendants(os.getpid()):
        try:
            if "--type=renderer" in " ".join(p.cmdline()):
                best = max(best, p.memory_info().rss)
        except Exception:
            pass
    return best / 2 ** 20


class Browser:
    def __init__(self):
        from playwright.sync_api import sync_playwright
        from tests.conftest import CHROMIUM_ARGS
        self._pw = sync_playwright().start()
        # Offline: any host name but the local servers' IP fails to resolve.
        self.browser = self._pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=CHROMIUM_ARGS + ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        self.version = self.browser.version

    def navigate(self, url, ready, frame=".", timeout_s=120.0, after=None):
        """(ms from navigation start to fully drawn (see POLLER), renderer MB,
        ms at which the polled frame's navigation started); then runs
        after(page) if given. Raises DidNotFinish."""
        context = self.browser.new_context(viewport=VIEWPORT)
        try:
            context.add_init_script(POLLER % {"ready": ready, "frame": _js_str(frame)})
            page = context.new_page()
            crashed, failed = [], []
            page.on("crash", lambda *_: crashed.append(True))
            page.on("requestfailed", lambda r: failed.append(r.url[:100]))
            start = time.monotonic()
            try:
                page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
                left = timeout_s - (time.monotonic() - start)
                # a function, not an expression: a page whose CSP forbids eval (our standalone pages) refuses the latter
                page.wait_for_function("() => window.__benchDrawn !== undefined", polling=100,
                                       timeout=max(left, 1) * 1000)
            except Exception as e:
                if crashed:
                    raise DidNotFinish("renderer crashed after %.0f s" % (time.monotonic() - start))
                if failed:
                    raise DidNotFinish("requests failed: %s" % failed)
                if "Timeout" in type(e).__name__ or "Timeout" in str(e)[:200]:
                    raise DidNotFinish("not drawn after %.0f s" % timeout_s)
                raise DidNotFinish("%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200]))
            ms, frame_start = page.evaluate("[window.__benchDrawn, window.__benchFrameStart]")
            rss = renderer_rss_mb()
            if after:
                after(page)
            return ms, rss, frame_start
        finally:
            try:
                context.close()
            except Exception:
                pass

    def close(self):
        try:
            self.browser.close()
        finally:
            self._pw.stop()


def _js_str(s):
    import json
    return json.dumps(s)


def settle(page):
    """Before a switch: let the page go network-idle (500 ms without requests;
    at most 5 s), as it would before a user's click."""
    try:
        page.wait_for_load_state("networkidle", timeout=5000)
    except Exception:
        pass


def timed_switch(frame, change_js, ready_js="true", limit_s=60.0):
    ms = frame.evaluate(SWITCH % {"change": change_js, "ready": ready_js, "limit": limit_s * 1000})
    if ms < 0:
        raise DidNotFinish("switch not drawn after %.0f s" % limit_s)
    return ms


# ---------------------------------------------------------------------------
# BertViz side


class BertVizSide:
    """BertViz pages for the same attention, served by a local http.server."""

    def __init__(self, workdir):
        import harness
        self.harness = harness
        self.root = os.path.join(workdir, "bertviz")
        os.makedirs(self.root)
        harness.fetch_vendor(self.root)
        self.server = harness.StaticServer(self.root)
        self.sizes = {}

    def make(self, view, attention, tokens):
        import torch
        name = "%s_%d.html" % (view, len(tokens))
        layers = tuple(torch.from_numpy(attention[i:i + 1]) for i in range(attention.shape[0]))
        self.sizes[(view, len(tokens))] = self.harness.write_page(self.root, name, view, layers, tokens)
        return "%s/%s" % (self.server.url, name)

    def drop(self, view, tokens):
        try:
            os.unlink(os.path.join(self.root, "%s_%d.html" % (view, tokens)))
        except FileNotFoundError:
            pass

    def close(self):
        self.server.stop()


def bertviz_lines(view, T):
    return (LAYERS if view == "model" else 1) * HEADS * T * T


BERTVIZ_READY = "document.getElementsByTagName('line').length >= %d"

# Switch BertViz's head view (already on layer 0) to layer 1: its jQuery change
# handler re-renders synchronously.
BERTVIZ_LAYER_SWITCH = r"""() => {
  const sel = document.querySelector('select#layer');
  sel.value = '1';
  sel.dispatchEvent(new Event('change', {bubbles: true}));
}"""


# ---------------------------------------------------------------------------
# Our side


class OurSide:
    """The same attention written with AttentionWriter, served by a real
    `tensorboard` subprocess (tests/support/backends.py's TensorBoard)."""

    RUN = "bench"

    def __init__(self, workdir, data, python=None):
        import tb_attention
        from tests.support import wait_until
        from tests.support.backends import TensorBoard
        self.logdir = os.path.join(workdir, "logdir")
        self.python = python
        with tb_attention.AttentionWriter(os.path.join(self.logdir, self.RUN)) as w:
            for tag, steps in data.items():
                for step, (attention, tokens) in steps.items():
                    w.add_attention(tag, attention, tokens=tokens, global_step=step)
        self.expected = {tag: sorted(steps) for tag, steps in data.items()}
        self.tb = TensorBoard(self.logdir, extra_args=("--samples_per_plugin=attention=0",), python=python)
        wait_until(self._loaded, timeout=180, what="tensorboard to load the benchmark logdir")

    def _loaded(self):
        got = {tag: t["steps"] for tag, t in self.tb.attention_tags().get(self.RUN, {}).items()}
        return all(got.get(tag) == steps for tag, steps in self.expected.items())

    def close(self):
        self.tb.stop()


# ---------------------------------------------------------------------------
# Scenarios


class Scenario:
    """One measured quantity. run() -> (ms, renderer MB or None, the part of
    ms inside the plugin's iframe or None). A scenario with `leader` is
    measured inside the leader's runs (a switch right after a navigation) and
    has no run() of its own. before / after: once, around its first / last run
    (building and deleting BertViz's big pages)."""

    def __init__(self, key, run=None, reps=5, leader=None, before=None, after=None):
        self.key, self.run, self.reps, self.leader = key, run, reps, leader
        self.before, self.after = before, after
        self.samples, self.rss, self.inner, self._note = [], [], [], None

    @property
    def note(self):
        if self._note is None and self.leader is not None and not self.samples:
            return self.leader.note
        return self._note

    @property
    def done(self):
        if self.leader is not None:
            return self.leader.done
        return self._note is not None or len(self.samples) >= self.reps

    def step(self):
        if self.before:
            self.before()
            self.before = None
        try:
            ms, rss, inner = self.run()
        except DidNotFinish as e:
            self._note = "did not finish: %s" % e
        else:
            self.samples.append(ms)
            if inner is not None:
                self.inner.append(inner)
            if rss is not None:
                self.rss.append(rss)
            if len(self.samples) == 1 and ms > SLOW_S * 1000:
                self.reps = min(self.reps, 3)
        if self.done and self.after:
            self.after()
            self.after = None

    @property
    def median(self):
        return statistics.median(self.samples) if self.samples else None


def follower(scenario):
    """Decorator: measure(page) -> ms, a switch measured after a navigation, is
    an after= callback feeding `scenario`; its failure is that scenario's
    note, not the navigation's."""
    def wrap(measure):
        def after(page):
            if scenario._note is not None:
                return
            try:
                scenario.samples.append(measure(page))
            except DidNotFinish as e:
                scenario._note = "did not finish: %s" % e
        return after
    return wrap


def bertviz_scenarios(browser, bv, a128, t128, args):
    def nav(view, T, url_of, after=None):
        def run():
            ms, rss, _ = browser.navigate(url_of(), BERTVIZ_READY % bertviz_lines(view, T),
                                          timeout_s=args.timeout if T > 128 else args.timeout_128, after=after)
            return ms, rss, None
        return run

    urls = {}

    def build(view, T, attention):
        def before():
            t = time.monotonic()
            urls[(view, T)] = bv.make(view, attention(), bert_tokens(T))
            print("built BertViz's %s view at %d tokens: %.0f MB of HTML in %.0f s" % (
                view, T, bv.sizes[(view, T)] / 1e6, time.monotonic() - t), flush=True)
        return before

    out = [Scenario("bv_model_128", nav("model", 128, lambda: urls[("model", 128)]), args.reps,
                    before=build("model", 128, lambda: a128))]

    switch = Scenario("bv_layer_128")

    @follower(switch)
    def layer_switch(page):
        settle(page)
        ms = timed_switch(page, BERTVIZ_LAYER_SWITCH)
        n = page.evaluate("document.getElementsByTagName('line').length")
        layer = page.evaluate("document.querySelector('select#layer').value")
        if n != bertviz_lines("head", 128) or layer != "1":
            raise DidNotFinish("after the layer switch: %d lines, layer %r" % (n, layer))
        return ms

    head = Scenario("bv_head_128", nav("head", 128, lambda: urls[("head", 128)], layer_switch), args.reps,
                    before=build("head", 128, lambda: a128))
    switch.leader = head
    out += [head, switch]
    if not args.no_512_bertviz:
        a512 = lazy_attention(512)
        for view in ("model", "head"):
            out.append(Scenario("bv_%s_512" % view, nav(view, 512, lambda v=view: urls[(v, 512)]), args.reps,
                                before=build(view, 512, a512), after=lambda v=view: bv.drop(v, 512)))
    return out


_ATTENTION = {}


def lazy_attention(T):
    def get():
        if T not in _ATTENTION:
            _ATTENTION[T] = random_attention(LAYERS, HEADS, T, seed=0)
        return _ATTENTION[T]
    return get


# ---------------------------------------------------------------------------
# Our side's scenarios


def our_data(a128, t128):
    """tag -> {step: (attention [L, H, T, T], tokens)} written for our side."""
    a128b = random_attention(LAYERS, HEADS, 128, seed=1)  # step 1: different weights
    return {
        "t16": {0: (random_attention(LAYERS, HEADS, 16, seed=2), bert_tokens(16))},
        "t128": {0: (a128, t128), 1: (a128b, t128)},
        "t512": {0: (lazy_attention(512)(), bert_tokens(512))},
        "t4096": {0: (random_attention(1, 1, 4096, seed=0), bert_tokens(4096))},
    }


def our_scenarios(browser, workdir, a128, t128, args, sides_out, prefix="ours", python=None):
    """Our side's scenarios, keyed prefix_*: the dashboard installed for this
    Python, or (python=) for another one, the baseline side by side."""
    keys = [prefix + k for k in ("_model_128", "_model_512", "_head_128", "_head_512", "_layer_128",
                                 "_matrix_4096", "_step_128", "_step_model_128", "_redraw_128", "_redraw_512",
                                 "_head_16", "_redraw_16", "_head_16_3", "_redraw_16_3")]
    missing = None if python else dashboard_missing()
    if missing:
        out = []
        for key in keys:
            sc = Scenario(key)
            sc._note = "not measured: %s" % missing
            out.append(sc)
        return out

    side = OurSide(os.path.join(workdir, prefix), our_data(a128, t128), python)
    sides_out.append(side)
    d = DASHBOARD
    base = side.tb.url

    def frame_of(page):
        for f in page.frames:
            if re_search(d["frame"], f.url):
                return f
        raise RuntimeError("no dashboard frame in %s" % [f.url for f in page.frames])

    def nav(state, *after):
        url = d["url"](base, dict(run=OurSide.RUN, **state))
        label = "%s: %s view, %s tokens%s" % (prefix, state["view"], state["tag"][1:],
                                              ", heads %s" % state["heads"] if "heads" in state else "")

        def after_all(page):
            # what the view drew (the dashboard's data-detail: lines or heatmap, edge counts)
            if label not in OUR_DETAILS:
                OUR_DETAILS[label] = frame_of(page).evaluate(
                    "document.querySelector('#tba').getAttribute('data-detail')")
            for a in after:
                a(page)

        def run():
            ms, rss, frame_start = browser.navigate(url, d["ready"](state), frame=d["frame"],
                                                    timeout_s=args.timeout, after=after_all)
            return ms, rss, ms - frame_start
        return run

    def switch(scenario, change, to_state):
        @follower(scenario)
        def after(page):
            settle(page)
            return timed_switch(frame_of(page), change(to_state), d["ready"](to_state))
        return after

    def redraw(scenario):
        @follower(scenario)
        def after(page):
            return frame_of(page).evaluate(d["redraw"])
        return after

    head128 = dict(tag="t128", step=0, view="head", layer=0)
    out = [Scenario(prefix + "_model_128", nav(dict(tag="t128", step=0, view="model")), args.reps),
           Scenario(prefix + "_model_512", nav(dict(tag="t512", step=0, view="model")), args.reps)]
    layer_sw, redraw128, redraw512 = (Scenario(prefix + k) for k in ("_layer_128", "_redraw_128", "_redraw_512"))
    head = Scenario(prefix + "_head_128", nav(head128, redraw(redraw128),
                                              switch(layer_sw, d["switch_layer"], dict(head128, layer=1))), args.reps)
    head512 = Scenario(prefix + "_head_512", nav(dict(tag="t512", step=0, view="head", layer=0), redraw(redraw512)),
                       args.reps)
    layer_sw.leader = redraw128.leader = head
    redraw512.leader = head512
    out += [head, layer_sw, redraw128, head512, redraw512]
    # 16 tokens: every head (BertViz draws all 3,072 lines), and heads 0-2 (768
    # lines: both this checkout and main's draw them all, equal work)
    for key, more in (("_16", {}), ("_16_3", {"heads": "0-2"})):
        again = Scenario(prefix + "_redraw" + key)
        again.leader = Scenario(prefix + "_head" + key, nav(dict(tag="t16", step=0, view="head", layer=0, **more),
                                                             redraw(again)), args.reps)
        out += [again.leader, again]
    out += [
            Scenario(prefix + "_matrix_4096", nav(dict(tag="t4096", step=0, view="matrix", layer=0, head=0)),
                     args.reps)]
    # Step switches: navigate to the view at step 0 (that navigation is not
    # reported), then step 1 through the "next step" button.
    model128 = dict(tag="t128", step=0, view="model")
    for key, state in (("_step_128", head128), ("_step_model_128", model128)):
        step_sw = Scenario(prefix + key)
        step_nav = Scenario(prefix + key + "_nav", nav(state, switch(step_sw, d["switch_step"], dict(state, step=1))),
                            args.reps)
        step_sw.leader = step_nav
        out += [step_nav, step_sw]
    return out


OUR_DETAILS = {}  # "model view, 128 tokens" -> the dashboard's data-detail once drawn


def re_search(pattern, s):
    import re
    return re.search(pattern, s) is not None


# How our dashboard is reached and how it says it is drawn (frontend/app.js,
# frontend/state.js). It runs in TensorBoard's plugin iframe
# (/data/plugin_entry.html?name=attention); its state lives in TensorBoard's
# URL hash as p.attention.KEY=VALUE after the tab name. When a view has drawn,
# the root element #tba gets data-state="drawn" plus data-view, data-tag,
# data-step, data-layer, data-head... of what is on screen.
def _url(base, state):
    from urllib.parse import quote
    return base + "/#attention" + "".join("&%s=%s" % (quote("p.attention." + k, safe=""), quote(str(v), safe=""))
                                          for k, v in state.items())


def _ready(state):
    sel = '#tba[data-state="drawn"]' + "".join(
        '[data-%s="%s"]' % (k, state[k]) for k in ("view", "tag", "step", "layer", "head") if k in state)
    return "document.querySelector(%s)" % _js_str(sel)


DASHBOARD = {
    "url": _url,
    "frame": r"/data/plugin_entry\.html",
    "ready": _ready,
    # JS source of a function that starts the change (see SWITCH): what a user
    # does, through the dashboard's own controls.
    "switch_layer": lambda state: """() => {
      const sel = document.querySelector('select[data-name="layer"]');
      sel.value = '%d';
      sel.dispatchEvent(new Event('change', {bubbles: true}));
    }""" % state["layer"],
    "switch_step": lambda state: """() => document.querySelector('button[data-name="next"]').click()""",
    # a warm redraw of the view on screen (its data in memory): the median ms of
    # 7 calls of its draw(), each finished by reading a pixel back
    "redraw": """() => { const app = window.tbAttention; const v = app.views[app.state.view]; const ts = [];
      for (let i = 0; i < 7; i++) { const t0 = performance.now(); v.draw();
        document.querySelector('canvas').getContext('2d').getImageData(0, 0, 1, 1); ts.push(performance.now() - t0); }
      return ts.sort((a, b) => a - b)[3]; }""",
}


def installed_frontend():
    """The frontend directory TensorBoard will serve: the installed package's
    (the tensorboard subprocess runs without this checkout on its path)."""
    import subprocess
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-c", "import tb_attention.plugin as p; print(p._frontend_root())"],
                       capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env)
    return r.stdout.strip() if r.returncode == 0 else None


def _js_files(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith((".js", ".css")) and "tests" not in os.path.relpath(dirpath, root).split(os.sep):
                with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                    out[os.path.relpath(os.path.join(dirpath, name), root)] = f.read()
    return out


def dashboard_missing():
    """Why our side cannot be measured, or None. Warns when the installed
    dashboard differs from this checkout's frontend/."""
    root = installed_frontend()
    if root is None:
        return "tb_attention is not installed (pip install .)"
    if not os.path.isfile(os.path.join(root, "index.js")):
        return "the installed package has no dashboard (%s/index.js; pip install . again?)" % root
    installed = _js_files(root)
    src = "".join(installed.values())
    for needed in ('"data-state"', '"drawn"', '"data-name": "layer"', '"data-name": "next"'):
        if needed not in src:
            return "the installed dashboard has no %s (see DASHBOARD in bench_dashboard.py)" % needed
    global DASHBOARD_SOURCE
    DASHBOARD_SOURCE = dashboard_source(installed)
    print("dashboard measured: " + DASHBOARD_SOURCE, flush=True)
    return None


DASHBOARD_SOURCE = None


def dashboard_source(installed):
    """Which dashboard the installed package holds, compared with this checkout."""
    import subprocess

    def git(*a):
        return subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "?"
    at_head = {}
    for rel in git("ls-files", "frontend").splitlines():
        rel = rel[len("frontend/"):]
        if rel.endswith((".js", ".css")) and not rel.startswith("tests/"):
            at_head[rel] = git("show", "HEAD:frontend/" + rel) + "\n"
    strip = lambda d: {k: v.rstrip("\n") for k, v in d.items()}
    if strip(installed) == strip(at_head):
        return "frontend/ of commit %s" % head
    if installed == _js_files(os.path.join(REPO, "frontend")):
        return "frontend/ of the working tree (uncommitted changes on %s)" % head
    print("WARNING: the installed dashboard differs from this checkout's frontend/; `pip install .` "
          "to measure the checkout", flush=True)
    return "an installed frontend that matches neither commit %s nor the working tree" % head


# ---------------------------------------------------------------------------
# Report


def fmt_ms(ms):
    if ms is None:
        return "-"
    return "%.0f" % ms if ms >= 10 else "%.1f" % ms


def machine():
    import psutil
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "%d cores%s, %.1f GB memory, %s" % (
        os.cpu_count(), " (%s)" % cpu if cpu else "", psutil.virtual_memory().total / 2 ** 30,
        platform.platform(terse=True))


ROWS = [  # label, BertViz key, our key, goal (on the ratio or on our ms)
    ("Model view, 128 tokens", "bv_model_128", "ours_model_128", ("ratio", 20, ">= 20x faster than BertViz")),
    ("Model view, 512 tokens", "bv_model_512", "ours_model_512", ("ours", 1000, "ours <= 1000 ms")),
    ("Head view, 128 tokens", "bv_head_128", "ours_head_128", None),
    ("Head view, 512 tokens", "bv_head_512", "ours_head_512", None),
    ("Head view layer switch, 128 tokens", "bv_layer_128", "ours_layer_128", None),
    ("Matrix view, 1 head, 4096 tokens", None, "ours_matrix_4096", None),
    ("Step switch, 128 tokens, head view", None, "ours_step_128", ("ours", 100, "ours <= 100 ms")),
    ("Step switch, 128 tokens, model view", None, "ours_step_model_128", ("ours", 100, "ours <= 100 ms")),
]
# --baseline: our scenarios for the baseline's dashboard too, side by side
BASE_ROWS = [
    ("Model view, 128 tokens", "_model_128"), ("Model view, 512 tokens", "_model_512"),
    ("Head view, 16 tokens, 12 heads (cold)", "_head_16"), ("Head view redraw, 16 tokens, 12 heads (warm)", "_redraw_16"),
    ("Head view, 16 tokens, heads 0-2 (cold)", "_head_16_3"),
    ("Head view redraw, 16 tokens, heads 0-2 (warm; both draw all 768 lines)", "_redraw_16_3"),
    ("Head view, 128 tokens (cold: navigation to drawn)", "_head_128"),
    ("Head view, 512 tokens (cold)", "_head_512"),
    ("Head view redraw, 128 tokens (warm: draw() with its data)", "_redraw_128"),
    ("Head view redraw, 512 tokens (warm)", "_redraw_512"),
    ("Head view layer switch, 128 tokens", "_layer_128"), ("Matrix view, 1 head, 4096 tokens", "_matrix_4096"),
    ("Step switch, 128 tokens, head view", "_step_128"), ("Step switch, 128 tokens, model view", "_step_model_128"),
]


def baseline_table(s, cell, baseline):
    """Markdown lines: this checkout's dashboard against the baseline's, scenario by scenario."""
    lines = ["", "Side by side with the baseline (`--baseline %s`), measured interleaved in the same run:" % baseline, "",
             "| Scenario | baseline ms | this checkout ms | baseline / this |", "|---|---|---|---|"]
    for label, k in BASE_ROWS:
        a, b = s.get("base" + k), s.get("ours" + k)
        r = "%.2f" % (a.median / b.median) if a and b and a.samples and b.samples else "-"
        lines.append("| %s | %s | %s | %s |" % (label, cell("base" + k), cell("ours" + k), r))
    return lines


def report(scenarios, browser_version, bertviz_version, sizes, args, elapsed_s, load=None):
    s = {sc.key: sc for sc in scenarios}

    def cell(key):
        if key is None:
            return "n/a"
        sc = s.get(key)
        if sc is None:
            return "not run"
        if not sc.samples:
            return sc.note or "not measured"
        txt = "%s (n=%d)" % (fmt_ms(sc.median), len(sc.samples))
        if sc.inner:
            txt += "; %s in the plugin frame" % fmt_ms(statistics.median(sc.inner))
        return txt + ("; then " + sc.note if sc.note else "")

    def ratio(bv, ours):
        a, b = s.get(bv), s.get(ours)
        if not (a and b and b.samples):
            return "-"
        if a.samples:
            r = a.median / b.median
            return "%.0fx" % r if r >= 10 else "%.1fx" % r
        return "BertViz did not finish" if a.note and "did not finish" in a.note else "-"

    def mem(key):
        sc = s.get(key)
        return "%.0f" % statistics.median(sc.rss) if sc and sc.rss else "-"

    def goal(bv, ours, g):
        if g is None:
            return ""
        kind, limit, text = g
        b, o = s.get(bv), s.get(ours)
        if not (o and o.samples):
            return text + ": not measured"
        if kind == "ratio":
            if b and b.samples:
                ok = b.median / o.median >= limit
            elif b and b.note and "did not finish" in b.note:
                ok = True
            else:
                return text + ": not measured"
        else:
            ok = o.median <= limit
            if o.inner:
                inner_ok = statistics.median(o.inner) <= limit
                return "%s: %s by navigation, %s in the plugin frame" % (
                    text, "met" if ok else "**not met**", "met" if inner_ok else "**not met**")
        return "%s: %s" % (text, "met" if ok else "**not met**")

    lines = [
        "# Dashboard benchmark: tb-attention against BertViz in headless Chromium",
        "",
        "%s on %s; Chromium %s (headless, Playwright), bertviz %s, viewport %dx%d; took %.0f min%s. "
        "Other jobs may share the CPUs: compare the two sides (measured interleaved) rather than "
        "read absolute numbers." % (
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), machine(), browser_version, bertviz_version,
            VIEWPORT["width"], VIEWPORT["height"], elapsed_s / 60,
            ", 1-min load average %.1f at the start and %.1f at the end" % load if load else ""),
        "",
        "12 layers x 12 heads (the matrix view: 1 x 1) of the same seeded random softmax attention on "
        "both sides. Median ms from navigation start to fully drawn (switches: from the change to drawn); "
        "n = runs. Ratio = BertViz / ours. Our navigations include loading TensorBoard's own page; \"in "
        "the plugin frame\" is the part from the start of the dashboard's iframe (TensorBoard's "
        "plugin_entry.html) to drawn. Renderer MB = resident memory of the page's renderer process "
        "once drawn.",
        "",
        "| Scenario | BertViz ms | tb-attention ms | Ratio | BertViz renderer MB | Our renderer MB | Goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, bv, ours, g in ROWS:
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, cell(bv), cell(ours), ratio(bv, ours) if bv else "-", mem(bv) if bv else "-", mem(ours),
            goal(bv, ours, g)))
    lines.append("")
    if args.baseline:
        lines += baseline_table(s, cell, args.baseline) + [""]
    if DASHBOARD_SOURCE:
        lines.append("tb-attention's dashboard: %s." % DASHBOARD_SOURCE)
    if OUR_DETAILS:
        lines.append("What our views drew (their `data-detail`): " + "; ".join(
            "%s: `%s`" % kv for kv in OUR_DETAILS.items()) + ".")
    if sizes:
        lines.append("BertViz's pages: " + ", ".join(
            "%s view at %d tokens %.0f MB of HTML" % (v, t, b / 1e6) for (v, t), b in sorted(sizes.items()))
            + ". Its require.js 2.3.6, d3 5.7.0 and jQuery come from npm (`npm pack`) and are served with "
            "the pages by a local http.server (jQuery 2.0.0 is not on npm: 2.1.0).")
    lines.append("")
    lines.append("Runs: up to %d per scenario, scenarios interleaved round by round, a fresh browser context "
                 "(empty cache) per navigation; 3 runs for a scenario whose first run took over %.0f s; a "
                 "navigation not drawn within %.0f s (BertViz at 128 tokens: %.0f s) counts as did not "
                 "finish and is not repeated. Fully drawn: see tests/benchmarks/README.md." % (
                     args.reps, SLOW_S, args.timeout, args.timeout_128))
    lines.append("")
    lines.append("Command: `%s`" % " ".join(["python", "tests/benchmarks/bench_dashboard.py"] + sys.argv[1:]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds before a navigation counts as not finished (default 120)")
    ap.add_argument("--timeout-128", type=float, default=600.0,
                    help="the same for BertViz at 128 tokens, which does finish, slowly (default 600)")
    ap.add_argument("--sides", default="bertviz,ours", help="bertviz, ours, or bertviz,ours (default)")
    ap.add_argument("--no-512-bertviz", action="store_true",
                    help="skip BertViz at 512 tokens (~1 GB pages, several GB of RAM to build)")
    ap.add_argument("--baseline", metavar="PYTHON",
                    help="also measure our scenarios for the dashboard installed for this other Python (a venv "
                         "with main's package, say), interleaved, as base_*: a side-by-side table")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dashboard.md"))
    args = ap.parse_args()
    sides = set(args.sides.split(","))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up servers and temp files

    t_start, load_start = time.monotonic(), os.getloadavg()[0]
    workdir = tempfile.mkdtemp(prefix="bench-dashboard-")
    a128 = random_attention(LAYERS, HEADS, 128, seed=0)
    t128 = bert_tokens(128)
    browser = Browser()
    bv, servers, scenarios = None, [], []
    try:
        if "bertviz" in sides:
            bv = BertVizSide(workdir)
            scenarios += bertviz_scenarios(browser, bv, a128, t128, args)
        if "ours" in sides:
            scenarios += our_scenarios(browser, workdir, a128, t128, args, servers)
            if args.baseline:
                scenarios += our_scenarios(browser, workdir, a128, t128, args, servers, "base", args.baseline)
        rnd = 0
        while not all(sc.done for sc in scenarios):
            rnd += 1
            for sc in scenarios:
                if sc.done or sc.leader is not None:
                    continue
                sc.step()
                followers = [f for f in scenarios if f.leader is sc and f.samples]
                print("round %d  %-16s %s%s" % (
                    rnd, sc.key, fmt_ms(sc.samples[-1]) + " ms" if sc.samples and not sc._note else sc.note,
                    "".join("  %s %s ms" % (f.key, fmt_ms(f.samples[-1])) for f in followers)), flush=True)
        from harness import bertviz_version
        md = report(scenarios, browser.version, bertviz_version() if bv else "(not run)", bv.sizes if bv else {}, args,
                    time.monotonic() - t_start, (load_start, os.getloadavg()[0]))
    finally:
        browser.close()
        for srv in servers + ([bv] if bv else []):
            try:
                srv.close()
            except Exception:
                traceback.print_exc()
        shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(md)
    print()
    print(md)


if __name__ == "__main__":
    main()
