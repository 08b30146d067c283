"""The views without TensorBoard, in Chromium: a static page
(tests/host_page/) imports the installed package's frontend modules and
shows views from arrays handed to it (MemoryData), with no TensorBoard, no
iframe protocol and no HTTP data, as a notebook or a standalone HTML file
will. Checks the planted attention edge by pixels.

A tiny local http server serves the page next to a copy of the installed
frontend/ (ES modules do not load from file:// URLs).
"""
import functools
import http.server
import os
import shutil
import tempfile
import threading

import numpy as np
import pytest

from tests.conftest import REPO
from tests.support import installed_package
from tests.support.browser import Watch, canvas_pixels, edge_point, geometry, next_frames

T = 8
TOKENS = ["<s>", "the", "cat", "sat", "on", "the", "mat", "."]
WHITE = [255, 255, 255]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("host-page")
    shutil.copytree(installed_package()[1], root / "frontend")
    shutil.copytree(os.path.join(REPO, "tests", "host_page"), root / "page")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def planted():
    """Every token attends to itself; layer 0 head 0 query 2 attends to key 5 only."""
    a = np.zeros((2, 3, T, T), np.uint8)
    a[:, :, np.arange(T), np.arange(T)] = 255
    a[0, 0, 2, 2] = 0
    a[0, 0, 2, 5] = 255
    return a


HEADER = {"step": 3, "wall_time": 0.0, "sequence": 0, "model_type": "toy",
          "kinds": [{"name": "self", "query_tokens": TOKENS, "key_tokens": TOKENS, "num_heads": 3, "layer_ids": [0, 1],
                     "query_segment_b": 0, "key_segment_b": 0, "causal": False, "dtype": "uint8", "has_neurons": False}]}


@pytest.fixture
def page(browser, site):
    ctx = browser.new_context(viewport={"width": 1100, "height": 700})
    p = ctx.new_page()
    p.watch = Watch(p)
    p.requests = []
    p.on("request", lambda r: p.requests.append(r.url))
    p.goto(site + "/page/index.html")
    p.wait_for_function("() => window.pageReady === true")
    yield p
    assert not p.watch.errors, p.watch.errors
    # only the page and the shipped modules were fetched: the data came from memory
    assert all(u.startswith(site) and u.endswith((".html", ".js", ".css")) for u in p.requests), p.requests
    ctx.close()


def show(page, view, attention=None, **state):
    attention = planted() if attention is None else attention
    page.evaluate("(args) => window.showView(args)",
                  {"view": view, "state": state, "header": HEADER, "attention": attention.ravel().tolist()})
    page.wait_for_selector('.tba[data-state="drawn"]', state="attached")


def test_the_head_view_draws_a_planted_edge_from_memory(page):
    show(page, "head")
    geo = geometry(page, "head-canvas")
    on, off = edge_point(geo, 2, 5), edge_point(geo, 2, 6)
    (r, g, b, _), miss = canvas_pixels(page, "head-canvas", [on, off])
    assert b > r + 60 and b > 120, (r, g, b)  # head 0's colour (BertViz blue)
    assert miss[:3] == WHITE, miss
    assert page.get_attribute(".tba", "data-detail").startswith("edges=24;candidates=24;")
    # hover the query "cat": only its lines, and the host is told
    page.locator('canvas[data-name="head-canvas"]').hover(position={"x": geo["leftTextX"] - 6, "y": geo["top"] + 2.5 * geo["rowH"]})
    page.wait_for_selector('.tba[data-hovered="yes"]', state="attached")
    mid4 = ((geo["lineX0"] + geo["lineX1"]) / 2, geo["top"] + 4.5 * geo["rowH"])
    assert canvas_pixels(page, "head-canvas", [mid4])[0][:3] == WHITE  # another token's line is gone
    assert canvas_pixels(page, "head-canvas", [on])[0][:3] != WHITE
    page.screenshot(path=os.path.join(tempfile.gettempdir(), "tba-host-page-head.png"))


def test_the_matrix_view_draws_the_planted_cell_from_memory(page):
    show(page, "matrix", layer=0, head=0)
    geo = geometry(page, "matrix-canvas")
    centre = lambda i, j: (geo["ox"] + (j + 0.5) * geo["cell"], geo["oy"] + (i + 0.5) * geo["cell"])
    hot, empty, diag = canvas_pixels(page, "matrix-canvas", [centre(2, 5), centre(2, 2), centre(4, 4)])
    assert sum(hot[:3]) < 200 and sum(diag[:3]) < 200, (hot, diag)  # weight 1: the darkest blue
    assert empty[:3] == WHITE
    assert geo["ox"] > 4  # token labels beside the rows


def _ink(page, canvas, x, y, r=1):
    """Largest distance from white (sum over RGB) around a CSS-pixel point."""
    pts = [(x + dx, y + dy) for dx in range(-r, r + 1) for dy in range(-r, r + 1)]
    return max(765 - sum(p[:3]) for p in canvas_pixels(page, canvas, pts))


def test_a_weak_line_and_its_hover_box_are_faint_and_the_padding_is_no_token(page):
    """Opacity is the weight: a weight-64/255 line and hover box show about a
    quarter of the ink of a weight-255 one drawn alike (hand-computed: the
    line's bucket midpoint 68/255 = 0.27, the box 64/255 = 0.25; ink is linear
    in alpha over white)."""
    a = np.zeros((2, 3, T, T), np.uint8)
    a[0, 0, 1, 3] = 255  # parallel lines of the same slope: same coverage
    a[0, 0, 5, 7] = 64
    a[0, 0, 5, 6] = 255  # query 5's boxes: key 6 full, key 7 weak
    show(page, "head", a, layer=0)
    geo = geometry(page, "head-canvas")
    strong = _ink(page, "head-canvas", *edge_point(geo, 1, 3))
    weak = _ink(page, "head-canvas", *edge_point(geo, 5, 7))
    assert strong > 150 and 0.15 < weak / strong < 0.4, (weak, strong)
    canvas = page.locator('canvas[data-name="head-canvas"]')
    canvas.hover(position={"x": geo["leftTextX"] - 6, "y": geo["top"] + 5.5 * geo["rowH"]})
    page.wait_for_selector('.tba[data-hovered="yes"]', state="attached")
    # head 0's slice of key k's box (one slice per shown head, BertViz's boxes),
    # low in the row: the token's label is drawn over the box
    box = lambda k: (geo["kBox"]["x"] + geo["kBox"]["w"] / 3 / 2, geo["top"] + k * geo["rowH"] + geo["rowH"] - 2)
    full, faint = _ink(page, "head-canvas", *box(6), r=0), _ink(page, "head-canvas", *box(7), r=0)
    assert full > 150 and 0.15 < faint / full < 0.4, (faint, full)
    # the padding below the last row is no token: nothing hovered, nothing thrown
    canvas.hover(position={"x": geo["rightTextX"] + 5, "y": geo["top"] + T * geo["rowH"] + 3})
    next_frames(page)
    canvas.hover(position={"x": geo["leftTextX"] - 6, "y": geo["top"] + T * geo["rowH"] + 3})
    next_frames(page)
    assert not page.watch.errors, page.watch.errors
    assert page.locator('[data-name="head-hover"]').text_content() == ""
