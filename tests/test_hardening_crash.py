"""Crash safety (issue 7): what a dying or failing training process leaves,
with real faults only.

A training process SIGKILLed while the kernel had cut its write of a large
record short (RLIMIT_FSIZE, the torn tail a crash inside write(2) leaves), an
event file made read-only under a training process running as an
unprivileged user, a read-only logdir; TensorBoard's two loaders and load()
read what is left. (tests/test_writer.py has the writer's own fault tests:
disk full, directory removed, SIGKILL after flush.)
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from tb_attention import load
from tests.support import REPO, sigkilled, wait_until
from tests.support.backends import blob_steps, provider_blobs, python_loader, rust_data_server
from tests.support.events import record_ends
from tests.support.records import UINT8_TOL


def child_env():
    return dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")


# --------------------------------------------------------------------------
# Faults: SIGKILL while a large record is half written

BUSY_CHILD = """
    import os, resource, signal, sys
    import numpy as np
    from tb_attention import AttentionWriter
    logdir, n = sys.argv[1], int(sys.argv[2])
    # Past the file size limit the kernel cuts the write short and fails the
    # next one (EFBIG, with SIGXFSZ ignored): exactly the prefix of a record a
    # crash inside write(2) leaves on disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    w = AttentionWriter(logdir, compress=False)  # 16 MiB records on disk, not zstd's few KiB
    for step in range(n):
        a = np.full((2, 3, 16, 16), 1 / 16, np.float32)
        a[:, :, :, step % 16] += 0.5
        w.add_attention("probe", a / a.sum(-1, keepdims=True), tokens=["t%d" % i for i in range(16)],
                        global_step=step)
    w.flush()
    path = w._sink.path
    size = os.path.getsize(path)
    # 16 MiB records: the first is cut 8 MiB into its payload
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 8 * 2 ** 20, resource.RLIM_INFINITY))
    print(path, size, flush=True)
    big = np.full((8, 8, 512, 512), 1 / 512, np.float32)
    tokens = ["b%d" % i for i in range(512)]
    step = n
    while True:  # training goes on, a record in flight at every moment
        try:
            w.add_attention("probe", big, tokens=tokens, global_step=step)
        except Exception:
            pass
        step += 1
"""


def expect_small_steps(log, n):
    assert log.steps(".", "probe") == list(range(n))
    for step in range(n):
        a = log.get(".", "probe", step).attention()
        assert a.shape == (2, 3, 16, 16) and np.argmax(a[0, 0, 0]) == step % 16


def test_sigkill_with_a_large_record_half_written_keeps_every_flushed_record(tmp_path):
    n = 6
    with sigkilled(subprocess.Popen([sys.executable, "-c", textwrap.dedent(BUSY_CHILD), str(tmp_path), str(n)],
                                    stdout=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)) as child:
        path, flushed = child.stdout.readline().split()
        limit = int(flushed) + 8 * 2 ** 20
        wait_until(lambda: os.path.getsize(path) == limit, timeout=120,
                   what="the child to write 8 MiB of its first large record")
    assert child.returncode == -signal.SIGKILL
    ends, torn = record_ends(path)
    assert torn and ends[-1] == int(flushed) and os.path.getsize(path) == limit  # cut mid-record

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = load(tmp_path)
    messages = [str(c.message) for c in caught]
    assert len(messages) == 1 and "torn record" in messages[0] and path in messages[0], messages
    expect_small_steps(log, n)
    written = {s: log._tag(".", "probe")[s].blobs for s in range(n)}

    _, provider = python_loader(tmp_path)  # --load_fast=false
    assert blob_steps(provider, ".", "probe") == list(range(n))
    with rust_data_server(tmp_path) as rust:  # --load_fast=true
        wait_until(lambda: blob_steps(rust, ".", "probe") == list(range(n)), timeout=60,
                   what="the data server to list the flushed steps")
        for p in (provider, rust):
            got = provider_blobs(p)["."]["probe"]
            assert {s: blobs for s, (_, blobs) in got.items()} == written


# --------------------------------------------------------------------------
# Faults: the event file becomes unwritable mid-training

READONLY_CHILD = """
    import json, sys
    import numpy as np
    from tb_attention import AttentionWriter, AttentionWriterError
    run = sys.argv[1]
    a = np.full((2, 2, 4, 4), 0.25, np.float32)
    a_before = a.copy()
    weights = np.zeros(8)
    w = AttentionWriter(run)
    for step in range(3):
        w.add_attention("probe", a, tokens=list("abcd"), global_step=step)
    w.flush()
    print(w._sink.path, flush=True)
    sys.stdin.readline()  # the parent made the file read-only
    calls = []
    for step in range(3, 9):
        weights += 1  # the training loop's own work
        for name, call in (("add_attention", lambda: w.add_attention("probe", a, tokens=list("abcd"),
                                                                      global_step=step)),
                           ("flush", w.flush)):
            try:
                call()
                calls.append([step, name, None])
            except AttentionWriterError as e:
                calls.append([step, name, str(e)])
    try:
        w.close()
        closed = None
    except AttentionWriterError as e:
        closed = str(e)
    print(json.dumps({"calls": calls, "closed": closed, "weights": weights.tolist(),
                      "attention_untouched": bool(np.array_equal(a, a_before))}), flush=True)
