"""Standalone HTML files (tb_attention.save_html) in Debian's headless
Chromium, opened from file:// with every request but the file itself refused:
each of the six views draws the planted attention edge where its
data-geometry says, the scrubber steps, hostile text stays text, PNG export
downloads, and the page asks for nothing (its own CSP forbids every request;
the test also refuses and records them).

Synchronisation: the output's .tba root's data-state="drawn" and data-*
attributes; never a fixed wait.
"""
import math

import numpy as np
import pytest

import tb_attention
from tests.support.pages import L, TOKENS, WHITE, Output, matrix_centre, open_page, planted_record
from tests.support.browser import edge_point

BLUE = [33, 102, 172]  # the diverging scale's ends (frontend/colors.js): B lower ...
RED = [178, 24, 43]  # ... B higher


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory):
    """A file of two steps: step 0 "cat" -> second "the" (5), step 1 "cat" -> "mat" (6)."""
    path = tmp_path_factory.mktemp("pages") / "two.html"
    tb_attention.save_html([planted_record(k=5), planted_record(k=6, seed=1)], path, step=0)
    return "file://%s" % path


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1100, "height": 800}, accept_downloads=True)
    yield ctx
    ctx.close()


def opened(context, url, **attrs):
    page = open_page(context, url)
    out = Output(page)
    out.wait(**attrs)
    return page, out


def done(page, url):
    assert not page.errors, page.errors
    assert page.requests == [url], page.requests  # nothing but the file itself


def dark(px):
    return sum(px[:3]) < 200


def test_the_head_view_draws_the_planted_edge_and_steps_with_the_scrubber(context, two_steps):
    page, out = opened(context, two_steps, view="head", step="0")
    geo = out.geometry("head-canvas")
    (r, g, b, _), off = out.pixels("head-canvas", [edge_point(geo, 2, 5), edge_point(geo, 2, 6)])
    assert b > r + 60 and b > 120, (r, g, b)  # head 0's colour
    assert off[:3] == WHITE
    page.locator(".tba-output").locator('[data-name="next"]').click()
    out.wait(step="1")
    geo = out.geometry("head-canvas")
    on, off = out.pixels("head-canvas", [edge_point(geo, 2, 6), edge_point(geo, 2, 5)])
    assert on[2] > on[0] + 60 and off[:3] == WHITE
    page.keyboard.press("ArrowLeft")  # a standalone page: the arrow keys step from anywhere
    out.wait(step="0")
    done(page, two_steps)


def test_matrix_model_and_neuron_views(context, two_steps):
    page, out = opened(context, two_steps, view="head")
    page.locator(".tba-output").locator('button[data-view="matrix"]').click()
    out.wait(view="matrix", layer="0", head="0")
    geo = out.geometry("matrix-canvas")
    hot, empty, diag = out.pixels("matrix-canvas", [matrix_centre(geo, 2, 5), matrix_centre(geo, 2, 2), matrix_centre(geo, 4, 4)])
    assert dark(hot) and dark(diag) and empty[:3] == WHITE
    page.locator(".tba-output").locator('button[data-view="model"]').click()
    out.wait(view="model")
    geo = out.geometry("model-canvas")
    assert (geo["rows"], geo["cols"]) == (L, 3)
    x0, top, t = geo["labelW"] + geo["gap"] + 3, geo["labelH"] + geo["gap"], geo["thumb"]
    x1 = x0 + t - 6
    mid = ((x0 + x1) / 2, top + 4 * t / 8)  # the middle of the line 2 -> 5 in layer 0 head 0, between two rows
    (r, g, b, _), = out.pixels("model-canvas", [mid])
    assert b > r + 40, (r, g, b)
    page.locator(".tba-output").locator('button[data-view="neuron"]').click()
    out.wait(view="neuron")
    # the neuron view's strongest key for query 0 of layer 0 head 0: softmax(q . k * scale), worked out here
    n = planted_record(k=5).neurons()
    scores = n.keys[0, 0] @ n.queries[0, 0, 0] * n.scales[0]
    assert out.detail()["top"] == str(int(np.argmax(scores))), out.detail()
    done(page, two_steps)


