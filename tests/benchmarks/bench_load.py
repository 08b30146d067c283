"""Load: many runs, many clients, one huge record; against real TensorBoard.

    python tests/benchmarks/bench_load.py                 # all parts (~15-25 min on 2 busy cores)
    python tests/benchmarks/bench_load.py --quick         # 20 runs, 10 s of clients, 1024 tokens
    python tests/benchmarks/bench_load.py --parts runs    # one part: runs, clients, huge

Runs the INSTALLED package (`pip install .` first) and writes
results/load.md. Three parts:

- runs:    a logdir of --runs runs x 5 probes x 100 steps (small records:
           2 layers x 2 heads x 16 tokens), written with one AttentionWriter
           per run. Time to write it; time from starting `tensorboard
           --load_fast=true --samples_per_plugin=attention=0` until the tags
           route lists every run and probe at its newest step; then the
           latency of the tags route (the listing) and of the steps route
           of one probe (what the dashboard also asks for before its first
           draw): warm over HTTP (median of 20), and cold (a fresh plugin,
           empty caches) through TensorBoard's WSGI app over the same Rust
           data server binary and gRPC provider (median of 5, one new plugin
           each). Goal: both under 1 s.
- clients: --clients threads for --seconds against one `tensorboard
           --load_fast=true` (bench_backend.py's logdir: 12 layers x 12 heads
           x 128 tokens, 20 steps; its load_test with a mixed pick: tags,
           header, attention of random layers/heads/steps, overview, stats).
           Requests/s, p50/p99, errors (zero required) and the peak resident
           memory of the tensorboard process tree (Python + Rust data server).
- huge:    one record of --huge-tokens tokens, 32 heads, 2 of 32 layers
           (layer_ids 7 and 23; float16 input), written in a child process
           (its peak RSS), read back by load() (child process), and served by
           both loaders: time until listed, the attention route for ONE head
           (cold and warm), overview, peak RSS of each tensorboard tree. Then,
           on the Rust-server tensorboard, the dashboard in headless Debian
           Chromium (bench_dashboard.py's Browser, URL state and "fully
           drawn"): the matrix view of layer 23 head 5, the head view of layer
           23 with only head 5 selected, and the model view (heatmaps), each
           --huge-reps times in a fresh browser context: ms from navigation
           to drawn, whether it drew (data-state "drawn", not "error"), the
           non-background pixels of the view's canvas, and the peak RSS
           (VmHWM) of the page's renderer process.

A load average is printed with the results: other jobs on the machine slow
everything here.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
import bench_backend  # noqa: E402
from tests.support import wait_until  # noqa: E402
from tests.support.backends import TensorBoard  # noqa: E402

RESULTS = os.path.join(HERE, "results", "load.md")
PROBES = 5
STEPS = 100


def loadavg():
    return ", ".join("%.1f" % x for x in os.getloadavg())


class PeakRSS:
    """Peak resident memory of a process and all its children, sampled every 50 ms."""

    def __init__(self, pid):
        import psutil
        self._root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import psutil
        while not self._stop.is_set():
            try:
                procs = [self._root] + self._root.children(recursive=True)
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            self._stop.wait(0.05)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def mib(n):
    return "%.0f MiB" % (n / 2 ** 20)


def ms(seconds):
    return "%.0f ms" % (seconds * 1000) if seconds < 10 else "%.1f s" % seconds


def median_of(fn, n):
    return statistics.median(fn() for _ in range(n))


# --------------------------------------------------------------------------
# runs


def write_runs(path, runs):
    """runs x PROBES tags x STEPS steps of small records; seconds to write."""
    import numpy as np
    from tb_attention import AttentionWriter

    marker = os.path.join(path, "COMPLETE")
    if os.path.exists(marker):
        with open(marker) as f:
            return float(f.read())
    shutil.rmtree(path, ignore_errors=True)
    rng = np.random.default_rng(0)
    x = rng.random((STEPS, 2, 2, 16, 16), dtype=np.float32) ** 8
    records = x / x.sum(-1, keepdims=True)
    tokens = ["t%d" % i for i in range(16)]
    t0 = time.perf_counter()
    for r in range(runs):
        with AttentionWriter(os.path.join(path, "run%03d" % r)) as w:
            for step in range(STEPS):
                for p in range(PROBES):
                    w.add_attention("probe/%d" % p, records[step], tokens=tokens, global_step=step)
    seconds = time.perf_counter() - t0
    with open(marker, "w") as f:
        f.write("%f" % seconds)
    return seconds


def complete_listing(body, runs):
    """Every run and probe listed at its newest step (one writer per run
    writes the steps in order, so then every step is loaded)."""
    listing = json.loads(body)["runs"]
    return (len(listing) == runs and all(len(r["tags"]) == PROBES for r in listing)
            and all(t["max_step"] == STEPS - 1 for r in listing for t in r["tags"]))


# The probe the steps route is timed on: the last run's last probe.
def steps_path(runs):
    return "/data/plugin/attention/steps?" + urllib.parse.urlencode(
        {"run": "run%03d" % (runs - 1), "tag": "probe/%d" % (PROBES - 1)})


def cold_in_process(logdir, samples, profile=False):
    """{"tags": (cold, warm), "steps": (cold, warm)} seconds of GET tags and
    GET steps of one probe, cold with a fresh AttentionPlugin (empty caches)
    each time, over one Rust data server (what --load_fast=true runs)
    through TensorBoard's gRPC provider and WSGI app."""
    from werkzeug import test as werkzeug_test, wrappers
    from tensorboard.backend import application
    from tests.support.backends import RustDataServer
    from tb_attention.plugin import AttentionPlugin

    server = RustDataServer(logdir)
    try:
        flags = argparse.Namespace(logdir=logdir, samples_per_plugin={}, window_title="", path_prefix="")

        def client():
            app = application.TensorBoardWSGIApp(flags, [AttentionPlugin], data_provider=server.provider)
            return werkzeug_test.Client(app, wrappers.Response)

        runs = len([d for d in os.listdir(logdir) if d.startswith("run")])
        paths = {"tags": "/data/plugin/attention/tags", "steps": steps_path(runs)}
        wait_until(lambda: complete_listing(client().get(paths["tags"]).get_data(), runs),
                   timeout=1800, interval=1, what="the data server to load %s" % logdir)
        assert len(json.loads(client().get(paths["steps"]).get_data())["steps"]) == STEPS
        out = {}
        for name, path in paths.items():
            times = []
            for _ in range(samples):
                c = client()
                t0 = time.perf_counter()
                r = c.get(path)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.get_data()[:300]
            warm_client = client()
            warm_client.get(path)
            warm = []
            for _ in range(20):
                t0 = time.perf_counter()
                warm_client.get(path)
                warm.append(time.perf_counter() - t0)
            out[name] = (statistics.median(times), statistics.median(warm))
            if profile:
                import cProfile
                import pstats
                for title, c in (("cold", client()), ("warm", warm_client)):
                    prof = cProfile.Profile()
                    prof.enable()
                    c.get(path)
                    prof.disable()
                    print("\nProfile: one %s GET %s, %d runs" % (title, name, runs), file=sys.stderr)
                    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(18)
        return out
    finally:
        server.stop()


