"""The storage format (issue 7 and 11): one place for it, and old data keeps loading.

TFRecord framing (tb_attention/tfrecord.py), summaries any writer can log
(tb_attention/summary.py) and what the codec stores, each checked against
TensorBoard's own independent code; the format-1 logdir in
tests/fixtures/format-v1 (written once by tests/fixtures/make_format_v1.py,
never regenerated here), format 2 (large layers split into blobs of whole
heads), foreign files and foreign data under our plugin name, through load()
and the routes. The routes answer through TensorBoard's WSGI app (Python
loader) and one real `tensorboard --load_fast=true` over the session's
`served` logdir (tests/support/logdirs.py: build_served; fixtures in conftest.py).
"""
import json
import os
import urllib.parse
import sys
import warnings

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub import errors as tb_errors
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_attention import (AttentionInputError, AttentionRecord, KindRecord, codec, load, metadata, stats,
                          summary, tfrecord)
from tb_attention.proto import attention_pb2
from tests.support import wait_until
from tests.support.backends import CTX, WsgiBackend, blob_steps, get_ok as ok, kept_data, quoted_url as q
from tests.support.logdirs import EXPECTED_TAGS, FIXTURE, SPLIT_BOUND, quiet_load, runs_listed
from tests.support.records import UINT8_TOL, softmax, stored


@pytest.fixture(params=["wsgi", "rust"])
def backend(request, served_backends):
    return served_backends[request.param]

# --------------------------------------------------------------------------
# TFRecord framing against TensorBoard's pure-Python reader and writer

PAYLOADS = [b"", b"x", bytes(range(256)) * 5, np.random.default_rng(0).bytes((1 << 20) + 77)]


def tensorboard_records(path):
    """Payloads read by TensorBoard's own pure-Python record reader."""
    reader = pywrap_tensorflow.PyRecordReader_New(path)
    out = []
    while True:
        try:
            reader.GetNext()
        except tb_errors.OutOfRangeError:
            return out
        out.append(reader.record())


def test_records_framed_here_are_read_by_tensorboard(tmp_path):
    path = str(tmp_path / "ours.tfrecord")
    with open(path, "wb") as f:
        for p in PAYLOADS:  # the last one is above 1 MiB: written without a joined copy
            tfrecord.write_record(f.write, p)
    assert tensorboard_records(path) == PAYLOADS
    for data in (b"", b"123456789", PAYLOADS[2]):
        assert tfrecord.masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)


def test_records_framed_by_tensorboard_are_scanned_here(tmp_path):
    path = str(tmp_path / "theirs.tfrecord")
    writer = RecordWriter(open(path, "wb"))
    for p in PAYLOADS:
        writer.write(p)
    writer.close()
    data = open(path, "rb").read()
    records = list(tfrecord.scan(data))
    assert [r.status for r in records] == [tfrecord.OK] * len(PAYLOADS)
    assert [r.payload for r in records] == PAYLOADS
    assert records[-1].end == len(data) and records[1].start == records[0].end == 16
    # One byte flipped in a payload: that record only; cut short: torn.
    damaged = bytearray(data)
    damaged[records[2].payload_start + 3] ^= 1
    got = list(tfrecord.scan(bytes(damaged)))
    assert [r.status for r in got] == [tfrecord.OK, tfrecord.OK, tfrecord.BAD_PAYLOAD, tfrecord.OK]
    got = list(tfrecord.scan(data[:records[3].start + 20]))
    assert [r.status for r in got] == [tfrecord.OK] * 3 + [tfrecord.TORN]
    # A flipped length byte: its length cannot be trusted; the scan picks up
    # at the next whole record (issue 14: it stopped there).
    damaged = bytearray(data)
    damaged[records[1].start] ^= 1
    got = list(tfrecord.scan(bytes(damaged)))
    assert [r.status for r in got] == [tfrecord.OK, tfrecord.BAD_HEADER, tfrecord.OK, tfrecord.OK]
    assert (got[1].start, got[1].end) == (records[1].start, records[2].start)
    assert [r.payload for r in got[2:]] == PAYLOADS[2:]
    # Zeros over record 1 and record 2's header: record 2's payload is lost
    # with it; record 3 is found again
    damaged = bytearray(data)
    damaged[records[1].start:records[2].start + 8] = bytes(records[2].start + 8 - records[1].start)
    got = list(tfrecord.scan(bytes(damaged)))
    assert [r.status for r in got] == [tfrecord.OK, tfrecord.BAD_HEADER, tfrecord.OK]
    assert got[1].end == records[3].start and got[2].payload == PAYLOADS[3]