"""


def _without_permission_override():
    """preexec_fn for a child that file permissions apply to, also under
    root: drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from its
    capability bounding set, so the exec'd interpreter never has them."""
    if os.geteuid() != 0:
        return None
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def drop():
        for cap in (1, 2, 3):
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, %d)" % cap)

    return drop


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_event_file_made_read_only_mid_training(tmp_path):
    base = str(tmp_path)
    run = os.path.join(base, "run")
    try:
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(READONLY_CHILD), run],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=child_env(), cwd=base,
                                 preexec_fn=_without_permission_override())
        path = child.stdout.readline().strip()
        assert path.startswith(run), path
        os.chmod(path, 0o444)
        os.chmod(run, 0o555)
        out, _ = child.communicate("go\n", timeout=120)
        assert child.returncode == 0, out
        result = json.loads(out)
        calls = result["calls"]
        failed = [c for c in calls if c[2] is not None]
        # The step-3 record is queued; its write fails; the flush right after says so ...
        assert calls[0] == [3, "add_attention", None], calls
        assert calls[1][:2] == [3, "flush"] and calls[1][2] is not None, calls
        # ... naming the file and the cause, and every later call says the same.
        assert failed == calls[1:], calls
        for _, _, message in failed:
            assert path in message and "Permission denied" in message, message
        assert result["closed"] is not None and "Permission denied" in result["closed"]
        # The training loop ran every step, its arrays untouched.
        assert result["weights"] == [6.0] * 8 and result["attention_untouched"]
        # What was written before stays readable, by load() and TensorBoard.
        log = load(base)
        assert log.steps("run", "probe") == [0, 1, 2]
        np.testing.assert_allclose(log.get("run", "probe", 2).attention(), np.full((2, 2, 4, 4), 0.25),
                                   atol=UINT8_TOL)
        _, provider = python_loader(base)
        assert blob_steps(provider, "run", "probe") == [0, 1, 2]
    finally:
        if os.path.isdir(run):
            os.chmod(run, 0o755)  # so that pytest can clean up


