"""The writer/reader pair under random writes, flushes, a SIGKILL and byte
damage (issue 14): after them, load() returns every record that was flushed
and not damaged, nothing damaged, and nothing it was not given.

One example: a forked child process owns an AttentionWriter and takes
commands from a pipe ("w" logs the next step, "f" flushes and answers); the
parent sends the example's operations, SIGKILLs the child, damages bytes of
the event file, and load()s it. The oracle is independent of the code under
test: record spans come from a plain walk over the undamaged file's length
fields, and each step's content is rebuilt from its seed.
tests/test_hardening_property.py runs a few examples; the soak,
tests/benchmarks/soak_writer_reader.py, many.
"""
import os
import signal
import struct
import warnings

import numpy as np

from tb_attention import AttentionWriter, load

T = 6


def step_attention(step):
    rng = np.random.default_rng(step)
    x = rng.random((1, 2, T, T)).astype(np.float32) + 0.01
    return x / x.sum(-1, keepdims=True)


def step_tokens(step):
    return ["s%d_%d" % (step, i) for i in range(T)]


def _child(logdir, commands, acks):
    try:
        writer = AttentionWriter(logdir)
        step = 0
        with os.fdopen(commands, "rb", buffering=0) as f:
            for op in iter(lambda: f.read(1), b""):
                if op == b"w":
                    writer.add_attention("probe", step_attention(step), tokens=step_tokens(step),
                                         global_step=step)
                    step += 1
                elif op == b"f":
                    writer.flush()
                    os.write(acks, b"f")
    finally:
        os._exit(0)


def run_and_kill(logdir, ops):
    """Send ops ("w" / "f") to a forked writer, SIGKILL it; (written, flushed) step counts."""
    commands_r, commands_w = os.pipe()
    acks_r, acks_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(commands_w)
        os.close(acks_r)
        _child(logdir, commands_r, acks_w)
    os.close(commands_r)
    os.close(acks_w)
    written = flushed = 0
    for op in ops:
        os.write(commands_w, op.encode())
        if op == "w":
            written += 1
        else:
            assert os.read(acks_r, 1) == b"f"
            flushed = written
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(commands_w)
    os.close(acks_r)
    return written, flushed


def record_spans(data):
    """[(start, end)] of every whole record, walking the length fields only."""
    spans, pos = [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        end = pos + 12 + length + 4
        if end > len(data):
            break
        spans.append((pos, end))
        pos = end
    return spans


def damage(path, hits):
    """Apply hits [(kind, fraction, size)] to the file: "flip" a byte or
    "zero" size bytes at that fraction of the file, or flip the low byte of
    the "length" of the record at that fraction of the records. The indices
    of the attention records (0 = step 0: the first record is the
    file_version event) any damaged byte falls in."""
    with open(path, "rb") as f:
        original = f.read()
    data = bytearray(original)
    spans = record_spans(original)[1:]
    for kind, where, size in hits:
        if not data or (kind == "length" and not spans):
            continue
        if kind == "length":
            start = spans[min(len(spans) - 1, int(where * len(spans)))][0]
        else:
            start = min(len(data) - 1, int(where * len(data)))
        stop = start + 1 if kind in ("flip", "length") else min(len(data), start + size)
        if kind in ("flip", "length"):
            data[start] ^= 0xFF
        else:
            data[start:stop] = bytes(stop - start)
    # what differs in the end (a byte flipped twice, or zeros over zeros, is intact)
    changed = np.flatnonzero(np.frombuffer(bytes(data), np.uint8) != np.frombuffer(original, np.uint8))
    lost = {i for i, (a, b) in enumerate(spans)
            if np.any((changed >= a) & (changed < b))}
    with open(path, "wb") as f:
        f.write(bytes(data))
    return lost


def check_example(logdir, ops, hits):
    """One example; raises AssertionError naming what load() got wrong."""
    written, flushed = run_and_kill(logdir, ops)
    files = [os.path.join(logdir, n) for n in os.listdir(logdir)] if os.path.isdir(logdir) else []
    assert len(files) <= 1, files  # none when killed before the writer made its file
    assert files or not flushed
    lost = damage(files[0], hits) if files else set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torn tails and damage are warned about; not what is checked
        log = load(logdir) if files else None
        steps = log.steps(".", "probe") if log and "." in log.runs() else []
    must = set(range(flushed)) - lost
    assert must <= set(steps), ("flushed, undamaged, not loaded", sorted(must - set(steps)))
    assert set(steps) <= set(range(written)) - lost, ("loaded but damaged or never written",
                                                      sorted(set(steps) & lost))
    for step in steps:
        kind = log.get(".", "probe", step).kind("self")
        assert kind.query_tokens == tuple(step_tokens(step)), step
        assert np.array_equal(kind.attention, np.rint(step_attention(step) * 255) / 255), step
    return written, flushed, len(lost)
