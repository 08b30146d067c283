"""Latency of the plugin backend's routes against real `tensorboard` processes.

    python tests/benchmarks/bench_backend.py            # both loaders, 128 and 512 tokens
    python tests/benchmarks/bench_backend.py --quick    # fewer steps and runs, no load test
    python tests/benchmarks/bench_backend.py --profile  # also profile a warm layer in process

Runs the INSTALLED package (`pip install .` first). For each size (12 layers x
12 heads, uint8, --steps logged steps) it writes a logdir with AttentionWriter
(kept under --workdir between runs), starts `tensorboard --load_fast=true`
(Rust data server) and `--load_fast=false` (Python loader), both with
--samples_per_plugin=attention=0, and times each route from a client on the
same machine (one new HTTP connection per request, as TensorBoard's server
closes them). Prints a markdown table of medians (and p90) in milliseconds:

- tags:           GET tags (the run and probe listing: one list_blob_sequences)
- steps:          GET steps of the tag (after the first call: its step list and
                  newest header cached)
- header cold:    GET header of a step not asked for before
- header warm:    the same header again
- layer cold:     one layer of a step whose header is cached, blob not yet read
- layer warm:     the same layer again (the plugin's LRU)
- head cold/warm: one head of a layer, blob not read / already read
- overview cold:  overview (size 64) of a step none of whose layers were read
- overview warm:  the same overview again

"cold" is cold for the plugin's cache; the data server's own memory and the
OS page cache are warm (both loaders hold the kept steps in memory).
Then a load test: --clients threads fetching random layers of random steps
for --seconds against each server: requests per second, p50, p99, errors.
"""
import argparse
import concurrent.futures
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.dirname(TESTS))
from tests.support import wait_until  # noqa: E402
from tests.support.backends import TensorBoard  # noqa: E402

LAYERS, HEADS = 12, 12
RUN, TAG = "bench", "probe"


def write_logdir(path, tokens, steps):
    from tb_attention import AttentionWriter

    marker = os.path.join(path, "COMPLETE")
    if os.path.exists(marker):
        return
    os.makedirs(os.path.join(path, RUN), exist_ok=True)
    for name in os.listdir(os.path.join(path, RUN)):
        os.unlink(os.path.join(path, RUN, name))
    rng = np.random.default_rng(0)
    words = ["tok%d" % i for i in range(tokens)]
    t0 = time.perf_counter()
    with AttentionWriter(os.path.join(path, RUN)) as w:
        for step in range(steps):
            a = rng.random((LAYERS, HEADS, tokens, tokens), dtype=np.float32) ** 8
            a /= a.sum(-1, keepdims=True)
            w.add_attention(TAG, a, tokens=words, global_step=step)
    size = sum(os.path.getsize(os.path.join(path, RUN, n)) for n in os.listdir(os.path.join(path, RUN)))
    print("wrote %d steps x %d tokens: %.0f MB in %.1f s" % (steps, tokens, size / 2 ** 20,
                                                             time.perf_counter() - t0), file=sys.stderr)
    open(marker, "w").close()


class Client:
    def __init__(self, server):
        self.base = server.url + "/data/plugin/attention/"

    def get(self, route, **params):
        """(seconds, status, body) of one GET."""
        u = self.base + route + ("?" + urllib.parse.urlencode(params) if params else "")
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(u, timeout=120) as r:
                body, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        return time.perf_counter() - t0, status, body

    def timed(self, route, **params):
        seconds, status, body = self.get(route, **params)
        if status != 200:
            raise RuntimeError("GET %s %s -> %d: %s" % (route, params, status, body[:300]))
        return seconds


def summary(times):
    ms = sorted(t * 1000 for t in times)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return "%.1f (%.1f)" % (statistics.median(ms), p90)


def measure(server, tokens, steps, runs):
    """{row name: "median (p90)"} for one server; each cold sample is a blob never read before."""
    c = Client(server)
    out = {}
    c.timed("tags")
    out["tags"] = summary([c.timed("tags") for _ in range(runs)])
    c.timed("steps", run=RUN, tag=TAG)
    out["steps"] = summary([c.timed("steps", run=RUN, tag=TAG) for _ in range(runs)])
    # Steps [0, half) for headers, layers and heads; [half, steps) for overviews.
    half = steps // 2
    layer_steps = list(range(half))
    out["header cold"] = summary([c.timed("header", run=RUN, tag=TAG, step=s) for s in layer_steps])
    out["header warm"] = summary([c.timed("header", run=RUN, tag=TAG, step=0) for _ in range(runs)])
    base = dict(run=RUN, tag=TAG, kind="self")
    cold = [(s, (s + k) % LAYERS) for k in (0, 4) for s in layer_steps][:runs]
    out["layer cold"] = summary([c.timed("attention", step=s, layer=layer, **base) for s, layer in cold])
    out["layer warm"] = summary([c.timed("attention", step=0, layer=0, **base) for _ in range(runs)])
    cold_heads = [(s, (s + 8) % LAYERS) for s in layer_steps]
    out["head cold"] = summary([c.timed("attention", step=s, layer=layer, head=s % HEADS, **base)
                                for s, layer in cold_heads])
    out["head warm"] = summary([c.timed("attention", step=0, layer=0, head=h % HEADS, **base)
                                for h in range(runs)])
    overview_steps = list(range(half, steps))
    out["overview cold"] = summary([c.timed("overview", step=s, size=64, **base) for s in overview_steps])
    out["overview warm"] = summary([c.timed("overview", step=half, size=64, **base) for _ in range(runs)])
    return out


