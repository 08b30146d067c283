"""Hardening (issue 7): faults, old formats, foreign files and hostile input,
with real parts only.

Faults are real: a training process SIGKILLed while the kernel had cut its
write of a large record short (RLIMIT_FSIZE, the torn tail a crash inside
write(2) leaves), an event file made read-only under a training process
running as an unprivileged user, TensorBoard's two loaders reading the
result. The format-1 logdir in tests/fixtures/format-v1 was written once by
tests/fixtures/make_format_v1.py and is never regenerated here.

Routes are exercised through TensorBoard's own WSGI app over a real
EventMultiplexer and MultiplexerDataProvider (what `--load_fast=false` runs,
in process: fast enough to fuzz) and one real `tensorboard --load_fast=true`
subprocess (Rust data server) for this module.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.parse
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
from tensorboard.context import RequestContext
from tensorboard.data import provider as tb_provider

from conftest import REPO, wait_until
from test_plugin import WsgiBackend, attention_event, write_event_file
from test_writer import blob_steps, provider_blobs, python_loader, record_boundaries, rust_data_server
from tb_attention import (AttentionInputError, AttentionRecord, AttentionWriter,
                          KindRecord, codec, load, metadata)
from tb_attention import plugin as plugin_module

PREFIX = "/data/plugin/attention/"
FIXTURE = os.path.join(REPO, "tests", "fixtures", "format-v1")
UINT8_TOL = 1.0 / 510 + 1e-6


def softmax(rng, L, H, Tq, Tk):
    x = rng.standard_normal((L, H, Tq, Tk)).astype(np.float32) * 3
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def uint8_of(att):
    return np.rint(np.clip(att, 0, 1) * 255).astype(np.uint8)


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
    w = AttentionWriter(logdir)
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
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(BUSY_CHILD), str(tmp_path), str(n)],
                             stdout=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)
    try:
        path, flushed = child.stdout.readline().split()
        limit = int(flushed) + 8 * 2 ** 20
        wait_until(lambda: os.path.getsize(path) == limit, timeout=120,
                   what="the child to write 8 MiB of its first large record")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    ends, torn = record_boundaries(path)
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


# --------------------------------------------------------------------------
# One logdir for the route tests: the format-1 fixture, foreign files,
# hostile names, tokens and steps. Served by TensorBoard's WSGI app (Python
# loader) and by one real `tensorboard --load_fast=true`.

LONG_TOKEN = "\u05d0<b>" * 25000  # 100k characters, RTL letters and markup
HOSTILE_TOKENS = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "&amp;&lt;", LONG_TOKEN,
    "\u202eevil\u202c", "\u200f\u200e", "a\u200bb\u200dc\ufeff", "nul\x00byte", "\ud800", "\udfff x",
    "\"}]", "\\u0000", "%00", "../../etc/passwd", "\U0001f600",
]
# Foreign bytes in a step header (another writer): decoded with U+FFFD (docs/routes.md).
INVALID_UTF8 = [b"\xff\xfe", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"fine"]
INVALID_UTF8_SHOWN = ["\ufffd\ufffd", "ok\ufffd", "\ud800", "\ufffd\ufffd", "fine"]
SPLIT_BOUND = 2 * 8 * 8
NAMED_RUN = os.path.join("names", "ü run with spaces", "d\u00e9j\u00e0 vu")
NAMED_TAGS = ["probe/with/slashes", "ü tag with spaces", "sp ace/../dots", "%2e%2e", "tag?&=#"]
STEPS = [0, 1, 2 ** 53 + 1, 2 ** 62, 2 ** 62 + 1, 2 ** 63 - 1]


class Served:
    def __init__(self, root):
        self.root = str(root)
        self.rng = np.random.default_rng(77)
        self.written = {}  # (run, tag, step) -> AttentionRecord

    def record(self, L=2, H=2, tokens=tuple("abcd"), layer_ids=None):
        T = len(tokens)
        kind = KindRecord("self", softmax(self.rng, L, H, T, T), tuple(tokens), tuple(tokens),
                          tuple(layer_ids or range(L)))
        return AttentionRecord([kind])

    def log(self, writer, run, tag, step, record):
        writer.add_attention(tag, record, global_step=step)
        self.written[(run, tag, step)] = record


def build_served(root):
    import torch.utils.tensorboard as torch_tb

    s = Served(root)
    shutil.copytree(os.path.join(FIXTURE, "run"), os.path.join(s.root, "format-v1"))
    with AttentionWriter(os.path.join(s.root, "good")) as w:
        for step in range(3):
            s.log(w, "good", "probe", step, s.record(L=2, H=3, layer_ids=(0, 5)))
    # Format 2: layers above codec.LAYER_BLOB_BYTES split into blobs of whole
    # heads; here 5 heads of 8 x 8 uint8 with a 128-byte bound: heads 0-1, 2-3, 4.
    saved = codec.LAYER_BLOB_BYTES
    codec.LAYER_BLOB_BYTES = SPLIT_BOUND
    try:
        with AttentionWriter(os.path.join(s.root, "split")) as w:
            for step in range(2):
                s.log(w, "split", "probe", step, s.record(L=2, H=5, tokens=list("abcdefgh"), layer_ids=(3, 9)))
    finally:
        codec.LAYER_BLOB_BYTES = saved
    with AttentionWriter(os.path.join(s.root, "hostile")) as w:
        s.log(w, "hostile", "tokens", 0, s.record(L=1, H=1, tokens=HOSTILE_TOKENS))
    named = NAMED_RUN.replace(os.sep, "/")
    with AttentionWriter(os.path.join(s.root, NAMED_RUN)) as w:
        for tag in NAMED_TAGS:
            s.log(w, named, tag, 7, s.record(L=1, H=1))
        for step in STEPS:
            s.log(w, named, "steps", step, s.record(L=1, H=1))
    # invalid UTF-8 token bytes, as another writer could store them
    blobs = codec.encode_step(s.record(L=1, H=1, tokens=["x"] * len(INVALID_UTF8)), 0, "foreign")
    header = codec.parse_header(blobs[0])
    del header.kinds[0].query_tokens[:]
    header.kinds[0].query_tokens.extend(INVALID_UTF8)
    blobs[0] = header.SerializeToString()
    write_event_file(os.path.join(s.root, "foreign", "bytes"), [attention_event("tokens", 0, blobs)])

    # Foreign files: a torch SummaryWriter's scalars (own run, and next to our
    # file in one run), random bytes named like an event file, and events
    # under our plugin name whose content is not ours.
    sw = torch_tb.SummaryWriter(os.path.join(s.root, "foreign", "torch"))
    for step in range(4):
        sw.add_scalar("loss", 1.0 / (step + 1), step)
    sw.close()
    with AttentionWriter(os.path.join(s.root, "foreign", "mixed")) as w:
        s.log(w, "foreign/mixed", "probe", 0, s.record())
    sw = torch_tb.SummaryWriter(os.path.join(s.root, "foreign", "mixed"))
    for step in range(4):
        sw.add_scalar("loss", float(step), step)
    sw.close()
    os.makedirs(os.path.join(s.root, "foreign", "random"))
    for name in ("events.out.tfevents.1700000000.random", "events.out.tfevents.1800000000.random"):
        with open(os.path.join(s.root, "foreign", "random", name), "wb") as f:
            f.write(np.random.default_rng(len(name)).bytes(5000))

    def ours(tag, step, tensor, content=None):
        md = metadata.create_summary_metadata()
        if content is not None:
            md.plugin_data.content = content
        value = summary_pb2.Summary.Value(tag=tag, metadata=md, tensor=tensor)
        return event_pb2.Event(wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(value=[value]))

    def strings(values):
        t = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
        t.tensor_shape.dim.add(size=len(values))
        return t

    good = s.record()
    s.written[("foreign/ours", "good", 0)] = good
    write_event_file(os.path.join(s.root, "foreign", "ours"), [
        ours("floats", 0, tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 2.0])),
        ours("empty", 0, tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)),
        # well-formed blob sequences whose blobs are not ours
        ours("garbage", 0, strings([b"\x08\xff\xff", b"x"])),
        ours("badcontent", 0, strings([b"junk"]), content=b"\xff\xff\xff"),
        attention_event("good", 0, codec.encode_step(good, 0, "handmade")),
    ])
    return s


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return build_served(tmp_path_factory.mktemp("served"))


def runs_listed(backend):
    """{(run, tag): the tags route's entry merged with its steps route's
    answer}; a tag whose steps route does not answer 200 is left out."""
    r = backend.get(PREFIX + "tags")
    if r.status != 200:
        return {}
    out = {}
    for run in r.json()["runs"]:
        for t in run["tags"]:
            steps = backend.get(q("steps", run=run["run"], tag=t["tag"]))
            if steps.status == 200:
                out[(run["run"], t["tag"])] = dict(t, **steps.json())
    return out


NAMED = NAMED_RUN.replace(os.sep, "/")
# (run, tag) -> newest step both loaders must list once the logdir is loaded
EXPECTED_TAGS = {("format-v1", "probe/v1"): 10, ("good", "probe"): 2, ("split", "probe"): 1, ("hostile", "tokens"): 0,
                 ("foreign/bytes", "tokens"): 0, ("foreign/mixed", "probe"): 0, ("foreign/ours", "good"): 0,
                 (NAMED, "steps"): 2 ** 63 - 1, **{(NAMED, t): 7 for t in NAMED_TAGS}}


class Server:
    """A real tensorboard subprocess answering the same .get() as WsgiBackend."""

    name = "rust"

    def __init__(self, server):
        self.server = server

    def get(self, path):
        from test_plugin import Resp
        status, headers, body = self.server.get(path)
        return Resp(status, headers, body)


@pytest.fixture(scope="module")
def backends(served, tensorboard_factory):
    wsgi = WsgiBackend(served.root)
    wsgi.name = "wsgi"
    rust = Server(tensorboard_factory(served.root, load_fast=True))
    for b in (wsgi, rust):
        wait_until(lambda: all(runs_listed(b).get(key, {}).get("max_step") == step
                               for key, step in EXPECTED_TAGS.items()),
                   timeout=90, what="%s to load the logdir" % b.name)
    return {"wsgi": wsgi, "rust": rust}


@pytest.fixture(params=["wsgi", "rust"])
def backend(request, backends):
    return backends[request.param]


def q(route, **params):
    """A route URL with every parameter percent-encoded (UTF-8)."""
    return PREFIX + route + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def ok(backend, route, **params):
    r = backend.get(q(route, **params))
    assert r.status == 200, (route, params, r)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    return r


# --------------------------------------------------------------------------
# An event file of format version 1 still loads


FIXTURE_FILE = os.path.join(FIXTURE, "run", "events.out.tfevents.1700000000.format-v1")
FIXTURE_SHA256 = "d0d7e2b4027cfbf3b0898fa6460829c2ce3809e86f174e36939ca50d8b373d83"


def fixture_expected():
    with open(os.path.join(FIXTURE, "expected.json")) as f:
        return json.load(f)


def same_floats(got, expected):
    got = np.asarray(got, np.float32).reshape(-1)
    want = np.array([np.nan if v is None else v for v in expected], np.float32)
    np.testing.assert_array_equal(got, want)  # NaN == NaN here


def test_format_v1_fixture_is_the_committed_one():
    import hashlib
    with open(FIXTURE_FILE, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == FIXTURE_SHA256, \
            "tests/fixtures/format-v1 changed: it must stay the file format 1 wrote"


def test_format_v1_fixture_loads_byte_exact_with_load():
    exp = fixture_expected()
    log = load(FIXTURE)
    assert log.runs() == ["run"] and log.tags("run") == ["probe/v1"] and log.steps("run", "probe/v1") == [0, 10]
    for step_text, want in exp["steps"].items():
        step = int(step_text)
        header = log.header("run", "probe/v1", step)
        assert (header.version, header.sequence, header.writer_id) == (1, want["sequence"], "format-v1-fixture")
        assert log.wall_time("run", "probe/v1", step) == want["wall_time"]
        rec = log.get("run", "probe/v1", step)
        assert rec.model_type == want["model_type"] == "bart"
        assert rec.kinds == ("encoder", "cross")
        for name, k in want["kinds"].items():
            assert rec.tokens(name) == (tuple(k["query_tokens"]), tuple(k["key_tokens"]))
            assert rec.layer_ids(name) == tuple(k["layer_ids"])
            att = rec.attention(name)
            for i, hexed in enumerate(k["attention_uint8_hex"]):
                assert uint8_of(att[i]).tobytes().hex() == hexed
            n = rec.neurons(name)
            for i in range(len(k["layer_ids"])):
                for h in range(k["num_heads"]):
                    parts = [n.queries[i, h].astype("<f2").tobytes(), n.keys[i, h].astype("<f2").tobytes(),
                             n.masked[i].astype(np.uint8).tobytes()]
                    if k["has_bias"]:
                        parts.append(n.bias[i, h].astype("<f2").tobytes())
                    assert b"".join(parts).hex() == k["neurons_hex"][i][h]
            assert n.scales[0] == np.float32(k["scale"])
    for name in ("encoder", "cross"):
        got = log.stats("run", "probe/v1", name)
        assert got["steps"].tolist() == [0, 10] and got["layer_ids"].tolist() == [1, 3]
        for stat in got:
            if stat in ("steps", "layer_ids"):
                continue
            for s, step_text in enumerate(("0", "10")):
                want = exp["steps"][step_text]["kinds"][name]["stats"][stat]
                if want is None:
                    assert np.isnan(got[stat][s]).all(), (name, stat)
                else:
                    same_floats(got[stat][s], want)


def test_format_v1_fixture_through_the_routes(backend):
    exp = fixture_expected()
    entry = runs_listed(backend)[("format-v1", "probe/v1")]
    assert entry["steps"] == [0, 10] and entry["written"] == 2 and entry["model_type"] == "bart"
    assert [k["name"] for k in entry["kinds"]] == ["encoder", "cross"]
    base = dict(run="format-v1", tag="probe/v1")
    for step_text, want in exp["steps"].items():
        header = ok(backend, "header", step=step_text, **base).json()
        assert header["wall_time"] == want["wall_time"] and header["sequence"] == want["sequence"]
        for kind in header["kinds"]:
            k = want["kinds"][kind["name"]]
            assert kind["query_tokens"] == k["query_tokens"] and kind["key_tokens"] == k["key_tokens"]
            assert kind["layer_ids"] == k["layer_ids"] and kind["dtype"] == "uint8"
            assert kind["head_dim"] == k["head_dim"] and kind["has_neurons"]
            for i, layer in enumerate(k["layer_ids"]):
                params = dict(base, step=step_text, kind=kind["name"], layer=layer)
                assert ok(backend, "attention", **params).body.hex() == k["attention_uint8_hex"][i]
                per_head = bytes.fromhex(k["attention_uint8_hex"][i])
                size = len(per_head) // k["num_heads"]
                for h in range(k["num_heads"]):
                    assert ok(backend, "attention", head=h, **params).body == per_head[h * size:(h + 1) * size]
                    r = ok(backend, "neurons", head=h, **params)
                    assert r.body.hex() == k["neurons_hex"][i][h]
                    assert r.headers["X-Neuron-Has-Bias"] == ("1" if k["has_bias"] else "0")
                    assert np.float32(float(r.headers["X-Neuron-Scale"])) == np.float32(k["scale"])
    for name in ("encoder", "cross"):
        body = ok(backend, "stats", kind=name, **base).json()
        assert body["steps"] == [0, 10] and body["layer_ids"] == [1, 3] and body["errors"] == []
        for stat, rows in body["stats"].items():
            for s, step_text in enumerate(("0", "10")):
                want = exp["steps"][step_text]["kinds"][name]["stats"][stat]
                if want is None:
                    assert rows[s] is None or all(v is None for v in rows[s]), (name, stat, rows[s])
                else:
                    same_floats([np.nan if v is None else v for v in rows[s]], want)


# --------------------------------------------------------------------------
# Foreign event files: a clear error or skip, nothing else lost


def test_foreign_files_are_skipped_with_a_warning_by_load(served):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = load(served.root)
    messages = sorted(str(c.message) for c in caught)
    random_dir = os.path.join(served.root, "foreign", "random")
    assert len(messages) == 2 and all(m.startswith(random_dir) and "corrupt" in m for m in messages), messages
    assert "foreign/random" not in log.runs() and "foreign/torch" not in log.runs()  # no attention there
    assert set(log.tags("foreign/ours")) == {"floats", "empty", "garbage", "badcontent", "good"}
    for tag, says in (("floats", "no blobs"), ("empty", "no blobs"), ("garbage", "header is corrupt"),
                      ("badcontent", "header is corrupt")):
        with pytest.raises(metadata.FormatError, match=says):
            log.get("foreign/ours", tag, 0)
    np.testing.assert_allclose(log.get("foreign/ours", "good", 0).attention(),
                               served.written[("foreign/ours", "good", 0)].attention(), atol=UINT8_TOL)
    # nothing else lost: every attention step written is there
    for (run, tag, step), record in served.written.items():
        assert step in log.steps(run, tag)
    assert log.steps("foreign/mixed", "probe") == [0]


def test_foreign_files_through_the_routes(backend, served):
    listed = runs_listed(backend)
    for key, step in EXPECTED_TAGS.items():  # nothing else lost
        assert listed[key]["steps"][-1] == step, key
    assert not any(run in ("foreign/random", "foreign/torch") for run, _ in listed)
    foreign = {tag: entry for (run, tag), entry in listed.items() if run == "foreign/ours"}
    if backend.name == "rust":
        # The data server drops tensors that are not rank-1 string tensors.
        assert set(foreign) == {"good", "garbage", "badcontent"}
    else:
        assert set(foreign) == {"good", "garbage", "badcontent", "floats", "empty"}
    for tag, entry in foreign.items():
        if tag == "good":
            assert "error" not in entry
            continue
        assert entry["kinds"] == [] and "step 0" in entry["error"], entry  # listed, saying what is wrong
        r = backend.get(q("header", run="foreign/ours", tag=tag, step=0))
        assert r.status == 500, r  # the documented corrupt-payload case, JSON naming it
        message = r.error()
        assert ("corrupt" in message or "not attention data" in message) and "Traceback" not in message
    for tag in {"floats", "empty"} - set(foreign):
        assert backend.get(q("header", run="foreign/ours", tag=tag, step=0)).status == 404
    good = served.written[("foreign/ours", "good", 0)]
    for layer in (0, 1):
        body = ok(backend, "attention", run="foreign/ours", tag="good", step=0, kind="self", layer=layer).body
        assert body == uint8_of(good.attention()[layer]).tobytes()
    # The torch scalars next to our file and in their own run are all there.
    for run, values in (("foreign/torch", [1.0, 0.5, 1 / 3, 0.25]), ("foreign/mixed", [0.0, 1.0, 2.0, 3.0])):
        r = backend.get("/data/plugin/scalars/scalars?" + urllib.parse.urlencode(dict(run=run, tag="loss")))
        if backend.name == "wsgi" and r.status == 404:
            pytest.skip("the in-process app has no scalars plugin")
        assert r.status == 200, r
        np.testing.assert_allclose([p[2] for p in json.loads(r.body)], values, rtol=1e-6)


# --------------------------------------------------------------------------
# Hostile tokens, names and steps


def quiet_load(root):
    """load() of a logdir with foreign files (their warnings are tested above)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(root)


