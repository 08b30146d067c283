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
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

from tests.conftest import REPO
from tests.support.browser import Watch, canvas_pixels, edge_point, geometry

T = 8
TOKENS = ["<s>", "the", "cat", "sat", "on", "the", "mat", "."]
WHITE = [255, 255, 255]


def installed_frontend():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the installed package, as users get it
    out = subprocess.run([sys.executable, "-c", "import tb_attention.plugin as p; print(p._frontend_root())"],
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("host-page")
    shutil.copytree(installed_frontend(), root / "frontend")
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


def show(page, view, **state):
    page.evaluate("(args) => window.showView(args)",
                  {"view": view, "state": state, "header": HEADER, "attention": planted().ravel().tolist()})
    page.wait_for_selector('.tba[data-state="drawn"]', state="attached")


def test_the_head_view_draws_a_planted_edge_from_memory(page):
    show(page, "head")
    geo = geometry(page, "head-canvas")
    on, off = edge_point(geo, 2, 5), edge_point(geo, 2, 6)
    (r, g, b, _), miss = canvas_pixels(page, "head-canvas", [on, off])
    assert b > r + 60 and b > 120, (r, g, b)  # head 0's colour (BertViz blue)
    assert miss[:3] == WHITE, miss
    assert page.get_attribute(".tba", "data-detail") == "edges=24;candidates=24"
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
