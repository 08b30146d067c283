"""Issue 12, capture that scales: attention quantized on the model's device
(tb_attention.device), records holding it, add_attention taking them over
without a copy, heads=. The expected bytes come from tests.support.records.stored
(plain numpy rint), never from the code under test."""
import threading

import numpy as np
import pytest
import torch

import tb_attention
from tb_attention import device, summary
from tb_attention.record import AttentionRecord, KindRecord
from tests.support.records import UINT8_TOL, softmax, stored, tokens


@pytest.mark.parametrize("torch_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_quantized_on_the_device_as_the_writer_stores(torch_dtype, monkeypatch):
    rng = np.random.default_rng(0)
    a = softmax(rng, 1, 3, 7, 9)[0]  # [H, Tq, Tk]
    a[0, 0, :2] = [0.5 / 255, 1.5 / 255]  # ties: half to even, as np.rint
    t = torch.from_numpy(a).to(torch_dtype)
    want = stored(t.float().numpy())
    monkeypatch.setattr(device, "CHUNK_ELEMENTS", 10)  # chunks of one row
    got = device.quantize_on_device(t, "uint8")
    assert got.dtype == torch.uint8 and got.device == t.device
    np.testing.assert_array_equal(got.numpy(), want)
    half = device.finish(device.keep(t, "float16"))
    np.testing.assert_array_equal(half, t.float().numpy().astype(np.float16))
    assert half.dtype == np.float16


def test_kept_weights_do_not_change_with_the_model_tensor():
    t = torch.from_numpy(softmax(np.random.default_rng(1), 1, 2, 4, 4)[0])
    for dtype in ("uint8", "float16"):
        kept = device.finish(device.keep(t, dtype))
        before = kept.copy()
        t.mul_(0.5)  # the model reuses its buffer in place
        np.testing.assert_array_equal(kept, before)


def test_host_attention_writes_one_array():
    rng = np.random.default_rng(2)
    layers = [torch.from_numpy(softmax(rng, 1, 4, 6, 6)) for _ in range(3)]  # [1, H, T, T] each
    got = device.host_attention(layers, "uint8")
    assert got.shape == (3, 4, 6, 6) and got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, stored(np.concatenate([t.numpy() for t in layers])))


def uint8_record(rng, L=2, H=3, T=5):
    a = softmax(rng, L, H, T, T)
    kind = KindRecord(name="self", attention=stored(a), query_tokens=tuple(tokens(T)),
                      key_tokens=tuple(tokens(T)), layer_ids=tuple(range(L)), key_special=(0,))
    return AttentionRecord([kind]), a


