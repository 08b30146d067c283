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
