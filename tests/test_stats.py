"""Per-head statistics (tb_attention/stats.py): the numbers, where they are
computed (the writer's thread), how they are stored (StepHeader.stats) and
read back (load().stats and the plugin's `stats` route).

Expected values are computed by hand in the comments next to them, never by
the code under test.
"""
import base64
import json
import math
import threading

import numpy as np
import pytest
from tensorboard import errors

import tb_attention
from tb_attention import stats, summary
from tb_attention.record import AttentionInputError, AttentionRecord, KindRecord
from tests.support import wait_until
from tests.support.backends import CTX, WsgiBackend, url
from tests.support.events import attention_event, step_without_stats, write_event_file
from tests.support.records import softmax as random_attention, stored

LN2, LN3 = math.log(2), math.log(3)

# Head 0: three rows, hand-checkable.
#   row 0: [1, 0, 0]        entropy 0        max 1    first 1    dist 0             prev -
#   row 1: [.5, .5, 0]      entropy ln2      max .5   first .5   dist .5*1 = .5     prev .5
#   row 2: [.25, .25, .5]   entropy 1.5 ln2  max .5   first .25  dist .25*2+.25*1 = .75  prev .25
HEAD0 = [[1, 0, 0], [0.5, 0.5, 0], [0.25, 0.25, 0.5]]
# Head 1: uniform: entropy ln3, max 1/3, first 1/3,
#   dist rows (0+1+2)/3, (1+0+1)/3, (2+1+0)/3 = 1, 2/3, 1; prev 1/3.
HEAD1 = [[1 / 3] * 3] * 3
EXPECTED = {
    "entropy": [(0 + LN2 + 1.5 * LN2) / 3, LN3],
    "max_weight": [(1 + 0.5 + 0.5) / 3, 1 / 3],
    "first_token": [(1 + 0.5 + 0.25) / 3, 1 / 3],
    "distance": [(0 + 0.5 + 0.75) / 3, (1 + 2 / 3 + 1) / 3],
    "previous_token": [(0.5 + 0.25) / 2, 1 / 3],
}


def two_heads():
    return np.array([[HEAD0, HEAD1]], np.float32)  # [1 layer, 2 heads, 3, 3]


def close(a, b, tol=1e-6):
    return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=tol, equal_nan=True)


# ---------------------------------------------------------------------------
# The numbers


def test_hand_computed_values():
    out = stats.compute(two_heads(), key_special=[0, 2])
    assert set(out) == set(stats.NAMES)
    for name, want in EXPECTED.items():
        assert out[name].shape == (1, 2) and out[name].dtype == np.float32
        assert close(out[name][0], want), (name, out[name], want)
    # special keys 0 and 2. head 0: rows 1+0 = 1, .5+0 = .5, .25+.5 = .75 -> 2.25/3;
    # head 1: 2/3 in every row.
    assert close(out["special_tokens"][0], [0.75, 2 / 3])


def test_fully_masked_rows_are_left_out():
    # Head 0 padded with a 4th key no one attends and a 4th query row of zeros
    # (a padding query): every statistic equals the unpadded one.
    a = np.zeros((1, 1, 4, 4), np.float32)
    a[0, 0, :3, :3] = HEAD0
    out = stats.compute(a, key_special=[])
    for name, want in EXPECTED.items():
        assert close(out[name][0, 0], want[0]), (name, out[name])
    # No special token at all: zero mass, not unknown.
    assert close(out["special_tokens"], [[0.0]])
    # A head whose rows are all masked has no value.
    out = stats.compute(np.zeros((1, 1, 3, 3), np.float32))
    for name in ("entropy", "max_weight", "first_token", "distance", "previous_token"):
        assert np.isnan(out[name][0, 0]), name