def test_a_uint8_record_reads_as_float32_and_round_trips(tmp_path):
    from tb_attention import stats

    rng = np.random.default_rng(3)
    record, a = uint8_record(rng)
    f = record.attention()
    assert f.dtype == np.float32 and np.abs(f - a).max() <= UINT8_TOL
    np.testing.assert_array_equal(f * 255, stored(a).astype(np.float32))
    with tb_attention.AttentionWriter(str(tmp_path)) as w:
        w.add_attention("p", record, global_step=3)
    log = tb_attention.load(str(tmp_path))
    np.testing.assert_array_equal(log.get(".", "p", 3).attention(), f)
    # its statistics are those of the weights it holds, the uint8 ones
    got = log.stats(".", "p")
    want = stats.compute(f, key_special=(0,))
    for name in stats.NAMES:
        np.testing.assert_allclose(got[name][0], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_uint8_record_is_stored_without_writing_to_it(tmp_path):
    """Its array may be read-only (a memory map, np.frombuffer): the writer
    reads it and never writes to it, even the same bytes."""
    record, a = uint8_record(np.random.default_rng(14), L=3, H=2, T=6)
    record.kind().attention.setflags(write=False)
    with tb_attention.AttentionWriter(str(tmp_path)) as w:
        w.add_attention("p", record, global_step=0)
    np.testing.assert_array_equal(stored(tb_attention.load(str(tmp_path)).get(".", "p", 0).attention()),
                                  stored(a))


def test_add_attention_takes_the_record_without_a_copy(tmp_path, monkeypatch):
    """The background thread encodes the very arrays of the record: no copy on
    the training thread."""
    seen = []
    real = summary.stored_layers

    def spy(kind, dtype):
        seen.append((threading.current_thread().name, kind.attention))
        return real(kind, dtype)

    monkeypatch.setattr(summary, "stored_layers", spy)
    record, _ = uint8_record(np.random.default_rng(4))
    with tb_attention.AttentionWriter(str(tmp_path)) as w:
        w.add_attention("p", record, global_step=0)
    assert [(name, arr is record.kind().attention) for name, arr in seen] == [("tb-attention-writer", True)]


# --------------------------------------------------------------------------
# Compressed storage (format version 4)


def test_payloads_are_compressed_per_blob_and_inflate_to_the_stored_bytes():
    import zstandard
    from tb_attention import codec
    from tb_attention.proto import attention_pb2 as pb

    rng = np.random.default_rng(5)
    a = softmax(rng, 2, 3, 40, 40)
    record = tb_attention.AttentionRecord([KindRecord(
        name="self", attention=a, query_tokens=tuple(tokens(40)), key_tokens=tuple(tokens(40)),
        layer_ids=(0, 1))])
    blobs = summary.step_blobs(record, 0, "w")
    header = codec.parse_header(blobs[0])
    assert header.version == 4
    for layer, ref in enumerate(header.kinds[0].attention):
        assert ref.compression == pb.ZSTD and ref.length == len(blobs[ref.index]) < ref.raw_length
        raw = zstandard.ZstdDecompressor().decompress(blobs[ref.index])
        assert raw == stored(a[layer]).tobytes() and ref.raw_length == len(raw)
    # a payload zstd cannot shrink is stored as it is
    noise = np.random.default_rng(6).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert codec.compress(noise) == (noise, pb.COMPRESSION_NONE)


def test_damaged_compressed_blobs_are_refused():
    import google_crc32c
    from tb_attention import codec
    from tb_attention.metadata import FormatError

    a = softmax(np.random.default_rng(7), 1, 2, 30, 30)
    record = tb_attention.AttentionRecord([KindRecord(
        name="self", attention=a, query_tokens=tuple(tokens(30)), key_tokens=tuple(tokens(30)),
        layer_ids=(0,))])
    blobs = summary.step_blobs(record, 0, "w")
    kind = codec.parse_header(blobs[0]).kinds[0]
    ref = kind.attention[0]
    blob = blobs[ref.index]
    flipped = blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]
    with pytest.raises(FormatError, match="checksum"):  # the CRC of the stored bytes
        codec.attention_part(kind, 0, 0, flipped)
    # bytes whose CRC matches but that are no zstd frame
    ref.crc32c = google_crc32c.value(flipped[:4] + b"\0" * (len(blob) - 4))
    with pytest.raises(FormatError, match="does not inflate"):
        codec.attention_part(kind, 0, 0, flipped[:4] + b"\0" * (len(blob) - 4))
    ref.crc32c = google_crc32c.value(blob)
    ref.raw_length -= 1
    with pytest.raises(FormatError, match="inflate"):
        codec.attention_part(kind, 0, 0, blob)


# --------------------------------------------------------------------------
# capture(..., dtype=, heads=)


