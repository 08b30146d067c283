"""The views side by side with BertViz and CircuitsVis (issue 16): sentence
pair filters in the model and neuron views, the neuron view's every-query
vectors, hover previews, collapsed lines and fit to 800 px, the model view's
enlarged head and fit to the window, legends and axis titles, notices instead
of silent fallbacks, the default run, and the keyboard. A real `tensorboard`
over records written by the real AttentionWriter, in Debian's headless
Chromium; each test failed before its change (frontend/README.md, "Parity
with BertViz and CircuitsVis", lists them).
"""
import io
import os

import numpy as np
import pytest

import tb_attention
from tb_attention import AttentionRecord, KindRecord

from tests.support.browser import (
    TIMEOUT, Watch, canvas_pixels, detail, geometry, open_dashboard, plugin_frame, root_attrs, url, wait_compare,
    wait_drawn,
)
from tests.support.records import neuron_kind

GPT_TOKENS = ["The", "\u0120cat", "\u0120sat", "\u0120on", "\u0120the", "\u0120mat", "\u0120and", "\u0120the",
              "\u0120dog", "\u0120sat", "\u0120too", "."]
GPT_STEPS = (0, 10, 20)
PAIR_TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]", "it", "was", "play", "##ing", "[SEP]"]
PAIR_B = 5
GRID_T = 16
WHITE = [255, 255, 255]


def gpt_record(step):
    """A GPT-2 shaped causal self-attention with 64-dimensional heads."""
    rng = np.random.default_rng(40 + step)
    return AttentionRecord([neuron_kind("self", 2, 4, GPT_TOKENS, GPT_TOKENS, rng, causal=True, D=64)], model_type="gpt2")


def pair_record():
    rng = np.random.default_rng(5)
    k = neuron_kind("self", 1, 2, PAIR_TOKENS, PAIR_TOKENS, rng, D=8)
    return AttentionRecord([KindRecord(name=k.name, attention=k.attention, query_tokens=k.query_tokens,
                                       key_tokens=k.key_tokens, layer_ids=k.layer_ids, neurons=k.neurons,
                                       query_segment_b=PAIR_B, key_segment_b=PAIR_B)], model_type="bert")


def grid_attention():
    """6 layers x 12 heads (MiniLM's shape), 16 tokens: every token attends to
    itself, layer 2 head 5's query 3 to key 9."""
    a = np.zeros((6, 12, GRID_T, GRID_T), np.float32)
    a[..., np.arange(GRID_T), np.arange(GRID_T)] = 1.0
    a[2, 5, 3, :] = 0.0
    a[2, 5, 3, 9] = 1.0
    return a


def write_logdir(root):
    with tb_attention.AttentionWriter(os.path.join(root, "gpt")) as w:
        for step in GPT_STEPS:
            w.add_attention("story", gpt_record(step), global_step=step)
        # another probe of the same shape and tokens: compare's B may be it
        w.add_attention("retold", gpt_record(99), global_step=20)
    # sorts first, one step: not the run opened by default
    with tb_attention.AttentionWriter(os.path.join(root, "a-ckpt")) as w:
        w.add_attention("ckpt", np.full((1, 1, 3, 3), 1 / 3, np.float32), tokens=["a", "b", "c"], global_step=500)
    with tb_attention.AttentionWriter(os.path.join(root, "pair")) as w:
        w.add_attention("pair", pair_record(), global_step=0)
    with tb_attention.AttentionWriter(os.path.join(root, "grid")) as w:
        w.add_attention("grid", grid_attention(), tokens=["g%d" % i for i in range(GRID_T)], global_step=0)


EXPECTED = {"gpt": ("story", len(GPT_STEPS)), "a-ckpt": ("ckpt", 1), "pair": ("pair", 1), "grid": ("grid", 1)}
# and gpt's "retold" (one step, checked with the compare tests)


@pytest.fixture(scope="module")
def board(tensorboard_factory, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("views-e2e"))
    write_logdir(root)
    tb = tensorboard_factory(root)
    tb.wait_kept(EXPECTED)
    return tb


def new_page(browser, width=1200, height=820):
    ctx = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    p = ctx.new_page()
    p.watch = Watch(p)
    return ctx, p


