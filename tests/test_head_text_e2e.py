"""The head view next to BertViz, the text view next to CircuitsVis, token
labels that keep word boundaries, and aggregates over heads (issue 16), end to
end: a real `tensorboard` over a logdir written by the real AttentionWriter,
the dashboard in Debian's headless Chromium. Expected numbers come from numpy
over the attention the test wrote (quantised as the format says: byte =
rint(weight * 255)), colours from the head colour the page itself uses.
"""
import os

import numpy as np
import pytest

import tb_attention

from tests.support.browser import (
    TIMEOUT, canvas_pixels, detail, geometry, open_dashboard, root_attrs, wait_drawn, watched_page,
)
from tests.support.records import neuron_kind

# WordPiece: "unbelievably" in five pieces, as BERT's tokenizer splits it
SMALL_TOKENS = ["[CLS]", "it", "was", "un", "##bel", "##ie", "##va", "##bly", "good", ",", "the", "cat",
                "sat", "on", "it", "[SEP]"]
LONG_T = 512


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def small_attention(step):
    """2 layers x 12 heads x 16 tokens: every weight above 1/255, the 3,072
    lines of a layer are what BertViz draws."""
    rng = np.random.default_rng(16 + step)
    return softmax(rng.standard_normal((2, 12, 16, 16)).astype(np.float32))


def long_attention():
    """1 layer x 12 heads x 512 tokens, peaked (the issue's 173,113 lines of
    ~3 M above 1/255 are of this kind)."""
    rng = np.random.default_rng(512)
    return softmax(rng.standard_normal((1, 12, LONG_T, LONG_T)).astype(np.float32) * 2.5)


T5_ENCODER = ["\u2581translate", "\u2581English", "\u2581to", "\u2581German", ":", "\u2581hello", "</s>"]
T5_DECODER = ["<pad>", "\u2581Hallo", "</s>"]


def t5_record():
    """Encoder, decoder and cross attention with SentencePiece tokens."""
    rng = np.random.default_rng(105)
    return tb_attention.AttentionRecord([
        neuron_kind("encoder", 2, 4, T5_ENCODER, T5_ENCODER, rng),
        neuron_kind("decoder", 2, 4, T5_DECODER, T5_DECODER, rng, causal=True),
        neuron_kind("cross", 2, 4, T5_DECODER, T5_ENCODER, rng),
    ], model_type="t5")


def as_bytes(a):
    return np.rint(np.clip(a.astype(np.float32) * np.float32(255.0), 0, 255)).astype(np.uint8)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("head-text-logs"))
    with tb_attention.AttentionWriter(os.path.join(root, "small")) as w:
        for step in (0, 1, 2):
            w.add_attention("probe", small_attention(step), tokens=SMALL_TOKENS, global_step=step)
    with tb_attention.AttentionWriter(os.path.join(root, "long")) as w:
        w.add_attention("long", long_attention(), tokens=["w%d" % i for i in range(LONG_T)], global_step=0)
    with tb_attention.AttentionWriter(os.path.join(root, "t5")) as w:
        w.add_attention("translate", t5_record(), global_step=5)
    return root


@pytest.fixture(scope="module")
def board(tensorboard_factory, logdir):
    tb = tensorboard_factory(logdir)
    tb.wait_kept({"small": ("probe", 3), "long": ("long", 1), "t5": ("translate", 1)})
    return tb


@pytest.fixture
def page(browser):
    with watched_page(browser, viewport={"width": 1440, "height": 900}, accept_downloads=True) as p:
        yield p


def page_head_colors(frame, n):
    """Heads 0..n-1's colours as the page computes them (colors.js)."""
    return frame.evaluate("""async (n) => {
        const m = await import('/data/plugin/attention/static/colors.js');
        return [...Array(n).keys()].map((h) => m.headColor(h));
    }""", n)


def wait_detail(frame, predicate_js):
    frame.wait_for_function("() => { const d = document.getElementById('tba').dataset.detail || ''; return %s; }"
                            % predicate_js, timeout=TIMEOUT)
    return detail(frame)


def dark_in(frame, canvas, xs, y, limit=400):
    """Whether any of the canvas's pixels at (x, y) for x in xs is dark (text)."""
    return any(sum(p[:3]) < limit for p in canvas_pixels(frame, canvas, [(x, y) for x in xs]))


