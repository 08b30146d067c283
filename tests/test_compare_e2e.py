"""The Compare tab end to end: a real `tensorboard` subprocess over records
written by the real AttentionWriter, in Debian's headless Chromium. Checks
the pixels of the difference and of the ranking at the cells their
data-geometry names, not only that something was drawn.

Synchronisation: #tba's data-state="drawn" plus data-detail (mode, B, max |B - A|, ...)
of what is on screen; never a fixed wait.
"""
import contextlib
import math
import os

import numpy as np
import pytest

import tb_attention

from tests.conftest import wait_until
from tests.support.browser import (
    Watch, canvas_pixels, edge_point, geometry, next_frames, plugin_frame, root_attrs,
    save_screenshot, top_hash_keys, url, wait_compare, watched_page,
)

TOKENS = ["<s>", "\u0120the", "\u0120cat", "\u0120sat", "\u0120on", "\u0120the", "\u0120mat", "."]
HOSTILE = "<img src=x onerror=alert(1)>"
WHITE = [255, 255, 255]
# ColorBrewer RdBu ends of the light theme (frontend/colors.js): B lower, B higher
BLUE = [33, 102, 172]
RED = [178, 24, 43]
T = 8
LONG = 100  # beyond the overview's 64: the model grid is max-pooled
WIDE = 12  # layers and heads of BERT-base: the model mode's three grids must still fit side by side
WIDE_T = 40  # more tokens than a thumbnail has pixels there: pooled again to fit, no cell dropped
MID_T = 30  # labels fit beside 1024 px's three panels only when all three are laid out alike


def edge_attention(key, extra=()):
    """Every token attends to itself; layer 0 head 1 query 2 attends to `key`;
    extra: (layer, head, query, key) more one-hot rows."""
    a = np.zeros((2, 4, T, T), np.float32)
    for i in range(T):
        a[:, :, i, i] = 1.0
    for layer, head, q, k in ((0, 1, 2, key),) + tuple(extra):
        a[layer, head, q, :] = 0.0
        a[layer, head, q, k] = 1.0
    return a


def write_logdir(root):
    with tb_attention.AttentionWriter(os.path.join(root, "train")) as w:
        w.add_attention("probe", edge_attention(5), tokens=TOKENS, global_step=0)
        w.add_attention("probe", edge_attention(6), tokens=TOKENS, global_step=10)
    # another run, other steps: layer 1 head 2 changed in two rows as well
    with tb_attention.AttentionWriter(os.path.join(root, "ft")) as w:
        for step in (3, 7):
            w.add_attention("probe", edge_attention(6, extra=((1, 2, 0, 7), (1, 2, 4, 1))), tokens=TOKENS, global_step=step)
    rng = np.random.default_rng(3)
    with tb_attention.AttentionWriter(os.path.join(root, "long")) as w:
        for step in (0, 1):
            x = rng.standard_normal((1, 2, LONG, LONG)).astype(np.float32) * 2
            e = np.exp(x - x.max(-1, keepdims=True))
            w.add_attention("probe", e / e.sum(-1, keepdims=True), tokens=["w%d" % i for i in range(LONG)],
                            global_step=step, causal=True)
    with tb_attention.AttentionWriter(os.path.join(root, "wide")) as w:
        for step, key in ((0, 4), (1, 7)):
            a = np.zeros((WIDE, WIDE, WIDE_T, WIDE_T), np.float32)
            a[..., np.arange(WIDE_T), np.arange(WIDE_T)] = 1.0
            a[WIDE - 1, WIDE - 1, 2, :] = 0.0
            a[WIDE - 1, WIDE - 1, 2, key] = 1.0
            w.add_attention("probe", a, tokens=["t%d" % i for i in range(WIDE_T)], global_step=step)
    with tb_attention.AttentionWriter(os.path.join(root, "mid")) as w:
        for step in (0, 1):
            x = rng.standard_normal((1, 2, MID_T, MID_T)).astype(np.float32) * 2
            e = np.exp(x - x.max(-1, keepdims=True))
            w.add_attention("mid", e / e.sum(-1, keepdims=True), tokens=["m%d" % i for i in range(MID_T)],
                            global_step=step)
    with tb_attention.AttentionWriter(os.path.join(root, "retok")) as w:
        w.add_attention("probe", edge_attention(5), tokens=TOKENS[:3] + [HOSTILE] + TOKENS[4:], global_step=0)


