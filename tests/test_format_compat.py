"""The storage format in one place: TFRecord framing (tb_attention/tfrecord.py),
summaries any writer can log (tb_attention/summary.py), and what the
codec stores, each checked against TensorBoard's own independent code.
"""
import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub import errors as tb_errors
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_attention import (AttentionInputError, AttentionRecord, KindRecord, codec, load, metadata, stats,
                          summary, tfrecord)
from tests.support.records import UINT8_TOL, softmax

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
    # A flipped length byte: nothing after it can be trusted.
    damaged = bytearray(data)
    damaged[records[1].start] ^= 1
    assert [r.status for r in tfrecord.scan(bytes(damaged))] == [tfrecord.OK, tfrecord.BAD_HEADER]


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
    layer_ids, heads, stored = codec.stored_stats(codec.parse_header(blobs[0]), "self")
    assert layer_ids == (0, 4) and heads == 3 and stored["special_tokens"] is None
    for name in stats.NAMES:
        if values[name] is not None:
            np.testing.assert_array_equal(stored[name], values[name])
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
        event = event_pb2.Event.FromString(w._encode("probe", 5, 1.5e9, record, 2))
    pb = summary.pb("probe", record, sequence=2, writer_id=w._writer_id)
    assert event.step == 5 and event.wall_time == 1.5e9
    assert event.summary == pb
