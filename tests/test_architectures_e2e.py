"""Records of the architectures with extra score steps and of an image,
captured from real tiny models, written, and served by a real `tensorboard`
(the installed package): what the routes say about them (docs/routes.md),
and what the dashboard draws of them in headless Chromium (the neuron view's
soft-cap and sink steps, image mode over a planted patch-to-patch attention).
"""
import base64
import json
import urllib.parse
import warnings

import numpy as np
import pytest
import torch

from tb_attention import AttentionRecord, AttentionWriter, ImageLayout, KindRecord
from tb_attention.capturing import NeuronsNotSupportedWarning, capture
from tests.support.browser import (canvas_pixels, detail, geometry, plugin_frame, root_attrs,
                                  save_screenshot, url, wait_drawn, watched_page)
from tests.sweep import ids, tiny

# the planted image record: query patch (1, 2) of head 0 looks at patch (3, 0);
# head 1 at patch (0, 3); every other row is uniform
GRID = 4
PLANTED_QUERY = 1 + 1 * GRID + 2
PLANTED_KEY = {0: 1 + 3 * GRID + 0, 1: 1 + 0 * GRID + 3}

PREFIX = "/data/plugin/attention/"
RUN = "archs"


@pytest.fixture
def page(browser):
    with watched_page(browser, viewport={"width": 1200, "height": 820}, accept_downloads=True) as p:
        yield p


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """{tag: (record, model)}, written to one run."""
    root = tmp_path_factory.mktemp("archs")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    models = {
        "softcap": (tiny("gemma2", attn_logit_softcapping=0.25), {"input_ids": ids()}),
        "sinks": (tiny("gpt_oss"), {"input_ids": ids()}),
        "image": (tiny("vit"), {"pixel_values": x}),
        "no-neurons": (tiny("granite_swa"), {"input_ids": ids()}),
    }
    out = {"planted": (planted_record(), None)}
    with AttentionWriter(str(root / RUN)) as w:
        w.add_attention("planted", out["planted"][0], global_step=7)
        for tag, (model, inputs) in models.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NeuronsNotSupportedWarning)
                rec = capture(model, inputs, neurons=True)
            w.add_attention(tag, rec, global_step=7)
            out[tag] = (rec, model)
    return root, out


def planted_record():
    T = 1 + GRID * GRID
    a = np.full((1, 2, T, T), 1.0 / T, np.float32)
    for h, key in PLANTED_KEY.items():
        a[0, h, PLANTED_QUERY] = 0.1 / (T - 1)
        a[0, h, PLANTED_QUERY, key] = 0.9
    tokens = ("[CLS]",) + tuple("patch (%d, %d)" % (r, c) for r in range(GRID) for c in range(GRID))
    image = ImageLayout(rows=GRID, cols=GRID, first_patch=1, patch_size=(8, 8), size=(32, 32),
                        thumbnail=np.full((32, 32, 3), 128, np.uint8))
    kind = KindRecord(name="self", attention=a, query_tokens=tokens, key_tokens=tokens, layer_ids=(0,))
    return AttentionRecord([kind], model_type="vit", image=image)


@pytest.fixture(scope="module")
def server(logged, tensorboard_factory):
    tb = tensorboard_factory(logged[0])
    tb.wait_kept({RUN: ("image", 1)})
    tb.wait_kept({RUN: ("softcap", 1)})
    return tb


def route(server, name, **params):
    return server.get(PREFIX + name + "?" + urllib.parse.urlencode(dict(run=RUN, step=7, **params)))


def test_header_holds_the_patch_grid_and_the_thumbnail(server, logged):
    rec = logged[1]["image"][0]
    status, _, body = route(server, "header", tag="image")
    assert status == 200
    image = json.loads(body)["image"]
    assert {k: image[k] for k in ("rows", "cols", "first_patch", "patch_height", "patch_width",
                                  "height", "width", "thumbnail_height", "thumbnail_width")} == dict(
        rows=4, cols=4, first_patch=1, patch_height=8, patch_width=8, height=32, width=32,
        thumbnail_height=32, thumbnail_width=32)
    rgb = np.frombuffer(base64.b64decode(image["thumbnail_rgb"]), np.uint8).reshape(32, 32, 3)
    np.testing.assert_array_equal(rgb, rec.image.thumbnail)
    status, _, body = route(server, "header", tag="softcap")
    assert json.loads(body)["image"] is None