@pytest.fixture
def page(browser):
    ctx, p = new_page(browser)
    yield p
    assert not p.watch.errors and not p.watch.dialogs, (p.watch.errors, p.watch.dialogs)
    ctx.close()


def model_softmax(step, layer, head, query):
    return gpt_record(step).attention("self")[layer, head, query]


def is_background(px):
    return px[:3] == WHITE


def colours_of(img):
    """The distinct RGB colours of a PIL image."""
    return {c for _, c in img.getcolors(1 << 24)}


# -- neuron view ----------------------------------------------------------------

def test_neuron_view_starts_on_the_last_token_of_causal_attention(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="neuron", layer=1, head=2)
    attrs = root_attrs(frame)
    assert attrs["data-query"] == str(len(GPT_TOKENS) - 1), attrs
    got = frame.evaluate("() => Array.from(window.tbAttention.views.neuron.numbers.softmax)")
    np.testing.assert_allclose(got, model_softmax(20, 1, 2, len(GPT_TOKENS) - 1), atol=3e-3)
    # no key is masked for the last query
    assert min(got) > 0


def test_neuron_view_at_800_px_keeps_the_scores_and_softmax_in_view(browser, board):
    ctx, page = new_page(browser, 800, 700)
    try:
        frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="neuron", layer=0, head=0)
        geo = geometry(frame, "neuron-canvas")
        assert geo["viewX"] == 0
        # the scaled score and the whole softmax column are inside the visible canvas
        assert geo["x"]["scaled"] + geo["numW"] <= geo["viewW"], geo
        assert geo["x"]["soft"] + geo["softW"] <= geo["viewW"], geo
        box = frame.locator('canvas[data-name="neuron-canvas"]').bounding_box()
        assert box["x"] + box["width"] <= 800
        # and drawn: the strongest key's softmax bar and scaled score have ink
        top = int(detail(frame)["top"])
        y = geo["top"] + (top + 0.5) * geo["rowH"]
        bar, score = canvas_pixels(frame, "neuron-canvas", [(geo["x"]["soft"] + 2, y), (geo["x"]["scaled"] + 4, y)])
        assert not is_background(bar) and not is_background(score), (bar, score)
    finally:
        ctx.close()


def test_neuron_view_shows_every_querys_vector_and_highlights_the_pinned_one(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=0, view="neuron", layer=0, head=1, query=4)
    geo = geometry(frame, "neuron-canvas")
    q = gpt_record(0).neurons("self").queries[0, 1]  # [T, D]
    xs = [geo["x"]["qv"] + (d + 0.5) * geo["cw"] for d in (int(np.argmax(q[i])) for i in range(len(GPT_TOKENS)))]
    points = [(x, geo["top"] + (i + 0.5) * geo["rowH"]) for i, x in enumerate(xs)]
    # each query's largest dimension is red (positive) in its own row
    for i, px in enumerate(canvas_pixels(frame, "neuron-canvas", points)):
        assert px[0] > px[2] + 40, (i, px)
    # the pinned query's row is highlighted, another's is not
    label_x = geo["x"]["q"] - 2
    pinned, other = canvas_pixels(frame, "neuron-canvas", [(label_x, geo["top"] + 4.5 * geo["rowH"]), (label_x, geo["top"] + 6.5 * geo["rowH"])])
    assert is_background(other) and not is_background(pinned), (pinned, other)


def test_neuron_view_hover_previews_a_query_and_click_pins_it(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=10, view="neuron", layer=0, head=3)
    last = len(GPT_TOKENS) - 1
    geo = geometry(frame, "neuron-canvas")
    canvas = frame.locator('canvas[data-name="neuron-canvas"]')
    before = canvas.bounding_box()
    at = {"x": geo["x"]["q"] + geo["qW"] - 5, "y": geo["top"] + 5.5 * geo["rowH"]}
    canvas.hover(position=at)
    wait_drawn(frame, hover="q5")
    assert canvas.bounding_box() == before  # nothing moves under the pointer
    assert root_attrs(frame)["data-query"] == str(last)  # a preview, not a choice
    assert detail(frame)["shown"] == "5"
    got = frame.evaluate("() => Array.from(window.tbAttention.views.neuron.numbers.softmax)")
    np.testing.assert_allclose(got, model_softmax(10, 0, 3, 5), atol=3e-3)
    assert "preview" in frame.text_content('[data-name="neuron-readout"]')
    page.mouse.move(2, 2)
    wait_drawn(frame, hover="")
    assert detail(frame)["shown"] == str(last)
    canvas.click(position=at)
    wait_drawn(frame, query=5)
    assert detail(frame)["shown"] == "5"