# -- head view at small sizes (item 1) -------------------------------------------

def test_head_view_draws_every_line_above_1_255_when_it_fits(page, board):
    frame = open_dashboard(page, board, run="small", tag="probe", step=0, layer=0)
    d = detail(frame)
    want = int((as_bytes(small_attention(0)[0]) >= 1).sum())
    assert 3000 < want <= 12 * 16 * 16  # BertViz draws all 3,072 lines here
    assert (int(d["edges"]), int(d["candidates"])) == (want, want), d
    assert "strongest" not in frame.text_content('[data-name="head-note"]')
    assert not page.watch.errors


# -- long inputs (item 2) ---------------------------------------------------------

def test_long_input_keeps_labels_and_draws_the_tokens_in_view_in_full(page, board):
    frame = open_dashboard(page, board, run="long", tag="long", step=0, layer=0)
    geo = geometry(frame, "head-canvas")
    assert geo["rowH"] >= 14 and geo["labels"], geo
    # labels at the left and right of the first rows in view (dark text pixels)
    for row in (0, 5):
        y = geo["top"] + (row + 0.5) * geo["rowH"]
        assert dark_in(frame, "head-canvas", range(int(geo["leftTextX"]) - 30, int(geo["leftTextX"])), y), row
        assert dark_in(frame, "head-canvas", range(int(geo["rightTextX"]) + 2, int(geo["rightTextX"]) + 30), y), row
    # scroll to the middle: the tokens in view are labelled, and every line between them is drawn
    frame.evaluate("() => { document.querySelector('canvas[data-name=\"head-canvas\"]').parentNode.parentNode.scrollTop = 3000; }")
    d = wait_detail(frame, "!d.includes('rows=0-')")
    r0, r1 = (int(x) for x in d["rows"].split("-"))
    assert 200 < r0 < r1 <= LONG_T and r1 - r0 >= 30, d
    a = as_bytes(long_attention()[0])
    inside = int((a[:, r0:r1, r0:r1] >= 1).sum())
    assert (int(d["inview"]), int(d["inviewdrawn"])) == (inside, inside), d
    geo = geometry(frame, "head-canvas")
    y = geo["top"] + (r0 + 2.5) * geo["rowH"] - geo["viewY"]
    assert dark_in(frame, "head-canvas", range(int(geo["leftTextX"]) - 30, int(geo["leftTextX"])), y)
    # hovering a token in view draws all its lines, to tokens in and out of view
    q = r0 + 3
    frame.locator('canvas[data-name="head-canvas"]').hover(
        position={"x": geo["leftTextX"] - 5, "y": geo["top"] + (q + 0.5) * geo["rowH"] - geo["viewY"]})
    wait_drawn(frame, hover="q%d" % q)
    d = detail(frame)
    assert int(d["edges"]) == int(d["candidates"]) == int((a[:, q, :] >= 1).sum()), d
    assert frame.text_content('[data-name="head-hover"]') == "query %d \u201cw%d\u201d" % (q, q)
    assert not page.watch.errors


# -- BertViz's token boxes (item 3) -----------------------------------------------

def test_hovered_token_fills_the_other_sides_boxes_with_a_slice_per_head(page, board):
    frame = open_dashboard(page, board, run="small", tag="probe", step=0, layer=0)
    geo = geometry(frame, "head-canvas")
    # the view uses the width: boxes as wide as BertViz's (110 px) and more
    assert geo["width"] > 0.65 * 1440 and geo["kBox"]["w"] >= 110, geo
    q = 3
    frame.locator('canvas[data-name="head-canvas"]').hover(
        position={"x": geo["leftTextX"] - 5, "y": geo["top"] + (q + 0.5) * geo["rowH"]})
    wait_drawn(frame, hover="q%d" % q)
    a = as_bytes(small_attention(0)[0])
    colors = page_head_colors(frame, 12)
    x, w = geo["kBox"]["x"], geo["kBox"]["w"] / 12
    for h in range(12):
        j = int(np.argmax(a[h, q]))
        px = canvas_pixels(frame, "head-canvas", [(x + (h + 0.5) * w, geo["top"] + j * geo["rowH"] + geo["rowH"] - 2)])[0]
        alpha = a[h, q, j] / 255
        want = [255 * (1 - alpha) + c * alpha for c in colors[h]]
        assert max(abs(p - c) for p, c in zip(px[:3], want)) <= 12, (h, j, px, want)
    # the label stays readable over its box
    y = geo["top"] + (int(np.argmax(a[0, q])) + 0.5) * geo["rowH"]
    assert dark_in(frame, "head-canvas", range(int(geo["rightTextX"]) + 1, int(geo["rightTextX"]) + 25), y, limit=250)
    assert not page.watch.errors


