"""Logdirs on S3 against a local folder, side by side in one run: writing a
run (AttentionWriter, add_attention of every step, close) and reading it back
(tb_attention.load), medians of --reps, with the load average beside each.

    .venv/bin/python tests/benchmarks/bench_remote.py --steps 20 --tokens 128 --reps 3

The S3 server is moto's standalone server in a child process on 127.0.0.1
(not a real S3: no network latency, no bandwidth limit; what this measures is
our code's and the S3 clients' overhead). Results: results/remote.md.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from tests.support import free_port, wait_until  # noqa: E402
from tests.support.records import self_record, tokens  # noqa: E402
from tests.support.s3 import ENV  # noqa: E402

_SERVER = ("from moto.server import ThreadedMotoServer; import sys, threading; "
           "s = ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False); "
           "s.start(); threading.Event().wait()")


def _loadavg():
    return "%.2f" % os.getloadavg()[0]


def _write(url, records):
    import tb_attention
    t = time.perf_counter()
    with tb_attention.AttentionWriter(url) as w:
        for step, record in enumerate(records):
            w.add_attention("probe", record, global_step=step)
    return time.perf_counter() - t


def _load(url, n):
    import tb_attention
    t = time.perf_counter()
    log = tb_attention.load(url)
    assert len(log.steps("exp", "probe")) == n
    for step in log.steps("exp", "probe"):
        log.get("exp", "probe", step)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    os.environ.update(ENV)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        os.environ["S3_ENDPOINT"] = "http://127.0.0.1:%d" % port
        import boto3
        client = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"])
        wait_until(lambda: client.create_bucket(Bucket="bench"), timeout=60, what="moto")
        rng = np.random.default_rng(0)
        records = [self_record(rng, args.layers, args.heads, tokens(args.tokens)) for _ in range(args.steps)]
        results = {"local": {"write": [], "load": []}, "s3": {"write": [], "load": []}}
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                for where in ("local", "s3"):  # alternating, so load changes hit both
                    root = (os.path.join(tmp, "r%d" % rep) if where == "local"
                            else "s3://bench/r%d" % rep)
                    results[where]["write"].append((_write(root + "/exp", records), _loadavg()))
                    results[where]["load"].append((_load(root, args.steps), _loadavg()))
        print("%d steps of %d x %d heads x %d tokens, medians of %d (load average after each)"
              % (args.steps, args.layers, args.heads, args.tokens, args.reps))
        for what in ("write", "load"):
            med = {w: statistics.median(t for t, _ in results[w][what]) for w in results}
            print("%-5s local %.2f s [%s]  s3 %.2f s [%s]  s3/local %.2fx" % (
                what, med["local"], " ".join(l for _, l in results["local"][what]),
                med["s3"], " ".join(l for _, l in results["s3"][what]), med["s3"] / med["local"]))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
