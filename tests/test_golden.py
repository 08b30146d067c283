"""Golden vectors shared with the frontend's node tests (tests/fixtures/golden):
logic that exists in both Python and JS is pinned by the same expected values."""
import json
import os

import numpy as np

from tb_attention.answers import max_pool

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "golden")


def golden(name):
    with open(os.path.join(GOLDEN, name)) as f:
        return json.load(f)


def test_max_pool_matches_the_golden_vectors():
    cases = [c for c in golden("max_pool.json")["cases"] if not c["magnitude"]]  # the server pools weights only
    assert len(cases) >= 8
    for c in cases:
        maps = np.array(c["values"], np.uint8).reshape(c["H"], c["Tq"], c["Tk"])
        pooled, pq, pk = max_pool(maps, c["size"])
        e = c["expected"]
        assert (pq, pk) == (e["pq"], e["pk"]), c["name"]
        assert pooled.shape == (c["H"], e["rows"], e["cols"]), c["name"]
        assert pooled.reshape(-1).tolist() == e["data"], c["name"]


def test_aggregates_over_heads_match_the_golden_vectors():
    from tb_attention.aggregate import Aggregate, aggregate
    cases = golden("aggregate.json")["cases"]
    assert len(cases) >= 12
    for c in cases:
        dtype = np.uint8 if c["dtype"] == "uint8" else np.float16
        maps = np.array(c["values"], dtype).reshape(c["N"], c["Tq"], c["Tk"])
        got = aggregate(maps, c["how"])
        assert got.shape == (1, c["Tq"], c["Tk"]) and got.dtype == dtype, c["name"]
        if dtype == np.uint8:
            assert got.reshape(-1).tolist() == c["expected"], c["name"]
        else:
            np.testing.assert_allclose(got.reshape(-1).astype(np.float64), c["expected"], atol=1e-3, err_msg=c["name"])
        # added a map at a time (a layer's blobs as they are read), the same answer
        step = Aggregate(c["how"])
        for m in maps:
            step.add(m[None])
        assert step.result().tobytes() == got.tobytes(), c["name"]


def test_neuron_scores_match_the_golden_vectors():
    from tb_attention.record import softmax_scores

    cases = golden("neuron_scores.json")["cases"]
    assert len(cases) >= 7
    for c in cases:
        Tk, D = c["Tk"], c["D"]
        q = np.array(c["q"], np.float32).reshape(1, 1, 1, D)
        k = np.array(c["keys"], np.float32).reshape(1, 1, Tk, D)
        masked = np.array(c["masked"], bool).reshape(1, 1, Tk)
        bias = None if c["bias"] is None else np.array(c["bias"], np.float32).reshape(1, 1, 1, Tk)
        softcaps = np.array([c["softcap"]], np.float32) if c["softcap"] else None
        sinks = None if c["sink"] is None else np.array([[c["sink"]]], np.float32)
        got = softmax_scores(q, k, np.array([c["scale"]], np.float32), masked, bias, softcaps, sinks)
        np.testing.assert_allclose(got.reshape(-1), c["expected"]["softmax"], atol=1e-6, err_msg=c["name"])
        if c["sink"] is not None:
            np.testing.assert_allclose(1 - got.sum(), c["expected"]["sink_p"], atol=1e-6, err_msg=c["name"])
