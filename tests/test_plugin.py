"""The plugin backend (tb_attention/plugin.py) against real TensorBoard parts.

One logdir per module (tests/support/logdirs.py: build_logdir), written by
AttentionWriter (plus hand-built event files for damage that the writer never
produces, torch SummaryWriter logs and foreign files). Three backends answer the same HTTP routes:

- "wsgi":   TensorBoard's own WSGI app (application.TensorBoardWSGIApp) with
            TensorBoard's default sample sizes, over a real EventMultiplexer and
            MultiplexerDataProvider, in process, through werkzeug's test client;
- "rust":   a `tensorboard --load_fast=true` subprocess (Rust data server);
- "python": a `tensorboard --load_fast=false` subprocess (Python loader).

Both subprocesses run the INSTALLED package (`pip install .`), started once
per module and shared by the tests. Expected bytes are computed here from the
float arrays that were written, never read back through the code under test.
"""
import glob
import json
import os
import sysconfig
import urllib.parse

import numpy as np
import pytest

from tb_attention import codec, metadata
from tb_attention import plugin as plugin_module
from tb_attention import store as store_module
from tests.support import installed_package, wait_until
from tests.support.backends import (CTX, PREFIX, ServerBackend, WsgiBackend, attention_listing, kept_data,
                                    url)
from tests.support.logdirs import ATTENTION_RUNS, HOSTILE, build_logdir, live_log
from tests.support.records import stored


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    log = build_logdir(tmp_path_factory.mktemp("logdir"))
    live_log(log, 0)
    yield log
    log.live_writer.close()


# ---------------------------------------------------------------------------
# Backends


def fully_loaded(backend, log):
    """Every (run, tag) the backend must show lists its newest surviving step."""
    r = backend.get(url("tags"))
    if r.status != 200:
        return False
    listed = {(run["run"], t["tag"]): t["max_step"] for run in r.json()["runs"] for t in run["tags"]}
    newest = {key: step[backend.name] if isinstance(step, dict) else step for key, step in log.newest.items()}
    return all(key in listed and listed[key] == step for key, step in newest.items())


@pytest.fixture(scope="module")
def backends(logdir, tensorboard_factory):
    """name -> backend, started on first use: one tensorboard per loader per module."""
    made = {}

    def get(name):
        if name not in made:
            if name == "wsgi":
                b = WsgiBackend(logdir.root)
            else:
                b = ServerBackend(tensorboard_factory(logdir.root, load_fast=(name == "rust")), name)
            wait_until(lambda: fully_loaded(b, logdir), timeout=90, what="%s to load the logdir" % name)
            made[name] = b
        return made[name]

    return get


@pytest.fixture(params=["wsgi", "rust", "python"])
def backend(request, backends):
    return backends(request.param)


def tags_of(backend):
    """{(run, tag): the tags route's entry merged with the steps route's answer}."""
    def get_json(path):
        r = backend.get(path)
        assert r.status == 200, (path, r)
        return r.json()
    return {(run, tag): entry for run, tags in attention_listing(get_json, PREFIX).items()
            for tag, entry in tags.items()}


def assert_immutable(r):
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "private, max-age=86400, immutable", r.headers


def version(backend, run, tag, step):
    """The step's `v` as the steps route lists it (what the frontend puts in step URLs)."""
    r = backend.get(url("steps", run=run, tag=tag))
    assert r.status == 200, r
    body = r.json()
    return body["versions"][body["steps"].index(step)]


def assert_not_cached(r):
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-cache" in r.headers["Cache-Control"] and "max-age" not in r.headers["Cache-Control"]


def get_attention(backend, run, tag, step, kind="self", **params):
    v = version(backend, run, tag, step)
    r = backend.get(url("attention", run=run, tag=tag, step=step, kind=kind, v=v, **params))
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert_immutable(r)
    shape = tuple(int(x) for x in r.headers["X-Attention-Shape"].split(","))
    dtype = {"uint8": np.uint8, "float16": np.dtype("<f2")}[r.headers["X-Attention-Dtype"]]
    array = np.frombuffer(r.body, dtype).reshape(shape)  # raises if the length is wrong
    return array, r


# ---------------------------------------------------------------------------
# Metadata routes