@pytest.fixture(scope="module")
def board(tensorboard_factory, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("compare-e2e"))
    write_logdir(root)
    tb = tensorboard_factory(root)
    want = {"train": 2, "ft": 2, "retok": 1, "long": 2, "wide": 2, "mid": 2}

    def loaded():
        runs = {run: list(tags.values())[0]["kept"] for run, tags in tb.attention_tags().items()}
        return all(runs.get(run, 0) >= n for run, n in want.items())
    wait_until(loaded, timeout=120, interval=0.3, what="TensorBoard to load the compare runs")
    return tb


@pytest.fixture
def page(browser):
    with watched_page(browser, viewport={"width": 1400, "height": 900}) as p:
        yield p
        assert not p.watch.errors and not p.watch.dialogs, (p.watch.errors, p.watch.dialogs)


def open_compare(page, board, **state):
    page.goto(url(board, view="compare", **state))
    frame = plugin_frame(page)
    want = {k: state[k] for k in ("cmode", "brun", "bstep") if k in state}
    if "cmode" in want:
        want["mode"] = want.pop("cmode")
    wait_compare(frame, **want)
    return frame


def cell_centres(geo):
    return {(i, j): (geo["ox"] + (j + 0.5) * geo["cell"], geo["oy"] + (i + 0.5) * geo["cell"])
            for i in range(geo["Tq"]) for j in range(geo["Tk"])}


def matrix_cells(frame, name):
    geo = geometry(frame, name)
    centres = cell_centres(geo)
    keys = list(centres)
    pixels = canvas_pixels(frame, name, [centres[k] for k in keys])
    return {k: p[:3] for k, p in zip(keys, pixels)}


def grid_centres(geo, sub=None):
    """Centre of each (row, col) thumbnail, or of cell sub=(i, j) of an n x n map in it."""
    t, gap = geo["thumb"], geo["gap"]
    out = {}
    for r in range(geo["rows"]):
        for c in range(geo["cols"]):
            x, y = geo["labelW"] + gap + c * (t + gap), geo["labelH"] + gap + r * (t + gap)
            if sub is None:
                out[(r, c)] = (x + t / 2, y + t / 2)
            else:
                (i, j), n = sub
                out[(r, c)] = (x + (j + 0.5) * t / n, y + (i + 0.5) * t / n)
    return out


def grid_pixels(frame, centres, canvas="compare-grid"):
    keys = list(centres)
    return {k: p[:3] for k, p in zip(keys, canvas_pixels(frame, canvas, [centres[k] for k in keys]))}


def model_cells(frame, side, n=T):
    """{((row, col), (i, j)): rgb} of every cell of every thumbnail of model mode's grid `side` (a, b or diff)."""
    name = "compare-model-" + side
    geo = geometry(frame, name)
    centres = {}
    for i in range(n):
        for j in range(n):
            for rc, xy in grid_centres(geo, sub=((i, j), n)).items():
                centres[(rc, (i, j))] = xy
    return grid_pixels(frame, centres, name)


def box(frame, name):
    return frame.locator('canvas[data-name="%s"]' % name).bounding_box()


# -- tests --------------------------------------------------------------------

