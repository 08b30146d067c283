"""The logdirs several test modules serve, written by the real AttentionWriter
plus hand-built event files for what the writer never produces."""
import glob
import os
import shutil
import warnings

import numpy as np
from tensorboard.compat.proto import event_pb2, tensor_pb2, types_pb2

from tb_attention import AttentionRecord, AttentionWriter, KindRecord, codec, load, metadata, summary
from tb_attention.proto import attention_pb2
from tests.support import REPO
from tests.support.backends import PREFIX, url
from tests.support.events import (attention_event, foreign_event, records, step_of_version, string_tensor,
                                  write_event_file)
from tests.support.records import neurons_for, self_record, softmax, stored

# ---------------------------------------------------------------------------
# tests/test_plugin.py: every kind of run the routes serve, damaged ones too

HOSTILE = ["[CLS]", "<img src=x onerror=alert(1)>", "</script><script>alert(2)</script>",
           "ü😀", "", 'a"b\\c\n\t', "\ud800"]  # the last one is a lone surrogate
WRITER_ID = "handmade"
ATTENTION_RUNS = {"train", "fp16", "encdec", "torch", "group/ü run", "tampered", "crcbroken", "truncated", "live"}


class Logdir:
    """What was written: written[(run, tag)][step] = (AttentionRecord, dtype)."""

    def __init__(self, root):
        self.root = str(root)
        self.written = {}
        # Newest step each backend must list once the logdir is loaded.
        self.newest = {}
        self.live_writer = None
        self.live_steps = []
        self.rng = np.random.default_rng(1234)

    def log(self, writer, run, tag, step, record, dtype="uint8"):
        writer.add_attention(tag, record, global_step=step)
        self.written.setdefault((run, tag), {})[step] = (record, dtype)

    def path(self, *parts):
        return os.path.join(self.root, *parts)