def test_neuron_view_collapsed_lines(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="neuron", layer=1, head=0, query=6)
    frame.select_option('select[data-name="nmode"]', "lines")
    frame.wait_for_function("() => JSON.parse(document.querySelector('canvas[data-name=\"neuron-canvas\"]').dataset.geometry).lines === true")
    wait_drawn(frame, view="neuron")
    assert detail(frame)["mode"] == "lines"
    geo = geometry(frame, "neuron-canvas")
    assert "qv" not in geo["x"] and "kv" not in geo["x"]
    want = model_softmax(20, 1, 0, 6)
    j = int(np.argmax(want))
    # the line from query 6 to its strongest key, at a quarter of the way
    x0, x1 = geo["x"]["lines0"], geo["x"]["lines1"]
    yq, yk = geo["top"] + 6.5 * geo["rowH"], geo["top"] + (j + 0.5) * geo["rowH"]
    on = canvas_pixels(frame, "neuron-canvas", [(x0 + 0.25 * (x1 - x0), yq + 0.25 * (yk - yq))])[0]
    assert not is_background(on), on
    # a masked key (after query 6) has no line
    yk = geo["top"] + 10.5 * geo["rowH"]
    off = canvas_pixels(frame, "neuron-canvas", [(x0 + 0.75 * (x1 - x0), yq + 0.75 * (yk - yq))])[0]
    assert is_background(off), off


def test_neuron_view_legend_gives_the_sign_convention(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="neuron", layer=0, head=0)
    legend = geometry(frame, "neuron-canvas")["legend"]
    d, s = legend["div"], legend["seq"]
    y = d["y"] + d["h"] / 2
    neg, mid, pos = canvas_pixels(frame, "neuron-canvas", [(d["x"] + 1, y), (d["x"] + d["w"] / 2, y), (d["x"] + d["w"] - 1, y)])
    assert neg[2] > neg[0] + 60 and pos[0] > pos[2] + 60, (neg, pos)  # blue < 0 < red
    assert min(mid[:3]) > 230, mid
    lo, hi = canvas_pixels(frame, "neuron-canvas", [(s["x"] + 1, s["y"] + 4), (s["x"] + s["w"] - 1, s["y"] + 4)])
    assert min(lo[:3]) > 240 and hi[2] > hi[0] + 60, (lo, hi)  # softmax 0 -> 1: white to blue


# -- sentence pair filters --------------------------------------------------------

def test_pair_filter_in_the_model_view(page, board):
    frame = open_dashboard(page, board, run="pair", tag="pair", step=0, view="model")
    a = np.round(pair_record().attention("self")[0] * 255)  # [H, T, T]
    assert int(detail(frame)["lines"]) == int((a >= 1).sum())
    frame.select_option('select[data-name="pair"]', "ab")
    wait_drawn(frame, view="model", pair="ab")
    assert int(detail(frame)["lines"]) == int((a[:, :PAIR_B, PAIR_B:] >= 1).sum())
    frame.select_option('select[data-name="pair"]', "ba")
    wait_drawn(frame, view="model", pair="ba")
    assert int(detail(frame)["lines"]) == int((a[:, PAIR_B:, :PAIR_B] >= 1).sum())