def test_a_record_compared_with_itself_is_blank_everywhere(page, board):
    frame = open_compare(page, board, run="train", tag="probe", step=10, brun="train", bstep=10,
                         cmode="matrix", layer=0, head=1)
    d = wait_compare(frame, mode="matrix", diff="drawn")
    assert (d["maxabs"], d["tokens"]) == ("0.000", "match")
    diff = matrix_cells(frame, "compare-diff")
    assert all(p == WHITE for p in diff.values()), {k: p for k, p in diff.items() if p != WHITE}
    # A and B are drawn (the identity diagonal and 2 -> 6 are dark)
    a = matrix_cells(frame, "compare-a")
    assert sum(a[(2, 6)]) < 200 and a[(2, 2)] == WHITE
    frame.click('button[data-cmode="rank"]')
    d = wait_compare(frame, mode="rank")
    assert (d["max"], d.get("top", "")) == ("0.0000", "")
    ranks = grid_pixels(frame, grid_centres(geometry(frame, "compare-grid")))
    assert len(ranks) == 8 and all(p == WHITE for p in ranks.values()), ranks
    assert "no head changed (B is A itself)" in frame.text_content('[data-name="compare-note"]')
    frame.click('button[data-cmode="model"]')
    wait_compare(frame, mode="model", diff="drawn", maxabs="0.000")
    diff = model_cells(frame, "diff")
    assert len(diff) == 8 * T * T and all(p == WHITE for p in diff.values()), {k: p for k, p in diff.items() if p != WHITE}
    a, b = model_cells(frame, "a"), model_cells(frame, "b")
    assert a == b
    assert sum(a[((0, 1), (2, 6))]) < 200 and a[((0, 1), (2, 5))] == WHITE  # A is drawn, not blank
    assert frame.text_content('[data-name="compare-model-title-diff"]') == "B \u2212 A \u00b7 no difference"


def test_the_difference_is_where_the_attention_moved(page, board):
    frame = open_compare(page, board, run="train", tag="probe", step=0, brun="train", bstep=10,
                         cmode="matrix", layer=0, head=1)
    d = wait_compare(frame, mode="matrix", diff="drawn")
    assert d["maxabs"] == "1.000"
    diff = matrix_cells(frame, "compare-diff")
    assert diff.pop((2, 5)) == BLUE  # A attended there, B does not: negative
    assert diff.pop((2, 6)) == RED  # B attends there now: positive
    assert all(p == WHITE for p in diff.values()), {k: p for k, p in diff.items() if p != WHITE}
    a, b = matrix_cells(frame, "compare-a"), matrix_cells(frame, "compare-b")
    assert sum(a[(2, 5)]) < 200 and a[(2, 6)] == WHITE
    assert sum(b[(2, 6)]) < 200 and b[(2, 5)] == WHITE
    titles = [frame.text_content('[data-name="compare-title-%s"]' % s) for s in ("a", "b")]
    assert titles == ["A: train \u00b7 step 0 \u00b7 layer 0 \u00b7 head 1", "B: train \u00b7 step 10 \u00b7 layer 0 \u00b7 head 1"]
    # the readout gives A, B and B - A of a hovered cell
    geo = geometry(frame, "compare-diff")
    x, y = cell_centres(geo)[(2, 6)]
    frame.locator('canvas[data-name="compare-diff"]').hover(position={"x": x, "y": y})
    frame.wait_for_function("() => document.querySelector('[data-name=\"compare-readout\"]').textContent.includes('key 6')")
    assert frame.text_content('[data-name="compare-readout"]') == \
        "query 2 \u201ccat\u201d \u2192 key 6 \u201cmat\u201d: A 0.000 \u00b7 B 1.000 \u00b7 B \u2212 A +1.000"
    save_screenshot(page, "compare-matrix")
    # another head of the same layer did not change
    frame.select_option('select[data-name="head"]', "0")
    wait_compare(frame, mode="matrix", maxabs="0.000")
    assert root_attrs(frame)["data-head"] == "0"