def test_capture_quantizes_and_picks_heads():
    from tb_attention.capturing import capture, capture_batch
    from tests.models import tiny_model

    model, tok = tiny_model("llama")  # 4 query heads over 2 key heads
    ids = torch.tensor([[5, 9, 13, 2, 7, 11, 3]])
    exact = capture(model, ids, neurons=True)
    q = capture(model, ids, neurons=True, dtype="uint8")
    assert q.kind().attention.dtype == np.uint8
    np.testing.assert_array_equal(q.kind().attention, stored(exact.attention()))
    assert q.attention().dtype == np.float32 and q.kind().causal == exact.kind().causal
    half = capture(model, ids, dtype="float16")
    np.testing.assert_array_equal(half.kind().attention, exact.attention().astype(np.float16))
    # heads: the model's heads 3 and 0, in that order, neurons with them
    picked = capture(model, ids, neurons=True, heads=[3, -4], dtype="uint8")
    np.testing.assert_array_equal(picked.kind().attention, stored(exact.attention()[:, [3, 0]]))
    np.testing.assert_array_equal(picked.neurons().queries, exact.neurons().queries[:, [3, 0]])
    np.testing.assert_array_equal(picked.neurons().expanded_keys(), exact.neurons().expanded_keys()[:, [3, 0]])
    np.testing.assert_allclose(picked.recompute_attention(), picked.attention(), atol=UINT8_TOL + 1e-4)
    # a padded batch: padding removed from the quantized arrays too
    batch = capture_batch(model, {"input_ids": torch.tensor([[5, 9, 13, 2], [5, 9, 0, 0]]),
                                  "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])},
                          dtype="uint8", heads={"self": [1]})
    full = capture_batch(model, {"input_ids": torch.tensor([[5, 9, 13, 2], [5, 9, 0, 0]]),
                                 "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])})
    for got, want in zip(batch, full):
        np.testing.assert_array_equal(got.kind().attention, stored(want.attention()[:, [1]]))


def test_capture_arguments_are_checked():
    from tb_attention.capturing import capture
    from tb_attention.record import AttentionInputError
    from tests.models import tiny_model

    model, _ = tiny_model("bert")
    ids = torch.tensor([[5, 9, 13]])
    with pytest.raises(AttentionInputError, match=r"head 4 is not in the self attention, which has heads 0..3"):
        capture(model, ids, heads=[4])
    with pytest.raises(AttentionInputError, match="heads names kinds"):
        capture(model, ids, heads={"cross": [0]})
    with pytest.raises(ValueError, match="dtype must be"):
        capture(model, ids, dtype="int8")


def test_compress_false_writes_uncompressed_steps(tmp_path):
    from tb_attention import codec

    a = softmax(np.random.default_rng(8), 1, 2, 20, 20)
    with tb_attention.AttentionWriter(str(tmp_path), compress=False) as w:
        w.add_attention("p", a, tokens=tokens(20), global_step=0)
    log = tb_attention.load(str(tmp_path))
    header = log.header(".", "p", 0)
    assert header.version < 4 and all(r.compression == 0 for r in header.kinds[0].attention)
    np.testing.assert_array_equal(stored(log.get(".", "p", 0).attention()), stored(a))


# --------------------------------------------------------------------------
# Encoding threads: a step's layers quantized, measured and compressed side by side


def test_a_steps_layers_are_encoded_on_two_threads_at_once(tmp_path, monkeypatch):
    """Two layers' statistics are taken at the same moment: each waits at a
    barrier for the other, which one thread alone never passes."""
    from tb_attention import stats
    met = threading.Barrier(2, timeout=60)
    real_add = stats.Accumulator.add
    names = []

    def add(self, layer, *args, **kwargs):
        names.append(threading.current_thread().name)
        if layer < 2:
            met.wait()
        return real_add(self, layer, *args, **kwargs)

    monkeypatch.setattr(stats.Accumulator, "add", add)
    a = softmax(np.random.default_rng(9), 4, 2, 6, 6)
    with tb_attention.AttentionWriter(str(tmp_path)) as w:
        w.add_attention("p", a, tokens=tokens(6), global_step=0)
    assert set(names) == {"tb-attention-writer", "tb-attention-encode-0"}
    np.testing.assert_array_equal(stored(tb_attention.load(str(tmp_path)).get(".", "p", 0).attention()),
                                  stored(a))


def test_encoding_on_several_threads_gives_the_same_bytes_as_on_one():
    from tb_attention import writer
    from tests.support.records import neuron_kind
    rng = np.random.default_rng(10)
    toks = tokens(12)
    record = AttentionRecord([neuron_kind("self", 5, 4, toks, toks, rng, causal=True, bias=True),
                              neuron_kind("cross", 3, 4, toks, toks[:7], rng)])
    helpers = writer._Helpers(3)
    try:
        one = summary.step_blobs(record, 4, "w")
        for dtype, compress in (("uint8", True), ("float16", True), ("uint8", False)):
            want = summary.step_blobs(record, 4, "w", dtype, compress)
            for _ in range(5):  # the jobs end in a different order each time
                assert summary.step_blobs(record, 4, "w", dtype, compress, pmap=helpers.map) == want
    finally:
        helpers.stop()
    assert one == summary.step_blobs(record, 4, "w", "uint8", True)


def test_a_failing_job_fails_the_step_once_every_started_job_has_ended():
    from tb_attention import writer
    helpers = writer._Helpers(2)
    ended = []

    def job(i):
        if i == 3:
            raise ValueError("job 3")
        ended.append(i)
        return i * i

    try:
        assert helpers.map(job, range(3)) == [0, 1, 4]
        with pytest.raises(ValueError, match="job 3"):
            helpers.map(job, range(40))
        assert 3 not in ended and len(ended) < 3 + 40 - 1  # the jobs after the failure were not started
        assert helpers.map(job, []) == []
    finally:
        helpers.stop()


def test_a_step_that_fails_to_encode_on_a_helper_thread_is_refused_alone(tmp_path, monkeypatch):
    from tb_attention import stats
    real_add = stats.Accumulator.add
    met = threading.Barrier(2, timeout=60)

    def add(self, layer, heads, *args, **kwargs):
        if heads.shape[-1] == 7 and layer < 2:  # step 1: its first two layers on the two threads
            met.wait()
            if threading.current_thread().name == "tb-attention-encode-0":
                raise MemoryError("no room for layer %d" % layer)
        return real_add(self, layer, heads, *args, **kwargs)

    monkeypatch.setattr(stats.Accumulator, "add", add)
    rng = np.random.default_rng(11)
    with tb_attention.AttentionWriter(str(tmp_path)) as w:
        w.add_attention("p", softmax(rng, 2, 2, 6, 6), tokens=tokens(6), global_step=0)
        w.add_attention("p", softmax(rng, 3, 2, 7, 7), tokens=tokens(7), global_step=1)
        w.add_attention("p", softmax(rng, 2, 2, 6, 6), tokens=tokens(6), global_step=2)
        with pytest.raises(tb_attention.AttentionWriterError, match="step 1 .*no room for layer"):
            w.flush()
    assert tb_attention.load(str(tmp_path)).steps(".", "p") == [0, 2]


def test_encode_threads_is_checked(tmp_path):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="encode_threads must be a positive int"):
            tb_attention.AttentionWriter(str(tmp_path), encode_threads=bad)
    with tb_attention.AttentionWriter(str(tmp_path), encode_threads=1) as w:
        w.add_attention("p", softmax(np.random.default_rng(12), 3, 2, 5, 5), tokens=tokens(5), global_step=0)
    assert tb_attention.load(str(tmp_path)).steps(".", "p") == [0]


# --------------------------------------------------------------------------
# A layer's zstd bytes go to the browser as stored (Content-Encoding: zstd)


def _without_frame_checksum(blob):
    """The same zstd frame recompressed without its content checksum."""
    import zstandard
    raw = zstandard.ZstdDecompressor().decompress(blob)
    return zstandard.ZstdCompressor(level=1, write_checksum=False, write_content_size=True).compress(raw)


@pytest.fixture(scope="module")
def encodings_logdir(tmp_path_factory):
    """Run "zstd": step 0 compressed as the writer does. Run "plain": the
    same uncompressed. Run "split": layers in blobs of one head. Run "bad":
    step 0 a zstd frame without its checksum (the CRC of the stored bytes
    matching), step 1 a frame of one byte more than the header says."""
    import google_crc32c
    from tb_attention import codec
    from tests.support.events import attention_event, write_event_file

    root = tmp_path_factory.mktemp("encodings")
    a = softmax(np.random.default_rng(13), 2, 3, 40, 40)
    with tb_attention.AttentionWriter(str(root / "zstd")) as w:
        w.add_attention("p", a, tokens=tokens(40), global_step=0)
    with tb_attention.AttentionWriter(str(root / "plain"), compress=False) as w:
        w.add_attention("p", a, tokens=tokens(40), global_step=0)
    record = AttentionRecord([KindRecord(name="self", attention=a, query_tokens=tuple(tokens(40)),
                                         key_tokens=tuple(tokens(40)), layer_ids=(0, 1))])
    original = codec.LAYER_BLOB_BYTES
    codec.LAYER_BLOB_BYTES = 40 * 40  # one uint8 head per blob
    try:
        split = summary.step_blobs(record, 0, "split")
    finally:
        codec.LAYER_BLOB_BYTES = original
    write_event_file(str(root / "split"), [attention_event("p", 0, split)])
    bad = []
    for step in (0, 1):
        blobs = summary.step_blobs(record, step, "bad")
        header = codec.parse_header(blobs[0])
        ref = header.kinds[0].attention[1]
        if step == 0:
            blobs[ref.index] = _without_frame_checksum(blobs[ref.index])
        else:
            blobs[ref.index] = codec.compress(stored(a[1]).tobytes() + b"\1")[0]
        ref.length, ref.crc32c = len(blobs[ref.index]), google_crc32c.value(blobs[ref.index])
        blobs[0] = header.SerializeToString()
        bad.append(attention_event("p", step, blobs))
    write_event_file(str(root / "bad"), bad)
    return root, a


@pytest.fixture(scope="module")
def encodings_app(encodings_logdir):
    from tests.support.backends import WsgiBackend
    return WsgiBackend(encodings_logdir[0]).client


def _get(client, run, accept, **params):
    from tests.support.backends import url
    return client.get(url("attention", run=run, tag="p", step=0, kind="self", **params),
                      headers={"Accept-Encoding": accept} if accept is not None else {})


CHROMIUM_LOCAL = "gzip, deflate, br, zstd"  # what Chromium offers 127.0.0.1 and https


def test_a_whole_layer_goes_to_a_browser_that_takes_zstd_as_stored(encodings_app, encodings_logdir):
    import zstandard
    _, a = encodings_logdir
    for layer in (0, 1):
        packed = _get(encodings_app, "zstd", CHROMIUM_LOCAL, layer=layer)
        raw = _get(encodings_app, "zstd", None, layer=layer)
        assert packed.status_code == raw.status_code == 200
        assert packed.headers["Content-Encoding"] == "zstd" and "Content-Encoding" not in raw.headers
        assert packed.headers["Vary"] == raw.headers["Vary"] == "Accept-Encoding"
        assert packed.headers["X-Attention-Shape"] == raw.headers["X-Attention-Shape"] == "3,40,40"
        assert packed.headers["X-Attention-Dtype"] == "uint8"
        body = packed.get_data()
        assert int(packed.headers["Content-Length"]) == len(body) < len(raw.get_data()) == 3 * 40 * 40
        inflated = zstandard.ZstdDecompressor().decompress(body)
        assert inflated == raw.get_data() == stored(a[layer]).tobytes()


@pytest.mark.parametrize("accept", [None, "", "gzip, deflate", "zstd;q=0", "br, zstd; q=0.0", "x-zstd"])
def test_raw_bytes_where_the_browser_does_not_take_zstd(encodings_app, encodings_logdir, accept):
    _, a = encodings_logdir
    r = _get(encodings_app, "zstd", accept, layer=1)
    assert r.status_code == 200 and "Content-Encoding" not in r.headers
    assert r.get_data() == stored(a[1]).tobytes()


def test_zstd_q_above_zero_counts(encodings_app):
    for accept in ("ZSTD", "zstd;q=0.5", "gzip;q=1, zstd ;q=0.01"):
        assert _get(encodings_app, "zstd", accept, layer=0).headers.get("Content-Encoding") == "zstd", accept


@pytest.mark.parametrize("run, params", [
    ("zstd", {"layer": 1, "head": 2}),     # one head: cut from the inflated layer
    ("zstd", {"layer": 1, "head": "mean"}),
    ("plain", {"layer": 1}),               # stored uncompressed
    ("split", {"layer": 1}),               # a layer in blobs of one head
])
def test_raw_bytes_where_the_answer_is_not_one_stored_zstd_blob(encodings_app, encodings_logdir, run, params):
    _, a = encodings_logdir
    r = _get(encodings_app, run, CHROMIUM_LOCAL, **params)
    assert r.status_code == 200 and "Content-Encoding" not in r.headers, r.get_data()[:300]
    plain = _get(encodings_app, run, None, **params)
    assert r.get_data() == plain.get_data()
    if "head" not in params:
        assert r.get_data() == stored(a[1]).tobytes()


def test_a_zstd_frame_the_browser_could_not_check_is_refused(encodings_app):
    """Step 0's layer 1: no content checksum; step 1's: a frame one byte
    longer than its raw length in the header. Both pass the stored bytes' CRC; both are
    refused naming the step, as the plugin's own inflation refuses them."""
    from tests.support.backends import url
    client = encodings_app
    for step, message in ((0, "without a checksum"), (1, "inflate|zstd frame of")):
        path = url("attention", run="bad", tag="p", step=step, kind="self", layer=1)
        for accept in (CHROMIUM_LOCAL, None):
            r = client.get(path, headers={"Accept-Encoding": accept} if accept else {})
            if accept is None and step == 0:
                assert r.status_code == 200  # inflated here: the frame itself is sound
                continue
            assert r.status_code == 500 and r.headers.get("Content-Encoding") != "zstd", (step, accept)
            body = r.get_data()
            if r.headers.get("Content-Encoding") == "gzip":  # TensorBoard gzips text it answers
                import gzip
                body = gzip.decompress(body)
            body = body.decode()
            assert "step %d of tag 'p' of run 'bad'" % step in body
            import re
            assert re.search(message, body), body
        ok = client.get(url("attention", run="bad", tag="p", step=step, kind="self", layer=0),
                        headers={"Accept-Encoding": CHROMIUM_LOCAL})
        assert ok.status_code == 200 and ok.headers["Content-Encoding"] == "zstd"
