"""Issue 12's whole large case (not a test): 32 layers x 32 heads (8 key
heads) x 2048 tokens, all layers, one step, on this machine.

    .venv/bin/python -m pip install -q --no-deps --force-reinstall .   # TensorBoard serves the installed plugin
    .venv/bin/python tests/benchmarks/bench_big.py [--L 32 --H 32 --T 2048] [--neurons]
    .venv/bin/python tests/benchmarks/bench_scale.py --big                # the same

1. In a fresh process, a real transformers LlamaForCausalLM (random
   weights, 32 layers, 32 query heads over 8 key heads, head_dim 8, hidden
   size 256) reads 2048 random token ids: tb_attention.capture(...,
   dtype="uint8") (s), AttentionWriter.add_attention of that record (ms the
   training thread is blocked), flush (s until the step is in the event
   file: statistics, zstd per blob, framing, write), the peak host memory
   above the process before the probe (RSS high-water mark; the model's
   own forward with output_attentions=True, measured in its own process,
   beside it), bytes on disk.
2. A real `tensorboard` (the Rust data server, TensorBoard's default) on
   that logdir: s until the step is listed by the plugin's tags/steps routes.
3. Headless Chromium (Debian's, through Playwright) opens the dashboard at
   the matrix view of layer L-1, head H-1 of that step: s from navigation
   until it has drawn (#tba data-state="drawn"), and a screenshot
   (build/screenshots/big-step.png).
Writes tests/benchmarks/results/big.md (or --out), the load average beside
every figure.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)


def load():
    return os.getloadavg()[0]


def child_write(L, H, T, logdir, neurons, forward_only):
    import torch

    import tb_attention
    from bench_scale import file_bytes, forward_peak, fresh_peak, llama, rss_hwm_bytes

    model = llama(L, H, T)  # H / 4 key heads, head_dim 8
    ids = torch.randint(5, 1000, (1, T), generator=torch.Generator().manual_seed(0))
    out = {"uint8_bytes": L * H * T * T, "key_heads": model.config.num_key_value_heads}
    base = fresh_peak()
    if forward_only:
        out["peak_bytes"] = forward_peak(model, ids, base)
        return out
    t0 = time.perf_counter()
    record = tb_attention.capture(model, ids, dtype="uint8", neurons=neurons)
    out["capture_s"] = time.perf_counter() - t0
    out["load_capture"] = load()
    writer = tb_attention.AttentionWriter(logdir)
    t0 = time.perf_counter()
    writer.add_attention("big", record, global_step=1)
    out["blocked_ms"] = (time.perf_counter() - t0) * 1e3
    del record
    t0 = time.perf_counter()
    writer.flush()
    out["write_s"] = time.perf_counter() - t0
    out["load_write"] = load()
    writer.close()
    out["peak_bytes"] = rss_hwm_bytes() - base
    out["disk_bytes"] = file_bytes(logdir)
    return out


def run_child(args, logdir, forward_only=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--L", str(args.L), "--H", str(args.H),
           "--T", str(args.T), "--logdir", logdir] + (["--neurons"] if args.neurons else []) + (
               ["--forward-only"] if forward_only else [])
    env = dict(os.environ, PYTHONPATH=HERE)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("child failed:\n%s" % p.stderr[-4000:])


def serve_and_draw(logdir, L, H):
    from playwright.sync_api import sync_playwright

    from tests.support import wait_until
    from tests.support.backends import TensorBoard
    from tests.support.browser import plugin_frame, save_screenshot, url, wait_drawn

    out = {}
    t0 = time.perf_counter()
    board = TensorBoard(logdir)  # the Rust data server: TensorBoard's default loader
    try:
        out["tensorboard_up_s"] = time.perf_counter() - t0

        def listed():
            runs = board.attention_tags()
            return runs.get(".", {}).get("big", {}).get("kept", 0) >= 1

        wait_until(listed, timeout=900, interval=0.5, what="the step to be listed")
        out["listed_s"] = time.perf_counter() - t0
        out["load_listed"] = load()
        t1 = time.perf_counter()
        board.attention_tags()
        out["listing_warm_ms"] = (time.perf_counter() - t1) * 1e3
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            try:
                for name in ("cold", "warm"):  # warm: the plugin's cache holds the blob
                    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = ctx.new_page()
                    state = dict(run=".", tag="big", step=1, view="matrix", layer=L - 1, head=H - 1)
                    t1 = time.perf_counter()
                    page.goto(url(board, **state))
                    frame = plugin_frame(page)
                    attrs = wait_drawn(frame, view="matrix", tag="big", step=1, layer=L - 1)
                    out["drawn_%s_s" % name] = time.perf_counter() - t1
                    out["load_drawn_%s" % name] = load()
                    out["drawn_attrs"] = {k: v for k, v in attrs.items() if k in (
                        "data-view", "data-layer", "data-head", "data-step", "data-tag")}
                    if name == "cold":
                        save_screenshot(page, "big-step")
                    ctx.close()
            finally:
                browser.close()
    finally:
        board.stop()
    return out


def report(args, w, fwd, served):
    gib = 2 ** 30
    u8 = w["uint8_bytes"]
    rows = [
        "# The large case (bench_big.py): %d layers x %d heads (%d key heads) x %d tokens, one step%s"
        % (args.L, args.H, w["key_heads"], args.T, ", neurons" if args.neurons else ""),
        "",
        "%d CPUs, %s UTC. One run (each phase takes minutes here)." % (
            os.cpu_count(), time.strftime("%Y-%m-%d %H:%M", time.gmtime())),
        "",
        "| measure | value | load avg |",
        "|---|---|---|",
        "| record, uint8 | %.2f GiB | |" % (u8 / gib),
        "| capture(..., dtype=\"uint8\") | %.1f s | %.1f |" % (w["capture_s"], w["load_capture"]),
        "| add_attention, training thread blocked | %.2f ms | %.1f |" % (w["blocked_ms"], w["load_capture"]),
        "| flush (statistics, zstd per blob, write) | %.1f s | %.1f |" % (w["write_s"], w["load_write"]),
        "| peak host memory above the process before the probe | %.2f GiB = %.2fx the uint8 record | |"
        % (w["peak_bytes"] / gib, w["peak_bytes"] / u8),
        "| the model's own forward with output_attentions=True, peak | %s | |"
        % (fwd["skipped"] if "skipped" in fwd else "%.2f GiB = %.2fx" % (fwd["peak_bytes"] / gib,
                                                                         fwd["peak_bytes"] / u8)),
        "| bytes on disk | %.3f GiB = %.3f B/weight | |" % (w["disk_bytes"] / gib, w["disk_bytes"] / u8),
        "| tensorboard (Rust data server) start -> step listed | %.1f s | %.1f |"
        % (served["listed_s"], served["load_listed"]),
        "| tags+steps listing, warm | %.0f ms | |" % served["listing_warm_ms"],
        "| Chromium: navigation -> layer %d head %d drawn (matrix), cold | %.1f s | %.1f |"
        % (args.L - 1, args.H - 1, served["drawn_cold_s"], served["load_drawn_cold"]),
        "| same, warm (new page, plugin cache warm) | %.1f s | %.1f |"
        % (served["drawn_warm_s"], served["load_drawn_warm"]),
        "",
        "Drawn: %s; screenshot build/screenshots/big-step.png." % served["drawn_attrs"],
    ]
    return "\n".join(rows) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--L", type=int, default=32)
    parser.add_argument("--H", type=int, default=32)
    parser.add_argument("--T", type=int, default=2048)
    parser.add_argument("--neurons", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument("--logdir")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "big.md"))
    args = parser.parse_args()
    if args.child:
        result = child_write(args.L, args.H, args.T, args.logdir, args.neurons, args.forward_only)
        print("RESULT " + json.dumps(result))
        return
    root = tempfile.mkdtemp(prefix="tba-big-")
    try:
        logdir = os.path.join(root, "run")
        os.makedirs(logdir)
        from bench_scale import available_gib
        float32 = 4 * args.L * args.H * args.T ** 2  # what output_attentions=True keeps
        if float32 / 2 ** 30 < 0.5 * available_gib():
            fwd = run_child(args, logdir, forward_only=True)
        else:
            fwd = {"skipped": "its float32 attention alone is %.0f GiB" % (float32 / 2 ** 30)}
        print("forward", fwd, file=sys.stderr, flush=True)
        w = run_child(args, logdir)
        print("write", w, file=sys.stderr, flush=True)
        served = serve_and_draw(logdir, args.L, args.H)
        print("served", served, file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from bench_scale import write_result
    write_result(args.out, report(args, w, fwd, served))


if __name__ == "__main__":
    main()
