"""Benchmark of tb_attention.AttentionWriter (not a test; pytest does not collect it).

    /tmp/venv/bin/python tests/benchmarks/bench_writer.py            # all shapes
    /tmp/venv/bin/python tests/benchmarks/bench_writer.py --quick    # skip 32x32x1024
    /tmp/venv/bin/python tests/benchmarks/bench_writer.py --tokens 128   # one shape

32x32x1024x1024 needs ~12 GiB of RAM (4 GiB float32 input, the writer's 4 GiB
copy, 1 GiB records being encoded) and ~30 min on 2 busy cores, most of it
TensorBoard's pure-Python CRC over 1 GiB; it is skipped when memory is short.

Prints a markdown table and writes it to tests/benchmarks/results/writer.md
(or --out PATH).
For each shape [layers, heads, tokens, tokens] of softmax attention:

(a) blocked ms: how long add_attention() holds the training thread, for a
    float32 numpy array [L, H, T, T] and for a tuple of L torch tensors
    [1, H, T, T] (what transformers returns). The writer is idle when each
    call starts (a flush, not timed, between calls), so this is the cost of
    validate + copy + enqueue, not back-pressure from a full queue.
(b) background MB/s, side by side in one process, interleaved rep by rep
    so background load hits both alike:
    - ours, full background path: encode (quantize, per-layer blobs, protobuf)
      + frame with C CRC32C + write, i.e. what the writer thread runs per record;
    - ours, write only: the same serialized Event bytes framed and written by
      our accelerated record writer;
    - TensorBoard's EventFileWriter (what torch's SummaryWriter uses; its
      CRC32C is pure Python) writing the same serialized Event bytes.
    Every timing ends with flush(); MB = bytes that landed in the file.
    Diagnostic column: the share of the full background path spent in
    tb_attention.stats.compute (per-head statistics stored in each header).
(c) bytes on disk per attention weight (file growth / L*H*T*T), uint8.

Medians over reps; reps shrink with the shape (see REPS).
"""
import argparse
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

import torch  # noqa: E402
from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: E402

from synthetic import softmax_attention  # noqa: E402
from tb_attention import AttentionWriter  # noqa: E402
from tb_attention.record import from_raw  # noqa: E402

try:
    from tb_attention import stats  # noqa: E402
except ImportError:  # a tree from before per-head statistics
    stats = None

SHAPES = [(12, 12, 128), (12, 12, 512), (32, 32, 1024)]
# (blocked-time calls, background reps ours, background reps TensorBoard)
REPS = {128: (21, 7, 5), 512: (9, 5, 3), 1024: (3, 2, 1)}


attention = softmax_attention


def median_ms(samples):
    return statistics.median(samples) * 1e3


def file_size(directory):
    return sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))


def blocked(a, toks, calls, tmp):
    """Median ms add_attention blocks the caller: numpy [L,H,T,T] and torch tuple."""
    L = a.shape[0]
    as_tuple = tuple(torch.from_numpy(a[i:i + 1]) for i in range(L))  # views, no extra memory
    result = {}
    for name, value in (("numpy", a), ("torch tuple", as_tuple)):
        d = tempfile.mkdtemp(dir=tmp)
        times = []
        with AttentionWriter(d, max_queue=2) as w:
            for step in range(calls):
                t0 = time.perf_counter()
                w.add_attention("probe", value, tokens=toks, global_step=step)
                times.append(time.perf_counter() - t0)
                w.flush()  # not timed: the next call starts with an idle writer
                gc.collect()
        shutil.rmtree(d)
        result[name] = median_ms(times)
    return result