def test_pair_filter_in_the_neuron_view(page, board):
    frame = open_dashboard(page, board, run="pair", tag="pair", step=0, view="neuron", query=2)
    geo = geometry(frame, "neuron-canvas")

    def ink():
        """Per key row: how far its k vector's cells are from white, summed."""
        pts = [(geo["x"]["kv"] + (d + 0.5) * geo["cw"], geo["top"] + (j + 0.5) * geo["rowH"])
               for j in range(len(PAIR_TOKENS)) for d in range(geo["D"])]
        px = canvas_pixels(frame, "neuron-canvas", pts)
        return [sum(765 - sum(p[:3]) for p in px[j * geo["D"]:(j + 1) * geo["D"]]) for j in range(len(PAIR_TOKENS))]
    before = ink()
    frame.select_option('select[data-name="pair"]', "ab")
    wait_drawn(frame, view="neuron", pair="ab")
    after = ink()
    # sentence A's keys are veiled, sentence B's as they were
    for j in range(PAIR_B):
        assert after[j] < 0.4 * before[j], (j, before[j], after[j])
    assert after[PAIR_B:] == before[PAIR_B:]
    # the arrow keys pin only queries the filter keeps: A's last is 4
    canvas = frame.locator('canvas[data-name="neuron-canvas"]')
    canvas.focus()
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    wait_drawn(frame, view="neuron", query=4)


# -- model view -------------------------------------------------------------------

def grid_point(geo, row, col):
    t, gap = geo["thumb"], geo["gap"]
    return geo["labelW"] + gap + col * (t + gap) + t / 2, geo["labelH"] + gap + row * (t + gap) + t / 2


def test_model_view_enlarges_a_head_in_place_with_hover_and_keeps_the_filters(page, board):
    frame = open_dashboard(page, board, run="grid", tag="grid", step=0, view="model", mheads="3-6")
    geo = geometry(frame, "model-canvas")
    assert geo["cols"] == 4
    x, y = grid_point(geo, 2, 2)  # layer 2, head 5
    frame.locator('canvas[data-name="model-canvas"]').click(position={"x": x, "y": y})
    wait_drawn(frame, view="model")
    frame.wait_for_function("() => (document.getElementById('tba').dataset.detail || '').includes('focus=2.5')", timeout=TIMEOUT)
    assert frame.is_visible('[data-name="model-focus-panel"]')
    assert "layer 2 \u00b7 head 5" in frame.text_content('[data-name="model-focus-title"]')
    f = geometry(frame, "model-focus")
    assert f["type"] == "lines" and f["lines"] == GRID_T
    # the planted line 3 -> 9, drawn large
    mid_x = (f["lineX0"] + f["lineX1"]) / 2
    mid_y = f["top"] + 6.5 * f["rowH"]
    assert not is_background(canvas_pixels(frame, "model-focus", [(mid_x, mid_y)])[0])
    # hover query 3: only its line; its readout
    focus = frame.locator('canvas[data-name="model-focus"]')
    before = focus.bounding_box()
    focus.hover(position={"x": f["leftTextX"] - 5, "y": f["top"] + 3.5 * f["rowH"]})
    frame.wait_for_function("() => JSON.parse(document.querySelector('canvas[data-name=\"model-focus\"]').dataset.geometry).lines === 1", timeout=TIMEOUT)
    assert focus.bounding_box() == before  # nothing moves under the pointer
    assert frame.text_content('[data-name="model-focus-readout"]') == "query 3 \u201cg3\u201d"
    # Escape closes it: the grid, its filter, the step as they were
    page.keyboard.press("Escape")
    frame.wait_for_function("() => !(document.getElementById('tba').dataset.detail || '').includes('focus=')", timeout=TIMEOUT)
    assert not frame.is_visible('[data-name="model-focus-panel"]')
    attrs = root_attrs(frame)
    assert (attrs["data-view"], attrs["data-step"]) == ("model", "0")
    assert geometry(frame, "model-canvas")["cols"] == 4


def test_model_view_grid_of_6_by_12_fits_a_1440_by_900_window(browser, board):
    ctx, page = new_page(browser, 1440, 900)
    try:
        frame = open_dashboard(page, board, run="grid", tag="grid", step=0, view="model")
        geo = geometry(frame, "model-canvas")
        assert (geo["rows"], geo["cols"]) == (6, 12)
        iframe = page.locator("iframe").bounding_box()
        box = frame.locator('canvas[data-name="model-canvas"]').bounding_box()
        assert box["y"] + box["height"] <= iframe["y"] + iframe["height"], (box, iframe)
        assert box["x"] + box["width"] <= iframe["x"] + iframe["width"]
        # and the scroller does not scroll
        assert frame.evaluate("() => { const s = document.querySelector('canvas[data-name=\"model-canvas\"]').parentNode; return s.scrollHeight <= s.clientHeight; }")
    finally:
        ctx.close()