def test_hostile_tokens_written_read_back_and_served_as_json_text(backend, served):
    assert len(LONG_TOKEN) == 100000
    rec = quiet_load(served.root).get("hostile", "tokens", 0)
    assert rec.tokens() == (tuple(HOSTILE_TOKENS), tuple(HOSTILE_TOKENS))
    r = ok(backend, "header", run="hostile", tag="tokens", step=0)
    assert r.headers["Content-Type"] == "application/json"
    kind = r.json()["kinds"][0]
    assert kind["query_tokens"] == HOSTILE_TOKENS and kind["key_tokens"] == HOSTILE_TOKENS
    # Invalid UTF-8 from another writer: U+FFFD (docs/routes.md), never an error.
    shown = ok(backend, "header", run="foreign/bytes", tag="tokens", step=0).json()["kinds"][0]["query_tokens"]
    assert shown == INVALID_UTF8_SHOWN
    assert quiet_load(served.root).get("foreign/bytes", "tokens", 0).tokens()[0] == tuple(INVALID_UTF8_SHOWN)


def test_bytes_tokens_are_refused_by_the_writer(tmp_path):
    a = np.full((1, 1, 2, 2), 0.5, np.float32)
    with AttentionWriter(tmp_path) as w:
        with pytest.raises(AttentionInputError, match=r"query tokens\[0\] is bytes, not a str"):
            w.add_attention("t", a, tokens=[b"\xff", "x"], global_step=0)
    assert load(tmp_path).runs() == []