def random_layer(rng, steps):
    """(route, params) of a random layer of a random step (a quarter single heads)."""
    params = dict(run=RUN, tag=TAG, kind="self", step=rng.randrange(steps), layer=rng.randrange(LAYERS))
    if rng.random() < 0.25:
        params["head"] = rng.randrange(HEADS)
    return "attention", params


def load_test(server, steps, clients, seconds, pick=random_layer):
    """Many clients fetching random layers of random steps at once; pick(rng,
    steps) -> (route, params) chooses each request (other benchmarks mix routes)."""
    c = Client(server)
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    times, errors = [], []

    def worker(seed):
        rng = random.Random(seed)
        while time.monotonic() < stop:
            route, params = pick(rng, steps)
            try:
                t, status, body = c.get(route, **params)
            except Exception as e:  # a refused or reset connection is an error too
                with lock:
                    errors.append(repr(e))
                continue
            with lock:
                if status == 200:
                    times.append(t)
                else:
                    errors.append("%d %s" % (status, body[:100]))

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    elapsed = time.monotonic() - t0
    ms = sorted(t * 1000 for t in times)
    return {
        "requests/s": "%.0f" % (len(times) / elapsed),
        "p50 ms": "%.0f" % statistics.median(ms) if ms else "-",
        "p99 ms": "%.0f" % ms[int(0.99 * (len(ms) - 1))] if ms else "-",
        "errors": "%d" % len(errors) + (" (%s)" % errors[0] if errors else ""),
    }


def profile_warm_layer(logdir, tokens):
    """cProfile of warm layer requests through TensorBoard's WSGI app in process."""
    import cProfile
    import pstats

    from werkzeug import test as werkzeug_test, wrappers
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester
    from tensorboard.backend.event_processing import data_provider as tb_data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tb_attention.plugin import AttentionPlugin

    m = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE, tensor_size_guidance={"attention": 0})
    m.AddRunsFromDirectory(logdir)
    m.Reload()
    flags = argparse.Namespace(logdir=logdir, samples_per_plugin={}, window_title="", path_prefix="")
    app = application.TensorBoardWSGIApp(
        flags, [AttentionPlugin], data_provider=tb_data_provider.MultiplexerDataProvider(m, logdir),
        deprecated_multiplexer=m)
    client = werkzeug_test.Client(app, wrappers.Response)
    path = "/data/plugin/attention/attention?run=%s&tag=%s&step=0&kind=self&layer=0" % (RUN, TAG)
    assert client.get(path).status_code == 200
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        client.get(path)
    prof.disable()
    print("\nProfile: 20 warm layer requests at %d tokens, in process (Python loader)" % tokens)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(15)


def table(columns, rows):
    names = list(columns)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in rows:
        lines.append("| %s | %s |" % (row, " | ".join(columns[n].get(row, "") for n in names)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--steps", type=int, default=20, help="logged steps per size (default 20)")
    ap.add_argument("--runs", type=int, default=20, help="samples per warm row (default 20)")
    ap.add_argument("--loaders", nargs="+", default=["rust", "python"], choices=["rust", "python"])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30, help="load test length; 0 skips it")
    ap.add_argument("--workdir", default="/tmp/tb-attention-bench")
    ap.add_argument("--quick", action="store_true", help="--steps 6 --runs 5 --seconds 0")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.runs, args.seconds = 6, 5, 0

    columns, loads, loading = {}, {}, {}
    for tokens in args.tokens:
        logdir = os.path.join(args.workdir, "%dtok-%dsteps" % (tokens, args.steps))
        write_logdir(logdir, tokens, args.steps)
        for loader in args.loaders:
            t0 = time.perf_counter()
            server = TensorBoard(logdir, load_fast=(loader == "rust"),
                                 extra_args=["--samples_per_plugin=attention=0"])
            try:
                def all_steps():
                    status, _, body = server.get("/data/plugin/attention/steps?" + urllib.parse.urlencode(
                        {"run": RUN, "tag": TAG}))
                    return status == 200 and len(json.loads(body)["steps"]) == args.steps

                wait_until(all_steps, timeout=1800, interval=0.5, what="%s to load %s" % (loader, logdir))
                loading["%s %d tok" % (loader, tokens)] = time.perf_counter() - t0
                name = "%s, %d tok" % ("Rust (load_fast=true)" if loader == "rust" else
                                       "Python (load_fast=false)", tokens)
                print("measuring", name, file=sys.stderr)
                columns[name] = measure(server, tokens, args.steps, args.runs)
                if args.seconds > 0:
                    loads[name] = load_test(server, args.steps, args.clients, args.seconds)
            finally:
                server.stop()
        if args.profile:
            profile_warm_layer(logdir, tokens)

    rows = ["tags", "steps", "header cold", "header warm", "layer cold", "layer warm", "head cold", "head warm",
            "overview cold", "overview warm"]
    print("\n12 layers x 12 heads, uint8, %d logged steps, all kept; median (p90) ms over %d runs "
          "(cold rows: %d samples, overview cold: %d)\n" % (args.steps, args.runs, args.runs, args.steps - args.steps // 2))
    print(table(columns, rows))
    print("\nTime from start until every step is listed: "
          + ", ".join("%s %.1f s" % (k, v) for k, v in loading.items()))
    if loads:
        print("\nLoad test: %d clients, %.0f s, random step and layer (a quarter single heads)\n"
              % (args.clients, args.seconds))
        print(table(loads, ["requests/s", "p50 ms", "p99 ms", "errors"]))


if __name__ == "__main__":
    main()