# -- never a silent fallback ------------------------------------------------------

def notice(frame, key):
    sel = '[data-name="%s"][data-key="%s"]' % ("step-notice" if key == "step" else "fallback-notice", key)
    frame.wait_for_selector(sel, timeout=TIMEOUT)
    return frame.text_content(sel)


def test_a_link_to_an_unknown_run_says_which_run_is_shown(browser, board):
    ctx, page = new_page(browser)
    page.goto(url(board, run="no-such-run", tag="story", step=10))
    frame = plugin_frame(page)
    wait_drawn(frame, run="gpt")
    # the early requests for that run were answered 404 (the browser logs those); nothing else
    assert [e for e in page.watch.errors if "status of 404" not in e] == []
    assert notice(frame, "run") == ("run \u201cno-such-run\u201d is not logged (or logged no attention): "
                                    "showing run \u201cgpt\u201d, the one with the most steps")
    assert frame.is_visible('[data-name="notice"]')
    # choosing a run clears it
    frame.select_option('select[data-name="run"]', "grid")
    wait_drawn(frame, run="grid")
    assert frame.locator('[data-name="fallback-notice"]').count() == 0
    ctx.close()


def test_a_layer_filter_beyond_the_model_and_an_unreadable_one_are_named(page, board):
    frame = open_dashboard(page, board, run="grid", tag="grid", step=0, view="model", mlayers="9-12")
    assert notice(frame, "mlayers") == "layer filter 9-12: layers 9-12 are not logged (layers 0-5): showing every layer"
    assert geometry(frame, "model-canvas")["rows"] == 6
    frame = open_dashboard(page, board, run="grid", tag="grid", step=0, view="model", mlayers="abc")
    assert notice(frame, "mlayers") == ("mlayers \u201cabc\u201d in the link is not a list of layers "
                                        "(numbers and ranges, like 0-3,7): showing every layer")
    # typed into the filter: said beside it, and the grid keeps its last filter
    frame.fill('input[data-name="mlayers"]', "1-2")
    frame.press('input[data-name="mlayers"]', "Enter")
    frame.wait_for_function("() => JSON.parse(document.querySelector('canvas[data-name=\"model-canvas\"]').dataset.geometry).rows === 2")
    frame.fill('input[data-name="mlayers"]', "abc")
    frame.press('input[data-name="mlayers"]', "Enter")
    assert frame.text_content('[data-name="model-filter-error"]') == (
        "\u201cabc\u201d is not a list of layers: use numbers and ranges, like 0-3,7 (showing the last filter)")
    assert geometry(frame, "model-canvas")["rows"] == 2
    frame.fill('input[data-name="mlayers"]', "4-8")
    frame.press('input[data-name="mlayers"]', "Enter")
    assert notice(frame, "mlayers") == "layer filter 4-8: layers 6-8 are not logged (layers 0-5): showing layers 4-5"
    assert frame.text_content('[data-name="model-filter-error"]') == ""


def test_a_hash_edited_to_a_missing_step_says_which_step_is_shown(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=10)
    page.evaluate("() => { location.hash = location.hash.replace(/p\\.attention\\.step=10/, 'p.attention.step=15'); }")
    wait_drawn(frame, step=20)
    assert notice(frame, "step") == "step 15 is not among the logged steps (any more): showing step 20, the nearest"


def test_the_run_opened_by_default_is_the_one_with_the_most_steps(page, board):
    page.goto("%s/#attention" % board.url)
    frame = plugin_frame(page)
    attrs = wait_drawn(frame)
    assert (attrs["data-run"], attrs["data-step"]) == ("gpt", "20")
    assert frame.locator('[data-name="fallback-notice"]').count() == 0
    assert not frame.is_disabled('input[data-name="step-slider"]')


# -- keyboard ---------------------------------------------------------------------

ACCENT = (245, 124, 0)