def part_runs(args, out):
    logdir = os.path.join(args.workdir, "runs-%d" % args.runs)
    write_s = write_runs(logdir, args.runs)
    records = args.runs * PROBES * STEPS
    inproc = cold_in_process(logdir, 5, profile=args.profile)
    t0 = time.perf_counter()
    server = TensorBoard(logdir, load_fast=True, extra_args=["--samples_per_plugin=attention=0"])
    try:
        def listed():
            status, _, body = server.get("/data/plugin/attention/tags")
            return status == 200 and complete_listing(body, args.runs)

        wait_until(listed, timeout=1800, interval=0.5, what="tensorboard to list %s" % logdir)
        until_listed = time.perf_counter() - t0
        http = {}
        for name, path in (("tags", "/data/plugin/attention/tags"), ("steps", steps_path(args.runs))):
            times, size = [], 0
            for _ in range(20):
                t1 = time.perf_counter()
                status, _, body = server.get(path)
                times.append(time.perf_counter() - t1)
                assert status == 200, body[:300]
                size = len(body)
            http[name] = (statistics.median(times), size)
    finally:
        server.stop()
    out.append("## Many runs: %d runs x %d probes x %d steps (2 layers x 2 heads x 16 tokens)\n" %
               (args.runs, PROBES, STEPS))
    out.append("The dashboard's first draw asks for `tags` (runs and probes) and `steps` of the probe it "
               "shows (its kept steps and newest header), at the same time.\n")
    out.append("| | |\n|---|---|")
    out.append("| records written | %d in %.1f s (%.2f ms each, one AttentionWriter per run) |" %
               (records, write_s, write_s / records * 1000))
    out.append("| tensorboard --load_fast=true start until tags lists every run and probe at its newest step "
               "| %.1f s |" % until_listed)
    worst = 0
    for name, what in (("tags", "GET tags"), ("steps", "GET steps of one probe (100 steps)")):
        cold, warm = inproc[name]
        warm_http, size = http[name]
        out.append("| %s cold (fresh plugin over the Rust data server, median of 5) | %s |" % (what, ms(cold)))
        out.append("| %s warm, in process (median of 20) | %s |" % (what, ms(warm)))
        out.append("| %s warm over HTTP (median of 20; body %.1f kB) | %s |" % (what, size / 1e3, ms(warm_http)))
        worst = max(worst, cold, warm_http)
    out.append("| goal: tags and steps under 1 s | %s |" % ("met" if worst < 1 else "NOT met"))
    out.append("")