def test_ranking_puts_the_changed_head_first_and_opens_it(page, board):
    frame = open_compare(page, board, run="train", tag="probe", step=0, brun="train", bstep=10, cmode="rank")
    d = wait_compare(frame, mode="rank", top="0,1")
    # one of 8 query rows of layer 0 head 1 went from key 5 to key 6: mean JSD ln 2 / 8
    assert d["max"] == "%.4f" % (math.log(2) / 8)
    geo = geometry(frame, "compare-grid")
    assert (geo["rows"], geo["cols"]) == (2, 4)
    centres = grid_centres(geo)
    cells = grid_pixels(frame, centres)
    hot = cells.pop((0, 1))
    assert sum(hot) < 200, hot  # the darkest blue of the sequential scale
    assert all(p == WHITE for p in cells.values()), cells
    canvas = frame.locator('canvas[data-name="compare-grid"]')
    canvas.hover(position=dict(zip("xy", centres[(0, 1)])))
    frame.wait_for_function("() => document.querySelector('[data-name=\"compare-readout\"]').textContent.startsWith('layer 0')")
    assert frame.text_content('[data-name="compare-readout"]') == \
        "layer 0 \u00b7 head 1: mean JSD %.4f nats (rank 1 of 8)" % (math.log(2) / 8)
    assert frame.text_content('[data-name="compare-note"]').startswith("most changed: L0 H1 0.0866")
    save_screenshot(page, "compare-rank")
    canvas.click(position=dict(zip("xy", centres[(0, 1)])))
    wait_compare(frame, mode="matrix", diff="drawn", maxabs="1.000")
    attrs = root_attrs(frame)
    assert (attrs["data-layer"], attrs["data-head"]) == ("0", "1")
    wait_until(lambda: top_hash_keys(page).get("cmode") == "matrix", timeout=10, interval=0.05, what="cmode in the URL")


def test_model_mode_grids_of_a_b_and_the_difference(page, board):
    frame = open_compare(page, board, run="train", tag="probe", step=0, brun="train", bstep=10, cmode="model")
    d = wait_compare(frame, mode="model", diff="drawn")
    assert d["maxabs"] == "1.000"
    geos = [geometry(frame, "compare-model-" + side) for side in ("a", "b", "diff")]
    assert all(g == geos[0] for g in geos)
    geo = geos[0]
    assert (geo["rows"], geo["cols"], geo["Sq"], geo["Sk"]) == (2, 4, T, T)
    # A and B each show their own planted edge of layer 0 head 1: A at key 5, B at key 6
    a, b = model_cells(frame, "a"), model_cells(frame, "b")
    assert sum(a[((0, 1), (2, 5))]) < 200 and a[((0, 1), (2, 6))] == WHITE
    assert sum(b[((0, 1), (2, 6))]) < 200 and b[((0, 1), (2, 5))] == WHITE
    assert sum(a[((1, 3), (4, 4))]) < 200 and a[((1, 3), (4, 5))] == WHITE  # the identity diagonal elsewhere
    diff = model_cells(frame, "diff")
    assert diff.pop(((0, 1), (2, 5))) == BLUE and diff.pop(((0, 1), (2, 6))) == RED
    assert all(p == WHITE for p in diff.values()), {k: p for k, p in diff.items() if p != WHITE}
    titles = [frame.text_content('[data-name="compare-model-title-%s"]' % s) for s in ("a", "b", "diff")]
    assert titles == ["A: train \u00b7 step 0", "B: train \u00b7 step 10",
                      "B \u2212 A \u00b7 red: B higher, blue: A higher (scale \u00b11.000)"]
    # side by side, left to right, on one line
    boxes = [box(frame, "compare-model-" + side) for side in ("a", "b", "diff")]
    assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"]
    assert boxes[0]["x"] + boxes[0]["width"] < boxes[1]["x"] and boxes[1]["x"] + boxes[1]["width"] < boxes[2]["x"]
    assert not frame.is_visible('canvas[data-name="compare-grid"]')
    save_screenshot(page, "compare-model")
    # a thumbnail of B, or of A, opens that head in matrix mode
    centres = grid_centres(geo)
    canvas_b = frame.locator('canvas[data-name="compare-model-b"]')
    canvas_b.hover(position=dict(zip("xy", centres[(1, 3)])))
    frame.wait_for_function("() => document.querySelector('[data-name=\"compare-readout\"]').textContent.startsWith('layer 1')")
    assert frame.text_content('[data-name="compare-readout"]') == "layer 1 \u00b7 head 3: click to open A | B | B \u2212 A"
    canvas_b.click(position=dict(zip("xy", centres[(1, 3)])))
    wait_compare(frame, mode="matrix", maxabs="0.000")
    assert (root_attrs(frame)["data-layer"], root_attrs(frame)["data-head"]) == ("1", "3")
    frame.click('button[data-cmode="model"]')
    wait_compare(frame, mode="model", diff="drawn")
    frame.locator('canvas[data-name="compare-model-a"]').click(position=dict(zip("xy", centres[(0, 1)])))
    wait_compare(frame, mode="matrix", maxabs="1.000")
    assert (root_attrs(frame)["data-layer"], root_attrs(frame)["data-head"]) == ("0", "1")