def test_run_and_tag_names_with_slashes_unicode_and_spaces(backend, served):
    listed = runs_listed(backend)
    assert {tag for run, tag in listed if run == NAMED} == set(NAMED_TAGS) | {"steps"}
    for tag in NAMED_TAGS:
        body = ok(backend, "attention", run=NAMED, tag=tag, step=7, kind="self", layer=0).body
        assert body == uint8_of(served.written[(NAMED, tag, 7)].attention()[0]).tobytes()
        assert ok(backend, "stats", run=NAMED, tag=tag).json()["tag"] == tag
    r = backend.get(q("header", run=NAMED + "/..", tag="steps", step=0))
    assert r.status == 404 and NAMED + "/.." in r.error()


def test_steps_at_0_and_up_to_2_63_minus_1_are_exact_in_json(backend, served):
    r = backend.get(q("steps", run=NAMED, tag="steps"))
    assert r.status == 200
    # JSON integers, digit for digit (a JavaScript client parses the ones
    # above 2**53 to the nearest double: see the report to the coordinator)
    for step in STEPS:
        assert (b" %d," % step in r.body) or (b" %d]" % step in r.body) or (b"[%d," % step in r.body), step
    r = backend.get(q("tags"))
    assert r.status == 200 and b'"max_step": %d}' % max(STEPS) in r.body
    assert runs_listed(backend)[(NAMED, "steps")]["steps"] == STEPS
    for step in STEPS:
        assert ok(backend, "header", run=NAMED, tag="steps", step=step).json()["step"] == step
        body = ok(backend, "attention", run=NAMED, tag="steps", step=step, kind="self", layer=0).body
        assert body == uint8_of(served.written[(NAMED, "steps", step)].attention()[0]).tobytes()
    for bad in (2 ** 63, 2 ** 64, -1, -(2 ** 63)):
        r = backend.get(q("header", run=NAMED, tag="steps", step=bad))
        assert r.status == 400 and "'step'" in r.error(), r
    r = backend.get(q("header", run=NAMED, tag="steps", step=2 ** 62 - 1))
    assert r.status == 404 and "no step %d" % (2 ** 62 - 1) in r.error()