def accent_pixels(img, box, y):
    """Pixels of row y of a page screenshot, within box's columns, close to the accent colour."""
    return sum(1 for x in range(int(box["x"]), int(box["x"] + box["width"]))
               if sum(abs(a - b) for a, b in zip(img.getpixel((x, int(y))), ACCENT)) < 90)


def test_the_focus_ring_of_a_view_tab_is_not_clipped(page, board):
    from PIL import Image
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20)
    frame.focus('button[data-view="head"]')
    page.keyboard.press("Tab")
    assert frame.evaluate("() => document.activeElement.dataset.view") == "model"
    box = frame.locator('button[data-view="model"]').bounding_box()
    img = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    # the ring (2 px, 1 px outside the button) shows above and below the button
    assert accent_pixels(img, box, box["y"] - 2) > box["width"] * 0.8
    assert accent_pixels(img, box, box["y"] + box["height"] + 1) > box["width"] * 0.8


def focus_ring(frame, name):
    return frame.evaluate("""(name) => { const c = document.querySelector(`canvas[data-name="${name}"]`);
        const s = getComputedStyle(c); return document.activeElement === c && c.matches(':focus-visible') ? s.outlineStyle + ' ' + s.outlineWidth : ''; }""", name)


def test_drawing_areas_take_the_focus_and_arrow_keys_choose_tokens(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="neuron", layer=0, head=0)
    frame.focus('select[data-name="zoom"]')
    # Tab from the controls reaches the canvas, with a visible ring; up moves the query
    for _ in range(3):
        page.keyboard.press("Tab")
        if frame.evaluate("() => document.activeElement.dataset.name") == "neuron-canvas":
            break
    assert focus_ring(frame, "neuron-canvas") == "solid 2px"
    page.keyboard.press("ArrowUp")
    wait_drawn(frame, view="neuron", query=len(GPT_TOKENS) - 2)
    page.keyboard.press("ArrowUp")
    wait_drawn(frame, view="neuron", query=len(GPT_TOKENS) - 3)
    # the head view: down pins the first query, then the next; shift + right moves to the keys
    frame.click('button[data-view="head"]')
    wait_drawn(frame, view="head")
    frame.focus('canvas[data-name="head-canvas"]')
    page.keyboard.press("ArrowDown")
    wait_drawn(frame, view="head", hover="q0")
    page.keyboard.press("ArrowDown")
    wait_drawn(frame, view="head", hover="q1")
    page.keyboard.press("Shift+ArrowRight")
    wait_drawn(frame, view="head", hover="k1")
    # the matrix view: the readout's cell moves with the keys
    frame.click('button[data-view="matrix"]')
    wait_drawn(frame, view="matrix")
    frame.focus('canvas[data-name="matrix-canvas"]')
    for key in ("ArrowDown", "ArrowDown", "ArrowDown", "Shift+ArrowRight"):
        page.keyboard.press(key)
    frame.wait_for_selector('[data-name="matrix-readout"][data-cell="2,1"]', timeout=TIMEOUT)
    # plain left and right stay the steps
    page.keyboard.press("ArrowLeft")
    wait_drawn(frame, view="matrix", step=10)
    # the stats view: the readout's cell moves, Enter opens that head at the step shown
    frame.click('button[data-view="stats"]')
    wait_drawn(frame, view="stats")
    frame.focus('canvas[data-name="stats-canvas"]')
    for key in ("ArrowDown", "ArrowDown", "Shift+ArrowRight"):
        page.keyboard.press(key)
    frame.wait_for_selector('[data-name="stats-readout"][data-cell="1,1,10"]', timeout=TIMEOUT)
    page.keyboard.press("Enter")
    wait_drawn(frame, view="head", layer=1, heads="1", step=10)


def test_arrow_keys_step_before_the_frame_is_clicked(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=10)
    # the focus is TensorBoard's page: nothing in the plugin's frame was clicked
    assert page.evaluate("() => document.activeElement === document.body")
    page.keyboard.press("ArrowRight")
    wait_drawn(frame, step=20)
    page.keyboard.press("ArrowLeft")
    wait_drawn(frame, step=10)


# -- legends and axis titles ----------------------------------------------------

