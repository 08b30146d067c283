"""Soak of the writer/reader property (issue 14; tests/support/soak.py):
random writes, flushes, a SIGKILL and byte damage, then load() must return
exactly the flushed, undamaged records. The suite runs 12 examples
(tests/test_hardening_property.py); this runs many.

    python tests/benchmarks/soak_writer_reader.py --examples 500 --seed 1

Prints the counts; exits 1 on the first example that fails, naming it.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tests.support import soak  # noqa: E402


def example(rng):
    ops = [rng.choice("wwwf") for _ in range(rng.randint(1, 60))]
    hits = [(rng.choice(["flip", "zero", "length"]), rng.random(), rng.choice([1, 40, 4096]))
            for _ in range(rng.randint(0, 3))]
    return ops, hits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    totals = dict(examples=0, written=0, flushed=0, damaged_records=0)
    start = time.monotonic()
    for i in range(args.examples):
        ops, hits = example(rng)
        root = tempfile.mkdtemp(prefix="tba-soak-")
        try:
            written, flushed, lost = soak.check_example(root, ops, hits)
        except AssertionError as e:
            print("example %d FAILED: ops=%s hits=%s: %s" % (i, "".join(ops), hits, e))
            return 1
        finally:
            shutil.rmtree(root, ignore_errors=True)
        totals["examples"] += 1
        totals["written"] += written
        totals["flushed"] += flushed
        totals["damaged_records"] += lost
    print("%(examples)d examples passed: %(written)d steps written, %(flushed)d flushed, "
          "%(damaged_records)d records damaged" % totals
          + " in %.0f s (seed %d)" % (time.monotonic() - start, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