@pytest.mark.parametrize("step,says", [
    (2 ** 63, "global_step must be at most 2**63-1 = 9223372036854775807, got 9223372036854775808"),
    (2 ** 64, "global_step must be at most 2**63-1"),
    (np.uint64(2 ** 63), "global_step must be at most 2**63-1"),
    (-1, "global_step must be >= 0, got -1"),
    (-(2 ** 63), "global_step must be >= 0")])
def test_steps_outside_int64_are_refused_naming_the_range(tmp_path, step, says):
    a = np.full((1, 1, 2, 2), 0.5, np.float32)
    with AttentionWriter(tmp_path) as w:
        with pytest.raises(AttentionInputError, match=re.escape(says)):
            w.add_attention("t", a, tokens=list("ab"), global_step=step)
        w.add_attention("t", a, tokens=list("ab"), global_step=np.int64(2 ** 63 - 1))
    assert load(tmp_path).steps(".", "t") == [2 ** 63 - 1]


# --------------------------------------------------------------------------
# Fuzzing every route's parameters

ROUTES = ("tags", "steps", "header", "attention", "overview", "neurons", "stats")
PARAMS = ("run", "tag", "step", "kind", "layer", "head", "size")
KNOWN = ["good", "probe", "self", "encoder", "cross", "format-v1", "probe/v1", "hostile", "tokens", NAMED,
         "steps", "foreign/ours", "garbage", "floats", "good/..", "0", "1", "2", "3", "5", "7", "10", "64",
         str(2 ** 62), str(2 ** 63 - 1), str(2 ** 63), str(2 ** 31), str(2 ** 31 - 1), "-1", "-0"]