# -- word boundaries in labels (item 4) -------------------------------------------

def test_labels_keep_sub_word_continuations(page, board):
    frame = open_dashboard(page, board, run="small", tag="probe", step=0, layer=0)
    geo = geometry(frame, "head-canvas")
    canvas = frame.locator('canvas[data-name="head-canvas"]')
    said = []
    for i in range(3, 9):
        canvas.hover(position={"x": geo["leftTextX"] - 5, "y": geo["top"] + (i + 0.5) * geo["rowH"]})
        wait_drawn(frame, hover="q%d" % i)
        said.append(frame.text_content('[data-name="head-hover"]'))
    assert said == ["query 3 \u201cun\u201d", "query 4 \u201c##bel\u201d", "query 5 \u201c##ie\u201d",
                    "query 6 \u201c##va\u201d", "query 7 \u201c##bly\u201d", "query 8 \u201cgood\u201d"], said


# -- nothing moves under the pointer (item 7) -------------------------------------

def test_hovering_the_head_view_moves_no_canvas(page, board):
    for run, tag in (("small", "probe"), ("long", "long")):
        frame = open_dashboard(page, board, run=run, tag=tag, step=0, layer=0)
        canvas = frame.locator('canvas[data-name="head-canvas"]')
        before = canvas.bounding_box()
        geo = geometry(frame, "head-canvas")
        for side, x in (("q", geo["leftTextX"] - 5), ("k", geo["rightTextX"] + 5)):
            for row in (1, 7):
                canvas.hover(position={"x": x, "y": geo["top"] + (row + 0.5) * geo["rowH"]})
                wait_drawn(frame, hover="%s%d" % (side, row))
                assert canvas.bounding_box() == before, (run, side, row)
        page.mouse.move(2, 2)
        wait_drawn(frame, hover="")
        assert canvas.bounding_box() == before


# -- the text view (item 6) -------------------------------------------------------

def text_rows(frame):
    """[(step, aria-current, paragraph text, [data-w of each token])] of the text view's rows."""
    return frame.evaluate("""() => [...document.querySelectorAll('[data-name="text-rows"] .tba-text-row')].map((r) => [
        r.dataset.step, r.getAttribute('aria-current') || '', r.querySelector('p').textContent,
        [...r.querySelectorAll('.tba-tok')].map((t) => Number(t.dataset.w))])""")


def test_text_view_shades_the_text_by_the_selected_tokens_attention_at_every_step(page, board):
    frame = open_dashboard(page, board, run="small", tag="probe", step=2, view="text", layer=1, head=4)
    a = [as_bytes(small_attention(s)[1, 4]) for s in (0, 1, 2)]
    rows = text_rows(frame)
    # a row per kept step up to the one shown, the words joined ("unbelievably"), the shown step marked
    assert [(r[0], r[1]) for r in rows] == [("0", ""), ("1", ""), ("2", "step")], rows
    assert rows[0][2] == "[CLS] it was unbelievably good , the cat sat on it [SEP]"
    # nothing selected: the last query; each token shaded by the weight it gets from it
    assert root_attrs(frame)["data-hover"] == "q15"
    assert [r[3] for r in rows] == [a[s][15].tolist() for s in range(3)]
    # the shading is the theme's sequential colour of that weight
    lut = frame.evaluate("""async () => { const m = await import('/data/plugin/attention/static/colors.js');
        return Array.from(m.seqLut(m.THEMES.light)); }""")
    got = frame.evaluate("""() => [...document.querySelectorAll('[data-name="text-rows"] .tba-text-row[data-step="2"] .tba-tok')]
        .map((t) => getComputedStyle(t).backgroundColor)""")
    want = ["rgb(%d, %d, %d)" % tuple(lut[4 * b:4 * b + 3]) for b in a[2][15]]
    assert got == want
    # hover a token: it is the query now
    box = frame.locator('[data-name="text-rows"]')
    before = box.bounding_box()
    frame.hover('.tba-text-row[data-step="1"] .tba-tok[data-i="5"]')
    wait_drawn(frame, hover="q5")
    assert [r[3] for r in text_rows(frame)] == [a[s][5].tolist() for s in range(3)]
    assert box.bounding_box() == before  # recolouring only: nothing moved
    # click pins it (the head view's pinned token); hovering another then reads out their weight
    frame.click('.tba-text-row[data-step="1"] .tba-tok[data-i="5"]')
    wait_drawn(frame, hover="q5")
    frame.wait_for_function("() => document.getElementById('tba').dataset.detail.includes('pinned=1')", timeout=TIMEOUT)
    frame.hover('.tba-text-row[data-step="0"] .tba-tok[data-i="8"]')
    frame.wait_for_function("() => document.querySelector('[data-name=\"text-readout\"]').textContent.startsWith('step 0')",
                            timeout=TIMEOUT)
    w = float(np.float32(a[0][5, 8]) / np.float32(255))
    assert frame.text_content('[data-name="text-readout"]') == \
        "step 0 \u00b7 query 5 \u201c##ie\u201d \u2192 key 8 \u201cgood\u201d: %.3f" % w
    assert box.bounding_box() == before
    assert not page.watch.errors


