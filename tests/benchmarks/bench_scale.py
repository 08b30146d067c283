"""Issue 12's benchmarks, before and after side by side (not a test).

    .venv/bin/python tests/benchmarks/bench_scale.py --before /work/main          # all parts
    .venv/bin/python tests/benchmarks/bench_scale.py --before /work/main --parts background
    .venv/bin/python tests/benchmarks/bench_scale.py --quick ...                   # fewer reps

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
  SummaryWriter.add_tensor of the float32 attention [L, H, T, T]. Also bytes
  on disk per attention weight.
- blocked: ms the training thread spends in add_attention of a record made
  by tb_attention.capture-like quantized arrays (after) / the float32
  record capture returns (before), at 12 x 12 x 512 and 32 x 32 x 1024; and
  the peak extra memory (RSS high-water mark above the baseline) of building
  the record from the model's float attention plus add_attention, in units
  of the record's uint8 size.
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


def softmax_attention(L, H, T, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    a = np.empty((L, H, T, T), np.float32)
    for layer in range(L):
        x = rng.standard_normal((H, T, T), dtype=np.float32)
        x *= 3
        x -= x.max(-1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(-1, keepdims=True)
        a[layer] = x
    return a


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


def child_background(L, H, T, torch_too):
    import numpy as np
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tb_attention import AttentionWriter
    from tb_attention.record import from_raw

    a = softmax_attention(L, H, T)
    record = from_raw(a, ["t%d" % i for i in range(T)], special_tokens=[0, T - 1])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        w = AttentionWriter(os.path.join(tmp, "ours"))
        w._encode("probe", 0, time.time(), record, 0)  # warm-up
        start = file_bytes(w.logdir)
        t0 = time.perf_counter()
        w._sink.write(w._encode("probe", 1, time.time(), record, 0))
        w._sink.flush()
        out["ours_ms"] = (time.perf_counter() - t0) * 1e3
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


def child_blocked(L, H, T, calls):
    """Blocked ms per add_attention of a captured-like record, and the peak
    extra memory of making that record from the model's attention tensors
    (torch float32 [1, H, T, T] per layer, as the model's eager attention
    returns) plus add_attention."""
    import gc
    import numpy as np
    import torch
    from tb_attention import AttentionWriter, capturing
    from tb_attention.record import AttentionRecord, KindRecord

    toks = tuple("t%d" % i for i in range(T))
    layers = [torch.from_numpy(softmax_attention(1, H, T, seed=i)) for i in range(L)]
    host = getattr(capturing, "host_attention", None)  # after: quantized on the device

    def make_record():
        if host is not None:
            att = host([layer for layer in layers], "uint8")
        else:  # before: what capture did, float32 on the host
            att = np.stack([capturing._np(layer)[0] for layer in layers])
        return AttentionRecord([KindRecord(name="self", attention=att, query_tokens=toks,
                                           key_tokens=toks, layer_ids=tuple(range(L)))])

    uint8_size = L * H * T * T
    out = {"blocked_ms": [], "uint8_mib": uint8_size / 2 ** 20}
    with tempfile.TemporaryDirectory() as tmp:
        with AttentionWriter(tmp, max_queue=2) as w:
            for step in range(calls):
                record = make_record()
                t0 = time.perf_counter()
                w.add_attention("probe", record, global_step=step)
                out["blocked_ms"].append((time.perf_counter() - t0) * 1e3)
                del record
                w.flush()
                gc.collect()
            gc.collect()
            base = rss_hwm_bytes()
            reset_hwm()
            base = min(base, rss_hwm_bytes())
            record = make_record()
            w.add_attention("probe", record, global_step=calls)
            del record
            w.flush()
            out["peak_extra_x_uint8"] = (rss_hwm_bytes() - base) / uint8_size
    out["blocked_ms"] = statistics.median(out["blocked_ms"])
    return out


def child_main(args):
    if args.part == "background":
        result = child_background(args.L, args.H, args.T, args.torch)
    else:
        result = child_blocked(args.L, args.H, args.T, args.calls)
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


def background_rows(trees, reps):
    rows = []
    for L, H, T in ((12, 12, 128), (12, 12, 512)):
        got = {name: [] for name in trees}
        for rep in range(reps):
            for name, tree in trees.items():
                torch_too = name == "after" and (T == 128 or rep == 0)
                got[name].append(run_child(tree, "background", L, H, T, ["--torch"] if torch_too else []))
                print(name, L, H, T, got[name][-1], file=sys.stderr, flush=True)
        for name in trees:
            r = got[name]
            ratios = [x["efw_ms"] / x["ours_ms"] for x in r]
            add_tensor = med(got["after"], "add_tensor_ms")
            rows.append("| %dx%dx%d | %s | %.1f | %.1f | %.1fx | %.0f | %.0fx | %.3f | %.1f |" % (
                L, H, T, name, med(r, "ours_ms"), med(r, "efw_ms"), statistics.median(ratios),
                add_tensor, add_tensor / med(r, "ours_ms"), med(r, "bytes_per_weight"), med(r, "load")))
    head = ("| record L x H x T | tree | ours ms / record (background path) | EventFileWriter ms, same "
            "record as uint8 | speed-up vs EventFileWriter (median of per-run ratios) | torch "
            "SummaryWriter.add_tensor float32 ms | speed-up vs add_tensor | bytes on disk per weight "
            "| load avg |\n|---|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def blocked_rows(trees, reps):
    rows = []
    for L, H, T, calls in ((12, 12, 512, 5), (32, 32, 1024, 2)):
        got = {name: [] for name in trees}
        for rep in range(reps):
            for name, tree in trees.items():
                got[name].append(run_child(tree, "blocked", L, H, T, ["--calls", str(calls)]))
                print(name, L, H, T, got[name][-1], file=sys.stderr, flush=True)
        for name in trees:
            r = got[name]
            rows.append("| %dx%dx%d | %s | %.1f | %.0f | %.2fx | %.1f |" % (
                L, H, T, name, med(r, "blocked_ms"), med(r, "uint8_mib"), med(r, "peak_extra_x_uint8"),
                med(r, "load")))
    head = ("| record L x H x T | tree | add_attention blocked ms (median) | record uint8 MiB | peak "
            "extra memory of record + add_attention, x uint8 size | load avg |\n|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", choices=["background", "blocked"])
    parser.add_argument("--L", type=int)
    parser.add_argument("--H", type=int)
    parser.add_argument("--T", type=int)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--torch", action="store_true")
    parser.add_argument("--before", help="source tree of the 'before' column (e.g. /work/main)")
    parser.add_argument("--after", default=REPO)
    parser.add_argument("--parts", nargs="+", default=["background", "blocked"])
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
        sections += ["", "## Background path, per record", "", background_rows(trees, reps)]
    if "blocked" in args.parts:
        sections += ["", "## Training thread and memory", "", blocked_rows(trees, max(2, reps - 2))]
    text = "\n".join(sections) + "\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.path.insert(0, os.environ.get("PYTHONPATH", REPO))
    main()