NASTY = ["", "..", "../..", "%2e%2e", "%2e%2e%2f", "%00", "\x00", "%ff%fe", "%", "%zz", "%%", "%2", "9" * 400,
         "-" + "9" * 40, "+1", "1e3", "0x10", " 1", "1 ", "\u0661", "1.0", "1_0", "NaN", "inf", "null", "[]",
         "{}", "<script>", "\u202e", "\u200b", "%u0041", "%C0%AE%C0%AE", "..%5c..", "/etc/passwd"]
# Parameter values: what a page could send, what a script could send.
VALUES = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(NASTY),
    st.integers(min_value=-(2 ** 80), max_value=2 ** 80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=30),  # any code point, surrogates too
    st.binary(max_size=12).map(lambda b: "".join("%%%02X" % c for c in b)),  # raw percent-encoded bytes
)
STATIC_PARTS = st.one_of(
    st.sampled_from(["..", ".", "", "%2e%2e", "%2E%2E", "%2f", "%5c", "..%2f", "..%5c", "%00", "index.js",
                     "app.js", "style.css", "views", "tests", "README.md", "%2e%2e%2f%2e%2e%2fplugin.py",
                     "etc", "passwd", "..;", "~", "%252e%252e", "index.js%00.txt", "\\..\\"]),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=8),
)
BAD_IN_BODY = (b"Traceback", b"object at 0x", b'File "', b"site-packages", b"Exception(", b"Error(")


def encode(value, keep_percent):
    # keep_percent: the value's own %xx reach the server undecoded by us
    return urllib.parse.quote(value, safe="%" if keep_percent else "", errors="surrogatepass")


@st.composite
def data_requests(draw):
    route = draw(st.sampled_from(ROUTES))
    keys = draw(st.lists(st.one_of(st.sampled_from(PARAMS), st.sampled_from(["", "x", "step[]", "%00"])),
                         max_size=9))
    query = "&".join("%s=%s" % (encode(k, True), encode(draw(VALUES), draw(st.booleans()))) for k in keys)
    return PREFIX + route + ("?" + query if query or draw(st.booleans()) else "")


VALID = [  # requests that answer 200; mutated_requests() breaks one or two parameters
    ("header", dict(run="good", tag="probe", step="1")),
    ("attention", dict(run="good", tag="probe", step="1", kind="self", layer="5", head="2")),
    ("overview", dict(run="format-v1", tag="probe/v1", step="10", kind="cross", size="3")),
    ("neurons", dict(run="format-v1", tag="probe/v1", step="0", kind="encoder", layer="3", head="1")),
    ("stats", dict(run="format-v1", tag="probe/v1", kind="encoder")),
    ("stats", dict(run="good", tag="probe")),
    ("steps", dict(run=NAMED, tag="steps")),
    ("header", dict(run=NAMED, tag="steps", step=str(2 ** 62))),
    ("attention", dict(run="foreign/ours", tag="good", step="0", kind="self", layer="0")),
    ("attention", dict(run="split", tag="probe", step="1", kind="self", layer="9", head="3")),
    ("overview", dict(run="split", tag="probe", step="0", kind="self", size="3")),
]


@st.composite
def mutated_requests(draw):
    route, params = draw(st.sampled_from(VALID))
    params = dict(params)
    for _ in range(draw(st.integers(1, 2))):
        key = draw(st.sampled_from(PARAMS))
        if draw(st.integers(0, 4)) == 0:
            params.pop(key, None)
        else:
            params[key] = draw(VALUES)
    keep = draw(st.booleans())
    return PREFIX + route + "?" + "&".join("%s=%s" % (k, encode(v, keep)) for k, v in params.items())


@st.composite
def static_requests(draw):
    parts = draw(st.lists(STATIC_PARTS, min_size=1, max_size=6))
    return PREFIX + "static/" + "/".join(encode(p, True) for p in parts)


def frontend_files():
    """Every file the installed package's frontend directory holds, by content."""
    root = plugin_module._frontend_root()
    contents = set()
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                contents.add(f.read())
    return contents


def check_response(path, r, served_files):
    is_static = path.startswith(PREFIX + "static/")
    if not (is_static and r.status == 200):  # the dashboard's own JS may say "Error("
        for bad in BAD_IN_BODY:
            assert bad not in r.body, (path, r)
    if r.status == 200:
        if is_static:
            assert r.body in served_files, path  # nothing outside the frontend directory
        else:
            assert r.headers["Content-Type"] in ("application/json", "application/octet-stream"), (path, r)
        return
    if is_static and r.headers.get("Content-Type", "").startswith("text/plain") and r.status == 404:
        return  # TensorBoard's own 404 for a path no route matches (e.g. ".../static/" alone)
    assert r.status in (400, 404, 500), (path, r)
    message = r.error()  # {"error": {"message": str}} and nothing else
    assert isinstance(message, str) and message, (path, r)
    if r.status == 500:  # only the documented case: a step whose payload is corrupt
        assert "corrupt" in message or "not attention data" in message, (path, r)