def test_neurons_route_gives_softcap_and_the_heads_sink(server, logged):
    rec = logged[1]["softcap"][0]
    status, headers, _ = route(server, "neurons", tag="softcap", kind="self", layer=1, head=2)
    assert status == 200 and float(headers["X-Neuron-Softcap"]) == 0.25 and headers["X-Neuron-Sink"] == ""
    rec = logged[1]["sinks"][0]
    for layer in (0, 1):
        for head in (0, 3):
            status, headers, _ = route(server, "neurons", tag="sinks", kind="self", layer=layer, head=head)
            assert status == 200 and float(headers["X-Neuron-Softcap"]) == 0
            assert np.float32(float(headers["X-Neuron-Sink"])) == rec.neurons().sinks[layer, head]


def test_a_step_without_neurons_says_why(server):
    status, _, body = route(server, "neurons", tag="no-neurons", kind="self", layer=0, head=0)
    assert status == 404
    assert b"granite_swa" in body and b"applies the sink to its output" in body
    assert b"capture with" not in body


# --------------------------------------------------------------------------
# In Chromium


def readout(frame, name):
    return frame.locator('[data-name="%s"]' % name).text_content()


def hover_row(frame, row, column="soft"):
    """Move the mouse onto a row of the neuron view (row = len(keys): the sink's)."""
    g = geometry(frame, "neuron-canvas")
    box = frame.locator('canvas[data-name="neuron-canvas"]').bounding_box()
    x = g["x"][column] + 20 - g["viewX"]
    y = g["top"] + row * g["rowH"] + g["rowH"] / 2 - g["viewY"]
    frame.page.mouse.move(box["x"] + x, box["y"] + y)


def test_neuron_view_draws_the_softcap_step_with_its_value(server, logged, page):
    rec = logged[1]["softcap"][0]
    page.goto(url(server, run=RUN, tag="softcap", view="neuron", layer=1, head=2, query=6))
    frame = plugin_frame(page)
    wait_drawn(frame, view="neuron", layer=1, head=2, query=6)
    d = detail(frame)
    assert float(d["cap"]) == 0.25 and "sink" not in d
    g = geometry(frame, "neuron-canvas")
    assert g["x"]["scaled"] < g["x"]["capped"] < g["x"]["soft"]  # the step has its own column
    want = rec.attention()[1, 2, 6]
    assert int(d["top"]) == int(np.argmax(want))
    for j in (0, 3, 6):
        hover_row(frame, j)
        text = readout(frame, "neuron-readout")
        got = float(text.split("softmax=")[1])
        assert abs(got - want[j]) < 2e-3, (j, text)
    save_screenshot(page, "neuron-softcap")


def test_neuron_view_draws_the_sink_as_a_row_with_its_weight(server, logged, page):
    rec = logged[1]["sinks"][0]
    page.goto(url(server, run=RUN, tag="sinks", view="neuron", layer=0, head=1, query=5))
    frame = plugin_frame(page)
    wait_drawn(frame, view="neuron", layer=0, head=1, query=5)
    d = detail(frame)
    sink = rec.neurons().sinks[0, 1]
    row = rec.attention()[0, 1, 5]
    assert np.float32(float(d["sink"])) == sink
    assert abs(float(d["sinkp"]) - (1 - row.sum())) < 2e-3  # the weight no key gets
    hover_row(frame, len(row))
    text = readout(frame, "neuron-readout")
    assert text.startswith("sink logit") and abs(float(text.split("softmax=")[1].split()[0]) - (1 - row.sum())) < 2e-3
    hover_row(frame, 2)
    assert abs(float(readout(frame, "neuron-readout").split("softmax=")[1]) - row[2]) < 2e-3
    save_screenshot(page, "neuron-sink")


def patch_center(g, panel, r, c):
    p = g["panels"][panel]
    return (p["x"] + (c + 0.5) * p["w"] / g["cols"], p["y"] + (r + 0.5) * p["h"] / g["rows"])


