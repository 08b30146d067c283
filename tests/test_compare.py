"""Checkpoint comparison: the Jensen-Shannon divergence (tb_attention/compare.py)
against values worked out by hand, and the `compare` route over a logdir
written by the real AttentionWriter, served by real `tensorboard`
subprocesses (Rust data server and Python loader; the installed package)."""
import math
import os
import urllib.parse

import numpy as np
import pytest

import tb_attention
from tb_attention import compare

from tests.conftest import wait_until
from tests.support.backends import WsgiBackend, kept_data, url

LN2 = math.log(2)
PREFIX = "/data/plugin/attention/"
TOKENS = ["<s>", "the", "cat", "sat", "on", "the", "mat", "."]
HOSTILE = "<img src=x onerror=alert(1)>"


# -- the pure functions --------------------------------------------------------

def test_identical_rows_have_zero_divergence():
    a = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    jsd, valid = compare.jsd_rows(a, a.copy())
    assert valid.tolist() == [True, True]
    np.testing.assert_array_equal(jsd, [0.0, 0.0])
    assert compare.mean_jsd(a, a) == 0.0


def test_disjoint_one_hot_rows_give_ln2():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0]])
    jsd, _ = compare.jsd_rows(a, b)
    np.testing.assert_allclose(jsd, [LN2, LN2], rtol=1e-12)
    np.testing.assert_allclose(compare.mean_jsd(a, b), LN2, rtol=1e-6)
    # symmetric
    np.testing.assert_allclose(compare.jsd_rows(b, a)[0], jsd, rtol=1e-12)


def test_a_worked_2x2_example():
    # row 0: p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4)
    #   KL(p||m) = ln(4/3);  KL(q||m) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    #   JSD = 1/2 (ln(4/3) + 1/2 ln(4/3)) = 3/4 ln(4/3) = 0.215762...
    # row 1: the same distribution on both sides, 0
    a = np.array([[1.0, 0.0], [0.3, 0.7]])
    b = np.array([[0.5, 0.5], [0.3, 0.7]])
    row0 = 0.75 * math.log(4 / 3)
    assert abs(row0 - 0.2157615543) < 1e-9
    jsd, _ = compare.jsd_rows(a, b)
    np.testing.assert_allclose(jsd, [row0, 0.0], atol=1e-12)
    np.testing.assert_allclose(compare.mean_jsd(a, b), row0 / 2, rtol=1e-6)


def test_fully_masked_rows_are_skipped_and_rows_are_renormalized():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.5, 0.5], [0.0, 0.0]])
    jsd, valid = compare.jsd_rows(a, b)
    assert valid.tolist() == [True, False, False]  # row 1 masked in A, row 2 in B
    np.testing.assert_allclose(compare.mean_jsd(a, b), LN2, rtol=1e-6)  # only row 0 counts
    # nothing to average: NaN, not 0
    assert np.isnan(compare.mean_jsd(np.zeros((2, 2)), np.zeros((2, 2))))
    # uint8-rounded rows that do not sum to 1 still compare equal to themselves
    # and to the same distribution rounded another way
    q = np.array([[85, 85, 86]]) / 255.0  # sums to 256/255
    assert compare.mean_jsd(q, q * 2) == 0.0