def inked(frame, canvas, x0, y0, x1, y1, step=1):
    """How many pixels of the box are not the white background."""
    pts = [(x, y) for x in range(int(x0), int(x1), step) for y in range(int(y0), int(y1), step)]
    return sum(1 for p in canvas_pixels(frame, canvas, pts) if not is_background(p))


def test_matrix_and_head_views_title_their_query_and_key_axes(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="matrix")
    g = geometry(frame, "matrix-canvas")
    a = g["axis"]
    assert a > 0
    # "key ->" in the strip above the key labels, "<- query" (upwards) in the strip left of the query labels
    assert inked(frame, "matrix-canvas", g["ox"], 0, g["ox"] + 30, a) > 10
    assert inked(frame, "matrix-canvas", 0, g["oy"], a, g["oy"] + min(g["Tq"] * g["cell"], g["viewH"] - g["oy"])) > 10
    frame.click('button[data-view="head"]')
    wait_drawn(frame, view="head")
    h = geometry(frame, "head-canvas")
    assert h["top"] >= 16
    assert inked(frame, "head-canvas", h["leftTextX"] - 30, 0, h["leftTextX"], h["top"] - 2) > 10
    assert inked(frame, "head-canvas", h["rightTextX"], 0, h["rightTextX"] + 20, h["top"] - 2) > 10


def test_head_view_export_carries_a_key_of_head_colours(page, board):
    from PIL import Image
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="head", heads="1,3")
    with page.expect_download(timeout=TIMEOUT) as info:
        frame.click('button[data-name="export"]')
    img = Image.open(info.value.path()).convert("RGB")
    # the squares of the head selector show each head's colour (the DOM's, not the canvas's)
    want = frame.evaluate("""() => [1, 3].map(h => getComputedStyle(document.querySelector(`button.tba-head[data-head="${h}"]`))
        .backgroundColor.match(/\\d+/g).slice(0, 3).map(Number))""")
    bottom = img.crop((0, img.height - 30, img.width, img.height))
    colours = colours_of(bottom)
    for rgb in want:
        assert any(sum(abs(a - b) for a, b in zip(rgb, c)) < 6 for c in colours), (rgb, "no swatch of that head in the key")
    # head 0's colour (not shown) is not in the key
    h0 = frame.evaluate("""() => getComputedStyle(document.querySelector('button.tba-head[data-head="0"]')).backgroundColor.match(/\\d+/g).slice(0, 3).map(Number)""")
    assert not any(sum(abs(a - b) for a, b in zip(h0, c)) < 6 for c in colours)


def test_stats_sparklines_have_a_step_axis(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="stats")
    g = geometry(frame, "stats-canvas")
    y = g["axisY"]
    assert y + g["axisH"] / 2 <= g["height"]
    x0 = g["labelW"] + g["gap"] + g["padX"]
    # "step" in the label column, the first step under the first cell's left edge, the last under the last cell's right
    assert inked(frame, "stats-canvas", 2, y - 6, g["labelW"] - 2, y + 6) > 8
    assert inked(frame, "stats-canvas", x0, y - 5, x0 + 8, y + 7) > 3
    xl = g["labelW"] + g["gap"] + (g["cols"] - 1) * (g["cellW"] + g["gap"]) + g["padX"] + g["plotW"]
    assert inked(frame, "stats-canvas", xl - 14, y - 5, xl + 1, y + 7) > 6


# -- compare ------------------------------------------------------------------------

def test_compare_with_one_logged_step_says_there_is_nothing_to_compare(page, board):
    page.goto(url(board, run="a-ckpt", tag="ckpt", view="compare"))
    frame = plugin_frame(page)
    wait_compare(frame, mode="rank")
    assert frame.text_content('[data-name="compare-message"]') == (
        "nothing to compare: probe \u201cckpt\u201d has one logged step (500), in run \u201ca-ckpt\u201d only; "
        "log more steps or another run, or choose another probe as B")
    assert "no head changed" not in frame.text_content('[data-name="compare-note"]')