def build_logdir(root):
    import torch.utils.tensorboard as torch_tb

    log = Logdir(root)
    rng = log.rng

    # train: 30 steps of a 2-of-3-layer model (layer ids 0 and 2) with hostile
    # tokens and a sentence pair; neurons with a score bias; a 130-token record.
    with AttentionWriter(log.path("train")) as w:
        for s in range(30):
            log.log(w, "train", "probe", 10 * s,
                    self_record(rng, 2, 3, HOSTILE, layer_ids=(0, 2), segment_b=3))
        T, L, H, D = 6, 2, 3, 4
        masked = np.broadcast_to(~np.tril(np.ones((T, T), bool)), (L, T, T)).copy()
        n, att = neurons_for(rng, L, H, T, T, D, masked, bias=True)
        kind = KindRecord(name="self", attention=att, query_tokens=tuple("abcdef"),
                          key_tokens=tuple("abcdef"), layer_ids=(0, 2), causal=True, neurons=n)
        log.log(w, "train", "neurons", 0, AttentionRecord([kind], model_type="gpt2"))
        log.log(w, "train", "long", 0, self_record(rng, 2, 2, ["t%d" % i for i in range(130)]))
    log.newest[("train", "probe")] = 290
    log.newest[("train", "neurons")] = 0
    log.newest[("train", "long")] = 0

    # fp16: float16 storage.
    with AttentionWriter(log.path("fp16"), dtype="float16") as w:
        for s in range(3):
            log.log(w, "fp16", "probe", s, self_record(rng, 2, 2, list("abcdefg")), "float16")
        log.log(w, "fp16", "long", 0, self_record(rng, 1, 2, ["t%d" % i for i in range(130)]), "float16")
    log.newest[("fp16", "probe")] = 2
    log.newest[("fp16", "long")] = 0

    # encdec: encoder, decoder and cross attention; neurons (no bias) on cross only.
    enc, dec = ["<s>", "le", "chat", "</s>", "<pad>"], ["<s>", "the", "cat", "</s>"]
    with AttentionWriter(log.path("encdec")) as w:
        for s in (0, 5):
            masked = np.zeros((2, 4, 5), bool)
            masked[:, :, 4] = True  # the encoder's padding
            n, cross = neurons_for(rng, 2, 2, 4, 5, 3, masked, bias=False)
            kinds = [
                KindRecord(name="encoder", attention=softmax(rng, 2, 2, 5, 5), query_tokens=tuple(enc),
                           key_tokens=tuple(enc), layer_ids=(0, 1)),
                KindRecord(name="decoder", attention=softmax(rng, 2, 2, 4, 4, causal=True),
                           query_tokens=tuple(dec), key_tokens=tuple(dec), layer_ids=(0, 1), causal=True),
                KindRecord(name="cross", attention=cross, query_tokens=tuple(dec), key_tokens=tuple(enc),
                           layer_ids=(0, 1), neurons=n),
            ]
            log.log(w, "encdec", "translate", s, AttentionRecord(kinds, model_type="bart"))
    log.newest[("encdec", "translate")] = 5

    # torch: attention in a torch SummaryWriter's own event file, next to its
    # scalars and images; scalars_only: a run without attention.
    sw = torch_tb.SummaryWriter(log.path("torch"))
    aw = AttentionWriter(sw)
    for s in range(5):
        sw.add_scalar("loss", 1.0 / (s + 1), s)
        sw.add_image("sample", rng.random((3, 8, 8)), s)
        if s % 2 == 0:
            log.log(aw, "torch", "probe", s, self_record(rng, 1, 2, list("xyz")))
    aw.close()
    sw.close()
    log.newest[("torch", "probe")] = 4
    sw = torch_tb.SummaryWriter(log.path("scalars_only"))
    for s in range(3):
        sw.add_scalar("loss", float(s), s)
        sw.add_image("sample", rng.random((3, 4, 4)), s)
    sw.close()

    # Runs the plugin must ignore: empty, and garbage named like an event file
    # (in its own run and next to our attention). Not here: well-framed
    # records that are not Event protos; TensorBoard's Python loader raises
    # DecodeError from Reload() on those, whatever plugins are installed.
    os.makedirs(log.path("empty"))
    os.makedirs(log.path("garbage"))
    with open(log.path("garbage", "events.out.tfevents.1700000000.garbage"), "wb") as f:
        f.write(np.random.default_rng(7).bytes(4000))

    # nested run with a non-ASCII name.
    with AttentionWriter(log.path("group", "ü run")) as w:
        log.log(w, "group/ü run", "probe", 3, self_record(rng, 1, 1, list("ab")))
    log.newest[("group/ü run", "probe")] = 3

    # tampered: valid event records (so both loaders keep them) whose payloads
    # do not match their step header: the damage only our own CRC catches.
    events, tokens = [], list("abcd")
    for step in range(5):
        record = self_record(rng, 2, 2, tokens)
        blobs = summary.step_blobs(record, step, WRITER_ID)
        if step == 0:  # a foreign writer's invalid UTF-8 token
            header = codec.parse_header(blobs[0])
            header.kinds[0].query_tokens[0] = b"\xffab"
            blobs[0] = header.SerializeToString()
        elif step == 1:  # layer 1: one byte flipped, same length
            b = bytearray(blobs[2])
            b[len(b) // 2] ^= 0x5A
            blobs[2] = bytes(b)
        elif step == 2:  # layer 0: truncated
            blobs[1] = blobs[1][: len(blobs[1]) // 2]
        elif step == 3:  # the header itself
            blobs[0] = b"\x00\x01 not a header"
        log.written.setdefault(("tampered", "probe"), {})[step] = (record, "uint8")
        events.append(attention_event("probe", step, blobs))
    ok, bad = self_record(rng, 1, 2, tokens), self_record(rng, 1, 2, tokens)
    log.written[("tampered", "bad_newest")] = {0: (ok, "uint8"), 1: (bad, "uint8")}
    # the writer's 8th and 9th steps (sequence 7 and 8: seven earlier ones not
    # kept): `written` is 7 + 1 + the one unreadable newer step = 9
    events.append(attention_event("bad_newest", 0, summary.step_blobs(ok, 7, WRITER_ID)))
    events.append(attention_event("bad_newest", 1, [b"\xff\xff", *summary.step_blobs(bad, 8, WRITER_ID)[1:]]))
    events.append(attention_event("future", 0, step_of_version(ok, 0, WRITER_ID, metadata.FORMAT_VERSION + 1)))
    # plugin metadata of a newer format version, over a step this version reads
    newer = metadata.create_summary_metadata()
    newer.plugin_data.content = attention_pb2.AttentionPluginData(
        version=metadata.FORMAT_VERSION + 1).SerializeToString()
    log.written[("tampered", "newer_metadata")] = {0: (ok, "uint8")}
    events.append(attention_event("newer_metadata", 0, summary.step_blobs(ok, 0, WRITER_ID), summary_metadata=newer))
    write_event_file(log.path("tampered"), events)
    log.newest.update({("tampered", "probe"): 4, ("tampered", "bad_newest"): 1, ("tampered", "future"): 0,
                       ("tampered", "newer_metadata"): 0})

    # crcbroken: one byte flipped inside the layer-1 payload of step 2 in the
    # event file (the record's CRC fails, the record still parses).
    # truncated: the file cut in the middle of the last record.
    for run in ("crcbroken", "truncated"):
        with AttentionWriter(log.path(run)) as w:
            for s in range(5):
                log.log(w, run, "probe", s, self_record(rng, 2, 2, tokens))
    (path,) = glob.glob(log.path("crcbroken", "events.out.tfevents.*"))
    data = bytearray(open(path, "rb").read())
    payload = stored(log.written[("crcbroken", "probe")][2][0].attention()[1], "uint8").tobytes()
    for record in records(path):
        event = event_pb2.Event.FromString(record.payload)
        if event.step == 2 and event.HasField("summary"):
            at = record.payload_start + record.payload.index(payload)
            data[at + len(payload) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    (path,) = glob.glob(log.path("truncated", "events.out.tfevents.*"))
    last = records(path)[-1]
    with open(path, "r+b") as f:
        f.truncate(last.payload_start + last.length // 2)
    # The Python loader drops the damaged record and, measured, reads no
    # further in that file; the Rust data server only checksums records that
    # fail to parse (`--no-checksum` is its default), so it keeps all five.
    log.newest[("crcbroken", "probe")] = {"rust": 4, "python": 1, "wsgi": 1}
    log.newest[("truncated", "probe")] = 3

    # live: an open writer; tests add steps while the servers run.
    log.live_writer = AttentionWriter(log.path("live"))
    return log


def live_log(log, step):
    """Log one more step to the run "live" while servers run."""
    record = self_record(log.rng, 2, 2, list("live"))
    log.log(log.live_writer, "live", "probe", step, record)
    log.live_writer.flush()
    log.live_steps.append(step)
    log.newest[("live", "probe")] = step
    return record


# ---------------------------------------------------------------------------
# tests/test_hardening_format.py and test_hardening_fuzz.py: the format-1
# fixture, format 2, foreign files, hostile names, tokens and steps

FIXTURE = os.path.join(REPO, "tests", "fixtures", "format-v1")
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
    blobs = summary.step_blobs(s.record(L=1, H=1, tokens=["x"] * len(INVALID_UTF8)), 0, "foreign")
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

    good = s.record()
    s.written[("foreign/ours", "good", 0)] = good
    write_event_file(os.path.join(s.root, "foreign", "ours"), [
        foreign_event("floats", 0, tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 2.0])),
        foreign_event("empty", 0, tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)),
        # well-formed blob sequences whose blobs are not ours
        foreign_event("garbage", 0, string_tensor([b"\x08\xff\xff", b"x"])),
        foreign_event("badcontent", 0, string_tensor([b"junk"]), content=b"\xff\xff\xff"),
        attention_event("good", 0, summary.step_blobs(good, 0, "handmade")),
    ])
    return s


def runs_listed(backend):
    """{(run, tag): the tags route's entry merged with its steps route's
    answer}; a tag whose steps route does not answer 200 is left out."""
    r = backend.get(PREFIX + "tags")
    if r.status != 200:
        return {}
    out = {}
    for run in r.json()["runs"]:
        for t in run["tags"]:
            steps = backend.get(url("steps", run=run["run"], tag=t["tag"]))
            if steps.status == 200:
                out[(run["run"], t["tag"])] = dict(t, **steps.json())
    return out


NAMED = NAMED_RUN.replace(os.sep, "/")
# (run, tag) -> newest step both loaders must list once the logdir is loaded
EXPECTED_TAGS = {("format-v1", "probe/v1"): 10, ("good", "probe"): 2, ("split", "probe"): 1, ("hostile", "tokens"): 0,
                 ("foreign/bytes", "tokens"): 0, ("foreign/mixed", "probe"): 0, ("foreign/ours", "good"): 0,
                 (NAMED, "steps"): 2 ** 63 - 1, **{(NAMED, t): 7 for t in NAMED_TAGS}}


def served_loaded(backend):
    """Whether backend lists every tag of EXPECTED_TAGS at its newest step."""
    listed = runs_listed(backend)
    return all(listed.get(key, {}).get("max_step") == step for key, step in EXPECTED_TAGS.items())


def quiet_load(root):
    """load() of a logdir with foreign files (their warnings are tested on their own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(root)
