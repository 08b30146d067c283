"""Standalone pages: tb_attention.save_html against BertViz 1.4.1's own HTML.

    pip install -q . -r tests/benchmarks/requirements.txt
    python tests/benchmarks/bench_notebook.py            # 32, 128 and 512 tokens
    python tests/benchmarks/bench_notebook.py --no-512-bertviz

Same attention on both sides (bench_dashboard.random_attention: 12 layers x
12 heads, seeded softmax, BERT-like tokens). For each token count:
- HTML size: our whole file (bundle, data, fallback picture) and BertViz's
  head_view(html_action="return") page (its model view holds the same data);
- time to write it in Python (median);
- time from navigation start to fully drawn in headless Debian Chromium, one
  fresh context per navigation, scenarios interleaved round by round (medians
  of 5; 3 for a scenario whose first run takes over 30 s; a page not drawn in
  --timeout seconds counts as did not finish and is not repeated). Ours opens
  from file:// with every host name unresolvable; BertViz's needs require.js,
  d3 and jQuery, served with it by a local http.server (bertviz_harness).
  "Fully drawn" as bench_dashboard.py: ours, the output's root in its shadow
  root says data-state="drawn" for the view asked for; BertViz, its page holds
  all its <line> elements.
Writes tests/benchmarks/results/notebook.md and prints it, with the load
average at the start and the end (other jobs on the machine slow both sides).
"""
import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "bertviz_harness"))

from bench_dashboard import (  # noqa: E402  the same data, browser and timing as the dashboard benchmark
    BERTVIZ_READY, HEADS, LAYERS, SLOW_S, Browser, DidNotFinish, bert_tokens, bertviz_lines, machine,
    random_attention,
)

OURS_READY = ("(() => { const o = document.querySelector('.tba-output'); const r = o && o.shadowRoot"
              " && o.shadowRoot.querySelector('.tba'); return r && r.getAttribute('data-state') === 'drawn'"
              " && r.getAttribute('data-view') === %s; })()")
RESULTS = os.path.join(HERE, "results", "notebook.md")


def timed(fn, reps=3):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def write_ours(root, a, tokens, view):
    import tb_attention
    import tb_attention.page
    from tb_attention.record import from_raw
    path = os.path.join(root, "ours_%s_%d.html" % (view, len(tokens)))
    record = from_raw(a, tokens)
    _, s = timed(lambda: tb_attention.save_html(record, path, view, max_bytes=None))
    return path, os.path.getsize(path), s


def write_bertviz(harness, root, a, tokens, view):
    import torch
    layers = tuple(torch.from_numpy(a[i:i + 1]) for i in range(a.shape[0]))
    name = "bertviz_%s_%d.html" % (view, len(tokens))
    t0 = time.perf_counter()
    size = harness.write_page(root, name, view, layers, tokens)
    return name, size, time.perf_counter() - t0