def test_text_view_shades_by_the_attention_paid_to_a_key(page, board):
    frame = open_dashboard(page, board, run="small", tag="probe", step=1, view="text", layer=0, head=2, tdir="k",
                           tsteps=1, hover="k7")
    a = as_bytes(small_attention(1)[0, 2])
    rows = text_rows(frame)
    assert [r[0] for r in rows] == ["1"]
    assert root_attrs(frame)["data-hover"] == "k7"
    assert rows[0][3] == a[:, 7].tolist()
    assert frame.is_hidden('[data-name="text-picker"]')  # self-attention: the rows are the tokens to pick
    # Export PNG: the rows as drawn, the most attended token's shading in it
    from PIL import Image
    with page.expect_download(timeout=TIMEOUT) as info:
        frame.click('button[data-name="export"]')
    img = Image.open(info.value.path()).convert("RGB")
    lut = frame.evaluate("""async () => { const m = await import('/data/plugin/attention/static/colors.js');
        return Array.from(m.seqLut(m.THEMES.light)); }""")
    b = int(a[:, 7].max())
    colours = {c for _, c in img.getcolors(maxcolors=1 << 20)}
    assert tuple(lut[4 * b:4 * b + 3]) in colours, b


def test_text_view_of_cross_attention_picks_a_decoder_token_and_shades_the_encoders(page, board):
    frame = open_dashboard(page, board, run="t5", tag="translate", step=5, view="text", kind="cross", layer=1, head=2)
    a = as_bytes(t5_record().attention("cross")[1, 2])  # [3 decoder tokens, 7 encoder tokens]
    # SentencePiece: a space where "\u2581" was, as the tokenizer decodes it
    assert frame.text_content('[data-name="text-picker"] p') == "<pad> Hallo</s>"
    assert text_rows(frame)[0][2] == "translate English to German: hello</s>"
    frame.hover('[data-name="text-picker"] .tba-tok[data-i="1"]')
    wait_drawn(frame, hover="q1")
    assert text_rows(frame)[0][3] == a[1].tolist()


# -- aggregates over heads (item 5) -----------------------------------------------