def test_batched_shapes_and_mismatches():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 4, 5))
    b = rng.random((2, 3, 4, 5))
    out = compare.mean_jsd(a, b)
    assert out.shape == (2, 3) and out.dtype == np.float32
    assert ((out > 0) & (out <= LN2)).all()
    # one head by itself gives the same number
    np.testing.assert_allclose(out[1, 2], compare.mean_jsd(a[1, 2], b[1, 2]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4, 5\) with \(2, 3, 4, 4\)"):
        compare.mean_jsd(a, b[..., :4])


def test_token_differences_name_the_position_and_both_tokens():
    same = compare.token_differences(TOKENS, TOKENS, list(TOKENS), list(TOKENS))
    assert same["match"] and same["message"] is None and same["query"]["first"] is None
    other = TOKENS[:3] + [HOSTILE] + TOKENS[4:]
    d = compare.token_differences(TOKENS, TOKENS, other, other)
    assert not d["match"]
    assert d["query"]["first"] == 3 and d["query"]["count"] == 1
    assert d["query"]["differences"] == [{"position": 3, "a": "sat", "b": HOSTILE}]
    assert "position 3" in d["message"] and "'sat'" in d["message"] and HOSTILE in d["message"]
    # a longer B with the same beginning
    longer = compare.token_differences(TOKENS, TOKENS, TOKENS + ["!"], TOKENS + ["!"])
    assert longer["query"]["first"] == 8 and longer["query"]["count"] == 0
    assert "A has 8 query tokens, B has 9" in longer["message"]
    # only the keys differ (cross attention against another source text)
    keys = compare.token_differences(TOKENS, TOKENS, TOKENS, other)
    assert keys["query"]["match"] and not keys["key"]["match"] and "key tokens" in keys["message"]


def test_structure_mismatch_names_both_sides():
    assert compare.structure_mismatch([0, 1], 4, [0, 1], 4) is None
    assert compare.structure_mismatch([0, 1], 4, [0], 4) == "A stores layers [0, 1], B stores layers [0]"
    assert compare.structure_mismatch([0, 1], 4, [0, 1], 2) == "A has 4 heads per layer, B has 2"


# -- the route -----------------------------------------------------------------

def edge_attention(key, L=2, H=4, T=8):
    """Every token attends to itself, except layer 0 head 1 query 2 -> `key`."""
    a = np.zeros((L, H, T, T), np.float32)
    for i in range(T):
        a[:, :, i, i] = 1.0
    a[0, 1, 2, :] = 0.0
    a[0, 1, 2, key] = 1.0
    return a


def smooth_attention(seed, L=2, H=4, T=8):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((L, H, T, T)).astype(np.float32) * 2
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def write_logdir(root):
    with tb_attention.AttentionWriter(os.path.join(root, "train")) as w:
        w.add_attention("probe", edge_attention(5), tokens=TOKENS, global_step=0)
        w.add_attention("probe", edge_attention(6), tokens=TOKENS, global_step=10)
        w.add_attention("probe", smooth_attention(1), tokens=TOKENS, global_step=20)
    with tb_attention.AttentionWriter(os.path.join(root, "other"), dtype="float16") as w:
        w.add_attention("probe", smooth_attention(2), tokens=TOKENS, global_step=7)
    with tb_attention.AttentionWriter(os.path.join(root, "retokenized")) as w:
        w.add_attention("probe", edge_attention(5), tokens=TOKENS[:3] + [HOSTILE] + TOKENS[4:], global_step=0)
    with tb_attention.AttentionWriter(os.path.join(root, "shallow")) as w:
        w.add_attention("probe", edge_attention(5, L=1), tokens=TOKENS, global_step=0)
    with tb_attention.AttentionWriter(os.path.join(root, "narrow")) as w:
        w.add_attention("probe", edge_attention(5, H=2), tokens=TOKENS, global_step=0)
    # two probes of one run: B may be another probe than A
    with tb_attention.AttentionWriter(os.path.join(root, "probes")) as w:
        w.add_attention("probe", edge_attention(5), tokens=TOKENS, global_step=0)
        w.add_attention("retold", edge_attention(6), tokens=TOKENS, global_step=0)
        w.add_attention("halved", edge_attention(5, H=2), tokens=TOKENS, global_step=0)


EXPECTED = {"train": 3, "other": 1, "retokenized": 1, "shallow": 1, "narrow": 1, "probes": 1}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("compare-logs"))
    write_logdir(root)
    return root


@pytest.fixture(scope="module")
def servers(logdir, tensorboard_factory):
    made = {}

    def get(name):
        if name not in made:
            tb = tensorboard_factory(logdir, load_fast=(name == "rust"))

            def loaded():
                runs = {run: list(tags.values())[0]["kept"] for run, tags in tb.attention_tags().items()}
                return all(runs.get(run, 0) >= n for run, n in EXPECTED.items())
            wait_until(loaded, timeout=120, interval=0.3, what="%s loader to load the logdir" % name)
            made[name] = tb
        return made[name]
    return get


@pytest.fixture(params=["rust", "python"])
def board(request, servers):
    return servers(request.param)


def get_compare(board, **params):
    base = dict(tag="probe", kind="self")
    base.update(params)
    status, headers, body = board.get(PREFIX + "compare?" + urllib.parse.urlencode(base))
    import json
    return status, headers, json.loads(body)


def quantized(a):
    return np.rint(a * 255) / 255


def reference_jsd(a, b):
    """Mean JSD per head of rows with some weight, each renormalised:
    1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, in float64."""
    p = a.astype(np.float64)
    q = b.astype(np.float64)
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    m = (p + q) / 2

    def kl(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log(x / m), 0.0).sum(-1)
    return (0.5 * kl(p) + 0.5 * kl(q)).mean(-1)