def quantized_mean_jsd(a, b):
    """Mean JSD (nats) over query rows of two [Tq, Tk] maps as stored (uint8 weights, rows renormalised)."""
    p = np.round(a * 255) / 255
    q = np.round(b * 255) / 255
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda x, y: np.where(x > 0, x * np.log(x / y), 0.0).sum(-1)
        return float(np.mean(0.5 * kl(p, m) + 0.5 * kl(q, m)))


def test_compare_b_may_be_another_probe(page, board):
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="compare")
    frame.select_option('select[data-name="btag"]', "retold")
    d = wait_compare(frame, mode="rank", brun="gpt", bstep=20, tokens="match")
    a, b = gpt_record(20).attention("self"), gpt_record(99).attention("self")
    want = np.array([[quantized_mean_jsd(a[l, h], b[l, h]) for h in range(4)] for l in range(2)])
    top = np.unravel_index(np.argmax(want), want.shape)
    assert d["top"] == "%d,%d" % top
    assert abs(float(d["max"]) - want.max()) < 2e-3, (d["max"], want.max())
    # the matrix mode: B's title names its probe, and the difference is drawn
    frame.click('button[data-cmode="matrix"]')
    wait_compare(frame, mode="matrix", diff="drawn")
    assert frame.text_content('[data-name="compare-title-b"]').startswith("B: gpt \u00b7 retold \u00b7 step 20")
    assert frame.text_content('[data-name="compare-title-a"]').startswith("A: gpt \u00b7 story \u00b7 step 20")


def test_compare_per_head_modes_ask_the_route_for_its_verdict_only(page, board):
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/data/plugin/attention/compare?" in r.url else None)
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="compare", bstep=0, cmode="matrix")
    wait_compare(frame, mode="matrix", diff="drawn")
    assert asked and all("verdict=1" in u for u in asked), asked
    frame.click('button[data-cmode="rank"]')
    wait_compare(frame, mode="rank", tokens="match")
    assert "verdict=1" not in asked[-1]


def test_compare_export_has_every_panel_titled_and_the_sign_legend(page, board):
    from PIL import Image
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="compare", bstep=0, cmode="matrix", layer=1, head=2)
    wait_compare(frame, mode="matrix", diff="drawn")
    panels = frame.evaluate("() => JSON.parse(window.tbAttention.views.compare.exportCanvas().dataset.panels)")
    titles = [p["title"] for p in panels]
    assert len(panels) == 3, titles
    assert titles[0] == "A: gpt \u00b7 step 20 \u00b7 layer 1 \u00b7 head 2"
    assert titles[1] == "B: gpt \u00b7 step 0 \u00b7 layer 1 \u00b7 head 2"
    assert titles[2].startswith("B \u2212 A \u00b7 layer 1 \u00b7 head 2 \u00b7 red: B higher, blue: A higher")
    with page.expect_download(timeout=TIMEOUT) as info:
        frame.click('button[data-name="export"]')
    img = Image.open(info.value.path()).convert("RGB")
    assert img.width >= sum(p["width"] for p in panels)
    # the colour scale under the panels: blue (A higher) to red (B higher)
    bottom = img.crop((0, img.height - 30, img.width // 2, img.height))
    colours = colours_of(bottom)
    assert any(b > r + 80 for r, g, b in colours) and any(r > b + 80 for r, g, b in colours)


def test_compare_ranking_export_title_is_not_cut(page, board):
    from PIL import Image
    frame = open_dashboard(page, board, run="gpt", tag="story", step=20, view="compare", bstep=0)
    wait_compare(frame, mode="rank", tokens="match")
    with page.expect_download(timeout=TIMEOUT) as info:
        frame.click('button[data-name="export"]')
    img = Image.open(info.value.path()).convert("RGB")
    scale = img.width / frame.evaluate("() => parseFloat(window.tbAttention.views.compare.exportCanvas().style.width)")
    band = int(18 * scale)
    # the title's text stays off the image's right edge (it wraps instead)
    edge = img.crop((img.width - int(6 * scale), 0, img.width, band))
    assert all(sum(px) > 3 * 240 for px in colours_of(edge))
    # and the title is there: ink in the band's left part
    assert any(sum(px) < 3 * 128 for px in colours_of(img.crop((0, 0, img.width // 2, band))))