# --------------------------------------------------------------------------
# clients


def mixed_pick(rng, steps):
    """tags 10%, header 20%, attention 45% (a third single heads), overview 15%, stats 10%."""
    r = rng.random()
    step = rng.randrange(steps)
    base = dict(run=bench_backend.RUN, tag=bench_backend.TAG)
    if r < 0.10:
        return "tags", {}
    if r < 0.30:
        return "header", dict(base, step=step)
    if r < 0.75:
        params = dict(base, step=step, kind="self", layer=rng.randrange(bench_backend.LAYERS))
        if rng.random() < 1 / 3:
            params["head"] = rng.randrange(bench_backend.HEADS)
        return "attention", params
    if r < 0.90:
        return "overview", dict(base, step=step, kind="self", size=rng.choice([16, 32, 64]))
    return "stats", base


def part_clients(args, out):
    steps, tokens = 20, 128
    logdir = os.path.join(args.workdir, "%dtok-%dsteps" % (tokens, steps))
    bench_backend.write_logdir(logdir, tokens, steps)
    server = TensorBoard(logdir, load_fast=True, extra_args=["--samples_per_plugin=attention=0"])
    try:
        def all_steps():
            status, _, body = server.get("/data/plugin/attention/steps?" + urllib.parse.urlencode(
                {"run": bench_backend.RUN, "tag": bench_backend.TAG}))
            return status == 200 and len(json.loads(body)["steps"]) == steps

        wait_until(all_steps, timeout=600, interval=0.5, what="tensorboard to load %s" % logdir)
        rss = PeakRSS(server.proc.pid)
        result = bench_backend.load_test(server, steps, args.clients, args.seconds, pick=mixed_pick)
        peak = rss.stop()
    finally:
        server.stop()
    out.append("## %d concurrent clients for %.0f s, mixed routes\n" % (args.clients, args.seconds))
    out.append("tensorboard --load_fast=true, 12 layers x 12 heads x %d tokens, uint8, %d steps; "
               "tags 10%%, header 20%%, attention 45%% (a third single heads), overview 15%%, "
               "stats 10%%; clients are threads of one Python process on the same machine, one new "
               "connection per request.\n" % (tokens, steps))
    out.append("| requests/s | p50 | p99 | errors | peak RSS, tensorboard + data server |")
    out.append("|---|---|---|---|---|")
    out.append("| %s | %s ms | %s ms | %s | %s |" % (result["requests/s"], result["p50 ms"], result["p99 ms"],
                                                   result["errors"], mib(peak)))
    out.append("")
    return result


# --------------------------------------------------------------------------
# huge

HUGE_WRITER = """
    import json, os, resource, sys, time
    import numpy as np
    from tb_attention import AttentionWriter
    logdir, T, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # float16 input, rows summing to exactly 1: 2**-13 everywhere plus 1/2 on
    # a diagonal that moves with the head
    a = np.full((2, H, T, T), 0.5 / T, np.float16)
    rows = np.arange(T)
    for layer in range(2):
        for h in range(H):
            a[layer, h, rows, (rows - h) % T] += np.float16(0.5)
    t0 = time.perf_counter()
    w = AttentionWriter(logdir)
    w.add_attention("huge", a, tokens=["t%d" % i for i in range(T)], global_step=0, layer_ids=(7, 23))
    blocked = time.perf_counter() - t0
    w.close()
    total = time.perf_counter() - t0
    print(json.dumps({"blocked": blocked, "total": total,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "file": os.path.getsize(os.path.join(logdir, os.listdir(logdir)[0]))}))
"""

