"""The dashboard's Stats view end to end: a real `tensorboard` subprocess over
a logdir written by the real AttentionWriter, in Debian's headless Chromium.

The logged model has a head that specialises at a known step: layer 1 head 2
becomes a previous-token head from step 20 on (every other head attends at
random). The tests read the sparkline's pixels before and after that step's
x, hover and click exact points (from the canvas's data-geometry), and
compare the readout with the statistics computed by plain numpy from the
attention written (the `logged` fixture), never by tb_attention.stats.
Synchronisation: #tba's data-state="drawn" and data-* attributes, never sleeps.
The dashboard is served from the installed package: `pip install .` first.
"""
import math
import os
import re

import numpy as np
import pytest

import tb_attention
from tb_attention import metadata, summary
from tb_attention.record import AttentionRecord, KindRecord

from tests.conftest import wait_until
from tests.support.events import attention_event, step_of_version, step_without_stats, write_event_file
from tests.support.browser import (
    TIMEOUT, canvas_pixels, detail, geometry, plugin_frame, root_attrs, save_screenshot, top_hash_keys, url,
    wait_drawn, watched_page,
)

L, H, T = 3, 4, 8
STEPS = list(range(0, 40, 5))  # 0, 5, ..., 35
FORMS_AT = 20  # layer 1 head 2 is a previous-token head from this step on
TOKENS = ["<s>", "the", "cat", "sat", "on", "the", "mat", "</s>"]
XSS_RUN = "<svg onload=alert(3)>"
XSS_TAG = "legacy<img src=x onerror=alert(2)>"
BIG_L, BIG_H, BIG_STEPS = 32, 32, 300


# -- data ---------------------------------------------------------------------

def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def grow_attention(step):
    rng = np.random.default_rng(1000 + step)
    a = softmax(rng.standard_normal((L, H, T, T)) * 1.5).astype(np.float32)
    if step >= FORMS_AT:
        a[1, 2] = 0.0
        a[1, 2, 0, 0] = 1.0
        for i in range(1, T):
            a[1, 2, i, i - 1] = 1.0
    return a


def small_record(step):
    a = softmax(np.random.default_rng(step).standard_normal((2, 2, 4, 4))).astype(np.float32)
    return AttentionRecord([KindRecord("self", a, ("[CLS]", "x", "y", "[SEP]"), ("[CLS]", "x", "y", "[SEP]"), (0, 1))])


def old_step(step, sequence):
    """A step as written before statistics existed (StepHeader.stats absent)."""
    return step_without_stats(small_record(step), sequence, "old-writer")


def unreadable_step(step, sequence):
    """A step from a newer format: its header does not parse here."""
    return step_of_version(small_record(step), sequence, "future-writer", metadata.FORMAT_VERSION + 1)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("stats-view-logs"))
    with tb_attention.AttentionWriter(os.path.join(root, "grow")) as w:
        for step in STEPS:
            w.add_attention("probe", grow_attention(step), tokens=TOKENS, special_tokens=[0, T - 1],
                            global_step=step)
    big = np.full((BIG_L, BIG_H, 4, 4), 0.25, np.float32)
    with tb_attention.AttentionWriter(os.path.join(root, "big")) as w:
        for step in range(BIG_STEPS):
            a = big.copy()
            a[step % BIG_L, :, :, 0] += 0.5  # a moving bump: every line has some shape
            w.add_attention("wide", a / a.sum(-1, keepdims=True), tokens=["a", "b", "c", "d"], global_step=step)
    write_event_file(os.path.join(root, XSS_RUN),
                     [attention_event(XSS_TAG, s, old_step(s, i)) for i, s in enumerate((0, 10))], suffix="stats-view")
    write_event_file(os.path.join(root, "mixed"), suffix="stats-view", events=[
        attention_event("probe", 0, old_step(0, 0)),
        attention_event("probe", 10, unreadable_step(10, 1)),
        attention_event("probe", 20, summary.step_blobs(small_record(20), 2, "new-writer")),
        attention_event("probe", 30, summary.step_blobs(small_record(30), 3, "new-writer")),
    ])
    return root


@pytest.fixture(scope="module")
def live(logdir):
    w = tb_attention.AttentionWriter(os.path.join(logdir, "live"))
    for step in (0, 1):
        w.add_attention("grow", small_record(step), global_step=step)
    w.flush()
    yield w
    w.close()


EXPECTED = {"grow": ("probe", len(STEPS)), "big": ("wide", BIG_STEPS), XSS_RUN: (XSS_TAG, 2),
            "mixed": ("probe", 4), "live": ("grow", 2)}