def test_causal_head_and_previous_token_head():
    # A perfect previous-token head (row 0 can only see itself):
    #   rows [1,0,0,0], [1,0,0,0], [0,1,0,0], [0,0,1,0]
    #   prev = mean(1, 1, 1) = 1; dist = (0 + 1 + 1 + 1)/4 = .75; entropy 0; max 1;
    #   first = (1 + 1 + 0 + 0)/4 = .5
    a = np.zeros((1, 1, 4, 4), np.float32)
    a[0, 0, 0, 0] = 1
    for i in range(1, 4):
        a[0, 0, i, i - 1] = 1
    out = stats.compute(a)
    assert close(out["previous_token"], [[1.0]])
    assert close(out["distance"], [[0.75]])
    assert close(out["entropy"], [[0.0]])
    assert close(out["max_weight"], [[1.0]])
    assert close(out["first_token"], [[0.5]])
    assert out["special_tokens"] is None  # unknown without special positions


def test_undefined_statistics():
    a = two_heads()
    # Cross attention: positions of two sequences, no distance.
    out = stats.compute(a, relative=False)
    assert out["distance"] is None and out["previous_token"] is None
    assert close(out["entropy"][0], EXPECTED["entropy"])
    # Query and key lengths differ: no distance either.
    b = np.full((1, 1, 2, 4), 0.25, np.float32)
    out = stats.compute(b)
    assert out["distance"] is None and out["previous_token"] is None
    assert close(out["entropy"], [[math.log(4)]])
    assert stats.relative_positions_defined("self", 3, 3)
    assert not stats.relative_positions_defined("cross", 3, 3)
    assert not stats.relative_positions_defined("decoder", 2, 3)
    # One token: no previous token (NaN); its distance is 0.
    out = stats.compute(np.ones((1, 1, 1, 1), np.float32))
    assert np.isnan(out["previous_token"][0, 0]) and close(out["distance"], [[0.0]])
    with pytest.raises(ValueError, match="outside"):
        stats.compute(a, key_special=[3])
    with pytest.raises(ValueError, match="layers, heads"):
        stats.compute(a[0])


def oracle(w, special, relative):
    """The statistics by their definitions, row by row in float64 loops:
    independent of stats.compute. w: float weights [L, H, Tq, Tk]."""
    L, H, Tq, Tk = w.shape
    out = {name: np.full((L, H), np.nan) for name in stats.NAMES}
    for layer in range(L):
        for h in range(H):
            rows = [(i, [float(x) for x in w[layer, h, i]]) for i in range(Tq)]
            rows = [(i, r) for i, r in rows if sum(r) > stats.ROW_EPSILON]
            if not rows:
                continue
            mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
            out["entropy"][layer, h] = mean([-sum(x * math.log(x) for x in r if x > 0) for _, r in rows])
            out["max_weight"][layer, h] = mean([max(r) for _, r in rows])
            out["first_token"][layer, h] = mean([r[0] for _, r in rows])
            out["special_tokens"][layer, h] = mean([sum(r[j] for j in special) for _, r in rows])
            if relative:
                out["distance"][layer, h] = mean([sum(x * abs(i - j) for j, x in enumerate(r)) for i, r in rows])
                prev = [r[i - 1] for i, r in rows if i >= 1]
                if prev:
                    out["previous_token"][layer, h] = mean(prev)
    return out


@pytest.mark.parametrize("Tq, Tk, causal", [(9, 9, False), (6, 6, True), (4, 7, False)])
def test_statistics_against_a_numpy_oracle(Tq, Tk, causal):
    """Float and uint8 inputs, fully masked rows among them, against loops
    over the definitions; and the error of the uint8 statistics against the
    float ones (the bounds stats.compute documents)."""
    rng = np.random.default_rng(Tq * 10 + Tk)
    w = random_attention(rng, 2, 3, Tq, Tk, causal=causal)
    w[1, 2, 1] = 0  # a fully masked query row
    special, relative = [0, Tk - 1], Tq == Tk
    q = stored(w)
    exact = oracle(w.astype(np.float64), special, relative)
    of_stored = oracle(q.astype(np.float64) / 255, special, relative)
    got_float = stats.compute(w, key_special=special)
    got_u8 = stats.compute(q, key_special=special)
    for name in stats.NAMES:
        if not relative and name in ("distance", "previous_token"):
            assert got_float[name] is None and got_u8[name] is None
            continue
        np.testing.assert_allclose(got_float[name], exact[name], rtol=2e-6, atol=2e-6, err_msg=name)
        np.testing.assert_allclose(got_u8[name], of_stored[name], rtol=2e-6, atol=2e-6, err_msg=name)
    # uint8 vs float: each weight moves by at most 1/510
    r = 0.5 / 255 + 1e-6
    for name, bound in (("max_weight", r), ("first_token", r), ("previous_token", r),
                        ("special_tokens", 2 * r), ("distance", r * sum(range(Tk)))):
        if got_u8[name] is not None:
            assert np.nanmax(np.abs(got_u8[name] - exact[name])) <= bound, name