def test_model_mode_fits_12_by_12_heads_side_by_side_in_1280_px(browser, board):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = ctx.new_page()
        page.watch = Watch(page)
        frame = open_compare(page, board, run="wide", tag="probe", step=0, cmode="model")
        wait_compare(frame, mode="model", brun="wide", bstep=1, diff="drawn", maxabs="1.000")
        geo = geometry(frame, "compare-model-diff")
        assert (geo["rows"], geo["cols"]) == (WIDE, WIDE)
        assert geo["thumb"] >= 20, geo
        boxes = [box(frame, "compare-model-" + side) for side in ("a", "b", "diff")]
        assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"], boxes
        width = frame.evaluate("() => document.querySelector('[data-name=\"compare-view\"] .tba-scroll').clientWidth")
        assert boxes[2]["x"] + boxes[2]["width"] <= width, (boxes, width)
        # 40 tokens in 26 px: each thumbnail is pooled to at most its pixels, so the
        # planted change of the last layer's last head (query 2: key 4 -> key 7) is
        # on screen in every grid, in its own colours
        assert geo["Sq"] == WIDE_T and max(geo["drawn"]) <= geo["thumb"], geo
        rows, cols = geo["drawn"]
        at = lambda i, j: ((i * rows) // WIDE_T, (j * cols) // WIDE_T)
        assert at(2, 4) != at(2, 7)
        last = (WIDE - 1, WIDE - 1)
        px = {(side, j): grid_pixels(frame, grid_centres(geo, sub=(at(2, j), rows)), "compare-model-" + side)[last]
              for side in ("a", "b", "diff") for j in (4, 7)}
        assert sum(px["a", 4]) < 200 and sum(px["b", 7]) < 200, px
        assert (px["diff", 4], px["diff", 7]) == (BLUE, RED), px
        assert "max-pooled again to %d\u00d7%d to fit the thumbnails" % (rows, cols) in \
            frame.text_content('[data-name="compare-note"]')
        assert not page.watch.errors
    finally:
        ctx.close()


def test_head_mode_lines_and_difference_lines_by_sign(page, board):
    frame = open_compare(page, board, run="train", tag="probe", step=0, brun="train", bstep=10,
                         cmode="head", layer=0, head=1)
    wait_compare(frame, mode="head", diff="drawn")
    geo = geometry(frame, "compare-diff")
    assert geo["lines"] == 2  # 2 -> 5 (negative) and 2 -> 6 (positive); nothing else changed

    def px(name, q, k):
        g = geometry(frame, name)
        return canvas_pixels(frame, name, [edge_point(g, q, k)])[0][:3]

    r, g, b = px("compare-diff", 2, 5)
    assert b > r + 80, (r, g, b)
    r, g, b = px("compare-diff", 2, 6)
    assert r > b + 80, (r, g, b)
    # the unchanged identity line of token 0 is in A but not in the difference
    mid = lambda g: ((g["lineX0"] + g["lineX1"]) / 2, g["top"] + 0.5 * g["rowH"])
    assert canvas_pixels(frame, "compare-diff", [mid(geo)])[0][:3] == WHITE
    ga = geometry(frame, "compare-a")
    assert canvas_pixels(frame, "compare-a", [mid(ga)])[0][:3] != WHITE
    assert px("compare-a", 2, 5) != WHITE and px("compare-a", 2, 6) == WHITE
    assert px("compare-b", 2, 6) != WHITE and px("compare-b", 2, 5) == WHITE
    save_screenshot(page, "compare-head")


def test_two_runs_at_different_steps_chosen_in_the_controls(page, board):
    frame = open_compare(page, board, run="train", tag="probe", step=0, cmode="rank")
    # default B: the newest step of A's run
    wait_compare(frame, mode="rank", brun="train", bstep=10, top="0,1")
    runs = frame.eval_on_selector_all('select[data-name="brun"] option', "els => els.map(e => e.value)")
    assert runs == ["ft", "long", "retok", "train", "wide"]
    frame.select_option('select[data-name="brun"]', "ft")
    d = wait_compare(frame, mode="rank", brun="ft", bstep=7)
    # layer 1 head 2 changed in two rows of eight: 2 ln 2 / 8, the most
    assert (d["top"], d["max"]) == ("1,2", "%.4f" % (2 * math.log(2) / 8))
    frame.select_option('select[data-name="bstep"]', "3")
    wait_compare(frame, mode="rank", brun="ft", bstep=3, top="1,2")
    assert frame.text_content('[data-name="compare-a"]') == "A: train \u00b7 step 0 (the main scrubber)"
    # the main scrubber moves A, B stays
    frame.click('button[data-name="next"]')
    d = wait_compare(frame, mode="rank", brun="ft", bstep=3, top="1,2")
    assert root_attrs(frame)["data-step"] == "10"
    assert d["max"] == "%.4f" % (2 * math.log(2) / 8)  # train@10 differs from ft only in layer 1 head 2


def test_different_tokens_are_named_and_no_difference_is_drawn(page, board):
    frame = open_compare(page, board, run="train", tag="probe", step=0, brun="retok", bstep=0,
                         cmode="matrix", layer=0, head=1)
    d = wait_compare(frame, mode="matrix", tokens="differ")
    assert d["diff"] == "none" and "maxabs" not in d
    # the compare route's verdict, shown as it says it (the check exists once, on the server)
    r = board.get_json("/data/plugin/attention/compare?tag=probe&kind=self&run_a=train&step_a=0&run_b=retok&step_b=0")
    msg = frame.text_content('[data-name="compare-message"]')
    assert msg == r["tokens"]["message"], msg
    assert "query tokens differ at position 3" in msg and "\u0120sat" in msg and HOSTILE in msg, msg
    assert frame.is_visible('[data-name="compare-message"]')
    assert not frame.is_visible('canvas[data-name="compare-diff"]')
    # A and B are each drawn with their own tokens
    assert frame.is_visible('canvas[data-name="compare-a"]') and frame.is_visible('canvas[data-name="compare-b"]')
    geo = geometry(frame, "compare-b")
    x, y = cell_centres(geo)[(3, 3)]
    frame.locator('canvas[data-name="compare-b"]').hover(position={"x": x, "y": y})
    frame.wait_for_function("() => document.querySelector('[data-name=\"compare-readout\"]').textContent.includes('query 3')")
    assert HOSTILE in frame.text_content('[data-name="compare-readout"]')
    save_screenshot(page, "compare-tokens")
    for mode in ("rank", "model", "head"):
        frame.click('button[data-cmode="%s"]' % mode)
        d = wait_compare(frame, mode=mode, tokens="differ")
        assert d["diff"] == "none" and frame.is_visible('[data-name="compare-message"]')
        assert not frame.is_visible('canvas[data-name="compare-diff"]')
        assert not frame.is_visible('canvas[data-name="compare-model-diff"]')
        if mode != "head":
            assert not frame.is_visible('canvas[data-name="compare-grid"]')
        if mode == "model":
            # A and B are still drawn, each its own record
            assert frame.is_visible('canvas[data-name="compare-model-a"]') and frame.is_visible('canvas[data-name="compare-model-b"]')
            assert sum(model_cells(frame, "b")[((0, 1), (2, 5))]) < 200
    assert frame.evaluate("() => document.querySelectorAll('img, svg').length") == 0
    assert page.evaluate("() => document.querySelectorAll('img[src=x]').length") == 0
    # the route names both tokens
    assert r["jsd"] is None and r["tokens"]["query"]["differences"] == [{"position": 3, "a": "\u0120sat", "b": HOSTILE}]


def test_url_restores_a_and_b_after_reload(page, board, browser):
    frame = open_compare(page, board, run="train", tag="probe", step=10)
    frame.select_option('select[data-name="brun"]', "ft")
    wait_compare(frame, brun="ft", bstep=7)
    frame.select_option('select[data-name="bstep"]', "3")
    wait_compare(frame, brun="ft", bstep=3)
    frame.click('button[data-cmode="matrix"]')
    frame.select_option('select[data-name="layer"]', "1")
    frame.select_option('select[data-name="head"]', "2")
    wait_compare(frame, mode="matrix", brun="ft", bstep=3, maxabs="1.000")
    want = {"view": "compare", "run": "train", "step": "10", "brun": "ft", "bstep": "3", "cmode": "matrix",
            "layer": "1", "head": "2"}
    wait_until(lambda: all(top_hash_keys(page).get(k) == v for k, v in want.items()), timeout=10,
               interval=0.05, what="the compare state in TensorBoard's URL")
    link = page.url
    page.reload()
    frame = plugin_frame(page)
    wait_compare(frame, mode="matrix", brun="ft", bstep=3, maxabs="1.000")
    attrs = root_attrs(frame)
    assert (attrs["data-run"], attrs["data-step"], attrs["data-layer"], attrs["data-head"]) == ("train", "10", "1", "2")
    ctx = browser.new_context(viewport={"width": 1000, "height": 700})
    try:
        p2 = ctx.new_page()
        p2.goto(link)
        wait_compare(plugin_frame(p2), mode="matrix", brun="ft", bstep=3)
    finally:
        ctx.close()


def test_long_causal_probe_pools_the_model_grid_and_greys_the_future(page, board):
    frame = open_compare(page, board, run="long", tag="probe", step=0, cmode="model")
    d = wait_compare(frame, mode="model", brun="long", bstep=1, diff="drawn")
    assert float(d["maxabs"]) > 0.1
    geo = geometry(frame, "compare-model-diff")
    assert (geo["rows"], geo["cols"], geo["Sq"], geo["Sk"], geo["pool"]) == (1, 2, 50, 50, [2, 2])
    assert "max-pooled to 50\u00d750 (2\u00d72 tokens per cell)" in frame.text_content('[data-name="compare-note"]')
    frame.click('button[data-cmode="matrix"]')
    wait_compare(frame, mode="matrix", diff="drawn")
    g = geometry(frame, "compare-diff")
    assert (g["Tq"], g["Tk"]) == (LONG, LONG) and g["cell"] >= 1
    # the future of a causal probe is greyed in A, B and B - A alike
    future = (g["ox"] + (LONG - 0.5) * g["cell"], g["oy"] + 0.5 * g["cell"])
    for name in ("compare-a", "compare-b", "compare-diff"):
        assert canvas_pixels(frame, name, [future])[0][:3] == [225, 225, 225], name


def test_dark_theme_difference_of_a_record_with_itself_is_the_dark_background(browser, board):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="dark")
    try:
        page = ctx.new_page()
        page.watch = Watch(page)
        frame = open_compare(page, board, run="train", tag="probe", step=0, brun="train", bstep=0,
                             cmode="matrix", layer=0, head=1)
        assert root_attrs(frame)["data-theme"] == "dark"
        assert set(map(tuple, matrix_cells(frame, "compare-diff").values())) == {(30, 30, 30)}
        frame.select_option('select[data-name="bstep"]', "10")
        wait_compare(frame, mode="matrix", bstep=10, maxabs="1.000")
        diff = matrix_cells(frame, "compare-diff")
        assert diff[(2, 5)] != [30, 30, 30] and diff[(2, 6)] != [30, 30, 30] and diff[(0, 0)] == [30, 30, 30]
        assert not page.watch.errors
    finally:
        ctx.close()


