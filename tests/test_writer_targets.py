"""AttentionWriter as people call it: steps in the forms torch's
SummaryWriter takes, an encoder-decoder's three kinds in one call, a tag
logged twice at a step, a second event file in a run, a SummaryWriter
closed under it, and the C CRC32C framing guarded by TensorBoard's version.

Oracles: the arrays given, TensorBoard's own RecordWriter and loaders.
"""
import glob
import io
import os
import warnings

import numpy as np
import pytest
import torch
from tensorboard import version as tensorboard_version
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter

import tb_attention
from tb_attention import AttentionInputError, AttentionWriter, AttentionWriterError, sinks, tfrecord

TOL = 1 / 510 + 1e-6  # uint8 storage


def attention(rng, L=2, H=2, Tq=3, Tk=3, causal=False):
    a = rng.random((L, H, Tq, Tk)).astype(np.float32) + 0.01
    if causal:
        a = a * np.tril(np.ones((Tq, Tk), np.float32))
    return a / a.sum(-1, keepdims=True)


def event_files(d):
    return sorted(glob.glob(os.path.join(str(d), "*tfevents*")))


def test_steps_as_torch_takes_them(tmp_path):
    a = attention(np.random.default_rng(0))
    toks = ["a", "b", "c"]
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("int", a, tokens=toks, global_step=3)
        w.add_attention("numpy", a, tokens=toks, global_step=np.int64(4))
        w.add_attention("tensor", a, tokens=toks, global_step=torch.tensor(5))
        w.add_attention("array", a, tokens=toks, global_step=np.array(6))
        w.add_attention("none", a, tokens=toks)  # torch's SummaryWriter writes step 0 then too
        for bad, message in ((torch.tensor(5.0), r"must be an int, got tensor\(5.\)"),
                             (torch.tensor([5]), "must be an int, got tensor"),
                             (np.array([1, 2]), "must be an int, got array"),
                             (torch.tensor(True), "must be an int, got a bool tensor"),
                             ("5", "must be an int, got '5'"), (2.0, "must be an int, got 2.0"),
                             (torch.tensor(-1), "must be >= 0, got -1")):
            with pytest.raises(AttentionInputError, match="global_step " + message):
                w.add_attention("bad", a, tokens=toks, global_step=bad)
    log = tb_attention.load(str(tmp_path))
    assert [log.steps("run", t) for t in ("int", "numpy", "tensor", "array", "none")] == [[3], [4], [5], [6], [0]]
    assert "bad" not in log.tags("run")


def test_encoder_decoder_in_one_call(tmp_path):
    rng = np.random.default_rng(1)
    enc, dec, cross = attention(rng, 2, 2, 4, 4), attention(rng, 2, 2, 3, 3, causal=True), attention(rng, 2, 2, 3, 4)
    enc_t, dec_t = ["The", "cat", "sat", "</s>"], ["<s>", "Le", "chat"]
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("t5", encoder=enc, decoder=dec, cross=cross, encoder_tokens=enc_t,
                        decoder_tokens=dec_t, global_step=1)
        w.add_attention("cross_only", cross=cross, encoder_tokens=enc_t, decoder_tokens=dec_t, global_step=1)
        with pytest.raises(AttentionInputError, match="cross attention needs encoder_tokens"):
            w.add_attention("bad", cross=cross, decoder_tokens=dec_t, global_step=1)
        with pytest.raises(AttentionInputError, match="with encoder=, decoder= or cross= give the tokens"):
            w.add_attention("bad", enc, encoder=enc, encoder_tokens=enc_t, global_step=1)
        with pytest.raises(AttentionInputError, match="decoder attention: query tokens"):
            w.add_attention("bad", decoder=dec, decoder_tokens=dec_t[:2], global_step=1)
        with pytest.raises(AttentionInputError, match="go with encoder=, decoder= or cross="):
            w.add_attention("bad", enc, tokens=enc_t, encoder_tokens=enc_t, global_step=1)
    log = tb_attention.load(str(tmp_path))
    rec = log.get("run", "t5", 1)
    assert rec.kinds == ("encoder", "decoder", "cross")
    assert rec.tokens("encoder") == (tuple(enc_t), tuple(enc_t))
    assert rec.tokens("cross") == (tuple(dec_t), tuple(enc_t))
    assert rec.kind("decoder").causal and not rec.kind("encoder").causal
    for name, want in (("encoder", enc), ("decoder", dec), ("cross", cross)):
        np.testing.assert_allclose(rec.attention(name), want, atol=TOL)
    assert log.get("run", "cross_only", 1).kinds == ("cross",)
    assert log.tags("run") == ["cross_only", "t5"]


