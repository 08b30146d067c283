"""A fixed-seed sample of the architecture sweep (tests/sweep.py), inside the
suite's time budget; tests/benchmarks/sweep_architectures.py runs all of it.

Run with -s to see one line per model type and the summary.
"""
import collections
import random
import warnings

import pytest
import transformers

from tests import sweep

# Model types whose result is known, each standing for a way capture can go.
EXPECTED = {
    "bert": "neurons", "gpt2": "neurons", "llama": "neurons", "t5": "neurons",
    "gemma2": "neurons",  # soft-cap
    "gpt_oss": "neurons",  # sinks
    "vit": "neurons", "whisper": "neurons",
    "xlnet": "attention", "longformer": "attention",  # own attention; windows converted
    "funnel": "refused", "prophetnet": "refused",  # pooled queries; scores before the softmax
    "resnet": "no attention",
}
SAMPLE = 40
SEED = 13


def sample():
    rest = [t for t in sweep.model_types() if t not in EXPECTED]
    return list(EXPECTED) + sorted(random.Random(SEED).sample(rest, SAMPLE))


@pytest.fixture(scope="module")
def results():
    transformers.logging.set_verbosity_error()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model_type in sample():
            out[model_type] = sweep.check(model_type)
            print(out[model_type].line())
    counts = collections.Counter(r.status for r in out.values())
    print("%d model types: %s" % (len(out), dict(counts)))
    return out


def test_no_model_type_is_wrong_or_crashes(results):
    bad = [r.line() for r in results.values() if r.failed]
    assert not bad, "\n".join(bad)


def test_known_model_types_give_their_known_result(results):
    got = {t: results[t].status for t in EXPECTED}
    assert got == EXPECTED, "\n".join(results[t].line() for t in EXPECTED if got[t] != EXPECTED[t])


def test_every_result_without_neurons_names_its_reason(results):
    for r in results.values():
        if r.status in ("attention", "refused", "no attention", "not run"):
            assert len(r.reason) > 20, r.line()
        if r.status in ("refused",):
            assert "model type %r" % r.model_type in r.reason, r.line()