def distance_from_gray(px):
    return max(abs(v - 128) for v in px[:3])


@pytest.mark.parametrize("view", ["matrix", "head"])
def test_image_mode_draws_a_planted_patch_attention_over_the_thumbnail(server, page, view):
    page.goto(url(server, run=RUN, tag="planted", view=view, query=PLANTED_QUERY))
    frame = plugin_frame(page)
    wait_drawn(frame, view=view, query=PLANTED_QUERY)
    assert detail(frame) == {"image": "1", "query": str(PLANTED_QUERY)}
    canvas = "%s-image" % view
    g = geometry(frame, canvas)
    heads = [0] if view == "matrix" else [0, 1]
    assert [p["head"] for p in g["panels"]] == heads
    for panel, head in enumerate(heads):
        key = PLANTED_KEY[head] - 1
        hot = canvas_pixels(frame, canvas, [patch_center(g, panel, key // GRID, key % GRID)])[0]
        others = [(r, c) for r in range(GRID) for c in range(GRID) if r * GRID + c != key and (r, c) != (1, 2)]
        cold = canvas_pixels(frame, canvas, [patch_center(g, panel, r, c) for r, c in others])
        assert distance_from_gray(hot) > 60, (head, hot)
        assert max(distance_from_gray(px) for px in cold) < 12, (head, cold)
    save_screenshot(page, "image-%s" % view)
    # click patch (0, 1): it becomes the query (and the URL says so)
    box = frame.locator('canvas[data-name="%s"]' % canvas).bounding_box()
    x, y = patch_center(g, 0, 0, 1)
    frame.page.mouse.click(box["x"] + x, box["y"] + y)
    wait_drawn(frame, view=view, query=2)
    page.wait_for_function("() => location.hash.includes('p.attention.query=2')", timeout=30_000)  # URL written
    # the [CLS] button above the image: query 0, its attention spread over every patch
    frame.locator('[data-name="image-prefix-token"]').click()
    wait_drawn(frame, view=view, query=0)


@pytest.mark.parametrize("view,agg", [("head", "mean"), ("matrix", "max")])
def test_image_mode_of_an_aggregate_over_heads_is_one_panel_named_for_it(server, page, view, agg):
    """Issue 16's aggregates in image mode: one panel, named for the aggregate
    (not "head 0"), hot on both heads' planted patches (0.45 each in the
    mean, 0.9 in the max)."""
    page.goto(url(server, run=RUN, tag="planted", view=view, query=PLANTED_QUERY, agg=agg))
    frame = plugin_frame(page)
    wait_drawn(frame, view=view, query=PLANTED_QUERY, agg=agg)
    canvas = "%s-image" % view
    g = geometry(frame, canvas)
    assert [p["head"] for p in g["panels"]] == ["%s of layer" % agg]
    keys = [PLANTED_KEY[h] - 1 for h in (0, 1)]
    hot = canvas_pixels(frame, canvas, [patch_center(g, 0, k // GRID, k % GRID) for k in keys])
    assert min(distance_from_gray(px) for px in hot) > 60, hot
    assert not page.watch.errors


def test_image_mode_off_draws_the_view_as_usual(server, page):
    page.goto(url(server, run=RUN, tag="planted", view="matrix", image=0))
    frame = plugin_frame(page)
    wait_drawn(frame, view="matrix")
    assert "image" not in detail(frame)
    assert frame.locator('[data-name="matrix-image-view"]').is_hidden()
    frame.locator('[data-name="image-mode"]').check()
    wait_drawn(frame, view="matrix", detail="image=1;query=0")


def test_a_real_vit_step_opens_in_image_mode(server, logged, page):
    page.goto(url(server, run=RUN, tag="image", view="head"))
    frame = plugin_frame(page)
    wait_drawn(frame, view="head")
    assert detail(frame)["image"] == "1"
    g = geometry(frame, "head-image")
    assert len(g["panels"]) == 4 and (g["rows"], g["cols"], g["first_patch"]) == (4, 4, 1)
    save_screenshot(page, "image-vit")
