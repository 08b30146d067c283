"""Hardening of the dashboard in the browser: TensorBoard going away and
coming back, a corrupt step, hostile token strings, awkward run / tag names
and steps, many runs. Real `tensorboard` subprocesses over logdirs written by
the real AttentionWriter, Debian's headless Chromium through Playwright.

Synchronisation as in test_dashboard_e2e.py: the root #tba carries
data-state ("drawn", "error", "offline", ...) and data-step / data-view / ...
of what is on screen; tests wait on those, never for a fixed time.
The dashboard is served from the installed package: `pip install .` first.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

import tb_attention
from tb_attention import AttentionRecord

from tests.conftest import TensorBoard, free_port, wait_until
from tests.support.backends import PREFIX
from tests.support.browser import (
    SCREENSHOTS, TIMEOUT, plugin_frame, root_attrs, save_screenshot, top_hash_keys, url, wait_drawn, watched_page,
)
from tests.support.records import neuron_kind

VIEWPORT = {"width": 1200, "height": 820}
STEP_MAX = 2 ** 62

# -- data ---------------------------------------------------------------------

LONG = "W" * 6000 + "<b>mid</b>" + "Z" * 6000 + "END"  # 12k characters
HEBREW = "\u05e9\u05dc\u05d5\u05dd"
HOSTILE = [
    "[CLS]",
    "<script>window.__pwned=1</script>",
    "</script><script>window.__pwned=2;alert(2)</script>",
    '<img src=x onerror="window.__pwned=3;alert(3)">',
    LONG,
    "\u202egnp.exe",  # right-to-left override
    "\u200f" + HEBREW,  # right-to-left mark + Hebrew letters
    "zero\u200bwidth",
    "\ufeff",
    "nul\x00byte",
    "lone\ud800surrogate",
    "[SEP]",
]
# what the dashboard shows for them (prettified): markup as is, invisible
# characters as escapes, NUL as a symbol, RTL letters isolated
FSI, PDI = "\u2068", "\u2069"
HOSTILE_LABELS = [
    "[CLS]", HOSTILE[1], HOSTILE[2], HOSTILE[3], LONG, "\\u202egnp.exe", FSI + "\\u200f" + HEBREW + PDI,
    "zero\\u200bwidth", "\\ufeff", "nul\u2400byte", "lone\\ud800surrogate", "[SEP]",
]
LONG_I, RLO_I, RTL_I = 4, 5, 6

RUN_NAME = "a b/\u00fc&x=1#y%z"  # a nested run: TensorBoard names it by its path
TAG_NAME = "probe/\u00fc \u00e9&k=v#h%25"
MANY_RUNS, MANY_PROBES = 200, 5


def write_hostile(root):
    rng = np.random.default_rng(5)
    kind = neuron_kind("self", 2, 2, HOSTILE, HOSTILE, rng)
    with tb_attention.AttentionWriter(os.path.join(root, "hostile")) as w:
        w.add_attention("probe", AttentionRecord([kind]), global_step=0)


def small(step, T=4, L=2, H=2):
    rng = np.random.default_rng(step)
    x = rng.random((L, H, T, T)).astype(np.float32) + 0.05
    return x / x.sum(-1, keepdims=True)


def write_corrupt(root):
    """Steps 0-3; one byte flipped inside the layer-1 payload of step 2 in
    the event file. The Rust data server (load_fast, conftest's default) does
    not checksum records that parse, so the plugin's own CRC finds it."""
    with tb_attention.AttentionWriter(os.path.join(root, "corrupt")) as w:
        for step in range(4):
            w.add_attention("probe", small(step), tokens=list("abcd"), global_step=step)
    (path,) = glob.glob(os.path.join(root, "corrupt", "events.out.tfevents.*"))
    data = bytearray(open(path, "rb").read())
    payload = np.rint(np.clip(small(2)[1], 0, 1) * 255).astype(np.uint8).tobytes()
    assert data.count(payload) == 1
    data[data.index(payload) + len(payload) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def write_bad_newest(root):
    """Steps 0 and 1; step 1's header blob is not a header (the notice names it)."""
    from tb_attention import summary
    from tests.support.events import attention_event, write_event_file
    from tests.support.records import self_record
    rng = np.random.default_rng(0)
    ok, bad = (self_record(rng, 1, 2, list("abcd")) for _ in range(2))
    write_event_file(os.path.join(root, "badnewest"), [
        attention_event("probe", 0, summary.step_blobs(ok, 0, "handmade")),
        attention_event("probe", 1, [b"\xff\xff", *summary.step_blobs(bad, 1, "handmade")[1:]])])


def write_names(root):
    with tb_attention.AttentionWriter(os.path.join(root, *RUN_NAME.split("/"))) as w:
        for step in (0, STEP_MAX):
            w.add_attention(TAG_NAME, small(1 if step else 0), tokens=list("wxyz"), global_step=step)


BIDI_RUN = "\u202e" + "exported-" + "x" * 120 + "-END"


def write_two_writers_bidi(root):
    """A run whose name reverses text (U+202E) and is long, logged by two
    writers at once into one SummaryWriter's file (issue 14; in two files
    the Rust loader keeps one writer's steps only, and nothing can be seen)."""
    from torch.utils.tensorboard import SummaryWriter
    sw = SummaryWriter(os.path.join(root, BIDI_RUN))
    a, b = tb_attention.AttentionWriter(sw), tb_attention.AttentionWriter(sw)
    for step in range(6):
        w = a if step % 2 == 0 else b
        w.add_attention("probe", small(step), tokens=list("abcd"), global_step=step)
        w.flush()
    a.close()
    b.close()
    sw.close()


def write_many(root):
    one = np.full((1, 1, 3, 3), 1 / 3, np.float32)
    for r in range(MANY_RUNS):
        with tb_attention.AttentionWriter(os.path.join(root, "many", "r%03d" % r)) as w:
            for p in range(MANY_PROBES):
                for step in (0, 1):
                    w.add_attention("p%d" % p, one, tokens=["r%d" % r, "p%d" % p, "s%d" % step], global_step=step)


@pytest.fixture(scope="module")
def board(tensorboard_factory, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("hardening-logs"))
    write_hostile(root)
    write_corrupt(root)
    write_bad_newest(root)
    write_names(root)
    write_many(root)
    write_two_writers_bidi(root)
    tb = tensorboard_factory(root)

    def loaded():
        # the many runs by the listing's newest step (one writer per run, in
        # step order: step 1 listed means both are), the others step by step
        listing = {r["run"]: {t["tag"]: t for t in r["tags"]} for r in tb.get_json("/data/plugin/attention/tags")["runs"]}
        if sum(1 for r in listing if r.startswith("many/") and len(listing[r]) == MANY_PROBES
               and all(t["max_step"] == 1 for t in listing[r].values())) != MANY_RUNS:
            return False
        def steps(run, tag):
            if tag not in listing.get(run, {}):
                return []
            q = urllib.parse.urlencode({"run": run, "tag": tag})
            return tb.get_json("/data/plugin/attention/steps?" + q)["steps"]
        return (steps("hostile", "probe") and len(steps("corrupt", "probe")) == 4
                and steps("badnewest", "probe") == [0, 1]
                and steps(RUN_NAME, TAG_NAME) == [0, STEP_MAX] and steps(BIDI_RUN, "probe"))
    wait_until(loaded, timeout=180, interval=0.5, what="TensorBoard to load every test run")
    return tb


@pytest.fixture
def page(browser):
    with watched_page(browser, viewport=VIEWPORT) as p:
        yield p


def open_at(page, board, **state):
    page.goto(url(board, **state))
    frame = plugin_frame(page)
    wait_drawn(frame, **{k: v for k, v in state.items() if k in ("view", "run", "tag", "step", "layer", "head")})
    return frame


def error_text(frame):
    frame.wait_for_selector('#tba[data-state="error"]', state="attached", timeout=TIMEOUT)
    return frame.text_content('[data-name="error"]')


# -- TensorBoard restarts -----------------------------------------------------

class TensorBoardOnPort(TensorBoard):
    """conftest's TensorBoard on a given port: a restarted server keeps the
    address the open page talks to."""

    def __init__(self, logdir, port):
        self.logdir = str(logdir)
        self.load_fast = True
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self._log = tempfile.NamedTemporaryFile(prefix="tensorboard-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", self.logdir, "--port", str(port),
               "--host", "127.0.0.1", "--reload_interval", "1", "--load_fast", "true"]
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=tempfile.gettempdir())
        wait_until(self._ready, timeout=90, what="tensorboard on port %d" % port)

    def kill(self):
        """SIGKILL, as a crash or an OOM kill does: no shutdown."""
        self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def servers():
    started = []
    yield started
    for s in started:
        s.stop()


def write_live(root, steps, tokens):
    with tb_attention.AttentionWriter(os.path.join(root, "live")) as w:
        for step in steps:
            w.add_attention("grow", small(step, T=len(tokens)), tokens=tokens, global_step=step)


def steps_listed(tb, steps):
    def ok():
        return tb.attention_tags().get("live", {}).get("grow", {}).get("steps") == steps
    wait_until(ok, timeout=120, interval=0.3, what="steps %s of the live run" % steps)


def test_tensorboard_restart_recovers_in_place(page, servers, tmp_path):
    logdir_a, logdir_b = str(tmp_path / "a"), str(tmp_path / "b")
    write_live(logdir_a, [0, 1, 2, 3], list("abcd"))
    write_live(logdir_b, [0, 1, 7], list("wxyz"))  # step 3 gone, other tokens
    port = free_port()
    tb = TensorBoardOnPort(logdir_a, port)
    servers.append(tb)
    steps_listed(tb, [0, 1, 2, 3])
    frame = open_at(page, tb, run="live", tag="grow", step=1)
    # markers: a reload or a recreated iframe would lose them
    frame.evaluate("() => { window.__sameDocument = 'yes'; }")
    page.evaluate("() => { window.__sameTop = 'yes'; document.querySelector('iframe').dataset.marker = 'yes'; }")
    top_path = page.evaluate("() => location.pathname")
    # the neighbour's data is prefetched: it still draws with the server gone
    frame.wait_for_function("() => [...window.tbAttention.api.cache.map.keys()].some(k => k.includes('attention?') && k.includes('step=2&'))",
                            timeout=TIMEOUT)
    tb.kill()
    frame.click('button[data-name="next"]')
    wait_drawn(frame, step=2)
    frame.click('button[data-name="next"]')  # step 3 is not cached: nobody answers
    frame.wait_for_selector('#tba[data-state="offline"]', state="attached", timeout=TIMEOUT)
    text = frame.text_content('[data-name="offline"]')
    assert text.startswith("TensorBoard is not reachable \u2014 retrying\u2026"), text
    assert frame.is_visible('canvas[data-name="head-canvas"]')  # the last drawing stays (dimmed)
    # it keeps retrying with backoff: the attempt counter moves on its own
    frame.wait_for_function("() => /attempt [3-9]/.test(document.querySelector('[data-name=\"offline-detail\"]').textContent)",
                            timeout=TIMEOUT)
    save_screenshot(page, "offline")
    wait_until(lambda: top_hash_keys(page).get("step") == "3", timeout=10, interval=0.05, what="step 3 in the URL")

    # the same TensorBoard again: the page comes back by itself, at step 3
    tb2 = TensorBoardOnPort(logdir_a, port)
    servers.append(tb2)
    attrs = wait_drawn(frame, run="live", tag="grow", step=3, view="head")
    assert attrs["data-layer"] == "0"
    assert frame.evaluate("() => window.__sameDocument") == "yes"
    assert page.evaluate("() => [window.__sameTop, document.querySelector('iframe').dataset.marker]") == ["yes", "yes"]
    assert page.evaluate("() => location.pathname") == top_path and top_hash_keys(page)["step"] == "3"
    assert not frame.is_visible('[data-name="notice"]')

    # again, onto changed logs: step 3 is gone, and the tokens are others
    tb2.kill()
    frame.click('button[data-view="model"]')  # the overview was never fetched
    frame.wait_for_selector('#tba[data-state="offline"]', state="attached", timeout=TIMEOUT)
    tb3 = TensorBoardOnPort(logdir_b, port)
    servers.append(tb3)
    attrs = wait_drawn(frame, view="model", step=1)
    notice = frame.text_content('[data-name="step-notice"]')
    assert "step 3" in notice and "showing step 1" in notice, notice
    assert frame.is_visible('[data-name="notice"]')
    # nothing decoded from the old server is shown for the new one
    assert frame.evaluate("() => window.tbAttention.context.labels.q") == list("wxyz")
    assert "(2 of 3)" in frame.text_content('[data-name="step-label"]')
    assert frame.evaluate("() => window.__sameDocument") == "yes"
    wait_until(lambda: top_hash_keys(page).get("step") == "1", timeout=10, interval=0.05, what="step 1 in the URL")
    # stepping clears the notice
    frame.click('button[data-name="next"]')
    wait_drawn(frame, view="model", step=7)
    assert not frame.is_visible('[data-name="notice"]')
    assert not page.watch.dialogs


def test_a_rewritten_run_draws_its_new_tokens_after_a_reload_and_in_a_new_tab(
        page, tensorboard_factory, tmp_path):
    """Issue 14: step answers were immutable under URLs naming run/tag/step
    only: after the run was deleted and logged again, a reload or a new tab
    drew the old tokens from the browser's cache. The default (Rust) loader
    only: the Python loader (--load_fast=false) goes on serving a deleted
    run's old steps (measured: still after 120 s), so no cache is involved."""
    root = tmp_path / "logs"
    write_live(str(root), [0, 1], list("abcd"))
    tb = tensorboard_factory(str(root))
    steps_listed(tb, [0, 1])
    frame = open_at(page, tb, run="live", tag="grow", step=1, view="head")
    open_at(page, tb, run="live", tag="grow", step=1, view="model")  # the overview too
    assert frame.evaluate("() => window.tbAttention.context.labels.q") == list("abcd")

    shutil.rmtree(str(root / "live"))
    write_live(str(root), [0, 1], list("wxyz"))
    wait_until(lambda: tb.get_json(PREFIX + "header?run=live&tag=grow&step=1")["kinds"][0]["query_tokens"]
               == list("wxyz"), timeout=120, interval=0.3, what="TensorBoard to serve the new tokens")
    for view in ("model", "head"):
        page.reload()
        frame = plugin_frame(page)
        wait_drawn(frame, run="live", tag="grow", step=1, view=view)
        assert frame.evaluate("() => window.tbAttention.context.labels.q") == list("wxyz"), view
        if view == "model":
            page.goto(url(tb, run="live", tag="grow", step=1, view="head"))
    tab = page.context.new_page()  # shares the browser's HTTP cache
    try:
        tab_frame = open_at(tab, tb, run="live", tag="grow", step=1, view="head")
        assert tab_frame.evaluate("() => window.tbAttention.context.labels.q") == list("wxyz")
    finally:
        tab.close()


# -- a corrupt step -----------------------------------------------------------

@pytest.mark.parametrize("view", ["head", "model"])
def test_a_corrupt_step_fails_alone(page, board, view):
    assert board.get("/data/plugin/attention/attention?run=corrupt&tag=probe&step=2&kind=self&layer=1")[0] == 500
    page.goto(url(board, run="corrupt", tag="probe", step=2, layer=1, view=view))
    frame = plugin_frame(page)
    text = error_text(frame)
    assert "step 2" in text and "layer 1" in text and "corrupt" in text, text
    assert "HTTP 500" in text
    assert root_attrs(frame)["data-state"] == "error"
    # the neighbours still draw, stepping with the buttons
    frame.click('button[data-name="next"]')
    wait_drawn(frame, view=view, step=3)
    frame.click('button[data-name="prev"]')
    assert "step 2" in error_text(frame)
    frame.click('button[data-name="prev"]')
    wait_drawn(frame, view=view, step=1)
    if view == "head":
        # and so does the intact layer 0 of the damaged step
        frame.click('button[data-name="next"]')
        error_text(frame)
        frame.select_option('select[data-name="layer"]', "0")
        wait_drawn(frame, view="head", step=2, layer=0)
    # the browser logs the 500s it got; nothing else went wrong
    assert not [e for e in page.watch.errors if "status of 500" not in e], page.watch.errors


def test_an_unreadable_newest_step_is_named_in_the_notice(page, board):
    # the probe is described by its newest readable step (the steps route's
    # kinds) and the notice says which step could not be read
    frame = open_at(page, board, run="badnewest", tag="probe", step=0)
    notice = frame.text_content('[data-name="notice"]')
    assert frame.is_visible('[data-name="notice"]')
    assert "some steps of this probe could not be read" in notice and "step 1" in notice, notice
    assert "(1 of 2)" in frame.text_content('[data-name="step-label"]')
    frame.click('button[data-name="next"]')
    assert "step 1" in error_text(frame)


# -- hostile tokens -----------------------------------------------------------

PWNED = """(own) => ({
    pwned: window.__pwned === undefined ? null : String(window.__pwned),
    // the dashboard's own document has no such elements at all; TensorBoard's
    // page has its icons and the plugin iframe, so only markup from the tokens
    elements: own ? document.querySelectorAll('img, b, svg, iframe, object, embed').length
                  : document.querySelectorAll('img[src="x"], b').length,
    scripts: [...document.scripts].filter(s => s.textContent.includes('__pwned')).length,
})"""

LAYOUT = """(name) => {
    const c = document.querySelector(`canvas[data-name="${name}"]`);
    const r = c.getBoundingClientRect();
    const d = document.documentElement;
    return {right: r.right, innerWidth: window.innerWidth, scrollWidth: d.scrollWidth, clientWidth: d.clientWidth};
}"""

# dark pixels in rows of a canvas rectangle (CSS px): which labels have ink
ROW_INK = """([name, x0, x1, tops, h]) => {
    const c = document.querySelector(`canvas[data-name="${name}"]`);
    const s = c.width / parseFloat(c.style.width);
    const ctx = c.getContext('2d');
    return tops.map(t => {
        const d = ctx.getImageData(Math.floor(x0 * s), Math.floor(t * s), Math.max(1, Math.floor((x1 - x0) * s)),
                                   Math.max(1, Math.floor(h * s))).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 400) n++;
        return n;
    });
}"""

# screen x-extent of substrings of an element's text (visual order check)
EXTENTS = """([sel, parts]) => {
    const e = document.querySelector(sel);
    const node = e.firstChild;
    return parts.map(p => {
        const i = node.data.indexOf(p);
        if (i < 0) return null;
        const r = document.createRange();
        r.setStart(node, i);
        r.setEnd(node, i + p.length);
        const rects = [...r.getClientRects()];
        return [Math.min(...rects.map(x => x.left)), Math.max(...rects.map(x => x.right))];
    });
}"""


def assert_safe(page, frame):
    for where, own in ((frame, True), (page, False)):
        got = where.evaluate(PWNED, own)
        assert got == {"pwned": None, "elements": 0, "scripts": 0}, got
    assert page.watch.dialogs == []
    assert not page.watch.errors, page.watch.errors


WIDE = """() => [...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > window.innerWidth)
    .map(e => e.tagName + '.' + e.className + '[' + (e.dataset.name || '') + '] ' + Math.round(e.getBoundingClientRect().right))"""


def assert_fits(frame, canvas):
    lay = frame.evaluate(LAYOUT, canvas)
    assert lay["right"] <= lay["innerWidth"] + 1, lay
    assert lay["scrollWidth"] <= lay["clientWidth"], (lay, frame.evaluate(WIDE))  # no sideways page scroll from a long token


def test_hostile_tokens_are_text_in_every_view(page, board):
    frame = open_at(page, board, run="hostile", tag="probe", step=0, layer=0)
    assert frame.evaluate("() => window.tbAttention.context.labels.q") == HOSTILE_LABELS
    assert frame.evaluate("() => window.tbAttention.context.kind.query_tokens[4].length") == len(LONG)

    # head view: every label has ink (none blank, the long one cut to its gutter)
    geo = frame.evaluate("() => JSON.parse(document.querySelector('canvas[data-name=\"head-canvas\"]').dataset.geometry)")
    tops = [geo["top"] + i * geo["rowH"] + 2 - geo["viewY"] for i in range(len(HOSTILE))]
    q_box, k_box = geo["qBox"], geo["kBox"]  # the token boxes the labels sit in
    ink = frame.evaluate(ROW_INK, ["head-canvas", q_box["x"], geo["leftTextX"], tops, geo["rowH"] - 4])
    assert all(n > 3 for n in ink), ink
    ink = frame.evaluate(ROW_INK, ["head-canvas", geo["rightTextX"], k_box["x"] + k_box["w"], tops, geo["rowH"] - 4])
    assert all(n > 3 for n in ink), ink
    # the long token widens nothing: the boxes stay at their cap (240 px, head.js BOX_MAX)
    assert q_box["w"] <= 243 and k_box["w"] <= 243, geo
    assert_fits(frame, "head-canvas")
    # hovering the long token: the readout is cut, the whole token is in the titles
    canvas = frame.locator('canvas[data-name="head-canvas"]')
    canvas.hover(position={"x": geo["leftTextX"] - 20, "y": geo["top"] + (LONG_I + 0.5) * geo["rowH"] - geo["viewY"]})
    wait_drawn(frame, hover="q%d" % LONG_I)
    assert frame.text_content('[data-name="head-hover"]') == "query %d \u201c%s\u2026\u201d" % (LONG_I, "W" * 59)
    assert frame.get_attribute('[data-name="head-hover"]', "title") == LONG
    assert frame.get_attribute('canvas[data-name="head-canvas"]', "title") == LONG
    # the right-to-left override is shown as an escape and flips nothing
    canvas.hover(position={"x": geo["leftTextX"] - 20, "y": geo["top"] + (RLO_I + 0.5) * geo["rowH"] - geo["viewY"]})
    wait_drawn(frame, hover="q%d" % RLO_I)
    readout = frame.text_content('[data-name="head-hover"]')
    assert readout == "query %d \u201c\\u202egnp.exe\u201d" % RLO_I and "\u202e" not in readout
    ext = frame.evaluate(EXTENTS, ['[data-name="head-hover"]', ["query", "\\u202e", "gnp.exe"]])
    assert ext[0][1] <= ext[1][0] + 0.5 and ext[1][1] <= ext[2][0] + 0.5, ext
    save_screenshot(page, "hostile-tokens")
    assert_safe(page, frame)

    # matrix view
    frame.click('button[data-view="matrix"]')
    wait_drawn(frame, view="matrix")
    g = frame.evaluate("() => JSON.parse(document.querySelector('canvas[data-name=\"matrix-canvas\"]').dataset.geometry)")
    # labels cut to 160 x 120 px, beside the axis titles' strips
    assert g["ox"] <= 160 + g["axis"] and g["oy"] <= 120 + g["axis"], g
    assert_fits(frame, "matrix-canvas")
    tops = [g["oy"] + i * g["cell"] + 1 for i in range(len(HOSTILE))]
    ink = frame.evaluate(ROW_INK, ["matrix-canvas", 0, g["ox"] - 2, tops, g["cell"] - 2])
    assert all(n > 2 for n in ink), ink
    matrix = frame.locator('canvas[data-name="matrix-canvas"]')

    def hover_cell(i, j):
        matrix.hover(position={"x": g["ox"] + (j + 0.5) * g["cell"], "y": g["oy"] + (i + 0.5) * g["cell"]})
        frame.wait_for_selector('[data-name="matrix-readout"][data-cell="%d,%d"]' % (i, j), timeout=TIMEOUT)
        return frame.text_content('[data-name="matrix-readout"]')
    text = hover_cell(LONG_I, 1)
    assert text.startswith("query %d \u201c%s\u2026\u201d \u2192 key 1 \u201c%s\u201d: " % (LONG_I, "W" * 59, HOSTILE[1])), text
    assert LONG in frame.get_attribute('[data-name="matrix-readout"]', "title")
    # a Hebrew key label: its direction stays inside its quotes, the weight
    # stays on the right (without isolation it jumps left of the label)
    text = hover_cell(1, RTL_I)
    ext = frame.evaluate(EXTENTS, ['[data-name="matrix-readout"]', ["\u2192 key", HEBREW, ": 0."]])
    assert ext[0][1] <= ext[1][0] + 0.5 and ext[1][1] <= ext[2][0] + 0.5, (text, ext)
    assert_fits(frame, "matrix-canvas")
    assert_safe(page, frame)

    # neuron view, the long token as the query
    frame.click('button[data-view="neuron"]')
    wait_drawn(frame, view="neuron")
    frame.evaluate("() => window.tbAttention.setState({query: %d})" % LONG_I)
    wait_drawn(frame, view="neuron", query=LONG_I)
    assert frame.text_content('[data-name="neuron-query"]') == "%d \u201c%s\u2026\u201d" % (LONG_I, "W" * 59)
    assert frame.get_attribute('[data-name="neuron-query"]', "title") == LONG
    n = frame.evaluate("() => JSON.parse(document.querySelector('canvas[data-name=\"neuron-canvas\"]').dataset.geometry)")
    assert n["qW"] <= 150 and n["kW"] <= 150, n
    tops = [n["top"] + j * n["rowH"] + 2 - n["viewY"] for j in range(len(HOSTILE))]
    ink = frame.evaluate(ROW_INK, ["neuron-canvas", n["x"]["k"], n["x"]["k"] + n["kW"], tops, n["rowH"] - 4])
    assert all(k > 3 for k in ink), ink
    assert_fits(frame, "neuron-canvas")
    assert_safe(page, frame)

    # model view (no token text; the grid draws)
    frame.click('button[data-view="model"]')
    wait_drawn(frame, view="model")
    assert_fits(frame, "model-canvas")
    # the Stats and Compare tabs with the same record
    for view in ("stats", "compare"):
        frame.click('button[data-view="%s"]' % view)
        wait_drawn(frame, view=view)
        assert frame.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        assert_safe(page, frame)
    # raw tokens: still escapes, still text
    frame.uncheck('input[data-name="pretty"]')
    frame.click('button[data-view="head"]')
    wait_drawn(frame, view="head")
    raw = frame.evaluate("() => window.tbAttention.context.labels.q")
    assert raw[RLO_I] == "\\u202egnp.exe" and raw[1] == HOSTILE[1] and not any("\u202e" in r or "\u200b" in r for r in raw)
    assert_safe(page, frame)


# -- two writers, and a reversing run name in the exported title ---------------

def test_two_writers_are_named_and_a_bidi_run_name_exports_readably(page, board):
    from PIL import Image
    frame = open_at(page, board, run=BIDI_RUN, tag="probe", view="head")
    notice = frame.text_content('[data-name="writers-notice"]')
    assert frame.is_visible('[data-name="writers-notice"]')
    assert "was logged by 2 writers at once" in notice, notice
    label = frame.evaluate("() => document.querySelector('select[data-name=\"run\"]').selectedOptions[0].textContent")
    assert label.startswith("\\u202eexported-x") and "\u202e" not in label, label
    with page.expect_download(timeout=TIMEOUT) as info:
        frame.click('button[data-name="export"]')
    path = info.value.path()
    img = Image.open(path)
    assert img.format == "PNG"
    shot = os.path.join(SCREENSHOTS, "export-bidi-title.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    img.save(shot)
    save_screenshot(page, "two-writers-notice")
    assert not page.watch.dialogs


# -- names and steps ----------------------------------------------------------

def test_awkward_names_and_huge_steps_round_trip_through_the_url(page, board):
    requests = []
    page.on("request", lambda r: requests.append(r.url) if "/data/plugin/attention/attention?" in r.url else None)
    frame = open_at(page, board, run=RUN_NAME, tag=TAG_NAME, step=STEP_MAX)
    attrs = root_attrs(frame)
    assert (attrs["data-run"], attrs["data-tag"], attrs["data-step"]) == (RUN_NAME, TAG_NAME, str(STEP_MAX))
    assert "step %d  (2 of 2)" % STEP_MAX in frame.text_content('[data-name="step-label"]')
    sent = [parse_qs(urlsplit(u).query) for u in requests]
    # the step drawn, then its neighbour (prefetched); never 4611686018427388000
    assert sent and sent[0]["step"] == [str(STEP_MAX)], requests
    assert all(q["step"] in ([str(STEP_MAX)], ["0"]) and q["run"] == [RUN_NAME] and q["tag"] == [TAG_NAME]
               for q in sent), requests
    selected = "s => s.options[s.selectedIndex].textContent"
    assert frame.eval_on_selector('select[data-name="run"]', selected) == RUN_NAME
    assert frame.eval_on_selector('select[data-name="tag"]', selected) == TAG_NAME
    # step 0 and back
    frame.click('button[data-name="prev"]')
    wait_drawn(frame, run=RUN_NAME, step=0)
    frame.click('button[data-name="next"]')
    wait_drawn(frame, run=RUN_NAME, step=STEP_MAX)
    want = {"run": RUN_NAME, "tag": TAG_NAME, "step": str(STEP_MAX)}
    wait_until(lambda: all(top_hash_keys(page).get(k) == v for k, v in want.items()), timeout=10, interval=0.05,
               what="the state in TensorBoard's URL")
    page.reload()
    frame = plugin_frame(page)
    wait_drawn(frame, run=RUN_NAME, tag=TAG_NAME, step=STEP_MAX)

    # chosen with the selectors rather than a link
    frame = open_at(page, board, run="corrupt", tag="probe", step=1)
    frame.select_option('select[data-name="run"]', RUN_NAME)
    wait_drawn(frame, run=RUN_NAME, tag=TAG_NAME, step=0)  # the nearest to step 1
    frame.click('button[data-name="next"]')
    wait_drawn(frame, run=RUN_NAME, tag=TAG_NAME, step=STEP_MAX)
    wait_until(lambda: all(top_hash_keys(page).get(k) == v for k, v in want.items()), timeout=10, interval=0.05,
               what="the state in TensorBoard's URL")
    page.reload()
    frame = plugin_frame(page)
    wait_drawn(frame, run=RUN_NAME, tag=TAG_NAME, step=STEP_MAX)
    assert not page.watch.errors


# -- many runs ----------------------------------------------------------------

def test_many_runs_stay_usable(page, board):
    frame = open_at(page, board, run="many/r137", tag="p3", step=1)
    runs = frame.eval_on_selector_all('select[data-name="run"] option', "os => os.map(o => o.value)")
    assert sum(r.startswith("many/") for r in runs) == MANY_RUNS
    tags = frame.eval_on_selector_all('select[data-name="tag"] option', "os => os.map(o => o.value)")
    assert tags == ["p%d" % p for p in range(MANY_PROBES)]
    for run in ("many/r000", "many/r199", "many/r042"):
        frame.select_option('select[data-name="run"]', run)
        wait_drawn(frame, run=run, tag="p3", step=1)
        r = int(run[-3:])
        assert frame.evaluate("() => window.tbAttention.context.labels.q") == ["r%d" % r, "p3", "s1"]
    frame.select_option('select[data-name="tag"]', "p0")
    wait_drawn(frame, run="many/r042", tag="p0")
    frame.click('button[data-name="prev"]')
    wait_drawn(frame, run="many/r042", tag="p0", step=0)
    frame.click('button[data-view="model"]')
    wait_drawn(frame, view="model", run="many/r042")
    frame.select_option('select[data-name="run"]', "many/r100")
    wait_drawn(frame, view="model", run="many/r100", tag="p0", step=0)
    assert frame.evaluate("() => window.tbAttention.context.labels.q") == ["r100", "p0", "s0"]
    assert not page.watch.errors