def test_a_step_compared_with_itself_is_all_zero(board):
    status, headers, r = get_compare(board, run_a="train", step_a=10, run_b="train", step_b=10)
    assert status == 200, r
    # without the steps' versions (docs/routes.md) the answer is not stored
    assert headers["Cache-Control"] == "no-store"
    listing = board.get_json(PREFIX + "steps?run=train&tag=probe")
    v = listing["versions"][listing["steps"].index(10)]
    assert r["a"]["wall_time"] == r["b"]["wall_time"] and round(r["a"]["wall_time"] * 1e6) == v
    status, headers, r = get_compare(board, run_a="train", step_a=10, run_b="train", step_b=10,
                                     v_a=v, v_b=v)
    assert headers["Cache-Control"] == "private, max-age=86400, immutable"
    status, headers, _ = get_compare(board, run_a="train", step_a=10, run_b="train", step_b=10,
                                     v_a=v, v_b=v + 1)
    assert headers["Cache-Control"] == "no-store"
    assert r["units"] == "nats" and r["layer_ids"] == [0, 1] and r["num_heads"] == 4
    assert r["jsd"] == [[0.0] * 4] * 2
    assert r["tokens"]["match"] and r["tokens"]["message"] is None


def test_one_changed_row_shows_in_its_head_only(board):
    status, _, r = get_compare(board, run_a="train", step_a=0, run_b="train", step_b=10)
    assert status == 200, r
    jsd = np.array(r["jsd"])
    # layer 0 head 1: one of 8 query rows moved from key 5 to key 6 (disjoint): ln 2 / 8
    assert jsd[0, 1] == pytest.approx(LN2 / 8, rel=1e-5)
    jsd[0, 1] = 0
    assert (jsd == 0).all(), r["jsd"]
    assert [(s["run"], s["step"]) for s in (r["a"], r["b"])] == [("train", 0), ("train", 10)]