HUGE_LOADER = """
    import json, resource, sys, time
    import numpy as np
    from tb_attention import load
    logdir, T, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    t0 = time.perf_counter()
    rec = load(logdir).get(".", "huge", 0)
    seconds = time.perf_counter() - t0
    a = rec.attention()
    h = 5
    ok = a.shape == (2, H, T, T) and rec.layer_ids() == (7, 23) and bool(
        (np.argmax(a[1, h], axis=-1) == (np.arange(T) - h) % T).all())
    print(json.dumps({"seconds": seconds, "ok": ok,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def child(code, *args, timeout=3600):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the installed package
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=env, cwd="/")
    if r.returncode != 0:
        raise RuntimeError("child failed (%d):\n%s" % (r.returncode, r.stderr[-3000:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


# The dashboard on the huge record: what is opened, by TensorBoard URL state
# (bench_dashboard.DASHBOARD), and the canvas that view draws into.
HUGE_VIEWS = [
    ("matrix view, layer 23 head 5", dict(view="matrix", layer=23, head=5), "matrix-canvas"),
    ("head view, layer 23, heads=5 (one head selected)", dict(view="head", layer=23, heads=5), "head-canvas"),
    ("model view (2 layers x 32 heads, heatmaps)", dict(view="model"), "model-canvas"),
]

# In the plugin frame: how many pixels of the canvas differ from its top-left
# one (every view leaves that corner as background: a label gutter).
CANVAS_PIXELS = """(name) => {
  const c = document.querySelector('canvas[data-name="' + name + '"]');
  if (!c || !c.width || !c.height) return null;
  const px = new Uint32Array(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.buffer);
  let other = 0;
  for (let i = 0; i < px.length; i++) if (px[i] !== px[0]) other++;
  return [c.width, c.height, other];
}"""


# In the plugin frame, the matrix view: of the visible cells (i, (i - head) mod
# T), where the record puts half of each row's weight, how many are not
# background; and the same for (i, (i - head + 3) mod T), which hold only the
# 2**-13 floor (0 as uint8) and must be background.
MATRIX_DIAGONAL = """([head, T]) => {
  const c = document.querySelector('canvas[data-name="matrix-canvas"]');
  const g = JSON.parse(c.dataset.geometry);
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const scale = c.width / g.viewW;
  const bg = [px[0], px[1], px[2]];
  const count = (shift) => {
    let n = 0, drawn = 0;
    for (let i = 0; i < T; i++) {
      const j = ((i - head + shift) % T + T) % T;
      const x = g.ox + (j + 0.5) * g.cell - g.viewX, y = g.oy + (i + 0.5) * g.cell - g.viewY;
      if (x < g.ox || y < g.oy || x >= g.viewW || y >= g.viewH) continue;
      const k = 4 * (Math.floor(y * scale) * c.width + Math.floor(x * scale));
      n++;
      if (px[k] !== bg[0] || px[k + 1] !== bg[1] || px[k + 2] !== bg[2]) drawn++;
    }
    return [drawn, n];
  };
  return {diagonal: count(0), off: count(3)};
}"""


def renderer_pids():
    import bench_dashboard
    pids = set()
    for p in bench_dashboard._descendants(os.getpid()):
        try:
            if "--type=renderer" in " ".join(p.cmdline()):
                pids.add(p.pid)
        except Exception:
            pass
    return pids


def peak_rss(pid):
    """The kernel's high-water mark of a process's resident memory (VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def render_huge(server, reps, T):
    """Each of HUGE_VIEWS opened `reps` times (fresh browser context each) on
    the huge record; -> [(label, [sample dict or failure str])]."""
    import bench_dashboard as bd

    d = bd.DASHBOARD
    browser = bd.Browser()
    header = server.get_json("/data/plugin/attention/header?run=.&tag=huge&step=0")
    results = [("chromium", (browser.version, header["kinds"][0]["has_neurons"]))]
    try:
        for label, view, canvas in HUGE_VIEWS:
            state = dict(run=".", tag="huge", step=0, kind="self", **view)
            # also "ready" when the dashboard shows an error, so a failure is
            # reported as one, not as a timeout
            ready = "(%s) || document.querySelector('#tba[data-state=\"error\"]')" % d["ready"](state)
            samples = []
            for _ in range(reps):
                before = renderer_pids()
                got = {}

                def after(page):
                    frame = next(f for f in page.frames if bd.re_search(d["frame"], f.url))
                    got.update(frame.evaluate("""() => { const r = document.querySelector('#tba');
                        return {state: r.getAttribute('data-state'), error: r.getAttribute('data-error'),
                                heads: r.getAttribute('data-heads'), detail: r.getAttribute('data-detail')}; }"""))
                    got["pixels"] = frame.evaluate(CANVAS_PIXELS, canvas)
                    if view["view"] == "matrix":
                        got["matrix"] = frame.evaluate(MATRIX_DIAGONAL, [view["head"], T])
                    new = renderer_pids() - before
                    got["peak"] = max((peak_rss(p) for p in new), default=0)

                try:
                    ms_, rss, frame_start = browser.navigate(bd._url(server.url, state), ready, frame=d["frame"],
                                                   timeout_s=600, after=after)
                except bd.DidNotFinish as e:
                    samples.append("did not finish: %s" % e)
                    break
                got.update(ms=ms_, inner=ms_ - frame_start, rss_drawn=rss * 2 ** 20)
                print("huge render: %s %s" % (label, got), file=sys.stderr)
                samples.append(got)
                if got["state"] != "drawn":
                    break
            results.append((label, samples))
    finally:
        browser.close()
    return results


def render_report(results):
    (_, (version, has_neurons)), results = results[0], results[1:]
    out = ["Dashboard on that record (--load_fast=true tensorboard; headless Debian Chromium %s, viewport "
           "1280x900, a fresh browser context per navigation): ms from navigation start to fully drawn "
           "(bench_dashboard.py's definition), median of n; non-background pixels of the view's canvas; peak "
           "RSS (VmHWM) of the page's renderer process. The neuron view is not tried: the record holds no "
           "query/key vectors (its header says has_neurons: %s)." % (version, str(has_neurons).lower()), "",
           "| view | drew | ms to drawn: median (each run) | of which in the plugin frame | canvas: "
           "non-background pixels | renderer peak RSS (median) | view detail |",
           "|---|---|---|---|---|---|---|"]
    for label, samples in results:
        ok = [s for s in samples if isinstance(s, dict) and s["state"] == "drawn"]
        bad = [s for s in samples if not (isinstance(s, dict) and s["state"] == "drawn")]
        if bad:
            b = bad[0]
            drew = ("no: " + b) if isinstance(b, str) else "no: data-state=%s %s" % (b["state"], b.get("error"))
        else:
            drew = "yes (n=%d)" % len(ok)
        if ok:
            times = "%s (%s)" % (ms(statistics.median(s["ms"] for s in ok) / 1000),
                                 ", ".join("%.0f" % s["ms"] for s in ok))
            inner = ms(statistics.median(s["inner"] for s in ok) / 1000)
            px = ok[-1]["pixels"]
            pixels = "%d of %d x %d" % (px[2], px[0], px[1]) if px else "no canvas"
            if "matrix" in ok[-1]:
                m = ok[-1]["matrix"]
                pixels += ("; the head's diagonal: %d of its %d visible cells drawn (3 cells right of it: "
                           "%d of %d)" % (m["diagonal"][0], m["diagonal"][1], m["off"][0], m["off"][1]))
            peak = mib(statistics.median(s["peak"] for s in ok))
            detail = "`%s`" % ok[-1]["detail"] + (" heads=%s" % ok[-1]["heads"] if "head view" in label else "")
        else:
            times = inner = pixels = peak = detail = "-"
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (label, drew, times, inner, pixels, peak, detail))
    return out