def damaged_log(root, damage):
    """20 steps by the real writer into root/run, then damage(bytearray, [step record spans])."""
    from tb_attention import AttentionWriter
    from tests.support.events import records
    rng = np.random.default_rng(3)
    with AttentionWriter(os.path.join(root, "run")) as w:
        for step in range(20):
            w.add_attention("probe", softmax(rng, 2, 2, 64, 64), tokens=["t%d" % i for i in range(64)],
                            global_step=step)
    (path,) = [os.path.join(root, "run", n) for n in os.listdir(os.path.join(root, "run"))]
    spans = [(r.start, r.end) for r in records(path)][1:]  # after the file_version event
    data = bytearray(open(path, "rb").read())
    damage(data, spans)
    with open(path, "wb") as f:
        f.write(bytes(data))
    return spans


@pytest.mark.parametrize("damage, lost", [
    ("length byte of step 5", [5]),
    ("4 KiB zeroed over the end of step 8 and the header of step 9", [8, 9]),
])
def test_load_resynchronises_after_a_damaged_record_header(tmp_path, damage, lost):
    """Issue 14: a flipped length byte or a zeroed 4 KiB block lost the rest
    of the file under load() (10-11 of 20 steps)."""
    def apply(data, spans):
        if damage.startswith("length"):
            data[spans[5][0]] ^= 0x40
        else:
            start = spans[8][1] - 2048
            data[start:start + 4096] = bytes(4096)
    damaged_log(str(tmp_path), apply)
    with pytest.warns(UserWarning, match="record header at byte \\d+ is corrupt; skipped \\d+ bytes"):
        log = load(str(tmp_path))
        steps = log.steps("run", "probe")
    assert steps == [s for s in range(20) if s not in lost]
    assert log.get("run", "probe", 19).kind("self").query_tokens[-1] == "t63"


# --------------------------------------------------------------------------
# summary.pb: a Summary any writer can log


def record_of(rng, special=(0, 3)):
    a = softmax(rng, 2, 3, 4, 4)
    tokens = ("[CLS]", "a", "b", "[SEP]")
    return AttentionRecord([KindRecord("self", a, tokens, tokens, (0, 4), key_special=special)],
                           model_type="bert")