def test_tags_lists_kinds_counts_and_kept_vs_written(backend, logdir):
    r = backend.get(url("tags"))
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    assert_not_cached(r)  # new steps arrive: the listing must never be cached
    runs = [run["run"] for run in r.json()["runs"]]
    assert runs == sorted(runs) and set(runs) == ATTENTION_RUNS
    # The listing names runs and probes (and each probe's newest step), no
    # step lists: those come from the steps route, one probe at a time.
    train = {t["tag"]: t for run in r.json()["runs"] if run["run"] == "train" for t in run["tags"]}
    assert train["probe"] == {"tag": "probe", "max_step": 290}
    r = backend.get(url("steps", run="train", tag="probe"))
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    assert_not_cached(r)  # new steps arrive: the step list must never be cached
    assert r.json()["run"] == "train" and r.json()["tag"] == "probe"

    tags = tags_of(backend)
    probe = tags[("train", "probe")]
    # TensorBoard keeps 10 of the 30 logged steps by default, always the newest.
    assert probe["kept"] == 10 == len(probe["steps"]) and probe["written"] == 30
    assert probe["steps"] == sorted(probe["steps"]) and probe["steps"][-1] == 290
    assert set(probe["steps"]) <= set(logdir.written[("train", "probe")])
    assert probe["model_type"] == ""
    assert probe["kinds"] == [{"name": "self", "layer_ids": [0, 2], "num_heads": 3, "query_len": len(HOSTILE),
                               "key_len": len(HOSTILE), "has_neurons": False, "causal": False}]
    neurons = tags[("train", "neurons")]
    assert neurons["model_type"] == "gpt2" and neurons["kept"] == neurons["written"] == 1
    assert neurons["kinds"][0]["has_neurons"] is True and neurons["kinds"][0]["causal"] is True

    translate = tags[("encdec", "translate")]
    assert translate["steps"] == [0, 5] and translate["kept"] == translate["written"] == 2
    assert translate["model_type"] == "bart"
    assert [(k["name"], k["query_len"], k["key_len"], k["has_neurons"], k["causal"], k["num_heads"])
            for k in translate["kinds"]] == [("encoder", 5, 5, False, False, 2), ("decoder", 4, 4, False, True, 2),
                                             ("cross", 4, 5, True, False, 2)]
    assert tags[("torch", "probe")]["steps"] == [0, 2, 4]
    assert tags[("group/ü run", "probe")]["steps"] == [3]
    assert tags[("fp16", "long")]["kinds"][0]["query_len"] == 130
    # Only attention tags: the torch run's scalars and images are not listed.
    assert {tag for run, tag in tags if run == "torch"} == {"probe"}


def test_header_gives_tokens_exactly_and_segments(backend, logdir):
    r = backend.get(url("header", run="train", tag="probe", step=290,
                        v=version(backend, "train", "probe", 290)))
    assert r.status == 200
    assert_immutable(r)
    header = r.json()
    assert header["step"] == 290 and header["sequence"] == 29 and header["model_type"] == ""
    assert isinstance(header["wall_time"], float)
    (kind,) = header["kinds"]
    assert kind["query_tokens"] == HOSTILE and kind["key_tokens"] == HOSTILE
    assert kind["query_segment_b"] == 3 and kind["key_segment_b"] == 3
    assert kind["dtype"] == "uint8" and kind["num_heads"] == 3 and kind["layer_ids"] == [0, 2]
    assert kind["head_dim"] == 0 and kind["has_neurons"] is False
    # JSON, never HTML: the hostile token travels as a JSON string.
    assert b"<img src=x onerror=alert(1)>" in r.body and b"text/html" not in r.body

    kinds = {k["name"]: k for k in backend.get(url("header", run="encdec", tag="translate", step=5)).json()["kinds"]}
    assert kinds["cross"]["query_tokens"] == ["<s>", "the", "cat", "</s>"]
    assert kinds["cross"]["key_tokens"] == ["<s>", "le", "chat", "</s>", "<pad>"]
    assert kinds["cross"]["head_dim"] == 3 and kinds["encoder"]["head_dim"] == 0
    assert backend.get(url("header", run="fp16", tag="probe", step=1)).json()["kinds"][0]["dtype"] == "float16"
    # Invalid UTF-8 from a foreign writer becomes U+FFFD instead of failing.
    foreign = backend.get(url("header", run="tampered", tag="probe", step=0)).json()["kinds"][0]
    assert foreign["query_tokens"] == ["\ufffdab", "b", "c", "d"] and foreign["key_tokens"] == list("abcd")


# ---------------------------------------------------------------------------
# Binary routes


def expected_layer(logdir, run, tag, step, kind, layer):
    record, dtype = logdir.written[(run, tag)][step]
    k = record.kind(kind)
    return stored(k.attention[list(k.layer_ids).index(layer)], dtype)


def test_attention_is_the_stored_bytes_for_a_layer_and_a_head(backend, logdir):
    steps = tags_of(backend)[("train", "probe")]["steps"]
    for step in (steps[0], steps[-1]):
        for layer in (0, 2):
            want = expected_layer(logdir, "train", "probe", step, "self", layer)
            array, r = get_attention(backend, "train", "probe", step, layer=layer)
            assert r.headers["X-Attention-Shape"] == "3,%d,%d" % (len(HOSTILE), len(HOSTILE))
            assert r.headers["X-Attention-Dtype"] == "uint8"
            assert r.body == want.tobytes()
            for head in (0, 2):
                one, r = get_attention(backend, "train", "probe", step, layer=layer, head=head)
                assert r.headers["X-Attention-Shape"] == "1,%d,%d" % (len(HOSTILE), len(HOSTILE))
                assert r.body == want[head].tobytes()

    # float16: little-endian halves, as written.
    for step in (0, 2):
        want = expected_layer(logdir, "fp16", "probe", step, "self", 1)
        array, r = get_attention(backend, "fp16", "probe", step, layer=1)
        assert r.headers["X-Attention-Dtype"] == "float16" and r.headers["X-Attention-Shape"] == "2,7,7"
        assert r.body == want.tobytes()
        _, r = get_attention(backend, "fp16", "probe", step, layer=1, head=1)
        assert r.body == want[1].tobytes()

    # Cross attention is not square.
    want = expected_layer(logdir, "encdec", "translate", 5, "cross", 1)
    array, r = get_attention(backend, "encdec", "translate", 5, kind="cross", layer=1)
    assert r.headers["X-Attention-Shape"] == "2,4,5" and r.body == want.tobytes()
    # A torch SummaryWriter's file shared with scalars and images.
    want = expected_layer(logdir, "torch", "probe", 2, "self", 0)
    assert get_attention(backend, "torch", "probe", 2, layer=0)[1].body == want.tobytes()
    want = expected_layer(logdir, "group/ü run", "probe", 3, "self", 0)
    assert get_attention(backend, "group/ü run", "probe", 3, layer=0)[1].body == want.tobytes()