@pytest.fixture(scope="module")
def board(tensorboard_factory, logdir, live):
    # the Rust data server keeps 10 blob sequences per tag unless told to keep all
    tb = tensorboard_factory(logdir, extra_args=("--samples_per_plugin=attention=0",))
    tb.wait_kept(EXPECTED)
    return tb


@pytest.fixture(scope="module")
def logged():
    """The statistics of the attention written, by plain numpy in float64
    (not tb_attention.stats): [steps, layers, heads]."""
    a = np.stack([grow_attention(s).astype(np.float64) for s in STEPS])  # [S, L, H, T, T]
    previous = np.mean([a[..., i, i - 1] for i in range(1, T)], axis=0)
    plogp = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
    return {"previous_token": previous, "entropy": -plogp.sum(-1).mean(-1)}


def shown_value(text, prefix, want, unit=""):
    """The value the readout shows after `prefix`, within its 3 decimals of want."""
    assert text.startswith(prefix) and text.endswith(unit), text
    got = float(text[len(prefix):len(text) - len(unit)].strip())
    assert abs(got - want) <= 0.0005 + 1e-6, (text, want)


@pytest.fixture
def page(browser):
    with watched_page(browser, viewport={"width": 1200, "height": 820}, accept_downloads=True) as p:
        yield p


# -- helpers ------------------------------------------------------------------

def open_stats(page, board, **state):
    page.goto(url(board, view="stats", **state))
    frame = plugin_frame(page)
    expect = {k: v for k, v in state.items() if k in ("run", "tag", "step")}
    wait_drawn(frame, view="stats", **expect)
    return frame


def cell_origin(geo, r, c):
    return (geo["labelW"] + geo["gap"] + c * (geo["cellW"] + geo["gap"]),
            geo["labelH"] + geo["gap"] + r * (geo["cellH"] + geo["gap"]))


def step_x(geo, r, c, s):
    """Centre of the pixel column of step index s in cell (r, c)."""
    x0, _ = cell_origin(geo, r, c)
    return x0 + geo["padX"] + geo["xs"][s] + 0.5


def value_y(geo, r, v):
    """Centre of the pixel row of value v in row r (lines run through pixel centres)."""
    _, y0 = cell_origin(geo, r, 0)
    t = (v - geo["lo"]) / (geo["hi"] - geo["lo"])
    return math.floor(y0 + geo["padY"] + (1 - t) * geo["plotH"]) + 0.5


def column(frame, geo, r, c, s):
    """(y, r+g+b) of every pixel of the cell's column at step index s."""
    x = step_x(geo, r, c, s)
    _, y0 = cell_origin(geo, r, c)
    ys = [y0 + 0.5 + k for k in range(geo["cellH"])]
    return [(y, sum(p[:3])) for y, p in zip(ys, canvas_pixels(frame, "stats-canvas", [(x, y) for y in ys]))]


def ink_y(frame, geo, r, c, s):
    """y (CSS px) of the darkest pixel of the cell's column at step index s:
    where the sparkline crosses that column (light theme: the line is the
    text colour, darker than any tint)."""
    return min(column(frame, geo, r, c, s), key=lambda p: p[1])


def readout(frame, geo, r, c, s, v):
    frame.locator('canvas[data-name="stats-canvas"]').hover(
        position={"x": step_x(geo, r, c, s), "y": value_y(geo, r, v)})
    layer, step = geo["layer_ids"][r], geo["steps"][s]
    frame.wait_for_selector('[data-name="stats-readout"][data-cell="%d,%d,%d"]' % (layer, c, step), timeout=TIMEOUT)
    return frame.text_content('[data-name="stats-readout"]')


# -- tests --------------------------------------------------------------------

