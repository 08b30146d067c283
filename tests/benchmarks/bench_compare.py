"""Latency of the `compare` route (mean JSD of every layer x head of two steps).

    python tests/benchmarks/bench_compare.py                 # 12 x 12 heads at 512 tokens, Rust data server
    python tests/benchmarks/bench_compare.py --tokens 128 --load_fast false

Runs the INSTALLED package (`pip install .` first). Writes --steps steps of
12 layers x 12 heads of random softmax attention (uint8) with AttentionWriter,
starts one `tensorboard`, then compares consecutive pairs of steps: "cold"
is the first request for a pair (reads both steps' 24 layer blobs and
computes), "warm" the same request again (the plugin's cache); "verdict" is
the verdict-only form (`verdict=1`: both headers, no layer) asked first, cold.
Prints medians.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import tb_attention  # noqa: E402
from tests.support import wait_until  # noqa: E402
from tests.support.backends import TensorBoard  # noqa: E402


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--load_fast", default="true", choices=["true", "false"])
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-compare-")
    rng = np.random.default_rng(0)
    T = args.tokens
    with tb_attention.AttentionWriter(os.path.join(root, "run")) as w:
        for step in range(args.steps):
            a = np.stack([softmax(rng.standard_normal((12, T, T)).astype(np.float32) * 2.5) for _ in range(12)])
            w.add_attention("probe", a, tokens=["w%d" % i for i in range(T)], global_step=step)
    tb = TensorBoard(root, load_fast=args.load_fast == "true", extra_args=["--samples_per_plugin=attention=0"])
    try:
        wait_until(lambda: tb.get_json("/data/plugin/attention/steps?run=run&tag=probe")["kept"] == args.steps,
                   timeout=300, what="the logdir to load")
        verdict, cold, warm = [], [], []
        for s in range(args.steps - 1):
            q = "/data/plugin/attention/compare?tag=probe&kind=self&run_a=run&step_a=%d&run_b=run&step_b=%d" % (s, s + 1)
            for times, path in ((verdict, q + "&verdict=1"), (cold, q), (warm, q)):
                t0 = time.perf_counter()
                status, _, body = tb.get(path)
                times.append(1000 * (time.perf_counter() - t0))
                assert status == 200, body[:300]
        print("compare, 12 layers x 12 heads x %d tokens, load_fast=%s: verdict only %.1f ms, cold %.0f ms, "
              "warm %.1f ms (medians of %d pairs)"
              % (T, args.load_fast, statistics.median(verdict), statistics.median(cold), statistics.median(warm),
                 len(cold)))
    finally:
        tb.stop()
        shutil.rmtree(root, ignore_errors=True)  # 145 MB at the defaults


if __name__ == "__main__":
    main()