def test_two_runs_at_different_steps_and_dtypes(board):
    status, _, r = get_compare(board, run_a="train", step_a=20, run_b="other", step_b=7)
    assert status == 200, r
    # the textbook KL form in float64 (compare.py uses the entropy form in float32)
    want = reference_jsd(quantized(smooth_attention(1)), smooth_attention(2).astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(np.array(r["jsd"]), want, rtol=1e-4, atol=1e-6)
    assert all(0 < v < LN2 for row in r["jsd"] for v in row)


def test_different_tokens_answer_where_and_no_divergence(board):
    status, _, r = get_compare(board, run_a="train", step_a=0, run_b="retokenized", step_b=0)
    assert status == 200, r
    assert r["jsd"] is None
    t = r["tokens"]
    assert not t["match"] and t["query"]["first"] == 3 and t["key"]["first"] == 3
    assert t["query"]["differences"] == [{"position": 3, "a": "sat", "b": HOSTILE}]
    assert "position 3" in t["message"] and HOSTILE in t["message"]


@pytest.mark.parametrize("run_b, named", [
    ("shallow", "A stores layers [0, 1], B stores layers [0]"),
    ("narrow", "A has 4 heads per layer, B has 2"),
])
def test_different_layers_or_heads_are_400_naming_them(board, run_b, named):
    status, _, r = get_compare(board, run_a="train", step_a=0, run_b=run_b, step_b=0)
    assert status == 400, r
    assert named in r["error"]["message"] and "'%s' step 0" % run_b in r["error"]["message"]


@pytest.mark.parametrize("params, status, named", [
    (dict(run_a="nope", step_a=0, run_b="train", step_b=0), 404, "no run 'nope'"),
    (dict(run_a="train", step_a=0, run_b="train", step_b=3), 404, "no step 3"),
    (dict(run_a="train", step_a=0, run_b="train", step_b=10, tag="missing"), 404, "no attention tag 'missing'"),
    (dict(run_a="train", step_a=0, run_b="train", step_b=10, kind="cross"), 404, "no attention kind 'cross'"),
    (dict(run_a="train", step_a=0, run_b="train"), 400, "missing query parameter 'step_b'"),
    (dict(run_a="train", step_a="x", run_b="train", step_b=0), 400, "'step_a' must be an integer"),
    (dict(run_a="train", step_a=0, run_b="train", step_b=0, verdict=2), 400, "'verdict' = 2 is outside 0..1"),
    (dict(run_a="train", step_a=0, run_b="train", step_b=0, tag_b="gone"), 404, "no attention tag 'gone'"),
])
def test_bad_requests_name_what_is_wrong(board, params, status, named):
    got, _, r = get_compare(board, **params)
    assert got == status, r
    assert named in r["error"]["message"], r


# -- B of another probe; the verdict alone -------------------------------------


def test_b_may_be_another_probe(board):
    status, _, r = get_compare(board, run_a="train", step_a=0, run_b="probes", step_b=0, tag_b="retold")
    assert status == 200, r
    jsd = np.array(r["jsd"])
    assert jsd[0, 1] == pytest.approx(LN2 / 8, rel=1e-5)  # key 5 -> key 6 in one of 8 rows
    jsd[0, 1] = 0
    assert (jsd == 0).all(), r["jsd"]
    wall_a, wall_b = r["a"].pop("wall_time"), r["b"].pop("wall_time")
    assert (r["tag"], r["a"], r["b"]) == ("probe", {"run": "train", "step": 0},
                                          {"run": "probes", "step": 0, "tag": "retold"})
    # B's version is that of the other probe's step: with both, the answer is stored
    steps = lambda run, tag: board.get_json(PREFIX + "steps?run=%s&tag=%s" % (run, tag))
    v_a = steps("train", "probe")["versions"][steps("train", "probe")["steps"].index(0)]
    v_b = steps("probes", "retold")["versions"][steps("probes", "retold")["steps"].index(0)]
    assert (round(wall_a * 1e6), round(wall_b * 1e6)) == (v_a, v_b)
    _, headers, _ = get_compare(board, run_a="train", step_a=0, run_b="probes", step_b=0, tag_b="retold",
                                v_a=v_a, v_b=v_b)
    assert headers["Cache-Control"] == "private, max-age=86400, immutable"
    status, _, r = get_compare(board, run_a="train", step_a=0, run_b="probes", step_b=0, tag_b="halved")
    assert status == 400, r
    assert "'probes' step 0 of tag 'halved': A has 4 heads per layer, B has 2" in r["error"]["message"]


def test_verdict_alone_says_whether_a_and_b_line_up(board):
    status, headers, r = get_compare(board, run_a="train", step_a=0, run_b="train", step_b=10, verdict=1)
    assert status == 200, r
    assert headers["Cache-Control"] == "no-store"  # no versions named
    listing = board.get_json(PREFIX + "steps?run=train&tag=probe")
    v_a, v_b = (listing["versions"][listing["steps"].index(s)] for s in (0, 10))
    assert (round(r["a"]["wall_time"] * 1e6), round(r["b"]["wall_time"] * 1e6)) == (v_a, v_b)
    _, headers, _ = get_compare(board, run_a="train", step_a=0, run_b="train", step_b=10, verdict=1, v_a=v_a, v_b=v_b)
    assert headers["Cache-Control"] == "private, max-age=86400, immutable"
    assert r["verdict"] is True and r["jsd"] is None
    assert r["tokens"]["match"] and r["layer_ids"] == [0, 1] and r["num_heads"] == 4
    status, _, r = get_compare(board, run_a="train", step_a=0, run_b="retokenized", step_b=0, verdict=1)
    assert status == 200 and r["verdict"] is True and r["jsd"] is None, r
    assert not r["tokens"]["match"] and r["tokens"]["query"]["first"] == 3
    status, _, r = get_compare(board, run_a="train", step_a=0, run_b="shallow", step_b=0, verdict=1)
    assert status == 400 and "A stores layers [0, 1], B stores layers [0]" in r["error"]["message"], r


def test_verdict_alone_reads_the_two_headers_only(logdir):
    backend = WsgiBackend(logdir, counting=True)
    reads = backend.provider.blob_keys
    (a,) = [d for d in kept_data(backend.provider.real, "train", "probe") if d.step == 0]
    (b,) = kept_data(backend.provider.real, "probes", "retold")
    params = dict(tag="probe", kind="self", run_a="train", step_a=0, run_b="probes", step_b=0, tag_b="retold")
    r = backend.get(url("compare", verdict=1, **params))
    assert r.status == 200 and r.json()["tokens"]["match"], r
    assert reads == [a.values[0].blob_key, b.values[0].blob_key]
    # the divergence reads every layer of both (the oracle that the verdict did not)
    r = backend.get(url("compare", **params))
    assert r.status == 200 and r.json()["jsd"] is not None, r
    assert sorted(reads[2:]) == sorted([v.blob_key for v in a.values[1:]] + [v.blob_key for v in b.values[1:]])