def fuzz(backend, examples):
    served_files = frontend_files()
    assert served_files, "the installed package has no frontend files"
    seen = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(data_requests(), mutated_requests(), mutated_requests(), static_requests()))
    def one(path):
        r = backend.get(path)
        seen.append((path, r.status))
        check_response(path, r, served_files)

    one()
    return seen


FUZZ_EXAMPLES = {"wsgi": 1000, "rust": 300}


@pytest.mark.parametrize("name", sorted(FUZZ_EXAMPLES))
def test_fuzzed_route_parameters_never_500_nor_leak(backends, name):
    seen = fuzz(backends[name], FUZZ_EXAMPLES[name])
    assert len(seen) == FUZZ_EXAMPLES[name]
    statics = sum(p.startswith(PREFIX + "static/") for p, _ in seen)
    tally = {}
    for p, status in seen:
        key = ("static " if p.startswith(PREFIX + "static/") else "data ") + str(status)
        tally[key] = tally.get(key, 0) + 1
    print("fuzzed %s: %d requests (%d static paths): %s" % (name, len(seen), statics, sorted(tally.items())))
    # the fuzz reached past the parameter checks, not only into them
    assert statics > FUZZ_EXAMPLES[name] // 10
    assert all(tally.get("data %d" % s, 0) > 0 for s in (200, 400, 404)), tally


# --------------------------------------------------------------------------
# Writer inputs: a bad value in every argument, a clear error naming it,
# nothing written (the cases tests/test_writer.py does not try)

_A = np.full((2, 3, 4, 4), 0.25, np.float32)
_T = list("abcd")
_REC = AttentionRecord([KindRecord("self", _A, tuple(_T), tuple(_T), (0, 1))])
ADD_CASES = {  # name: (add_attention keyword arguments over the good ones, pattern)
    "tag bytes": (dict(tag=b"probe"), r"tag must be a non-empty string, got b'probe'"),
    "tag int": (dict(tag=5), "tag must be a non-empty string, got 5"),
    "attention None": (dict(attention=None), r"attentions has shape \(\)"),
    "attention dict": (dict(attention={"a": 1}), "attentions is not a numeric array"),
    "attention text": (dict(attention="abc"), "attentions is not a numeric array"),
    "attention objects": (dict(attention=np.array([object()] * 16).reshape(1, 1, 4, 4)),
                          "attentions is not a numeric array"),
    "tokens int": (dict(tokens=5), "query tokens must be a list of token strings"),
    "tokens triple": (dict(tokens=(_T, _T, _T)), r"query tokens\[0\] is list, not a str"),
    "step text": (dict(global_step="5"), "global_step must be an int, got '5'"),
    "step numpy float": (dict(global_step=np.float64(5)), "global_step must be an int"),
    "walltime text": (dict(walltime="now"), "walltime must be a finite number"),
    "walltime NaN": (dict(walltime=float("nan")), "walltime must be a finite number"),
    "walltime inf": (dict(walltime=float("inf")), "walltime must be a finite number"),
    "walltime bool": (dict(walltime=True), "walltime must be a finite number"),
    "layer_ids repeated": (dict(layer_ids=(1, 1)), "layer_ids must be distinct"),
    "layer_ids negative": (dict(layer_ids=(-1, 0)), "layer_ids must be distinct non-negative ints"),
    "layer_ids text": (dict(layer_ids="01"), "layer_ids must be ints"),
    "layer_ids int": (dict(layer_ids=5), "layer_ids must be a sequence of ints"),
    # used to break the writer: int32 overflow in the background thread
    "layer_ids above int32": (dict(layer_ids=(0, 2 ** 40)), r"layer_ids must be below 2\*\*31"),
    "segment_b bool": (dict(segment_b=True), "segment_b must be an int, got bool"),
    "segment_b float": (dict(segment_b=1.0), "segment_b must be an int, got float"),
    "segment_b negative": (dict(segment_b=-1), r"segment_b = -1 is outside 0..3"),
    "segment_b triple": (dict(segment_b=(1, 2, 3)), r"segment_b must be an int or a pair"),
    "segment_b pair of text": (dict(segment_b=("a", 1)), "segment_b must be an int, got str"),
    "causal text": (dict(causal="no"), "causal must be True or False, got 'no'"),
    "causal None": (dict(causal=None), "causal must be True or False, got None"),
    "causal int": (dict(causal=2), "causal must be True or False, got 2"),
    "kind None": (dict(kind=None), "attention kind None is not one of"),
    "kind int": (dict(kind=5), "attention kind 5 is not one of"),
    "kind empty": (dict(kind=""), "attention kind '' is not one of"),
    "special_tokens int": (dict(special_tokens=5), "special_tokens must be a sequence of token positions"),
    "special_tokens text": (dict(special_tokens="0"), "special_tokens must be ints"),
    "special_tokens outside": (dict(special_tokens=[9]), r"special_tokens must be distinct positions in 0..3"),
    "special_tokens repeated": (dict(special_tokens=[0, 0]), "special_tokens must be distinct positions"),
    "special_tokens bool": (dict(special_tokens=[True]), "special_tokens must be ints"),
    "record plus causal": (dict(attention=_REC, tokens=None, causal=True), "come from the record"),
    "record plus kind": (dict(attention=_REC, tokens=None, kind="cross"), "come from the record"),
    "record plus special_tokens": (dict(attention=_REC, tokens=None, special_tokens=[0]), "come from the record"),
    "record plus segment_b": (dict(attention=_REC, tokens=None, segment_b=1), "come from the record"),
    "record plus layer_ids": (dict(attention=_REC, tokens=None, layer_ids=(0, 1)), "come from the record"),
}