def test_stats_and_compare_views(context, tmp_path):
    path = tmp_path / "cmp.html"
    tb_attention.save_html([planted_record(k=5), planted_record(k=6, seed=1)], path, view="compare", step=0,
                           cmode="matrix", layer=0, head=0)
    url = "file://%s" % path
    page, out = opened(context, url, view="compare")
    d = out.detail()
    assert (d["mode"], d["bstep"], d["diff"], d["maxabs"]) == ("matrix", "1", "drawn", "1.000"), d
    geo = out.geometry("compare-diff")
    was, now, same = out.pixels("compare-diff", [matrix_centre(geo, 2, 5), matrix_centre(geo, 2, 6), matrix_centre(geo, 3, 3)])
    assert (was[:3], now[:3], same[:3]) == (BLUE, RED, WHITE)
    page.locator(".tba-output").locator('button[data-cmode="rank"]').click()
    out.wait_detail(mode="rank")
    assert out.detail()["top"] == "0,0"
    assert math.isclose(float(out.detail()["max"]), math.log(2) / 8, abs_tol=1e-4)  # one row of 8 moved away entirely
    page.locator(".tba-output").locator('button[data-view="stats"]').click()
    out.wait(view="stats")
    d = out.detail()
    assert (d["stat"], d["cells"], d["steps"], d["missing"], d["errors"]) == ("entropy", "6", "2", "0", "0"), d
    done(page, url)


def test_hostile_tokens_and_run_names_stay_text(context, tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    tokens = (evil, "</script><b>x", "\u202eevil", "the", "on", "the", "mat", ".")
    run = "<svg onload=alert(2)>"
    path = tmp_path / "evil.html"
    tb_attention.save_html({run: [planted_record(tokens=tokens)], "other": [planted_record()]}, path,
                           view="matrix", run=run, layer=0, head=0)
    url = "file://%s" % path
    page, out = opened(context, url, view="matrix")
    assert out.attrs()["data-run"] == run
    root = page.locator(".tba-output")
    assert root.locator('select[data-name="run"] option').all_text_contents() == sorted(["other", run])
    assert root.locator(".tba").locator("img, svg, b").count() == 0  # nothing parsed from the text
    assert root.locator("img").count() == root.locator(".tba-fallback img").count() == 1  # only the still picture
    geo = out.geometry("matrix-canvas")
    x, y = matrix_centre(geo, 0, 1)
    root.locator('canvas[data-name="matrix-canvas"]').hover(position={"x": x, "y": y})
    readout = root.locator('[data-name="matrix-readout"]')
    readout.filter(has_text="img src").wait_for()
    assert "<img src=x onerror=alert(1)>" in readout.text_content()
    done(page, url)


def test_export_png_and_a_forced_dark_theme(context, tmp_path):
    path = tmp_path / "dark.html"
    tb_attention.save_html(planted_record(), path, view="matrix", theme="dark", layer=0, head=0)
    url = "file://%s" % path
    page, out = opened(context, url, view="matrix")
    assert out.attrs()["data-theme"] == "dark"
    geo = out.geometry("matrix-canvas")
    (empty,) = out.pixels("matrix-canvas", [matrix_centre(geo, 2, 2)])
    assert sum(empty[:3]) < 150, empty  # the dark theme's background, not white
    with page.expect_download() as dl:
        page.locator(".tba-output").locator('[data-name="export"]').click()
    png = open(dl.value.path(), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    done(page, url)


def test_512_tokens_open_and_draw(context, tmp_path):
    rng = np.random.default_rng(0)
    T = 512
    x = rng.standard_normal((2, 4, T, T)).astype(np.float32) * 4
    a = np.exp(x - x.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    path = tmp_path / "long.html"
    tb_attention.save_html(tb_attention.record.from_raw(a, ["w%d" % i for i in range(T)]), path, view="model")
    url = "file://%s" % path
    page, out = opened(context, url, view="model")
    assert out.detail()["mode"] == "heatmap"
    page.locator(".tba-output").locator('button[data-view="head"]').click()
    out.wait(view="head")
    assert int(out.detail()["edges"]) > 0
    done(page, url)


def test_the_text_view_and_an_aggregate_draw_from_the_page(context, two_steps):
    """Issue 16's text view and aggregates over heads in a page (MemoryData, no server)."""
    page, out = opened(context, two_steps, view="head")
    root = page.locator(".tba-output")
    root.locator('button[data-view="text"]').click()
    out.wait(view="text")
    rows = root.locator('[data-name="text-rows"] .tba-text-row')
    assert rows.count() == 1  # a row per kept step up to the shown one (step 0)
    assert root.locator('[data-name="text-rows"] .tba-tok').count() == len(TOKENS)
    root.locator('select[data-name="head"]').select_option("mean")
    out.wait(view="text", agg="mean")
    done(page, two_steps)
