"""Records of the architectures with extra score steps and of an image,
captured from real tiny models, written, and served by a real `tensorboard`
(the installed package): what the routes say about them (docs/routes.md).
"""
import base64
import json
import urllib.parse
import warnings

import numpy as np
import pytest
import torch

from tb_attention import AttentionWriter
from tb_attention.capturing import NeuronsNotSupportedWarning, capture
from tests.test_architectures import ids, tiny

PREFIX = "/data/plugin/attention/"
RUN = "archs"


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
    out = {}
    with AttentionWriter(str(root / RUN)) as w:
        for tag, (model, inputs) in models.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NeuronsNotSupportedWarning)
                rec = capture(model, inputs, neurons=True)
            w.add_attention(tag, rec, global_step=7)
            out[tag] = (rec, model)
    return root, out


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