def test_uint8_statistics_error_on_long_rows():
    """What uint8 storage does to the statistics of diffuse rows (documented
    in stats.compute): 512 keys, random softmax. Weights below 1/510 round to
    0, so entropy and distance are those of the rows' larger weights."""
    rng = np.random.default_rng(3)
    w = random_attention(rng, 1, 2, 512, 512)
    exact = oracle(w[:, :1, :64].astype(np.float64), [], False)  # first rows of head 0
    got = stats.compute(stored(w[:, :1, :64]), key_special=[], relative=False)
    assert abs(got["max_weight"][0, 0] - exact["max_weight"][0, 0]) <= 0.5 / 255
    # measured: about 0.5 nats less than the float entropy (~4.9), never more
    gap = exact["entropy"][0, 0] - got["entropy"][0, 0]
    assert 0.1 < gap < 1.0, gap


def test_collect_aligns_layers_and_heads():
    # Step 0 stored layers (0, 2) with 2 heads; step 1 layer 1 with 1 head; step 2 nothing.
    v0 = {n: np.array([[1, 2], [3, 4]], np.float32) for n in stats.NAMES}
    v1 = {n: np.array([[5]], np.float32) for n in stats.NAMES}
    v1["distance"] = None
    steps, layer_ids, heads, arrays, bounds = stats.collect(
        [0, 10, 20], [((0, 2), 2, v0), ((1,), 1, v1), None])
    assert bounds is None
    assert steps.tolist() == [0, 10, 20] and layer_ids.tolist() == [0, 1, 2] and heads == 2
    e = arrays["entropy"]
    assert e.shape == (3, 3, 2)
    assert close(e[0], [[1, 2], [np.nan, np.nan], [3, 4]])
    assert close(e[1], [[np.nan, np.nan], [5, np.nan], [np.nan, np.nan]])
    assert np.isnan(e[2]).all() and np.isnan(arrays["distance"][1]).all()
    assert stats.json_rows(e[:1]) == [[1.0, 2.0, None, None, 3.0, 4.0]]


def test_collect_stays_within_its_limit():
    """Issue 14: a different layer per step for 1,500 steps made a 309 MB
    stats answer; a header claiming 2**31 - 1 heads, 23 GB."""
    S = 1500
    per_step = [((s,), 2, {n: np.array([[s, -s]], np.float32) for n in stats.NAMES}) for s in range(S)]
    steps, layer_ids, heads, arrays, bounds = stats.collect(list(range(S)), per_step, limit=6000)
    # 1500 layers x 2 heads = 3000 values a step: 2 steps, the first and the newest
    assert bounds == (S, S, 2, 6000) and heads == 2
    assert steps.tolist() == [0, S - 1] and layer_ids.tolist() == list(range(S))
    assert arrays["entropy"].size <= 6000
    assert arrays["entropy"][1, S - 1].tolist() == [S - 1, -(S - 1)]
    assert np.isnan(arrays["entropy"][1, :S - 1]).all()
    # sampled evenly, ends included
    assert stats.sample_evenly(10, 4) == [0, 3, 6, 9] and stats.sample_evenly(3, 5) == [0, 1, 2]
    # more heads than the limit: one layer, limit heads, one step, nothing huge allocated
    huge = [((0, 1), 2 ** 31 - 1, {n: None for n in stats.NAMES})] * 3
    steps, layer_ids, heads, arrays, bounds = stats.collect([0, 1, 2], huge, limit=100)
    assert (steps.tolist(), layer_ids.tolist(), heads) == ([2], [0], 100)
    assert bounds == (3, 2, 2 ** 31 - 1, 100) and arrays["entropy"].shape == (1, 1, 100)