@pytest.mark.parametrize("case", sorted(ADD_CASES))
def test_add_attention_bad_argument_named_and_nothing_written(tmp_path, case):
    changes, pattern = ADD_CASES[case]
    with AttentionWriter(tmp_path) as w:
        w.add_attention("probe", _A, tokens=_T, global_step=0)
        w.flush()
        size = os.path.getsize(w._sink.path)
        kwargs = dict(tag="probe", attention=_A, tokens=_T, global_step=1)
        kwargs.update(changes)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(AttentionInputError, match=pattern):
                w.add_attention(**kwargs)
        w.flush()
        assert os.path.getsize(w._sink.path) == size  # nothing written
        w.add_attention("probe", _A, tokens=_T, global_step=2)  # and the writer still works
    assert load(tmp_path).steps(".", "probe") == [0, 2]
    assert load(tmp_path).header(".", "probe", 2).sequence == 1  # no sequence number used up


WRITER_CASES = {  # AttentionWriter(...) arguments: (kwargs, exception, pattern)
    "logdir empty": (dict(logdir_or_summary_writer=""), ValueError, "logdir is empty"),
    "logdir None": (dict(logdir_or_summary_writer=None), TypeError, "a logdir path or a torch SummaryWriter, got NoneType"),
    "logdir bytes": (dict(logdir_or_summary_writer=b"/tmp/x"), TypeError, "got bytes"),
    "dtype None": (dict(dtype=None), ValueError, r"dtype must be one of \['float16', 'uint8'\], got None"),
    "dtype upper case": (dict(dtype="UINT8"), ValueError, "dtype must be one of"),
    "dtype numpy": (dict(dtype=np.uint8), ValueError, "dtype must be one of"),
    "max_queue bool": (dict(max_queue=True), ValueError, "max_queue must be a positive int, got True"),
    "max_queue float": (dict(max_queue=1.5), ValueError, "max_queue must be a positive int, got 1.5"),
    "max_queue text": (dict(max_queue="8"), ValueError, "max_queue must be a positive int, got '8'"),
    "max_queue negative": (dict(max_queue=-3), ValueError, "max_queue must be a positive int, got -3"),
}


@pytest.mark.parametrize("case", sorted(WRITER_CASES))
def test_attention_writer_bad_argument_named_and_nothing_created(tmp_path, case):
    kwargs, exception, pattern = WRITER_CASES[case]
    kwargs = dict(kwargs)
    kwargs.setdefault("logdir_or_summary_writer", str(tmp_path / "run"))
    with pytest.raises(exception, match=pattern):
        AttentionWriter(**kwargs)
    assert not (tmp_path / "run").exists() and not os.path.exists("/tmp/x")


@pytest.fixture(scope="module")
def bert():
    from tests.models import tiny_model
    model, tok = tiny_model("bert")
    return model, tok, tok("the cat sat", return_tensors="pt")


def _capture_cases():
    import torch
    return {  # capture(...) arguments over the good ones: pattern of the AttentionInputError
        "model text": (dict(model="bert"), "model must be a transformers model .* got str"),
        "model None": (dict(model=None), "model must be a transformers model .* got NoneType"),
        "model a plain torch module": (dict(model=torch.nn.Linear(2, 2)), "model must be a transformers model"),
        "inputs None": (dict(inputs=None), "inputs must be a BatchEncoding"),
        "inputs empty": (dict(inputs=torch.zeros(1, 0, dtype=torch.long)), "input_ids hold no tokens"),
        "inputs outside the vocabulary": (dict(inputs=torch.tensor([[2, 500, 3]])),
                                          r"token id 500, outside the model's vocabulary 0..98"),
        "inputs negative id": (dict(inputs=torch.tensor([[2, -1, 3]])), "token id -1, outside"),
        "tokenizer text": (dict(tokenizer="bert"), "tokenizer must be a transformers tokenizer .* got str"),
        "neurons text": (dict(neurons="yes"), "neurons must be True or False, got 'yes'"),
        "neurons None": (dict(neurons=None), "neurons must be True or False, got None"),
        "layers float": (dict(layers=[0.5]), "layers must be ints, got 0.5"),
        "layers text": (dict(layers="0"), "layers must be ints, got '0'"),
        "layers bool": (dict(layers=[True]), "layers must be ints, got True"),
        "layers empty": (dict(layers=[]), "layers selects no self layer"),
        "layers outside": (dict(layers={"self": [5]}), r"layer 5 is not in the self attention, which has layers 0..1"),
    }


@pytest.mark.parametrize("case", sorted(_capture_cases()))
def test_capture_bad_argument_named(bert, case):
    from tb_attention import capture
    model, tok, inputs = bert
    changes, pattern = _capture_cases()[case]
    kwargs = dict(model=model, inputs=inputs, tokenizer=tok)
    kwargs.update(changes)
    with pytest.raises(AttentionInputError, match=pattern):
        capture(**kwargs)
    assert model.config._attn_implementation == "sdpa"  # the model is left as it was


def test_a_step_too_large_for_one_event_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """The real bound is 2 GiB (a protobuf message); a smaller one keeps the test small."""
    from tb_attention import writer as writer_module
    monkeypatch.setattr(writer_module, "_MAX_EVENT_BYTES", 4 * 16 * 16 * 3 + 500)
    rng = np.random.default_rng(3)
    with AttentionWriter(tmp_path) as w:
        w.add_attention("probe", softmax(rng, 3, 4, 16, 16), tokens=["t%d" % i for i in range(16)], global_step=0)
        w.flush()
        size = os.path.getsize(w._sink.path)
        with pytest.raises(AttentionInputError, match=r"in one TensorBoard event.*log fewer layers") as info:
            w.add_attention("probe", softmax(rng, 4, 4, 16, 16), tokens=["t%d" % i for i in range(16)],
                            global_step=1)
        assert "self 4x4x16x16 as uint8" in str(info.value)
        w.flush()
        assert os.path.getsize(w._sink.path) == size
        w.add_attention("probe", softmax(rng, 3, 4, 16, 16), tokens=["t%d" % i for i in range(16)], global_step=2)
    assert load(tmp_path).steps(".", "probe") == [0, 2]