def test_attention_aggregates_over_heads_of_a_layer_and_of_every_layer(backend, logdir):
    """head=mean|max: of the stored maps (the mean of bytes rounded half up),
    within 1/255 of numpy's mean of the weights that were logged."""
    step = tags_of(backend)[("train", "probe")]["steps"][-1]
    record, _ = logdir.written[("train", "probe")][step]
    weights = record.kind("self").attention  # float [L, H, T, T] as logged
    stacks = {layer: expected_layer(logdir, "train", "probe", step, "self", layer) for layer in (0, 2)}
    stacks["all"] = np.concatenate([stacks[0], stacks[2]])
    floats = {0: weights[0], 2: weights[1], "all": weights.reshape(-1, *weights.shape[2:])}
    for layer, maps in stacks.items():
        mean, r = get_attention(backend, "train", "probe", step, layer=layer, head="mean")
        assert r.headers["X-Attention-Dtype"] == "uint8" and mean.shape == (1,) + maps.shape[1:], r.headers
        n = maps.shape[0]
        assert (mean[0] == (2 * maps.sum(0, dtype=np.int64) + n) // (2 * n)).all(), layer
        assert np.abs(mean[0] / 255 - floats[layer].mean(0)).max() <= 1 / 255 + 1e-6, layer
        top, _ = get_attention(backend, "train", "probe", step, layer=layer, head="max")
        assert (top[0] == maps.max(0)).all(), layer
    # float16 layers aggregate as floats and answer float16
    halves = expected_layer(logdir, "fp16", "probe", 2, "self", 1).astype(np.float32)
    mean, r = get_attention(backend, "fp16", "probe", 2, layer=1, head="mean")
    assert r.headers["X-Attention-Dtype"] == "float16"
    np.testing.assert_allclose(mean[0].astype(np.float32), halves.mean(0), atol=1e-3)


def numpy_max_pool(maps, p):
    """[.., Tq, Tk] max over p x p cells (the last ones partial), by reduceat."""
    idx_q, idx_k = np.arange(0, maps.shape[-2], p[0]), np.arange(0, maps.shape[-1], p[1])
    return np.maximum.reduceat(np.maximum.reduceat(maps, idx_q, axis=-2), idx_k, axis=-1)


def get_overview(backend, run, tag, step, kind="self", **params):
    v = version(backend, run, tag, step)
    r = backend.get(url("overview", run=run, tag=tag, step=step, kind=kind, v=v, **params))
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/octet-stream" and r.headers["X-Attention-Dtype"] == "uint8"
    assert_immutable(r)
    shape = tuple(int(x) for x in r.headers["X-Attention-Shape"].split(","))
    pools = tuple(int(x) for x in r.headers["X-Overview-Pool"].split(","))
    return np.frombuffer(r.body, np.uint8).reshape(shape), pools


def test_overview_max_pools_every_layer_and_head(backend, logdir):
    record, _ = logdir.written[("train", "long")][0]
    full = stored(record.attention(), "uint8")  # [2, 2, 130, 130]
    pooled, pools = get_overview(backend, "train", "long", 0, size=64)
    # ceil(130 / 64) = 3 tokens per cell, ceil(130 / 3) = 44 cells.
    assert pools == (3, 3) and pooled.shape == (2, 2, 44, 44)
    assert np.array_equal(pooled, numpy_max_pool(full, (3, 3)))
    assert pooled[1, 0, 2, 43] == full[1, 0, 6:9, 129].max()  # a partial last cell
    default, pools = get_overview(backend, "train", "long", 0)  # size defaults to 64
    assert pools == (3, 3) and np.array_equal(default, pooled)
    for size in (130, 512):  # fits: no pooling
        same, pools = get_overview(backend, "train", "long", 0, size=size)
        assert pools == (1, 1) and np.array_equal(same, full)
    tiny, pools = get_overview(backend, "train", "long", 0, size=1)
    assert pools == (130, 130) and np.array_equal(tiny[..., 0, 0], full.max(axis=(2, 3)))

    # A short record is not pooled.
    step = tags_of(backend)[("train", "probe")]["steps"][-1]
    short, pools = get_overview(backend, "train", "probe", step)
    record, _ = logdir.written[("train", "probe")][step]
    assert pools == (1, 1) and np.array_equal(short, stored(record.attention(), "uint8"))
    # Not square: 4 queries x 5 keys into at most 2 x 2 cells.
    cross, pools = get_overview(backend, "encdec", "translate", 0, kind="cross", size=2)
    want = stored(logdir.written[("encdec", "translate")][0][0].attention("cross"), "uint8")
    assert pools == (2, 3) and cross.shape == (2, 2, 2, 2)
    assert np.array_equal(cross, numpy_max_pool(want, (2, 3)))
    # float16 maps are pooled, then given as uint8 like every overview.
    record, _ = logdir.written[("fp16", "long")][0]
    halves = record.attention().astype("<f2").astype(np.float32)
    pooled, pools = get_overview(backend, "fp16", "long", 0, size=64)
    assert pools == (3, 3) and pooled.shape == (1, 2, 44, 44)
    assert np.array_equal(pooled, stored(numpy_max_pool(halves, (3, 3)), "uint8"))


def test_neurons_are_the_written_queries_keys_bias_and_mask(backend, logdir):
    record, _ = logdir.written[("train", "neurons")][0]
    n = record.neurons("self")
    T, D = 6, 4
    for layer, i in ((0, 0), (2, 1)):
        r = backend.get(url("neurons", run="train", tag="neurons", step=0, kind="self", layer=layer,
                            head=1, v=version(backend, "train", "neurons", 0)))
        assert r.status == 200, r
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert_immutable(r)
        assert r.headers["X-Neuron-Shape"] == "%d,%d,%d" % (T, T, D) and r.headers["X-Neuron-Has-Bias"] == "1"
        assert np.float32(float(r.headers["X-Neuron-Scale"])) == n.scales[i]
        want = (n.queries[i, 1].astype("<f2").tobytes() + n.keys[i, 1].astype("<f2").tobytes()
                + n.masked[i].astype(np.uint8).tobytes() + n.bias[i, 1].astype("<f2").tobytes())
        assert r.body == want
    # Cross attention without a bias: queries [4, 3], keys [5, 3], mask [4, 5].
    record, _ = logdir.written[("encdec", "translate")][5]
    n = record.neurons("cross")
    r = backend.get(url("neurons", run="encdec", tag="translate", step=5, kind="cross", layer=1, head=0))
    assert r.status == 200 and r.headers["X-Neuron-Shape"] == "4,5,3" and r.headers["X-Neuron-Has-Bias"] == "0"
    assert r.body == (n.queries[1, 0].astype("<f2").tobytes() + n.keys[1, 0].astype("<f2").tobytes()
                      + n.masked[1].astype(np.uint8).tobytes())
    # No neurons logged: 404 saying how to log them.
    for run, tag, step, kind in (("train", "probe", 290, "self"), ("encdec", "translate", 5, "encoder")):
        r = backend.get(url("neurons", run=run, tag=tag, step=step, kind=kind, layer=0, head=0))
        assert r.status == 404 and "neurons=True" in r.error(), r
        assert_not_cached(r)


# ---------------------------------------------------------------------------
# Errors


NOT_FOUND = [  # (route, params, what the message must name)
    ("header", dict(run="nope", tag="probe", step=0), "'nope'"),
    ("header", dict(run="train", tag="nope", step=0), "'nope'"),
    ("header", dict(run="train", tag="probe", step=7), "step 7"),
    ("header", dict(run="train", tag="probe", step=2 ** 40), "step %d" % 2 ** 40),
    ("attention", dict(run="train", tag="probe", step=290, kind="cross", layer=0), "'cross'"),
    ("attention", dict(run="train", tag="probe", step=290, kind="bogus", layer=0), "'bogus'"),
    ("attention", dict(run="train", tag="probe", step=290, kind="self", layer=1), "layer 1"),
    ("attention", dict(run="train", tag="probe", step=290, kind="self", layer=0, head=3), "head 3"),
    ("attention", dict(run="train", tag="probe", step=290, kind="self", layer=1, head="mean"), "layer 1"),
    ("overview", dict(run="train", tag="probe", step=7, kind="self"), "step 7"),
    ("neurons", dict(run="train", tag="neurons", step=0, kind="self", layer=5, head=0), "layer 5"),
    ("neurons", dict(run="train", tag="neurons", step=0, kind="self", layer=0, head=9), "head 9"),
    ("attention", dict(run="encdec", tag="translate", step=5, kind="self", layer=0), "'self'"),
    # Runs and tags that exist, but without attention.
    ("header", dict(run="scalars_only", tag="loss", step=0), "'scalars_only'"),
    ("header", dict(run="torch", tag="loss", step=0), "'loss'"),
    ("header", dict(run="empty", tag="probe", step=0), "'empty'"),
    ("header", dict(run="garbage", tag="probe", step=0), "'garbage'"),
    ("steps", dict(run="nope", tag="probe"), "'nope'"),
    ("steps", dict(run="train", tag="nope"), "'nope'"),
    ("steps", dict(run="scalars_only", tag="loss"), "'scalars_only'"),
]


@pytest.mark.parametrize("route,params,named", NOT_FOUND)
def test_unknown_things_are_404_with_a_json_message_naming_them(backend, route, params, named):
    r = backend.get(url(route, **params))
    assert r.status == 404, r
    assert named in r.error(), r
    assert_not_cached(r)  # the step may appear on the next reload


def test_a_step_sampled_away_says_how_to_keep_all(backend, logdir):
    kept = tags_of(backend)[("train", "probe")]["steps"]
    dropped = min(set(logdir.written[("train", "probe")]) - set(kept))
    r = backend.get(url("header", run="train", tag="probe", step=dropped))
    assert r.status == 404 and "--samples_per_plugin=attention=0" in r.error(), r


STEP = dict(run="train", tag="probe", step=290)
BAD_PARAMS = [  # (route, params, what the message must name)
    ("header", dict(STEP, step="abc"), "'step'"),
    ("header", dict(STEP, step="-1"), "'step'"),
    ("header", dict(STEP, step="1.5"), "'step'"),
    ("header", dict(STEP, step="2_90"), "'step'"),  # int() would read 290
    ("header", dict(STEP, step="+290"), "'step'"),
    ("header", dict(STEP, step=" 290"), "'step'"),
    ("header", dict(STEP, step="٢٩٠"), "'step'"),  # Arabic-Indic digits: int() would read 290
    ("header", dict(STEP, step=""), "'step'"),
    ("header", dict(STEP, step=str(2 ** 63)), "'step'"),
    ("header", dict(STEP, step="9" * 5000), "'step'"),
    ("header", dict(run="train", tag="probe"), "'step'"),
    ("header", dict(tag="probe", step=290), "'run'"),
    ("header", dict(run="train", step=290), "'tag'"),
    ("steps", dict(tag="probe"), "'run'"),
    ("steps", dict(run="train"), "'tag'"),
    ("attention", dict(STEP, layer=0), "'kind'"),
    ("attention", dict(STEP, kind="self"), "'layer'"),
    ("attention", dict(STEP, kind="self", layer="1.5"), "'layer'"),
    ("attention", dict(STEP, kind="self", layer="-2"), "'layer'"),
    ("attention", dict(STEP, kind="self", layer=str(2 ** 31)), "'layer'"),
    ("attention", dict(STEP, kind="self", layer="1" * 40), "'layer'"),
    ("attention", dict(STEP, kind="self", layer=0, head="-1"), "'head'"),
    ("attention", dict(STEP, kind="self", layer=0, head="x"), "'head'"),
    ("attention", dict(STEP, kind="self", layer=0, head="9" * 100), "'head'"),
    ("attention", dict(STEP, kind="self", layer=0, head="median"), "mean or max"),
    ("attention", dict(STEP, kind="self", layer="all"), "head=mean or head=max"),
    ("attention", dict(STEP, kind="self", layer="all", head=0), "head=mean or head=max"),
    ("overview", dict(STEP, kind="self", size=0), "'size'"),
    ("overview", dict(STEP, kind="self", size=10000), "'size'"),
    ("overview", dict(STEP, kind="self", size="big"), "'size'"),
    ("overview", dict(STEP, kind="self", size="-64"), "'size'"),
    ("neurons", dict(run="train", tag="neurons", step=0, kind="self", layer=0), "'head'"),
]


@pytest.mark.parametrize("route,params,named", BAD_PARAMS)
def test_malformed_parameters_are_400_with_a_json_message(backend, route, params, named):
    r = backend.get(url(route, **params))
    assert r.status == 400, r
    assert named in r.error(), r
    assert_not_cached(r)


def test_a_payload_failing_its_checksum_fails_only_that_step(backend, logdir):
    """Event records intact (TensorBoard keeps them), payloads damaged."""
    tags = tags_of(backend)
    assert tags[("tampered", "probe")]["steps"] == [0, 1, 2, 3, 4]
    assert tags[("tampered", "probe")]["kinds"][0]["num_heads"] == 2

    def attention(step, layer):
        return backend.get(url("attention", run="tampered", tag="probe", step=step, kind="self", layer=layer))

    def corrupt(r, *names):
        assert r.status == 500, r
        message = r.error()
        assert "corrupt" in message and all(name in message for name in names), message
        assert_not_cached(r)

    corrupt(attention(1, 1), "step 1", "layer 1", "checksum")  # one byte flipped
    corrupt(attention(2, 0), "step 2", "layer 0", "truncated")  # cut short
    corrupt(attention(3, 0), "step 3", "header")  # the header blob
    corrupt(backend.get(url("header", run="tampered", tag="probe", step=3)), "step 3")
    corrupt(backend.get(url("overview", run="tampered", tag="probe", step=1, kind="self")), "layer 1")
    # Everything else of those steps, and the neighbours, still loads.
    for step, layer in ((1, 0), (2, 1), (0, 0), (0, 1), (4, 0), (4, 1)):
        r = attention(step, layer)
        assert r.status == 200, r
        assert r.body == expected_layer(logdir, "tampered", "probe", step, "self", layer).tobytes()
    assert backend.get(url("overview", run="tampered", tag="probe", step=4, kind="self")).status == 200

    # A corrupt newest step does not hide the tag: it is described by the
    # newest readable step, with the error alongside.
    bad_newest = tags[("tampered", "bad_newest")]
    assert bad_newest["steps"] == [0, 1] and bad_newest["kinds"][0]["num_heads"] == 2
    assert "step 1" in bad_newest["error"] and "corrupt" in bad_newest["error"]
    # hand-computed: step 0 is sequence 7, so 8 steps up to it, plus step 1
    # (unreadable, but written); len(data) alone would say 2
    assert bad_newest["written"] == 9
    r = backend.get(url("attention", run="tampered", tag="bad_newest", step=0, kind="self", layer=0))
    assert r.status == 200 and r.body == expected_layer(logdir, "tampered", "bad_newest", 0, "self", 0).tobytes()
    # A step from a newer tb-attention says to upgrade.
    r = backend.get(url("header", run="tampered", tag="future", step=0))
    assert r.status == 500 and "upgrade tb-attention" in r.error()
    assert "upgrade tb-attention" in tags[("tampered", "future")]["error"]


def test_a_tag_whose_plugin_metadata_is_newer_is_listed_saying_to_upgrade(backend, logdir):
    """Its tag is listed with the reason (not a 500); its steps show as far
    as their own headers are readable (a step header's version decides)."""
    r = backend.get(url("tags"))
    assert r.status == 200
    listed = {(run["run"], t["tag"]): t for run in r.json()["runs"] for t in run["tags"]}
    entry = listed[("tampered", "newer_metadata")]
    assert entry["max_step"] == 0
    assert "format version %d" % (metadata.FORMAT_VERSION + 1) in entry["error"]
    assert "upgrade tb-attention" in entry["error"]
    assert all("error" not in t for key, t in listed.items() if key != ("tampered", "newer_metadata"))
    steps = backend.get(url("steps", run="tampered", tag="newer_metadata"))
    assert steps.status == 200, steps
    body = steps.json()
    assert body["steps"] == [0] and body["kinds"][0]["num_heads"] == 2 and body["error"] == entry["error"]
    r = backend.get(url("attention", run="tampered", tag="newer_metadata", step=0, kind="self", layer=0))
    assert r.status == 200 and r.body == expected_layer(logdir, "tampered", "newer_metadata", 0, "self", 0).tobytes()


def test_a_record_failing_the_event_file_crc_is_absent_or_reported_corrupt(backend, logdir):
    """A byte flipped inside a layer payload of step 2 in the event file.

    Python loader: the record fails its CRC and is dropped; TensorBoard's
    reader then stops in that file (steps 3 and 4 are gone too, and so would
    be anything appended later: TensorBoard's reader, not the plugin).
    Rust data server: records that parse are not checksummed by default, so
    step 2 arrives damaged; the plugin's own CRC turns it into a clear 500 for
    that layer while the rest of the step and every other step load."""
    steps = tags_of(backend)[("crcbroken", "probe")]["steps"]

    def attention(step, layer):
        return backend.get(url("attention", run="crcbroken", tag="probe", step=step, kind="self", layer=layer))

    if backend.name == "rust":
        assert steps == [0, 1, 2, 3, 4]
        r = attention(2, 1)
        assert r.status == 500 and "corrupt" in r.error() and "layer 1" in r.error(), r
        intact = [(s, layer) for s in steps for layer in (0, 1) if (s, layer) != (2, 1)]
    else:
        assert steps == [0, 1]
        r = backend.get(url("header", run="crcbroken", tag="probe", step=2))
        assert r.status == 404 and "step 2" in r.error()
        intact = [(s, layer) for s in steps for layer in (0, 1)]
    for step, layer in intact:
        r = attention(step, layer)
        assert r.status == 200 and r.body == expected_layer(logdir, "crcbroken", "probe", step, "self", layer).tobytes()


def test_a_truncated_event_file_keeps_its_earlier_steps(backend, logdir):
    steps = tags_of(backend)[("truncated", "probe")]["steps"]
    assert steps == [0, 1, 2, 3]
    for step in steps:
        r = backend.get(url("attention", run="truncated", tag="probe", step=step, kind="self", layer=1))
        assert r.status == 200 and r.body == expected_layer(logdir, "truncated", "probe", step, "self", 1).tobytes()
    r = backend.get(url("attention", run="truncated", tag="probe", step=4, kind="self", layer=1))
    assert r.status == 404 and "step 4" in r.error()


def test_other_plugins_logs_and_foreign_files_are_left_alone(backend):
    # TensorBoard itself still works on the same logdir (the in-process app
    # has no core plugin, so no /data/runs)...
    assert backend.get("/data/plugins_listing").status == 200
    if backend.name != "wsgi":
        for path in ("/data/runs", "/data/environment"):
            r = backend.get(path)
            assert r.status == 200, (path, r)
        assert {"torch", "scalars_only"} <= set(json.loads(backend.get("/data/runs").body))
    # ...and the scalars that share the torch run's event file with our
    # attention are all there.
    r = backend.get("/data/plugin/scalars/scalars?" + urllib.parse.urlencode(dict(run="torch", tag="loss")))
    assert r.status == 200, r
    assert [p[1] for p in json.loads(r.body)] == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------
# Live data


def test_a_step_written_after_start_appears_after_reload(backend, logdir):
    step = 10 + len(logdir.live_steps)
    record = live_log(logdir, step)

    def listed():
        backend.reload()
        return step in tags_of(backend)[("live", "probe")]["steps"]

    wait_until(listed, timeout=60, what="%s to show live step %d" % (backend.name, step))
    _, r = get_attention(backend, "live", "probe", step, layer=1)
    assert r.body == stored(record.attention()[1], "uint8").tobytes()
    header = backend.get(url("header", run="live", tag="probe", step=step)).json()
    assert header["kinds"][0]["query_tokens"] == list("live")


# ---------------------------------------------------------------------------
# Both loaders, same bytes


def test_both_loaders_and_the_wsgi_app_give_identical_bytes(backends, logdir):
    rust, python, wsgi = backends("rust"), backends("python"), backends("wsgi")
    tags = {b.name: tags_of(b) for b in (rust, python, wsgi)}
    assert set(tags["rust"]) == set(tags["python"]) == set(tags["wsgi"])
    compared = 0
    for (run, tag), entry in sorted(tags["rust"].items()):
        if run == "live":
            continue
        common = sorted(set(entry["steps"]) & set(tags["python"][(run, tag)]["steps"])
                        & set(tags["wsgi"][(run, tag)]["steps"]))
        assert common
        if run != "crcbroken":  # where the loaders differ on purpose (see above)
            assert common[-1] == entry["steps"][-1]  # the newest is always kept
        for step in common[-2:]:
            base = dict(run=run, tag=tag, step=step)
            paths = [url("header", **base)]
            for kind in entry["kinds"]:
                with_kind = dict(base, kind=kind["name"])
                paths.append(url("overview", **with_kind))
                for layer in kind["layer_ids"]:
                    paths.append(url("attention", layer=layer, **with_kind))
                    paths.append(url("attention", layer=layer, head=kind["num_heads"] - 1, **with_kind))
                    if kind["has_neurons"]:
                        paths.append(url("neurons", layer=layer, head=0, **with_kind))
            for path in paths:
                answers = [b.get(path) for b in (rust, python, wsgi)]
                assert len({a.status for a in answers}) == 1, (path, answers)
                assert answers[0].body == answers[1].body == answers[2].body, path
                compared += answers[0].status == 200
                for name in ("X-Attention-Shape", "X-Attention-Dtype", "X-Overview-Pool", "X-Neuron-Shape",
                             "X-Neuron-Scale", "X-Neuron-Has-Bias", "Content-Type"):
                    assert len({a.headers.get(name) for a in answers}) == 1, (path, name)
    assert compared > 50


def test_plugins_listing_names_the_attention_tab(backend):
    r = backend.get("/data/plugins_listing")
    assert r.status == 200, r
    entry = json.loads(r.body)["attention"]
    assert entry["enabled"] is True and entry["tab_name"] == "Attention"
    assert entry["loading_mechanism"] == {"type": "IFRAME", "module_path": PREFIX + "static/index.js"}


# ---------------------------------------------------------------------------
# Static files


TRAVERSALS = [
    "../secret.js", "%2e%2e/secret.js", "%2E%2E%2Fsecret.js", "views/../../secret.js", "views/%2e%2e/%2e%2e/secret.js",
    "..%5csecret.js", "views%5c..%5c..%5csecret.js", "SECRET_ABS", "%2FSECRET_ABS", "link.js", "index.js%00.txt",
    "index.js%00", "..", "", "views", "nope.js", "../frontend/../secret.txt", "index.py",
]


def test_static_files_are_served_with_types_and_never_outside_the_frontend(logdir, tmp_path, monkeypatch):
    root = tmp_path / "frontend"
    (root / "views").mkdir(parents=True)
    (root / "index.js").write_text("export function render() {}\n")
    (root / "views" / "heads.js").write_text("export const heads = 1;\n")
    (root / "style.css").write_text("body { margin: 0 }\n")
    (root / "index.py").write_text("SECRET = 1\n")  # not a served type
    (tmp_path / "secret.js").write_text("SECRET")
    (tmp_path / "secret.txt").write_text("SECRET")
    os.symlink(tmp_path / "secret.js", root / "link.js")
    monkeypatch.setattr(plugin_module, "_frontend_root", lambda: str(root))
    backend = WsgiBackend(logdir.root)

    for rel, ctype in (("index.js", "text/javascript"), ("views/heads.js", "text/javascript"),
                       ("style.css", "text/css")):
        r = backend.get(PREFIX + "static/" + rel)
        assert r.status == 200, (rel, r)
        assert r.headers["Content-Type"].split(";")[0] == ctype
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.body == (root / rel).read_bytes()
    for rel in TRAVERSALS:
        rel = rel.replace("SECRET_ABS", str(tmp_path / "secret.js").lstrip("/"))
        r = backend.get(PREFIX + "static/" + rel)
        assert r.status == 404, (rel, r)
        assert b"SECRET" not in r.body
        if rel:  # ".../static/" is TensorBoard's own 404: it strips the slash, no route matches
            assert "no such file" in r.error(), (rel, r)
    r = backend.get(PREFIX + "static//" + str(tmp_path / "secret.js").lstrip("/"))
    assert r.status == 404 and b"SECRET" not in r.body


@pytest.mark.parametrize("name", ["rust", "python"])
def test_installed_frontend_is_served_and_guarded(backends, name):
    backend = backends(name)
    # What the subprocess runs: the installed package (conftest drops
    # PYTHONPATH and starts it elsewhere), a regular or an editable install.
    site = sysconfig.get_paths()["purelib"]
    (entry_points,) = glob.glob(os.path.join(site, "tb_attention-*.dist-info", "entry_points.txt"))
    assert "tensorboard_plugins" in open(entry_points).read()  # a served type (.txt), next to the package
    _, frontend = installed_package()
    # the dist-info from the frontend directory, as a traversal would name it
    target = os.path.relpath(entry_points, os.path.dirname(os.path.dirname(frontend))).replace(os.sep, "/")
    for rel in ("../../" + target, "%2e%2e/%2e%2e/" + target, "..%2f..%2f" + target.replace("/", "%2f"),
                "../plugin.py", "../__init__.py%00.js"):
        r = backend.get(PREFIX + "static/" + rel)
        assert r.status == 404, (rel, r)
        assert b"tensorboard_plugins" not in r.body and b"AttentionPlugin" not in r.body
    installed = os.path.join(frontend, "index.js")
    r = backend.get(PREFIX + "static/index.js")
    assert r.status == 200 and r.headers["Content-Type"].split(";")[0] == "text/javascript"
    assert r.body == open(installed, "rb").read()


# ---------------------------------------------------------------------------
# Lazy reads


def test_one_layer_reads_the_header_and_that_layer_only(logdir):
    backend = WsgiBackend(logdir.root, counting=True)
    counting = backend.provider
    # not one of the newest 4, whose headers the steps route reads (two writers' check)
    step = tags_of(backend)[("train", "probe")]["steps"][-6]
    (datum,) = [d for d in kept_data(counting.real, "train", "probe") if d.step == step]
    header = codec.parse_header(counting.real.read_blob(CTX, blob_key=datum.values[0].blob_key))
    key = {i: datum.values[ref.index].blob_key for i, ref in enumerate(header.kinds[0].attention)}
    head_key = datum.values[0].blob_key
    assert len(datum.values) == 3  # the header and two layers: a step-sized read would show

    def reads(path):
        before = len(counting.blob_keys)
        r = backend.get(path)
        assert r.status == 200, r
        return counting.blob_keys[before:]

    base = dict(run="train", tag="probe", step=step, kind="self")
    assert reads(url("attention", layer=2, **base)) == [head_key, key[1]]
    listings = counting.sequence_reads
    assert reads(url("attention", layer=2, **base)) == []  # the LRU
    # Nothing new was logged to the tag, so its list of steps is not fetched
    # again either (read_blob_sequences costs ~45 ms under the Rust server).
    assert counting.sequence_reads == listings
    assert reads(url("attention", layer=2, head=1, **base)) == []
    assert reads(url("header", run="train", tag="probe", step=step)) == []
    assert reads(url("attention", layer=0, **base)) == [key[0]]
    assert reads(url("overview", **base)) == []  # both layers are cached already
    assert reads(url("overview", size=2, **base)) == []
    # The listing reads no blob and no step list at all; the steps route
    # reads its tag's step list and the headers of its newest 4 steps (the
    # newest readable one describes the tag; all 4 say whether two writers
    # logged at once), once.
    fresh = WsgiBackend(logdir.root, counting=True)
    listed = fresh.get(url("tags")).json()["runs"]
    assert fresh.provider.blob_keys == [] and fresh.provider.sequence_reads == 0
    newest = {(run["run"], t["tag"]): t["max_step"] for run in listed for t in run["tags"]}
    for run, tag in newest:
        assert fresh.get(url("steps", run=run, tag=tag)).status == 200
    assert fresh.provider.sequence_reads == len(newest)
    wanted = set()
    for (run, tag), step in newest.items():
        data = kept_data(fresh.provider.real, run, tag)
        wanted.update(d.values[0].blob_key for d in data[-4:])
    assert set(fresh.provider.blob_keys) == wanted
    before, lists = len(fresh.provider.blob_keys), fresh.provider.sequence_reads
    for run, tag in newest:
        assert fresh.get(url("steps", run=run, tag=tag)).status == 200
    # again: only the corrupt headers, which are not cached, are read again
    again = fresh.provider.blob_keys[before:]
    assert len(again) <= 2 * sum(1 for run, tag in newest if run == "tampered")
    assert fresh.provider.sequence_reads == lists
    # Neurons: that layer's neuron blob (the header, one of the newest 4
    # steps, was read by the steps route already).
    datum = kept_data(counting.real, "encdec", "translate")[0]
    assert datum in kept_data(counting.real, "encdec", "translate")[-4:]
    header = codec.parse_header(counting.real.read_blob(CTX, blob_key=datum.values[0].blob_key))
    cross = codec.find_kind(header, "cross")
    got = reads(url("neurons", run="encdec", tag="translate", step=0, kind="cross", layer=1, head=1))
    assert got == [datum.values[cross.neurons[1].blob.index].blob_key]


def test_byte_lru_is_bounded_by_bytes():
    lru = store_module.ByteLRU(100)
    lru.put("a", b"a" * 40, 40)
    lru.put("b", b"b" * 40, 40)
    assert lru.get("a") is not None  # a is now the most recent
    lru.put("c", b"c" * 40, 40)  # 120 > 100: evicts b, the least recent
    assert lru.get("b") is None and lru.get("a") == b"a" * 40 and lru.get("c") == b"c" * 40
    lru.put("huge", b"h" * 101, 101)  # bigger than the whole cache: not kept, nothing evicted
    assert lru.get("huge") is None and lru.get("a") is not None and lru.get("c") is not None


def test_a_step_answer_is_immutable_only_under_its_version(backend):
    """Issue 14: a step's answers were immutable under URLs naming run/tag/step
    only, so after a run was logged again a reload drew the old data."""
    v = version(backend, "train", "probe", 290)
    for route, params in (("header", {}), ("attention", dict(kind="self", layer=0)),
                          ("overview", dict(kind="self"))):
        base = dict(run="train", tag="probe", step=290, **params)
        for extra in ({}, {"v": v + 1}):  # unversioned, or another step's data
            r = backend.get(url(route, **base, **extra))
            assert r.status == 200, r
            assert r.headers["Cache-Control"] == "no-store", (route, extra, r.headers)
        assert_immutable(backend.get(url(route, **base, v=v)))
    r = backend.get(url("header", run="train", tag="probe", step=290, v="x"))
    assert r.status == 400 and "'v'" in r.error()