def test_grid_shows_the_head_that_specialises(page, board, logged):
    frame = open_stats(page, board, run="grow", tag="probe", step=10, stat="previous_token")
    assert detail(frame) == {"stat": "previous_token", "cells": str(L * H), "steps": str(len(STEPS)),
                             "missing": "0", "errors": "0"}
    geo = geometry(frame, "stats-canvas")
    assert (geo["rows"], geo["cols"], geo["layer_ids"], geo["steps"]) == (L, H, [0, 1, 2], STEPS)
    assert (geo["lo"], geo["hi"]) == (0, 1)  # previous_token is a weight: the 0..1 scale
    top = value_y(geo, 1, 1.0)
    forms = STEPS.index(FORMS_AT)
    for s in range(len(STEPS)):
        if s == STEPS.index(10):
            continue  # the current step's band
        y, darkness = ink_y(frame, geo, 1, 2, s)
        assert darkness < 350, "no sparkline at step %d" % STEPS[s]
        if s < forms:  # a random head: about 1/8 of a row's weight on the previous token
            assert y > top + 0.6 * geo["plotH"], (STEPS[s], y, top)
        else:  # every weight on the previous token: the top of the scale
            assert abs(y - top) <= 1.5, (STEPS[s], y, top)
        # a head that stays random stays low
        y_other, _ = ink_y(frame, geo, 0, 0, s)
        assert y_other > value_y(geo, 0, 1.0) + 0.6 * geo["plotH"], (STEPS[s], y_other)
    # the latest value tints the cell: the specialised head is darker than a random one
    (spec,), (rand,) = [canvas_pixels(frame, "stats-canvas", [(x + 1.5, y + 1.5)])
                        for x, y in (cell_origin(geo, 1, 2), cell_origin(geo, 0, 0))]
    assert sum(spec[:3]) < sum(rand[:3]) - 150, (spec, rand)
    # the current step is marked in every cell (accent band), its neighbour column is not
    cur = STEPS.index(10)
    assert geo["current"] == cur
    for r, c in ((0, 0), (2, 3)):
        _, y0 = cell_origin(geo, r, c)
        band, beside = canvas_pixels(frame, "stats-canvas", [(step_x(geo, r, c, cur), y0 + geo["cellH"] - 1.5),
                                                             (step_x(geo, r, c, cur) + 3, y0 + geo["cellH"] - 1.5)])
        assert band[0] > band[2] + 40 and not beside[0] > beside[2] + 40, (band, beside)
    # the caption carries the route's description of the statistic
    caption = frame.text_content('[data-name="stats-caption"]')
    assert "weight on the previous token, a_i,i-1 (mean over rows i >= 1)" in caption
    assert np.allclose(logged["previous_token"][forms:, 1, 2], 1.0, atol=1e-6)
    save_screenshot(page, "stats")
    assert not page.watch.errors and not page.watch.dialogs


def test_hover_shows_the_logged_value(page, board, logged):
    frame = open_stats(page, board, run="grow", tag="probe", stat="previous_token")
    geo = geometry(frame, "stats-canvas")
    for r, c, step in ((1, 2, 25), (1, 2, 15), (2, 1, 5)):
        s = STEPS.index(step)
        want = float(logged["previous_token"][s, r, c])
        text = readout(frame, geo, r, c, s, want)
        shown_value(text, "layer %d \u00b7 head %d \u00b7 step %d \u00b7 previous token " % (r, c, step), want)
    # another statistic, with its unit
    frame.select_option('select[data-name="stat"]', "entropy")
    wait_drawn(frame, view="stats")
    assert detail(frame)["stat"] == "entropy"
    geo = geometry(frame, "stats-canvas")
    want = float(logged["entropy"][STEPS.index(10), 0, 3])
    text = readout(frame, geo, 0, 3, STEPS.index(10), want)
    shown_value(text[text.index("entropy"):], "entropy ", want, " nats")
    # the hover dot sits on the line, and leaving the canvas clears the readout
    assert frame.is_visible('[data-name="stats-view"] .tba-cross')
    page.mouse.move(3, 3)
    frame.wait_for_selector('[data-name="stats-readout"]:not([data-cell])', timeout=TIMEOUT)


def test_click_opens_that_head_at_that_step(page, board):
    frame = open_stats(page, board, run="grow", tag="probe", stat="previous_token")
    geo = geometry(frame, "stats-canvas")
    s = STEPS.index(FORMS_AT)
    frame.locator('canvas[data-name="stats-canvas"]').click(
        position={"x": step_x(geo, 1, 2, s), "y": value_y(geo, 1, 1.0)})
    attrs = wait_drawn(frame, view="head", step=FORMS_AT, layer=1, heads="2")
    assert attrs["data-head"] == "2"
    # the head view shows that head's previous-token lines: 8 lines, one per query
    assert detail(frame)["edges"] == str(T)
    assert not page.watch.errors


