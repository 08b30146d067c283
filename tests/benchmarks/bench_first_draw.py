"""The dashboard's first draw of a step, before vs after, side by side (not a test).

    git -C /work/main archive <before-commit> | tar -x -C /tmp/before
    .venv/bin/python -m pip install -q --no-deps --target /tmp/before-site /tmp/before
    printf '#!/bin/sh\\nPYTHONPATH=/tmp/before-site exec %s/.venv/bin/python "$@"\\n' "$PWD" > /tmp/before-python
    chmod +x /tmp/before-python
    .venv/bin/python -m pip install -q --no-deps --force-reinstall .      # the after side, installed
    .venv/bin/python tests/benchmarks/bench_first_draw.py --before-python /tmp/before-python

Each side writes the same attention (random softmax rows, 12 layers x 12
heads at 128 and 512 tokens, one step each) with ITS OWN writer (so the
after side's steps are compressed, format 4, and the before side's are
what it writes), and is served by a real `tensorboard` run by its own
Python (the Rust data server, TensorBoard's default). Per round and side:
TensorBoard started afresh, then for each scenario (model view, head view
of layer 0; 128 and 512 tokens) headless Chromium navigates in a new
browser context (empty cache) twice: "cold" (the plugin has not read that
step yet) and "warm" (it has). Timed from just before page.goto to the
dashboard's root carrying data-state="drawn" for that view and step.
Sides alternate round by round; medians; the load average beside each.
Writes tests/benchmarks/results/first-draw.md (or --out).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

WRITE = """
import sys
sys.path.insert(0, %r)
from synthetic import softmax_attention
import tb_attention
with tb_attention.AttentionWriter(sys.argv[1]) as w:
    for T in (128, 512):
        w.add_attention("t%%d" %% T, softmax_attention(12, 12, T, seed=T), tokens=["w%%d" %% i for i in range(T)],
                        global_step=0)
""" % HERE

SCENARIOS = [(view, T) for T in (128, 512) for view in ("model", "head")]


def write(python, logdir):
    subprocess.run([python, "-c", WRITE, logdir], check=True, cwd=tempfile.gettempdir(),
                   env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


def one_round(browser, python, logdir):
    from tests.support import wait_until
    from tests.support.backends import TensorBoard
    from tests.support.browser import plugin_frame, url, wait_drawn

    out = {}
    board = TensorBoard(logdir, python=python)
    try:
        wait_until(lambda: len(board.attention_tags().get("run", {})) == 2, timeout=120,
                   what="both tags listed")
        for view, T in SCENARIOS:
            for when in ("cold", "warm"):
                ctx = browser.new_context(viewport={"width": 1280, "height": 900})
                page = ctx.new_page()
                state = dict(run="run", tag="t%d" % T, step=0, view=view)
                if view == "head":
                    state["layer"] = 0
                t0 = time.perf_counter()
                page.goto(url(board, **state))
                wait_drawn(plugin_frame(page), **{k: v for k, v in state.items() if k != "run"})
                out[(view, T, when)] = ((time.perf_counter() - t0) * 1e3, os.getloadavg()[0])
                ctx.close()
    finally:
        board.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before-python", required=True)
    ap.add_argument("--after-python", default=sys.executable)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "first-draw.md"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    sides = {"before": args.before_python, "after": args.after_python}
    root = tempfile.mkdtemp(prefix="tba-first-draw-")
    logdirs = {}
    for name, python in sides.items():
        logdirs[name] = os.path.join(root, name)
        write(python, os.path.join(logdirs[name], "run"))
    got = {name: [] for name in sides}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            for rep in range(args.reps):
                for name, python in sides.items():
                    got[name].append(one_round(browser, python, logdirs[name]))
                    print(rep, name, {k: round(v[0]) for k, v in got[name][-1].items()}, file=sys.stderr,
                          flush=True)
        finally:
            browser.close()
            shutil.rmtree(root, ignore_errors=True)
    rows = ["# First draw of a step in Chromium (bench_first_draw.py), before vs after",
            "", "%d CPUs, %s UTC, %d rounds, sides alternating; before = %s, after = %s." % (
                os.cpu_count(), time.strftime("%Y-%m-%d %H:%M", time.gmtime()), args.reps,
                args.before_python, args.after_python),
            "", "| view, 12 x 12 heads | tokens | before cold ms | after cold ms | before warm ms | "
                "after warm ms | load avg (median) |", "|---|---|---|---|---|---|---|"]
    for view, T in SCENARIOS:
        cells = []
        loads = []
        for when in ("cold", "warm"):
            for name in sides:
                values = [r[(view, T, when)][0] for r in got[name]]
                loads += [r[(view, T, when)][1] for r in got[name]]
                cells.append("%.0f (%.0f-%.0f)" % (statistics.median(values), min(values), max(values)))
        rows.append("| %s | %d | %s | %.1f |" % (view, T, " | ".join(cells), statistics.median(loads)))
    from bench_scale import write_result
    write_result(args.out, "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