def test_a_tag_logged_twice_at_a_step_warns(tmp_path):
    rng = np.random.default_rng(2)
    first, second = attention(rng), attention(rng)
    with AttentionWriter(str(tmp_path / "run")) as w:
        w.add_attention("probe", first, tokens=["a", "b", "c"], global_step=7)
        with pytest.warns(UserWarning, match="'probe' was already logged at step 7 by this writer: "
                                             "the step keeps only the last"):
            w.add_attention("probe", second, tokens=["a", "b", "c"], global_step=7)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # other tags and steps: no warning
            w.add_attention("probe", first, tokens=["a", "b", "c"], global_step=8)
            w.add_attention("other", first, tokens=["a", "b", "c"], global_step=7)
    np.testing.assert_allclose(tb_attention.load(str(tmp_path)).get("run", "probe", 7).attention(), second,
                               atol=TOL)


def test_a_second_event_file_in_a_run_warns(tmp_path):
    a = attention(np.random.default_rng(3))
    sw = SummaryWriter(str(tmp_path / "run"))
    sw.add_scalar("loss", 1.0, 0)
    with pytest.warns(sinks.SecondEventFileWarning, match="already holds an event file .*give AttentionWriter "
                                                          "that writer"):
        w = AttentionWriter(str(tmp_path / "run"))
    w.close()
    sw.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AttentionWriter(str(tmp_path / "fresh")).close()
        with AttentionWriter(SummaryWriter(str(tmp_path / "shared"))) as shared:
            shared.add_attention("p", a, tokens=["a", "b", "c"], global_step=0)
    assert len(event_files(tmp_path / "shared")) == 1


def test_a_closed_summary_writer_is_not_reopened(tmp_path):
    a = attention(np.random.default_rng(4))
    sw = SummaryWriter(str(tmp_path / "run"))
    w = AttentionWriter(sw)
    w.add_attention("p", a, tokens=["a", "b", "c"], global_step=0)
    w.flush()
    sw.close()
    w.add_attention("p", a, tokens=["a", "b", "c"], global_step=1)
    with pytest.raises(AttentionWriterError, match="its SummaryWriter was closed"):
        w.flush()
    with pytest.raises(AttentionWriterError):
        w.close()
    assert len(event_files(tmp_path / "run")) == 1  # before: a second file, opened by the flush
    assert tb_attention.load(str(tmp_path)).steps("run", "p") == [0]


class _Bytes(io.BytesIO):
    pass


def test_fast_framing_is_tensorboards(tmp_path, monkeypatch):
    """The C CRC32C framing writes TensorBoard's own RecordWriter bytes, in the
    TensorBoard installed (the pinned one, 2.21.0, is also the newest release
    on the index today); another version keeps TensorBoard's own code."""
    assert tensorboard_version.VERSION.startswith(sinks.FAST_CRC_TENSORBOARD_VERSIONS)
    rng = np.random.default_rng(5)
    for n in (0, 1, 13, 4096, (1 << 20) + 7):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        theirs, ours = _Bytes(), _Bytes()
        RecordWriter(theirs).write(data)
        tfrecord.write_record(ours.write, data)
        assert ours.getvalue() == theirs.getvalue(), n
    writer = EventFileWriter(str(tmp_path / "fast"))
    assert sinks.accelerate(writer) and writer._async_writer._writer._tb_attention_fast
    writer.close()
    monkeypatch.setattr(tensorboard_version, "VERSION", "2.99.0")
    writer = EventFileWriter(str(tmp_path / "other"))
    assert not sinks.accelerate(writer)
    assert not getattr(writer._async_writer._writer, "_tb_attention_fast", False)
    writer.close()
    with AttentionWriter(str(tmp_path / "slow")) as w:  # TensorBoard's own framing, still loads
        w.add_attention("p", attention(rng), tokens=["a", "b", "c"], global_step=0)
    assert tb_attention.load(str(tmp_path)).steps("slow", "p") == [0]