def test_summary_pb_logged_by_a_torch_summary_writer_reads_back(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(5)
    records = {step: record_of(rng) for step in (3, 7)}
    sw = SummaryWriter(str(tmp_path / "run"))
    for i, (step, record) in enumerate(records.items()):
        pb = summary.pb("probe/x", record, sequence=i, writer_id="my-writer", description="two probes")
        assert isinstance(pb, summary_pb2.Summary) and len(pb.value) == 1
        value = pb.value[0]
        assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
        assert value.metadata.summary_description == "two probes"
        sw._get_file_writer().add_summary(pb, global_step=step)
    sw.close()
    log = load(tmp_path)
    assert log.steps("run", "probe/x") == [3, 7]
    for i, (step, record) in enumerate(records.items()):
        header = log.header("run", "probe/x", step)
        assert (header.sequence, header.writer_id, header.model_type) == (i, "my-writer", "bert")
        got = log.get("run", "probe/x", step)
        np.testing.assert_allclose(got.attention(), record.attention(), atol=UINT8_TOL)
        assert got.layer_ids() == (0, 4) and got.kind().key_special == (0, 3)
    # the statistics of the float attention, computed by pb in the calling thread
    got = log.stats("run", "probe/x")
    want = stats.compute(records[7].attention(), key_special=(0, 3))
    for name in stats.NAMES:
        np.testing.assert_array_equal(got[name][1], want[name])


def test_summary_pb_refuses_what_add_attention_refuses():
    rng = np.random.default_rng(6)
    with pytest.raises(AttentionInputError, match="tag must be a non-empty string"):
        summary.pb(" ", record_of(rng))
    with pytest.raises(AttentionInputError, match="record must be an AttentionRecord"):
        summary.pb("t", np.zeros((1, 1, 2, 2)))
    bad = record_of(rng)
    bad.kind().attention[0, 0, 0, 0] = np.nan
    with pytest.raises(AttentionInputError, match="NaN"):
        summary.pb("t", bad)
    with pytest.raises(ValueError, match="dtype must be one of"):
        summary.pb("t", record_of(rng), dtype="int4")
    # a new writer id each time unless one is given
    ids = {codec.parse_header(summary.pb("t", record_of(rng)).value[0].tensor.string_val[0]).writer_id
           for _ in range(2)}
    assert len(ids) == 2


def test_the_header_stores_every_statistic_stats_computes():
    assert codec.STAT_FIELDS == stats.NAMES
    rng = np.random.default_rng(7)
    record = record_of(rng, special=None)
    values = stats.compute(record.attention(), None)
    blobs = codec.encode_step(record, 0, "w", statistics={"self": values})
    layer_ids, heads, kept = codec.stored_stats(codec.parse_header(blobs[0]), "self")
    assert layer_ids == (0, 4) and heads == 3 and kept["special_tokens"] is None
    for name in stats.NAMES:
        if values[name] is not None:
            np.testing.assert_array_equal(kept[name], values[name])
    assert codec.special_keys(codec.parse_header(blobs[0]), "self") is None
    # a kind left out of statistics stores none, as steps before statistics did
    header = codec.parse_header(codec.encode_step(record, 0, "w", statistics={})[0])
    assert len(header.stats) == 0 and all(v is None for v in codec.stored_stats(header, "self")[2].values())
    assert codec.stored_stats(header, "cross") is None


def test_an_event_of_summary_pb_is_an_event_the_writer_would_write(tmp_path):
    """AttentionWriter builds its Event from the same parts in place."""
    from tb_attention import AttentionWriter

    rng = np.random.default_rng(8)
    record = record_of(rng)
    with AttentionWriter(str(tmp_path)) as w:
        event = w._encode("probe", 5, 1.5e9, record, 2)
    if isinstance(event, bytes):  # its own event file gets the Event's bytes (summary.event_bytes)
        event = event_pb2.Event.FromString(event)
    pb = summary.pb("probe", record, sequence=2, writer_id=w._writer_id)
    assert event.step == 5 and event.wall_time == 1.5e9
    assert event.summary == pb


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
                assert stored(att[i]).tobytes().hex() == hexed
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
    # plugin metadata that does not decode: the listing says so, and lists the tag
    tags = {t["tag"]: t for run in ok(backend, "tags").json()["runs"] if run["run"] == "foreign/ours"
            for t in run["tags"]}
    assert "plugin metadata is not decodable" in tags["badcontent"]["error"]
    assert "error" not in tags["good"] and "error" not in tags["garbage"]
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
        assert body == stored(good.attention()[layer]).tobytes()
    # The torch scalars next to our file and in their own run are all there.
    for run, values in (("foreign/torch", [1.0, 0.5, 1 / 3, 0.25]), ("foreign/mixed", [0.0, 1.0, 2.0, 3.0])):
        r = backend.get("/data/plugin/scalars/scalars?" + urllib.parse.urlencode(dict(run=run, tag="loss")))
        assert r.status == 200, r
        np.testing.assert_allclose([p[2] for p in json.loads(r.body)], values, rtol=1e-6)


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
    np.testing.assert_array_equal(whole_q, stored(a))



# --------------------------------------------------------------------------
# Format 2: large layers stored as blobs of whole heads


def test_format_2_splits_a_large_layer_into_blobs_of_whole_heads(served):
    log = quiet_load(served.root)
    for step in (0, 1):
        header = log.header("split", "probe", step)
        kind = header.kinds[0]
        assert header.version == 4 and kind.heads_per_blob == 2  # 4: its blobs are compressed
        assert len(kind.attention) == 2 * 3  # 2 layers x blobs of heads 0-1, 2-3, 4
        assert [(h0, h1) for _, h0, h1 in codec.layer_parts(kind, 1)] == [(0, 2), (2, 4), (4, 5)]
        want = served.written[("split", "probe", step)].attention()
        got = log.get("split", "probe", step)
        assert got.layer_ids() == (3, 9)
        np.testing.assert_array_equal(stored(got.attention()), stored(want))
    assert log.header("good", "probe", 0).kinds[0].heads_per_blob == 0
    assert metadata.FORMAT_VERSION >= 2  # 3 added score steps (tests/test_architectures.py), 4 compression


def test_format_2_through_the_routes(backend, served):
    base = dict(run="split", tag="probe", kind="self")
    for step in (0, 1):
        want = stored(served.written[("split", "probe", step)].attention())
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
    a, b = (stored(served.written[("split", "probe", step)].attention()).astype(np.float32) / 255
            for step in (0, 1))
    r = ok(backend, "compare", tag="probe", kind="self", run_a="split", step_a=0, run_b="split", step_b=1)
    body = r.json()
    assert body["layer_ids"] == [3, 9] and body["num_heads"] == 5 and body["tokens"]["match"]
    want = np.array([[compare.mean_jsd(a[i, h], b[i, h]) for h in range(5)] for i in range(2)])
    assert np.allclose(np.array(body["jsd"], np.float64), want, atol=1e-5)


def test_format_2_one_head_reads_the_header_and_one_blob(served):
    backend = WsgiBackend(served.root, counting=True)
    counting = backend.provider
    (datum,) = [d for d in kept_data(counting.real, "split", "probe") if d.step == 1]
    kind = codec.parse_header(counting.real.read_blob(CTX, blob_key=datum.values[0].blob_key)).kinds[0]
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
        blobs = summary.step_blobs(record, 0, "test")
    finally:
        codec.LAYER_BLOB_BYTES = saved
    header = codec.parse_header(blobs[0])
    del header.kinds[0].attention[-1]
    blobs[0] = header.SerializeToString()
    with pytest.raises(metadata.FormatError, match=r"claims 1 layers of 5 heads \(3 blobs each\) but lists 2 attention blobs"):
        codec.decode_step(blobs)


def test_a_tag_the_default_loader_cannot_read_is_named_as_such(tmp_path):
    """Issue 14: a run or tag name with '"', '\\' or a control character
    (logged before the writer refused them) made every step answer "TensorBoard
    cannot read its blob 0" under the Rust data server, blaming the data."""
    from tb_attention import store as store_module
    from tests.support.backends import python_loader, rust_data_server
    from tests.support.events import attention_event, write_event_file
    from tests.support.records import self_record
    blobs = summary.step_blobs(self_record(np.random.default_rng(0), 1, 2, list("ab")), 0, "w" * 32)
    write_event_file(str(tmp_path / "run"), [attention_event('say "hi"\t', 0, blobs)])
    with rust_data_server(tmp_path) as provider:
        store = store_module.StepStore(provider)
        key = store_module.StepKey("run", 'say "hi"\t', 0)
        wait_until(lambda: store.tags(CTX, ""), timeout=30, what="the data server to load the run")
        with pytest.raises(store_module.DataLossError) as e:
            store.step(CTX, "", key)
    message = str(e.value)
    assert "TensorBoard's default data server cannot read attention under a run or tag name " \
           "containing '\"', '\\t'" in message and "--load_fast=false" in message, message
    # the Python loader reads it
    _, python_provider = python_loader(tmp_path)
    step = store_module.StepStore(python_provider).step(CTX, "", key)
    assert list(step.header.kinds[0].layer_ids) == [0]


def test_rotated_event_files_bound_what_damage_takes_from_tensorboards_loaders(tmp_path, monkeypatch):
    """Issue 14: a flipped length byte made both TensorBoard loaders drop
    every later step of the run's one event file. The writer now begins a
    new file every sinks.ROTATE_BYTES; both loaders go on with the next
    file, so damage takes the rest of one file at most."""
    import time
    from tb_attention import AttentionWriter, sinks
    from tests.support.backends import python_loader, rust_data_server
    from tests.support.events import records
    monkeypatch.setattr(sinks, "ROTATE_BYTES", 4000)
    run = tmp_path / "run"
    record = AttentionRecord([KindRecord("self", softmax(np.random.default_rng(0), 1, 1, 4, 4),
                                         tuple("abcd"), tuple("abcd"), (0,))])
    step, deadline = 0, time.monotonic() + 30
    with AttentionWriter(str(run)) as w:
        # a new file begins in a later second only (names sort by second)
        while (not run.exists() or len(os.listdir(run)) < 3) and time.monotonic() < deadline:
            w.add_attention("probe", record, global_step=step)
            w.flush()
            step += 1
    files = sorted(os.listdir(run))
    assert len(files) >= 3, files
    first = str(run / files[0])
    in_first = len(records(first)) - 1  # after the file_version event
    spans = [(r.start, r.end) for r in records(first)][1:]
    data = bytearray(open(first, "rb").read())
    data[spans[1][0]] ^= 0x40  # the length of step 1
    open(first, "wb").write(bytes(data))
    lost = set(range(1, in_first))  # the rest of the first file, and no more
    _, python = python_loader(tmp_path)
    assert set(range(step)) - set(blob_steps(python, "run", "probe")) == lost
    with rust_data_server(tmp_path) as rust:
        wait_until(lambda: len(blob_steps(rust, "run", "probe")) >= step - len(lost), timeout=60,
                   what="the data server to load the steps of the later files")
        assert set(range(step)) - set(blob_steps(rust, "run", "probe")) == lost
    with pytest.warns(UserWarning, match="is corrupt; skipped"):
        assert load(str(tmp_path)).steps("run", "probe") == [s for s in range(step) if s != 1]


def test_load_skips_event_files_it_cannot_read_with_a_warning(tmp_path):
    """Issue 14: a dangling symlink or an unreadable file named
    events.out.tfevents.* made load() raise for the whole logdir; a FIFO of
    that name made it hang forever."""
    import subprocess
    import textwrap
    from tests.support import REPO
    from tests.support.events import attention_event, write_event_file
    blobs = summary.step_blobs(AttentionRecord([KindRecord("self", softmax(np.random.default_rng(0), 1, 1, 2, 2),
                                                           ("a", "b"), ("a", "b"), (0,))]), 0, "w" * 32)
    write_event_file(str(tmp_path / "good"), [attention_event("probe", 0, blobs)])
    odd = tmp_path / "odd"
    odd.mkdir()
    os.symlink(str(tmp_path / "nowhere"), str(odd / "events.out.tfevents.1.dangling"))
    os.mkfifo(str(odd / "events.out.tfevents.2.fifo"))
    os.mkdir(str(odd / "events.out.tfevents.3.dir"))
    # in a child with a timeout: the FIFO hung load() forever
    code = textwrap.dedent("""
        import sys, warnings
        from tb_attention import load
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log = load(sys.argv[1])
        print(log.runs(), log.steps("good", "probe"))
        for w in caught:
            print(w.message)
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=REPO)).stdout.splitlines()
    assert out[0] == "['good'] [0]", out
    said = "\n".join(out[1:])
    assert "events.out.tfevents.1.dangling: skipped, cannot be read (No such file or directory)" in said
    assert "events.out.tfevents.2.fifo: skipped, not a regular file" in said
    assert "events.out.tfevents.3.dir" not in said or "not a regular file" in said


def test_load_drops_a_record_whose_step_number_was_flipped(tmp_path):
    """A bit flip in an event's step field leaves a well-formed Event claiming
    another step: only the record's CRC tells. load() warns and drops it, so
    no phantom step appears holding step 1's data."""
    from tb_attention import AttentionWriter
    from tests.support.events import records
    from tests.support.records import self_record
    rng = np.random.default_rng(18)
    written = {s: self_record(rng, 1, 2, list("abcd")) for s in range(3)}
    with AttentionWriter(str(tmp_path / "run")) as w:
        for s, record in written.items():
            w.add_attention("probe", record, global_step=s)
    (path,) = [os.path.join(tmp_path / "run", n) for n in os.listdir(tmp_path / "run")]
    data = bytearray(open(path, "rb").read())
    (one,) = [r for r in records(path) if event_pb2.Event.FromString(r.payload).step == 1]
    # Event: wall_time (field 1, fixed64: tag 0x09 + 8 bytes), then step (field 2: 0x10, varint)
    assert one.payload[0] == 0x09 and one.payload[9:11] == b"\x10\x01", one.payload[:12]
    data[one.payload_start + 10] = 0x05  # step 1 -> step 5, same length
    open(path, "wb").write(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = load(tmp_path)
    assert [str(c.message) for c in caught] == [
        "%s: skipped a corrupt record at byte %d (checksum mismatch)" % (path, one.start)]
    assert log.steps("run", "probe") == [0, 2]
    for s in (0, 2):
        np.testing.assert_allclose(log.get("run", "probe", s).attention(), written[s].attention(), atol=UINT8_TOL)