@contextlib.contextmanager
def mid_matrix(browser, board, width):
    """The 30-token probe's A | B | B - A matrices at a window width: (page, frame)."""
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = ctx.new_page()
        page.watch = Watch(page)
        frame = open_compare(page, board, run="mid", tag="mid", step=0, brun="mid", bstep=1, cmode="matrix",
                             layer=0, head=0)
        wait_compare(frame, mode="matrix", diff="drawn")
        yield page, frame
        assert not page.watch.errors
    finally:
        ctx.close()


@pytest.mark.parametrize("width", [1280, 1024])
def test_nothing_moves_when_the_readout_appears(browser, board, width):
    # at these widths the readout does not fit beside the controls: it takes a line of its own
    with mid_matrix(browser, board, width) as (page, frame):
        names = ["compare-a", "compare-b", "compare-diff"]
        before = [box(frame, n) for n in names]
        x, y = cell_centres(geometry(frame, "compare-diff"))[(2, 3)]
        frame.locator('canvas[data-name="compare-diff"]').hover(position={"x": x, "y": y})
        readout = '[data-name="compare-readout"]'
        frame.wait_for_function("(sel) => document.querySelector(sel).textContent.includes('key 3')", arg=readout)
        assert [box(frame, n) for n in names] == before
        # one pixel further: the same cell, nothing moved
        for dx, dy in ((1, 0), (0, 1), (-1, -1)):
            page.mouse.move(before[2]["x"] + x + dx, before[2]["y"] + y + dy)
            next_frames(frame)
            assert frame.text_content(readout).startswith("query 2 \u201cm2\u201d \u2192 key 3 \u201cm3\u201d")
            assert [box(frame, n) for n in names] == before
        page.mouse.move(2, 2)
        frame.wait_for_function("(sel) => document.querySelector(sel).textContent === ''", arg=readout)
        assert [box(frame, n) for n in names] == before