def test_statistic_selector_changes_detail_pixels_and_url(page, board, browser):
    frame = open_stats(page, board, run="grow", tag="probe", stat="previous_token")
    geo = geometry(frame, "stats-canvas")
    late = STEPS.index(30)
    y_prev, _ = ink_y(frame, geo, 1, 2, late)
    assert abs(y_prev - value_y(geo, 1, 1.0)) <= 1.5
    options = frame.eval_on_selector_all('select[data-name="stat"] option', "els => els.map(e => [e.value, e.title])")
    assert [o[0] for o in options] == ["entropy", "max_weight", "first_token", "special_tokens", "distance",
                                       "previous_token"]
    assert dict(options)["entropy"] == "entropy of each query row's attention, in nats (mean over rows)"
    frame.select_option('select[data-name="stat"]', "entropy")
    wait_drawn(frame, view="stats")
    assert detail(frame)["stat"] == "entropy"
    geo = geometry(frame, "stats-canvas")
    assert geo["lo"] == 0 and 0 < geo["hi"] <= np.log(T)  # shared: the largest entropy in the grid
    # a previous-token head has one weight per row: entropy 0, the bottom of the cell
    y_ent, _ = ink_y(frame, geo, 1, 2, late)
    assert abs(y_ent - value_y(geo, 1, 0.0)) <= 1.5 and y_ent > y_prev + geo["plotH"] / 2, (y_ent, y_prev)
    frame.select_option('select[data-name="stat"]', "distance")
    wait_drawn(frame, view="stats")
    assert detail(frame)["stat"] == "distance"
    assert "tokens" in frame.text_content('[data-name="stats-caption"]')
    wait_until(lambda: top_hash_keys(page).get("stat") == "distance" and top_hash_keys(page).get("view") == "stats",
               timeout=10, interval=0.05, what="stat=distance in TensorBoard's URL")
    page.reload()
    frame = plugin_frame(page)
    wait_drawn(frame, view="stats")
    assert detail(frame)["stat"] == "distance"
    assert frame.eval_on_selector('select[data-name="stat"]', "s => s.value") == "distance"


def test_a_statistic_the_route_does_not_name_falls_back_to_its_first(page, board):
    # the names are the `stats` route's: a link with another one (an old link, a typo) shows the default
    frame = open_stats(page, board, run="grow", tag="probe", stat="loss")
    frame.wait_for_selector('#tba[data-state="drawn"][data-detail^="stat=entropy;"]', state="attached", timeout=TIMEOUT)
    assert frame.eval_on_selector('select[data-name="stat"]', "s => s.value") == "entropy"
    wait_until(lambda: "stat" not in top_hash_keys(page), timeout=10, interval=0.05, what="stat=loss gone from the URL")
    # and says so (never a silent fallback)
    assert frame.text_content('[data-name="stats-notice"]').startswith(
        "statistic \u201closs\u201d is not one this server computes (entropy, max_weight, ")


def test_old_steps_and_unreadable_steps_are_named(page, board):
    frame = open_stats(page, board, run="mixed", tag="probe")
    d = detail(frame)
    assert (d["cells"], d["steps"], d["missing"], d["errors"]) == ("4", "4", "2", "1"), d
    notice = frame.text_content('[data-name="stats-notice"]')
    assert re.search(r"could not read the statistics of step 10: .*format version %d" % (metadata.FORMAT_VERSION + 1),
                     notice), notice
    assert "step 0 carries no statistics" in notice, notice
    # the gaps: steps 0 and 10 have no ink in any cell, steps 20 and 30 do
    geo = geometry(frame, "stats-canvas")
    for s, inked in ((0, False), (1, False), (2, True)):
        _, darkness = ink_y(frame, geo, 0, 0, s)
        assert (darkness < 350) == inked, (s, darkness)


def test_a_tag_without_statistics_says_so_and_names_stay_text(page, board):
    frame = open_stats(page, board, run=XSS_RUN, tag=XSS_TAG)
    assert detail(frame)["cells"] == "0" and "no-stats" in root_attrs(frame)["data-detail"]
    message = frame.text_content('[data-name="stats-message"]')
    assert message.startswith("the 2 kept steps of probe \u201c%s\u201d carry no per-head statistics" % XSS_TAG), message
    assert not frame.is_visible('canvas[data-name="stats-canvas"]')
    assert frame.eval_on_selector('select[data-name="run"]', "s => s.options[s.selectedIndex].textContent") == XSS_RUN
    assert frame.eval_on_selector('select[data-name="tag"]', "s => s.options[s.selectedIndex].textContent") == XSS_TAG
    assert frame.evaluate("() => document.querySelectorAll('img, svg').length") == 0
    assert page.watch.dialogs == [] and not page.watch.errors