def test_statistics_and_quantization_by_chunks_equal_the_whole(monkeypatch):
    """Big layers are processed a few heads (weights) at a time: same numbers."""
    from tb_attention import stats as stats_module
    from tb_attention.proto import attention_pb2
    rng = np.random.default_rng(4)
    a = softmax(rng, 2, 5, 9, 9)
    whole = stats_module.compute(a, (0, 8))
    whole_q = codec.quantize(a, attention_pb2.UINT8)
    monkeypatch.setattr(stats_module, "CHUNK_ELEMENTS", 2 * 81)  # two heads at a time
    monkeypatch.setattr(codec, "QUANTIZE_CHUNK", 100)  # not a multiple of anything
    chunked = stats_module.compute(a, (0, 8))
    for name, v in whole.items():
        np.testing.assert_array_equal(chunked[name], v)
    np.testing.assert_array_equal(codec.quantize(a, attention_pb2.UINT8), whole_q)
    np.testing.assert_array_equal(whole_q, uint8_of(a))



# --------------------------------------------------------------------------
# Format 2: large layers stored as blobs of whole heads


def test_format_2_splits_a_large_layer_into_blobs_of_whole_heads(served):
    log = quiet_load(served.root)
    for step in (0, 1):
        header = log.header("split", "probe", step)
        kind = header.kinds[0]
        assert header.version == 2 and kind.heads_per_blob == 2
        assert len(kind.attention) == 2 * 3  # 2 layers x blobs of heads 0-1, 2-3, 4
        assert [(h0, h1) for _, h0, h1 in codec.layer_parts(kind, 1)] == [(0, 2), (2, 4), (4, 5)]
        want = served.written[("split", "probe", step)].attention()
        got = log.get("split", "probe", step)
        assert got.layer_ids() == (3, 9)
        np.testing.assert_array_equal(uint8_of(got.attention()), uint8_of(want))
    # steps that split nothing stay version 1, readable by tb-attention of format 1
    assert log.header("good", "probe", 0).version == 1 and log.header("good", "probe", 0).kinds[0].heads_per_blob == 0
    assert metadata.FORMAT_VERSION >= 2  # 3 added score steps (tests/test_architectures.py)


def test_format_2_through_the_routes(backend, served):
    base = dict(run="split", tag="probe", kind="self")
    for step in (0, 1):
        want = uint8_of(served.written[("split", "probe", step)].attention())
        for i, layer in enumerate((3, 9)):
            r = ok(backend, "attention", step=step, layer=layer, **base)
            assert r.headers["X-Attention-Shape"] == "5,8,8" and r.body == want[i].tobytes()
            for h in range(5):
                r = ok(backend, "attention", step=step, layer=layer, head=h, **base)
                assert r.headers["X-Attention-Shape"] == "1,8,8" and r.body == want[i, h].tobytes()
        r = ok(backend, "overview", step=step, size=4, **base)
        assert r.headers["X-Attention-Shape"] == "2,5,4,4"
        pooled = want.reshape(2, 5, 4, 2, 4, 2).max(axis=(3, 5))
        assert r.body == pooled.tobytes()
        entry = ok(backend, "header", step=step, run="split", tag="probe").json()["kinds"][0]
        assert entry["num_heads"] == 5 and entry["layer_ids"] == [3, 9]
    stats = ok(backend, "stats", run="split", tag="probe").json()
    assert stats["num_heads"] == 5 and stats["errors"] == [] and len(stats["stats"]["entropy"][0]) == 10


def test_format_2_compare_reads_every_blob_of_each_layer(backend, served):
    from tb_attention import compare
    a, b = (uint8_of(served.written[("split", "probe", step)].attention()).astype(np.float32) / 255
            for step in (0, 1))
    r = ok(backend, "compare", tag="probe", kind="self", run_a="split", step_a=0, run_b="split", step_b=1)
    body = r.json()
    assert body["layer_ids"] == [3, 9] and body["num_heads"] == 5 and body["tokens"]["match"]
    want = np.array([[compare.mean_jsd(a[i, h], b[i, h]) for h in range(5)] for i in range(2)])
    assert np.allclose(np.array(body["jsd"], np.float64), want, atol=1e-5)


def test_format_2_one_head_reads_the_header_and_one_blob(served):
    backend = WsgiBackend(served.root, counting=True)
    counting = backend.provider
    (datum,) = [d for d in counting.real.read_blob_sequences(
        RequestContext(), experiment_id="", plugin_name="attention", downsample=1000,
        run_tag_filter=tb_provider.RunTagFilter(runs=["split"], tags=["probe"]))["split"]["probe"] if d.step == 1]
    kind = codec.parse_header(counting.real.read_blob(RequestContext(), blob_key=datum.values[0].blob_key)).kinds[0]
    before = len(counting.blob_keys)
    r = backend.get(q("attention", run="split", tag="probe", step=1, kind="self", layer=9, head=3))
    assert r.status == 200 and r.headers["X-Attention-Shape"] == "1,8,8"
    part = codec.layer_parts(kind, 1)[1][0]  # layer 9, heads 2-3
    assert counting.blob_keys[before:] == [datum.values[0].blob_key, datum.values[part.index].blob_key]


def test_format_2_header_pointing_at_too_few_blobs_is_corrupt(tmp_path):
    rng = np.random.default_rng(9)
    record = AttentionRecord([KindRecord("self", softmax(rng, 1, 5, 8, 8), tuple("abcdefgh"), tuple("abcdefgh"), (0,))])
    saved = codec.LAYER_BLOB_BYTES
    codec.LAYER_BLOB_BYTES = SPLIT_BOUND
    try:
        blobs = codec.encode_step(record, 0, "test")
    finally:
        codec.LAYER_BLOB_BYTES = saved
    header = codec.parse_header(blobs[0])
    del header.kinds[0].attention[-1]
    blobs[0] = header.SerializeToString()
    with pytest.raises(metadata.FormatError, match="lists 2 attention blobs for 1 layers of 3 blobs"):
        codec.decode_step(blobs)


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