@pytest.mark.parametrize("width", [1440, 1024])
def test_the_three_matrix_panels_share_their_label_geometry_and_the_legend_fits(browser, board, width):
    with mid_matrix(browser, board, width) as (page, frame):
        geos = {s: geometry(frame, "compare-" + s) for s in ("a", "b", "diff")}
        keys = ("ox", "oy", "cell", "fontPx", "Tq", "Tk", "width", "height")
        same = {s: {k: g[k] for k in keys} for s, g in geos.items()}
        assert same["a"] == same["b"] == same["diff"], same
        # labels fit beside 30 cells of the panel's width at both sizes: every panel has them
        assert geos["a"]["ox"] > 4 and geos["a"]["oy"] > 4 and geos["a"]["cell"] >= 8, geos["a"]
        # the B - A legend (its title) is wholly inside the view
        inside = frame.evaluate("""() => {
            const t = document.querySelector('[data-name="compare-title-diff"]');
            const r = document.createRange();
            r.selectNodeContents(t);
            const text = r.getBoundingClientRect();
            const view = document.querySelector('[data-name="compare-view"] .tba-scroll').getBoundingClientRect();
            return {text: [text.left, text.right], view: [view.left, view.right], page: document.documentElement.clientWidth};
        }""")
        assert inside["view"][0] <= inside["text"][0] and inside["text"][1] <= min(inside["view"][1], inside["page"]), inside
        assert "red: B higher, blue: A higher" in frame.text_content('[data-name="compare-title-diff"]')
