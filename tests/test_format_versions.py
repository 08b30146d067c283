"""Logdirs written by older tb-attention versions keep loading byte for byte.

tests/fixtures/format-vN/ were written once by tests/fixtures/make_format_vN.py
with the writer of that format and are never regenerated here (format 1 is
checked in test_hardening.py, with the routes).
"""
import hashlib
import json
import os

import numpy as np
import pytest

from tb_attention import load

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
COMMITTED = {
    "format-v2": ("probe/v2", "6156721753305d55b88203aac56e54945ba91b4d8f977e67e263fb32164dcc4f"),
}


def uint8_of(a):
    return np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_fixture_is_the_committed_one(name):
    (path,) = [os.path.join(FIXTURES, name, "run", f) for f in os.listdir(os.path.join(FIXTURES, name, "run"))]
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == COMMITTED[name][1], \
            "tests/fixtures/%s changed: it must stay the file that format wrote" % name


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_fixture_loads_byte_exact(name):
    tag = COMMITTED[name][0]
    with open(os.path.join(FIXTURES, name, "expected.json")) as f:
        exp = json.load(f)
    log = load(os.path.join(FIXTURES, name))
    assert log.runs() == ["run"] and log.tags("run") == [tag]
    assert log.steps("run", tag) == sorted(int(s) for s in exp["steps"])
    for step_text, want in exp["steps"].items():
        step = int(step_text)
        header = log.header("run", tag, step)
        assert header.version == exp["format_version"] and header.sequence == want["sequence"]
        rec = log.get("run", tag, step)
        assert rec.model_type == want["model_type"]
        for kind, k in want["kinds"].items():
            assert rec.tokens(kind) == (tuple(k["query_tokens"]), tuple(k["key_tokens"]))
            assert rec.layer_ids(kind) == tuple(k["layer_ids"])
            for i, hexed in enumerate(k["attention_uint8_hex"]):
                assert uint8_of(rec.attention(kind)[i]).tobytes().hex() == hexed
            n = rec.neurons(kind)
            for i in range(len(k["layer_ids"])):
                for h in range(k["num_heads"]):
                    parts = [n.queries[i, h].astype("<f2").tobytes(), n.keys[i, h].astype("<f2").tobytes(),
                             n.masked[i].astype(np.uint8).tobytes()]
                    if k["has_bias"]:
                        parts.append(n.bias[i, h].astype("<f2").tobytes())
                    assert b"".join(parts).hex() == k["neurons_hex"][i][h]
            assert n.scales[0] == np.float32(k["scale"])