def test_a_new_run_in_a_read_only_logdir_fails_in_the_constructor_naming_it(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    os.chmod(logdir, 0o555)
    try:
        r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import sys
            from tb_attention import AttentionWriter, AttentionWriterError
            try:
                AttentionWriter(sys.argv[1])
            except AttentionWriterError as e:
                print(e)
            """), str(logdir / "run")], capture_output=True, text=True, env=child_env(), cwd=str(tmp_path),
            preexec_fn=_without_permission_override(), timeout=120)
    finally:
        os.chmod(logdir, 0o755)
    assert r.returncode == 0, r.stderr
    assert str(logdir / "run") in r.stdout and "Permission denied" in r.stdout, r.stdout
    assert os.listdir(logdir) == []


# --------------------------------------------------------------------------
# Fork and Ctrl-C (issue 14)

def small_record(seed, T=4):
    from tests.support.records import self_record
    return self_record(np.random.default_rng(seed), 2, 2, ["t%d" % i for i in range(T)])


def test_a_forked_child_using_the_writer_is_refused_never_hangs(tmp_path):
    """A DataLoader worker / os.fork child inherits the writer without its
    thread: it hung forever at the 10th record."""
    import multiprocessing
    from tb_attention import AttentionWriter, AttentionWriterError
    writer = AttentionWriter(str(tmp_path))
    writer.add_attention("probe", small_record(0), global_step=0)
    read, write = os.pipe()

    def child():
        os.close(read)
        messages = []
        for step in range(12):
            try:
                writer.add_attention("probe", small_record(step), global_step=100 + step)
                messages.append("written")
            except AttentionWriterError as e:
                messages.append(str(e))
        writer.close()  # the copy: must not touch the parent's file
        os.write(write, json.dumps(messages).encode())
        os.close(write)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    os.close(write)
    proc.join(timeout=60)
    hung = proc.is_alive()
    if hung:
        proc.kill()
    assert not hung, "the forked child hung"
    with os.fdopen(read, "rb") as f:
        messages = json.loads(f.read())
    assert len(messages) == 12 and len(set(messages)) == 1, messages
    assert "was created in process %d" % os.getpid() in messages[0], messages[0]
    assert "create an AttentionWriter in the child" in messages[0]
    writer.add_attention("probe", small_record(1), global_step=1)  # the parent goes on
    writer.close()
    log = load(str(tmp_path))
    assert log.steps(".", "probe") == [0, 1]
    assert [log.header(".", "probe", s).sequence for s in (0, 1)] == [0, 1]


def test_ctrl_c_while_add_attention_waits_loses_no_byte_budget_nor_a_sequence_number(tmp_path):
    """Ctrl-C while add_attention waited on the full queue leaked the
    record's bytes from the queue's budget and advanced the sequence number."""
    import threading
    from tb_attention import AttentionWriter
    # Python leaves SIGINT ignored when it starts ignored (a background job
    # of a script): this test then waited forever for its Ctrl-C
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    writer = AttentionWriter(str(tmp_path), max_queue=1)
    record = small_record(0)
    nbytes = record.kind("self").attention.nbytes
    # Hold the event file writer's own lock: the background thread blocks
    # writing record 0, record 1 waits in the queue, record 2 in add_attention.
    file_lock = writer._sink._writer._async_writer._lock
    file_lock.acquire()
    try:
        writer.add_attention("probe", record, global_step=0)
        writer.add_attention("probe", record, global_step=1)

        def ctrl_c():
            wait_until(lambda: writer._queued_bytes == 3 * nbytes, timeout=60, interval=0.01,
                       what="add_attention of step 2 waiting")
            os.kill(os.getpid(), signal.SIGINT)

        presser = threading.Thread(target=ctrl_c)
        presser.start()
        interrupted = False
        try:
            writer.add_attention("probe", record, global_step=2)
        except KeyboardInterrupt:
            interrupted = True
        presser.join()
        assert interrupted
        assert writer._queued_bytes == 2 * nbytes  # step 2's bytes given back
    finally:
        file_lock.release()
        signal.signal(signal.SIGINT, previous)
    writer.flush()
    assert writer._queued_bytes == 0
    writer.add_attention("probe", record, global_step=3)
    writer.close()
    log = load(str(tmp_path))
    assert log.steps(".", "probe") == [0, 1, 3]
    # no gap: step 2 was never written, so it took no sequence number
    assert [log.header(".", "probe", s).sequence for s in (0, 1, 3)] == [0, 1, 2]


# --------------------------------------------------------------------------
# Two writers on one tag (issue 14)

def two_writers(root, at_once):
    """Steps 0..49 of one tag by two AttentionWriters in one run directory:
    alternating (at once) or one after the other (a resumed run)."""
    from tb_attention import AttentionWriter
    record = small_record(0)
    a, b = AttentionWriter(root), AttentionWriter(root)
    for step in range(50):
        w = (a if step % 2 == 0 else b) if at_once else (a if step < 25 else b)
        w.add_attention("probe", record, global_step=step)
        w.flush()
        if not at_once and step == 24:
            a.close()
    a.close()
    b.close()


def test_two_writers_at_once_are_named_by_load_and_the_steps_route(tmp_path):
    """Two live writers on one tag: the Rust loader showed 26 of 50 steps and
    nothing said why."""
    from tb_attention import provenance
    from tests.support.backends import WsgiBackend, url
    two_writers(str(tmp_path / "both"), at_once=True)
    two_writers(str(tmp_path / "resumed"), at_once=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = load(str(tmp_path))
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and said[0].startswith("tag 'probe' of run 'both' was logged by 2 writers "
                                                 "at once"), said
    assert log.steps("both", "probe") == list(range(50)) == log.steps("resumed", "probe")
    ids = {log.header("both", "probe", s).writer_id for s in (0, 1)}
    assert all(i[:8] in said[0] for i in ids)
    # the dashboard's steps answer (the Python loader keeps both writers' steps)
    backend = WsgiBackend(tmp_path)
    both = backend.get(url("steps", run="both", tag="probe")).json()
    assert both["warning"].startswith("tag 'probe' of run 'both' was logged by 2 writers at once")
    assert "warning" not in backend.get(url("steps", run="resumed", tag="probe")).json()
    # the rule: overlapping wall-time spans, whatever the order of the steps
    assert provenance.concurrent_writers([("a", 1), ("b", 2), ("a", 3)]) == ["a", "b"]
    assert provenance.concurrent_writers([("a", 1), ("a", 2), ("b", 3), ("c", 4)]) == []
    assert provenance.concurrent_writers([("a", 1), ("a", 9), ("b", 2), ("c", 10)]) == ["a", "b"]