def test_32_by_32_heads_over_300_steps(page, board):
    frame = open_stats(page, board, run="big", tag="wide", stat="first_token")
    assert detail(frame) == {"stat": "first_token", "cells": str(BIG_L * BIG_H), "steps": str(BIG_STEPS),
                             "missing": "0", "errors": "0"}
    geo = geometry(frame, "stats-canvas")
    assert (geo["rows"], geo["cols"], len(geo["xs"])) == (BIG_L, BIG_H, BIG_STEPS)
    assert geo["width"] <= 1200 and geo["cellW"] >= 24
    # the whole grid is one canvas, not a node per cell
    assert frame.evaluate("() => document.querySelectorAll('[data-name=\"stats-view\"] *').length") < 20
    # layer 5's bump (first_token (0.25 + 0.5) / 1.5 = 0.5 instead of 0.25) at
    # step 5: the pixel column holding step 5 (and its neighbours) reaches up
    # to 0.5; the column of step 25 (no bump) stays at 0.25
    ink = [y for y, v in column(frame, geo, 5, 7, 5) if v < 350]
    assert ink and min(ink) == value_y(geo, 5, 0.5) and max(ink) == value_y(geo, 5, 0.25), ink
    ink = [y for y, v in column(frame, geo, 5, 7, 25) if v < 350]
    assert ink == [value_y(geo, 5, 0.25)], ink
    ms = frame.evaluate("""() => { const v = window.tbAttention.views.stats; const t = [];
        for (let i = 0; i < 5; i++) { const t0 = performance.now();
          v.draw(); v.canvas.getContext('2d').getImageData(0, 0, 1, 1); t.push(performance.now() - t0); }
        return t.sort((a, b) => a - b)[2]; }""")
    print("stats view redraw, 32x32 heads x 300 steps: %.0f ms (median of 5)" % ms)
    save_screenshot(page, "stats-1024")
    # raw tensors logged without special_tokens=: no values, grey cells, and the caption says why
    frame.select_option('select[data-name="stat"]', "special_tokens")
    frame.wait_for_selector('#tba[data-state="drawn"][data-detail^="stat=special_tokens;"]', state="attached",
                            timeout=TIMEOUT)
    assert "not known for raw tensors logged without special_tokens=" in frame.text_content(
        '[data-name="stats-caption"]')
    x, y = cell_origin(geo, 3, 3)
    assert canvas_pixels(frame, "stats-canvas", [(x + 1.5, y + 1.5)])[0][:3] == [225, 225, 225]
    assert not page.watch.errors


def test_dark_theme_and_export(browser, board):
    from PIL import Image
    ctx = browser.new_context(viewport={"width": 1200, "height": 820}, color_scheme="dark", accept_downloads=True)
    try:
        page = ctx.new_page()
        frame = open_stats(page, board, run="grow", tag="probe", stat="previous_token")
        assert root_attrs(frame)["data-theme"] == "dark"
        geo = geometry(frame, "stats-canvas")
        assert canvas_pixels(frame, "stats-canvas", [(2, 2)])[0][:3] == [30, 30, 30]
        # the line is the light text colour on the dark tints: brightest pixel of the column
        x = step_x(geo, 1, 2, STEPS.index(30))
        _, y0 = cell_origin(geo, 1, 2)
        px = canvas_pixels(frame, "stats-canvas", [(x, value_y(geo, 1, 1.0))])[0]
        assert min(px[:3]) > 150, px
        save_screenshot(page, "stats-dark")
        with page.expect_download(timeout=TIMEOUT) as info:
            frame.click('button[data-name="export"]')
        download = info.value
        assert download.suggested_filename == "attention-grow-probe-step35-stats.png"
        img = Image.open(download.path())
        assert img.format == "PNG" and img.width >= geo["width"] and img.height > geo["height"]
    finally:
        ctx.close()


def test_new_steps_appear_on_tensorboards_reload(page, board, live):
    frame = open_stats(page, board, run="live", tag="grow")
    assert detail(frame)["steps"] == "2"
    live.add_attention("grow", small_record(2), global_step=2)
    live.flush()

    def listed():
        return board.attention_tags().get("live", {}).get("grow", {}).get("steps", [None])[-1] == 2
    wait_until(listed, timeout=60, interval=0.2, what="step 2 of the live run")
    page.click("app-header-reload button")
    frame.wait_for_selector('#tba[data-state="drawn"][data-detail*="steps=3;"]', state="attached", timeout=TIMEOUT)
    assert geometry(frame, "stats-canvas")["steps"] == [0, 1, 2]