def mean_bytes(maps):
    """The mean of stacked byte maps as the dashboard shows it: rounded half up."""
    n = maps.shape[0]
    return ((2 * maps.astype(np.int64).sum(0) + n) // (2 * n)).astype(np.uint8)


def matrix_bytes(frame, T):
    """Every cell of the matrix view as the byte whose colour it has (nearest in the page's LUT)."""
    geo = geometry(frame, "matrix-canvas")
    lut = np.array(frame.evaluate("""async () => { const m = await import('/data/plugin/attention/static/colors.js');
        return Array.from(m.seqLut(m.THEMES.light)); }"""), np.int64).reshape(256, 4)[:, :3]
    pts = [(geo["ox"] + (j + 0.5) * geo["cell"], geo["oy"] + (i + 0.5) * geo["cell"]) for i in range(T) for j in range(T)]
    px = np.array([p[:3] for p in canvas_pixels(frame, "matrix-canvas", pts)], np.int64)
    nearest = np.abs(px[:, None, :] - lut[None, :, :]).sum(-1).argmin(1)
    return nearest.reshape(T, T)


def test_head_view_shows_the_layers_mean_over_heads(page, board):
    frame = open_dashboard(page, board, run="small", tag="probe", step=0, layer=1, agg="mean")
    m = mean_bytes(as_bytes(small_attention(0)[1]))
    # the numpy oracle: the mean of the quantised heads is the mean of the weights within 1/255
    assert np.abs(m / 255 - small_attention(0)[1].mean(0)).max() <= 1 / 255
    d = detail(frame)
    assert int(d["edges"]) == int(d["candidates"]) == int((m >= 1).sum()), d
    assert root_attrs(frame)["data-agg"] == "mean"
    assert frame.text_content('[data-name="head-note"]').startswith("the mean of layer 1's 12 heads")
    # every head square is off; one click on a head shows that head instead
    assert frame.eval_on_selector_all('button.tba-head[data-head]', "bs => bs.every(b => b.getAttribute('aria-pressed') === 'false')")
    frame.click('button.tba-head[data-head="3"]')
    wait_drawn(frame, heads="3", agg="")
    assert not page.watch.errors


def test_matrix_view_shows_the_mean_and_max_of_the_layer_and_of_all_layers(page, board):
    a = small_attention(2)
    q = as_bytes(a)
    cases = {"mean": (mean_bytes(q[1]), a[1].mean(0)), "max": (q[1].max(0), a[1].max(0)),
             "mean-all": (mean_bytes(q.reshape(24, 16, 16)), a.mean((0, 1))), "max-all": (q.max((0, 1)), a.max((0, 1)))}
    for agg, (want, exact) in cases.items():
        frame = open_dashboard(page, board, run="small", tag="probe", step=2, view="matrix", layer=1, agg=agg)
        assert np.abs(want / 255 - exact).max() <= 1 / 255, agg  # the oracle, against the float weights
        got = matrix_bytes(frame, 16)
        assert np.abs(got - want.astype(np.int64)).max() <= 1, agg  # neighbouring LUT colours may coincide
        # the readout says the aggregate's value
        geo = geometry(frame, "matrix-canvas")
        canvas = frame.locator('canvas[data-name="matrix-canvas"]')
        before = canvas.bounding_box()
        canvas.hover(position={"x": geo["ox"] + 5.5 * geo["cell"], "y": geo["oy"] + 3.5 * geo["cell"]})
        frame.wait_for_selector('[data-name="matrix-readout"][data-cell="3,5"]', timeout=TIMEOUT)
        text = frame.text_content('[data-name="matrix-readout"]')
        assert text.endswith(": %.3f" % (want[3, 5] / 255)), (agg, text)
        assert canvas.bounding_box() == before, agg  # the aggregate's longer readout moves nothing (item 7)
    assert not page.watch.errors


def test_text_view_and_compare_show_an_aggregate(page, board):
    frame = open_dashboard(page, board, run="small", tag="probe", step=1, view="text", layer=0, agg="max", tsteps=1)
    assert text_rows(frame)[0][3] == as_bytes(small_attention(1)[0]).max(0)[15].tolist()
    frame = open_dashboard(page, board, run="small", tag="probe", step=2, view="compare", layer=0, agg="mean",
                           cmode="matrix", brun="small", bstep=0)
    d = detail(frame)
    a2, a0 = (mean_bytes(as_bytes(small_attention(s)[0])).astype(np.float64) / 255 for s in (2, 0))
    assert d["diff"] == "drawn" and abs(float(d["maxabs"]) - np.abs(a0 - a2).max()) < 1e-3, d
    assert "layer 0 \u00b7 mean of layer" in frame.text_content('[data-name="compare-title-diff"]')


def test_the_neuron_view_says_it_shows_one_head(page, board):
    frame = open_dashboard(page, board, run="small", tag="probe", step=0, view="neuron", layer=0, head=2, agg="mean")
    note = frame.text_content('[data-name="head-agg-note"]')
    assert "per head" in note and "mean of layer" in note, note
    assert frame.eval_on_selector('select[data-name="head"]', "s => s.value") == "2"
