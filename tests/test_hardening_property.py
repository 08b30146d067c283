"""A property of the writer/reader pair (issue 14): after random writes,
flushes, a SIGKILL of the writing process and byte damage, load() returns
exactly the flushed, undamaged records (tests/support/soak.py). A bounded
number of examples here; tests/benchmarks/soak_writer_reader.py runs the soak.
"""
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support import soak

EXAMPLES = 12

OPS = st.lists(st.sampled_from(["w", "w", "w", "f"]), min_size=1, max_size=25)
HITS = st.lists(st.tuples(st.sampled_from(["flip", "zero", "length"]), st.floats(0, 1), st.sampled_from([40, 4096])),
                max_size=2)


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, hits=HITS)
def test_load_returns_exactly_the_flushed_undamaged_records(tmp_path_factory, ops, hits):
    soak.check_example(str(tmp_path_factory.mktemp("soak")), ops, hits)