def background(a, toks, reps_ours, reps_tb, tmp):
    """MB/s of the background path, ours vs TensorBoard's EventFileWriter."""
    record = from_raw(a, toks)
    ours_full, ours_write, tb, bytes_per_weight, stats_share = [], [], [], [], []
    event_bytes = None
    for rep in range(-1, max(reps_ours, reps_tb)):  # rep -1: warm-up of ours, not counted
        if rep < reps_ours:
            d = tempfile.mkdtemp(dir=tmp)
            w = AttentionWriter(d)
            start = file_size(d)
            t0 = time.perf_counter()
            event = w._encode("probe", max(rep, 0), time.time(), record, 0)  # what the writer thread runs
            w._sink.write(event)
            w._sink.flush()
            seconds = time.perf_counter() - t0
            written = file_size(d) - start
            if rep >= 0:
                ours_full.append(written / seconds / 1e6)
                bytes_per_weight.append(written / a.size)
                if stats is not None:
                    k = record.kind()
                    t0 = time.perf_counter()
                    stats.compute(k.attention, k.key_special, True)
                    stats_share.append((time.perf_counter() - t0) / seconds)
            if event_bytes is None:
                event_bytes = event
            del event
            start = file_size(d)
            t0 = time.perf_counter()
            w._sink.write(event_bytes)
            w._sink.flush()
            seconds = time.perf_counter() - t0
            if rep >= 0:
                ours_write.append((file_size(d) - start) / seconds / 1e6)
            w.close()
            shutil.rmtree(d)
        if 0 <= rep < reps_tb:
            d = tempfile.mkdtemp(dir=tmp)
            efw = EventFileWriter(d, max_queue_size=4, flush_secs=120)
            start = file_size(d)
            t0 = time.perf_counter()
            efw._async_writer.write(event_bytes)  # add_event(event) minus its SerializeToString
            efw.flush()
            seconds = time.perf_counter() - t0
            tb.append((file_size(d) - start) / seconds / 1e6)
            efw.close()
            shutil.rmtree(d)
        gc.collect()
    return {
        "ours_full": statistics.median(ours_full),
        "ours_write": statistics.median(ours_write),
        "tb": statistics.median(tb),
        "bytes_per_weight": statistics.median(bytes_per_weight),
        "event_mb": len(event_bytes) / 1e6,
        "stats_share": statistics.median(stats_share) if stats_share else float("nan"),
    }


def available_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2 ** 20
    return float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip 32x32x1024")
    parser.add_argument("--tokens", type=int, choices=[s[2] for s in SHAPES], action="append",
                        help="only the shape with this many tokens (repeatable)")
    parser.add_argument("--tmp", default=None, help="directory for the event files (default: system temp)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "writer.md"),
                        help="where to write the table (default: %(default)s)")
    args = parser.parse_args()
    shapes = SHAPES[:2] if args.quick else SHAPES
    if args.tokens:
        shapes = [s for s in SHAPES if s[2] in args.tokens]
    tmp = tempfile.mkdtemp(prefix="bench-writer-", dir=args.tmp)
    warnings.simplefilter("ignore")
    load_start = os.getloadavg()[0]
    rows = []
    try:
        for L, H, T in shapes:
            need = L * H * T * T * 4 * 2.8 / 2 ** 30  # float32 input + writer's copy + encoding
            if need > available_gib() * 0.9:
                rows.append("| %dx%dx%dx%d | skipped: needs ~%.0f GiB, %.0f GiB available | | | | | | | | |"
                            % (L, H, T, T, need, available_gib()))
                continue
            calls, reps_ours, reps_tb = REPS[T]
            print("%dx%dx%dx%d: building attention ..." % (L, H, T, T), file=sys.stderr, flush=True)
            a = attention(L, H, T)
            toks = ["tok%d" % i for i in range(T)]
            print("  blocked time, %d calls ..." % calls, file=sys.stderr, flush=True)
            b = blocked(a, toks, calls, tmp)
            print("  background throughput, %d/%d reps ..." % (reps_ours, reps_tb), file=sys.stderr, flush=True)
            g = background(a, toks, reps_ours, reps_tb, tmp)
            rows.append("| %dx%dx%dx%d | %.1f | %.2f | %.2f | %.0f | %.0f | %.1f | %.0fx | %.0fx | %.0f%% | %.3f |" % (
                L, H, T, T, g["event_mb"], b["numpy"], b["torch tuple"], g["ours_full"], g["ours_write"],
                g["tb"], g["ours_full"] / g["tb"], g["ours_write"] / g["tb"], 100 * g["stats_share"],
                g["bytes_per_weight"]))
            print(rows[-1], file=sys.stderr, flush=True)
            del a
            gc.collect()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = "\n".join([
        "Writer benchmark (%s, %d CPUs, Python %s, numpy %s, torch %s; 1-min load average %.1f at "
        "start, %.1f at end: other processes share the CPUs)" % (
            platform.machine(), os.cpu_count(), platform.python_version(), np.__version__, torch.__version__,
            load_start, os.getloadavg()[0]),
        "",
        "| shape L x H x T x T | record MB | blocked ms, numpy (median) | blocked ms, torch tuple (median)"
        " | ours MB/s, encode+write | ours MB/s, write only | TensorBoard EventFileWriter MB/s"
        " | speed-up, encode+write / TB | speed-up, write only / TB | share of encode+write in per-head stats"
        " | bytes on disk per weight |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Goals: blocked <= 5 ms at 12x12x128x128; speed-up >= 20x; <= 1.0 byte per weight.",
    ])
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