class Scenario:
    def __init__(self, name, url, ready, timeout_s):
        self.name, self.url, self.ready, self.timeout_s = name, url, ready, timeout_s
        self.ms, self.failed = [], None

    def run(self, browser, reps):
        if self.failed or len(self.ms) >= reps or (len(self.ms) >= 3 and self.ms[0] > SLOW_S * 1000):
            return
        try:
            ms, _, _ = browser.navigate(self.url, self.ready, timeout_s=self.timeout_s)
            self.ms.append(ms)
        except DidNotFinish as e:
            self.failed = str(e)

    def text(self):
        if self.failed:
            return "did not finish: %s" % self.failed
        return "%.0f (n=%d)" % (statistics.median(self.ms), len(self.ms))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a page counts as not drawn")
    ap.add_argument("--no-512-bertviz", action="store_true", help="skip BertViz at 512 tokens (a 1.7 GB page)")
    ap.add_argument("--no-bertviz", action="store_true",
                    help="ours only (BertViz's pages take minutes to open: a quick check of our own figures)")
    args = ap.parse_args()
    import harness
    import tb_attention
    import tb_attention.page
    t_start, load_start = time.monotonic(), os.getloadavg()
    bundle_kb = os.path.getsize(tb_attention.page.BUNDLE_PATH) / 1024  # what the pages hold
    work = tempfile.mkdtemp(prefix="bench-notebook-")
    browser = server = None
    rows = {}
    try:
        harness.fetch_vendor(work)
        server = harness.StaticServer(work)
        browser = Browser()
        scenarios = []
        for T in args.tokens:
            a, tokens = random_attention(LAYERS, HEADS, T, seed=0), bert_tokens(T)
            row = rows[T] = {}
            for view in ("head", "model"):
                path, row["ours_size"], row["ours_write_%s" % view] = write_ours(work, a, tokens, view)
                scenarios.append(Scenario(("ours", view, T), "file://" + path, OURS_READY % repr(view), args.timeout))
            if args.no_bertviz or (T >= 512 and args.no_512_bertviz):
                continue
            for view in ("head", "model"):
                if view == "model" and T >= 512:
                    continue  # the same 1.7 GB as its head view, never drawn either
                name, row["bv_size"], row["bv_write_%s" % view] = write_bertviz(harness, work, a, tokens, view)
                scenarios.append(Scenario(("bertviz", view, T), "%s/%s" % (server.url, name),
                                          BERTVIZ_READY % bertviz_lines(view, T), args.timeout))
        for rep in range(args.reps):
            for s in scenarios:
                s.run(browser, args.reps)
            print("round %d done, load %.1f" % (rep + 1, os.getloadavg()[0]), file=sys.stderr)
        text = report(args, rows, {s.name: s for s in scenarios}, tb_attention, harness, browser,
                      time.monotonic() - t_start, load_start, bundle_kb)
    finally:
        if browser:
            browser.close()
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    # an ours-only run keeps the side-by-side table of the last full run
    out = RESULTS.replace(".md", "-ours.md") if args.no_bertviz else RESULTS
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


def _mb(n):
    return "%.2f MB" % (n / 2 ** 20) if n < 10 * 2 ** 20 else "%.0f MB" % (n / 2 ** 20)


def report(args, rows, sc, tb_attention, harness, browser, took, load_start, bundle_kb):
    out = ["# Standalone pages: tb_attention.save_html against BertViz %s\n"
           % ("(not run: --no-bertviz)" if args.no_bertviz else harness.bertviz_version()),
           "%s on %s; Chromium %s (headless, Playwright), viewport 1280x900; took %.0f s; load average "
           "(1, 5, 15 min) %s at the start, %s at the end. Other jobs share the CPUs: compare the two sides "
           "(measured interleaved) rather than read absolute numbers.\n" % (
               datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), machine(),
               browser.version, took, "%.1f, %.1f, %.1f" % load_start, "%.1f, %.1f, %.1f" % os.getloadavg()),
           "12 layers x 12 heads of the same seeded random softmax attention. Size: the whole HTML file "
           "(ours holds every view; BertViz's head view and model view pages each hold all the attention as "
           "JSON). Write: seconds in Python to produce the file (median of 3). Drawn: median ms from "
           "navigation start to fully drawn (see the docstring of tests/benchmarks/bench_notebook.py).\n",
           "| Tokens | Our HTML | BertViz HTML | Size ratio | Our write s | BertViz write s "
           "| Our head view drawn ms | BertViz head view drawn ms | Our model view drawn ms | BertViz model view drawn ms |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for T, row in rows.items():
        bv = row.get("bv_size")

        def cell(side, view):
            s = sc.get((side, view, T))
            return s.text() if s else "not run"
        out.append("| %d | %s | %s | %s | %.2f | %s | %s | %s | %s | %s |" % (
            T, _mb(row["ours_size"]), _mb(bv) if bv else "not made", "%.0fx" % (bv / row["ours_size"]) if bv else "-",
            row["ours_write_head"], "%.1f" % row["bv_write_head"] if bv else "-",
            cell("ours", "head"), cell("bertviz", "head"), cell("ours", "model"), cell("bertviz", "model")))
    out.append("\nGoals (issue 15): 128 tokens in at most 1.5 MB of HTML and drawn within 300 ms; at 512 tokens "
               "it opens and draws. Our pages: tb_attention %s, bundle %s (%.0f kB). BertViz's require.js, d3 "
               "and jQuery come from npm and are served with its pages by a local http.server (bertviz_harness)."
               % (getattr(tb_attention, "__version__", "(checkout)"), os.path.basename(tb_attention.page.BUNDLE_PATH),
                  bundle_kb))
    out.append("\nCommand: `python tests/benchmarks/bench_notebook.py %s`\n" % " ".join(sys.argv[1:]))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