# ---------------------------------------------------------------------------
# Writing and reading


def test_written_stats_are_those_of_the_float_attention(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    tokens = ["[CLS]", "the", "cat", "[SEP]", "a", "dog", "[SEP]"]
    steps = [0, 50, 100]
    maps = {s: random_attention(rng, 3, 4, 7, 7) for s in steps}
    threads = []
    real, real_add = stats.compute, stats.Accumulator.add

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_add(*args, **kwargs)

    monkeypatch.setattr(stats.Accumulator, "add", spy)
    with tb_attention.AttentionWriter(str(tmp_path / "run")) as w:
        for s in steps:
            w.add_attention("probe/x", maps[s], tokens=tokens, global_step=s, layer_ids=[0, 2, 5],
                            special_tokens=[0, 3, 6])
            w.add_attention("probe/raw", maps[s], tokens=tokens, global_step=s)
    # Computed on the writer's threads, not the caller's.
    assert threads and set(threads) <= {"tb-attention-writer", "tb-attention-encode-0"}, threads

    log = tb_attention.load(str(tmp_path))
    got = log.stats("run", "probe/x")
    assert got["steps"].tolist() == steps and got["layer_ids"].tolist() == [0, 2, 5]
    for i, s in enumerate(steps):
        want = real(maps[s], key_special=[0, 3, 6])
        for name in stats.NAMES:
            assert got[name].shape == (3, 3, 4)
            # From the float attention: exact to float32, not to the uint8 payload.
            np.testing.assert_array_equal(got[name][i], want[name], err_msg=name)
    # The uint8 payload gives slightly different numbers: the stats were not
    # computed from it.
    decoded = log.get("run", "probe/x", 50)
    assert not np.array_equal(real(decoded.attention())["entropy"], got["entropy"][1])
    # The special positions come back with the record.
    assert decoded.kind().key_special == (0, 3, 6)

    raw = log.stats("run", "probe/raw")
    assert np.isnan(raw["special_tokens"]).all()  # not known for raw tensors without positions
    assert np.isfinite(raw["entropy"]).all()
    assert log.get("run", "probe/raw", 0).kind().key_special is None
    with pytest.raises(KeyError):
        log.stats("run", "probe/x", kind="cross")


def test_special_tokens_argument_is_checked(tmp_path):
    a = random_attention(np.random.default_rng(1), 1, 1, 3, 3)
    with tb_attention.AttentionWriter(str(tmp_path)) as w:
        for bad in ([3], [0, 0], [1.5], "01"):
            with pytest.raises(AttentionInputError, match="special_tokens"):
                w.add_attention("t", a, tokens=["a", "b", "c"], global_step=0, special_tokens=bad)
        record = AttentionRecord([KindRecord("self", a, ("a", "b", "c"), ("a", "b", "c"), (0,))])
        with pytest.raises(AttentionInputError, match="special_tokens"):
            w.add_attention("t", record, global_step=0, special_tokens=[0])


def encoder_decoder_record(rng):
    enc_t, dec_t = ("<s>", "hi", "there", "</s>"), ("</s>", "yo")
    kinds = [
        KindRecord("encoder", random_attention(rng, 2, 2, 4, 4), enc_t, enc_t, (0, 1), key_special=(0, 3)),
        KindRecord("decoder", random_attention(rng, 2, 2, 2, 2), dec_t, dec_t, (0, 1), causal=True),
        KindRecord("cross", random_attention(rng, 2, 2, 2, 4), dec_t, enc_t, (0, 1), key_special=(0, 3)),
    ]
    return AttentionRecord(kinds, model_type="bart")


@pytest.fixture(scope="module")
def stats_logdir(tmp_path_factory):
    """run "mixed": tag "probe/a" with an old step (no stats) at 0 and new steps
    at 10, 20; run "seq2seq": tag "probe/ed" with three kinds at 5."""
    root = tmp_path_factory.mktemp("stats-logdir")
    rng = np.random.default_rng(2)
    tokens = ("[CLS]", "x", "y", "[SEP]")
    maps = {s: random_attention(rng, 2, 3, 4, 4) for s in (0, 10, 20)}

    def rec(s):
        return AttentionRecord([KindRecord("self", maps[s], tokens, tokens, (0, 1), key_special=(0, 3))],
                               model_type="bert")

    events = [attention_event("probe/a", 0, step_without_stats(rec(0), 0, "old-writer"))]
    events += [attention_event("probe/a", s, summary.step_blobs(rec(s), i + 1, "new-writer"))
               for i, s in enumerate((10, 20))]
    write_event_file(str(root / "mixed"), events, suffix="stats-test")
    ed = encoder_decoder_record(rng)
    write_event_file(str(root / "seq2seq"), [attention_event("probe/ed", 5, summary.step_blobs(ed, 0, "w"))],
                     suffix="stats-test")
    return {"root": str(root), "maps": maps, "ed": ed}


def test_old_steps_without_stats_still_load(stats_logdir):
    log = tb_attention.load(stats_logdir["root"])
    # The old step decodes as before.
    old = log.get("mixed", "probe/a", 0)
    assert old.attention().shape == (2, 3, 4, 4) and old.kind().key_special is None
    got = log.stats("mixed", "probe/a")
    assert got["steps"].tolist() == [0, 10, 20]
    for name in stats.NAMES:
        assert np.isnan(got[name][0]).all(), name  # nothing stored for the old step
        want = stats.compute(stats_logdir["maps"][20], key_special=(0, 3))[name]
        np.testing.assert_array_equal(got[name][2], want)


def test_several_kinds(stats_logdir):
    log = tb_attention.load(stats_logdir["root"])
    with pytest.raises(KeyError, match="several attention kinds"):
        log.stats("seq2seq", "probe/ed")
    ed = stats_logdir["ed"]
    cross = log.stats("seq2seq", "probe/ed", kind="cross")
    assert np.isnan(cross["distance"]).all() and np.isnan(cross["previous_token"]).all()
    want = stats.compute(ed.attention("cross"), key_special=(0, 3), relative=False)
    np.testing.assert_array_equal(cross["special_tokens"][0], want["special_tokens"])
    dec = log.stats("seq2seq", "probe/ed", kind="decoder")
    assert np.isnan(dec["special_tokens"]).all() and np.isfinite(dec["distance"]).all()


# ---------------------------------------------------------------------------
# The plugin route


@pytest.fixture(scope="module")
def wsgi(stats_logdir):
    backend = WsgiBackend(stats_logdir["root"], counting=True)

    def get(path):
        r = backend.get(path)
        return r.status, r.body

    get.provider = backend.provider
    return get


def test_stats_route(wsgi, stats_logdir):
    status, body = wsgi(url("stats", run="mixed", tag="probe/a"))
    assert status == 200, body
    data = json.loads(body)
    assert data["steps"] == [0, 10, 20] and data["layer_ids"] == [0, 1] and data["num_heads"] == 3
    assert data["kind"] == "self" and data["errors"] == []
    assert set(data["stats"]) == set(stats.NAMES) and set(data["descriptions"]) == set(stats.NAMES)
    for name in stats.NAMES:
        rows = data["stats"][name]
        assert len(rows) == 3 and all(len(r) == 2 * 3 for r in rows)
        assert rows[0] == [None] * 6  # the old step has none
        want = stats.compute(stats_logdir["maps"][10], key_special=(0, 3))[name]
        assert np.array_equal(np.array(rows[1], np.float32), want.ravel()), name  # row-major layer, head

    # Headers only: one blob per step, and a second request reads none.
    reads = len(wsgi.provider.blob_keys)
    status, _ = wsgi(url("stats", run="mixed", tag="probe/a", kind="self"))
    assert status == 200 and len(wsgi.provider.blob_keys) == reads


def test_stats_impl_answers_without_a_request(wsgi, stats_logdir):
    """The route's logic runs without HTTP: stats_impl returns the route's body."""
    from tensorboard.plugins import base_plugin
    from tb_attention.plugin import AttentionPlugin

    plugin = AttentionPlugin(base_plugin.TBContext(data_provider=wsgi.provider.real))
    body = plugin.stats_impl(CTX, "", "mixed", "probe/a")
    status, answered = wsgi(url("stats", run="mixed", tag="probe/a"))
    assert status == 200 and json.loads(answered) == json.loads(json.dumps(body))
    assert body["steps"] == [0, 10, 20] and body["kind"] == "self"
    with pytest.raises(errors.InvalidArgumentError, match="several attention kinds"):
        plugin.stats_impl(CTX, "", "seq2seq", "probe/ed")


def test_stats_route_reads_headers_only(stats_logdir):
    """A fresh plugin answers from blob 0 of each step alone."""
    # (A new app: the module's one has everything cached.)
    backend = WsgiBackend(stats_logdir["root"], counting=True)
    r = backend.get(url("stats", run="mixed", tag="probe/a"))
    assert r.status == 200
    keys = backend.provider.blob_keys
    assert len(keys) == 3
    # The multiplexer's blob keys are base64 JSON [experiment, plugin, run, tag, step, index].
    decoded = [json.loads(base64.urlsafe_b64decode(k + "=" * (-len(k) % 4))) for k in keys]
    assert sorted(d[4] for d in decoded) == [0, 10, 20] and {d[5] for d in decoded} == {0}, decoded


def test_stats_route_errors(wsgi):
    status, body = wsgi(url("stats", run="seq2seq", tag="probe/ed"))
    assert status == 400 and b"several attention kinds" in body
    status, body = wsgi(url("stats", run="seq2seq", tag="probe/ed", kind="cross"))
    data = json.loads(body)
    assert status == 200 and data["stats"]["distance"] == [[None] * 4]
    assert all(v is not None for v in data["stats"]["special_tokens"][0])
    for params, code in (({"run": "seq2seq", "tag": "probe/ed", "kind": "self"}, 404),
                         ({"run": "nope", "tag": "probe/ed"}, 404),
                         ({"run": "mixed", "tag": "nope"}, 404),
                         ({"run": "mixed"}, 400)):
        status, body = wsgi(url("stats", **params))
        assert status == code, (params, status, body)
        assert set(json.loads(body)["error"]) == {"message"}


def test_stats_route_on_tensorboard(stats_logdir, tensorboard_factory):
    """The installed package under a real `tensorboard` (Rust data server)."""
    server = tensorboard_factory(stats_logdir["root"], load_fast=True)

    def loaded():
        status, _, body = server.get(url("stats", run="mixed", tag="probe/a"))
        return status == 200 and json.loads(body)["steps"] == [0, 10, 20] and json.loads(body)

    data = wait_until(loaded, timeout=90, what="the stats route")
    want = stats.compute(stats_logdir["maps"][20], key_special=(0, 3))["entropy"]
    assert np.array_equal(np.array(data["stats"]["entropy"][2], np.float32), want.ravel())


# ---------------------------------------------------------------------------
# Special tokens from capture


def test_capture_marks_special_tokens():
    from tests.models import tiny_model

    model, tok = tiny_model("bert")
    enc = tok("the cat sat", "a dog", return_tensors="pt")
    record = tb_attention.capture(model, enc, tokenizer=tok)
    tokens = record.tokens()[1]
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    assert record.kind().key_special == tuple(i for i, t in enumerate(tokens) if t in ("[CLS]", "[SEP]"))
    # The unknown token is not counted as special.
    unk = tok("the zzzqqq cat", return_tensors="pt")
    r = tb_attention.capture(model, unk, tokenizer=tok)
    assert "[UNK]" in r.tokens()[1]
    assert r.kind().key_special == (0, len(r.tokens()[1]) - 1)
    # Without a tokenizer: unknown.
    assert tb_attention.capture(model, enc).kind().key_special is None