def part_huge(args, out):
    import numpy as np

    T, H = args.huge_tokens, 32
    logdir = os.path.join(args.workdir, "huge-%d" % T)
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir)
    wrote = child(HUGE_WRITER, logdir, T, H)
    print("huge: written", wrote, file=sys.stderr)
    loaded = child(HUGE_LOADER, logdir, T, H)
    print("huge: load()", loaded, file=sys.stderr)
    rows = []
    layer_bytes = H * T * T
    for loader in ("rust", "python"):
        t0 = time.perf_counter()
        server = TensorBoard(logdir, load_fast=(loader == "rust"), extra_args=["--samples_per_plugin=attention=0"])
        rss = PeakRSS(server.proc.pid)
        try:
            def listed():
                status, _, body = server.get("/data/plugin/attention/tags")
                return status == 200 and json.loads(body)["runs"]

            wait_until(listed, timeout=3600, interval=1, what="%s to list the huge record" % loader)
            until_listed = time.perf_counter() - t0
            c = bench_backend.Client(server)
            base = dict(run=".", tag="huge", step=0, kind="self")

            def head(layer, h):
                seconds, status, body = c.get("attention", layer=layer, head=h, **base)
                if status != 200:
                    raise RuntimeError("attention layer %d head %d -> %d: %s" % (layer, h, status, body[:300]))
                got = np.frombuffer(body, np.uint8).reshape(T, T)
                assert (np.argmax(got, axis=-1) == (np.arange(T) - h) % T).all()
                return seconds

            cold = head(23, 5)
            warm = statistics.median(head(23, h) for h in range(6, 11))
            other_cold = head(7, 3)
            seconds, status, body = c.get("overview", size=64, **base)
            overview = seconds if status == 200 else "%d %s" % (status, body[:200])
            if loader == "rust":
                rendered = render_huge(server, args.huge_reps, T)
        finally:
            peak = rss.stop()
            server.stop()
        rows.append((loader, until_listed, cold, warm, other_cold, overview, peak))
        print("huge:", rows[-1], file=sys.stderr)
    out.append("## One record of %d tokens, 32 heads, 2 of 32 layers (layer_ids 7, 23), uint8\n" % T)
    from tb_attention import codec
    per_blob = codec.heads_per_blob(H, T, T, 1)
    out.append("Each stored layer is %s (32 x %d x %d bytes), %s; the event record is %s.\n"
               % (mib(layer_bytes), T, T, "one blob" if not per_blob else
                  "in blobs of %d heads (%s each, format 2)" % (per_blob, mib(per_blob * T * T)),
                  mib(wrote["file"])))
    out.append("| | |\n|---|---|")
    out.append("| writer (child process, float16 input [2, 32, %d, %d]) | add_attention blocked %s, "
               "written and closed in %s; peak RSS %s |" % (T, T, ms(wrote["blocked"]), ms(wrote["total"]),
                                                           mib(wrote["peak_rss"])))
    out.append("| load().get() (child process, float32 result) | %s, correct: %s; peak RSS %s |"
               % (ms(loaded["seconds"]), loaded["ok"], mib(loaded["peak_rss"])))
    for loader, until_listed, cold, warm, other_cold, overview, peak in rows:
        name = "--load_fast=true (Rust)" if loader == "rust" else "--load_fast=false (Python)"
        out.append("| %s: start until listed | %s |" % (name, ms(until_listed)))
        out.append("| %s: attention, ONE head: first (blob not read) / same layer, other heads "
                   "(median of 5) / other layer first | %s / %s / %s |" % (name, ms(cold), ms(warm), ms(other_cold)))
        out.append("| %s: overview size 64 (every layer and head pooled) | %s |"
                   % (name, ms(overview) if isinstance(overview, float) else overview))
        out.append("| %s: peak RSS of the tensorboard process tree%s | %s |" % (
            name, " (the requests above and the dashboard below)" if loader == "rust" else "", mib(peak)))
    out.append("")
    out.extend(render_report(rendered))
    out.append("")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["runs", "clients", "huge"], choices=["runs", "clients", "huge"])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--huge-tokens", type=int, default=4096)
    ap.add_argument("--huge-reps", type=int, default=3, help="navigations per dashboard view on the huge record")
    ap.add_argument("--workdir", default="/tmp/tb-attention-bench")
    ap.add_argument("--quick", action="store_true", help="--runs 20 --seconds 10 --huge-tokens 1024")
    ap.add_argument("--profile", action="store_true", help="cProfile one cold and one warm GET tags and GET steps")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.seconds, args.huge_tokens = 20, 10, 1024
    os.makedirs(args.workdir, exist_ok=True)
    out = ["# Load benchmark (bench_load.py)", "",
           "%s; %d cores; load average at start %s%s." % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                        os.cpu_count(), loadavg(), " (quick)" if args.quick else ""),
           ""]
    failed = False
    for part in args.parts:
        print("==> part", part, "load average", loadavg(), file=sys.stderr)
        result = {"runs": part_runs, "clients": part_clients, "huge": part_huge}[part](args, out)
        if part == "clients" and not result["errors"].startswith("0"):
            failed = True
        out.append("(load average after this part: %s)\n" % loadavg())
    text = "\n".join(out).rstrip() + "\n"
    if args.parts == ["runs", "clients", "huge"] or not os.path.exists(RESULTS):
        with open(RESULTS, "w", encoding="utf-8") as f:
            f.write(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
