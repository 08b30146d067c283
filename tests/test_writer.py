"""AttentionWriter and load() with real parts only.

Data written by AttentionWriter is read back by tb_attention.load(), by
TensorBoard's Python loader (EventMultiplexer + MultiplexerDataProvider, what
`--load_fast=false` uses), by the Rust data server binary of
tensorboard-data-server (spawned here and queried over gRPC through
TensorBoard's own GrpcDataProvider, what `--load_fast=true` uses), and, when
the plugin is installed, through a real `tensorboard` process's HTTP routes.
I/O errors are real errors from the kernel (ENOSPC from /dev/full, ENOENT from
a removed directory), crashes are real SIGKILLs.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import data_provider as mux_data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import summary_pb2
from torch.utils.tensorboard import SummaryWriter

from tb_attention import (AttentionInputError, AttentionRecord, AttentionWriter, AttentionWriterError,
                          KindRecord, Neurons, codec, load, metadata, summary)
from tb_attention.proto import attention_pb2
from tests.support import REPO, sigkilled, wait_until
from tests.support.backends import CTX, blob_steps, provider_blobs, python_loader, rust_data_server, scalar_steps
from tests.support.events import record_ends
from tests.support.records import FLOAT16_TOL, UINT8_TOL, plain, reference_attention, softmax, stored, tokens

# Strings a tokenizer (or a user) can hand us; each must come back exactly.
HOSTILE_TOKENS = (
    "[CLS]",
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u05e9\u05dc\u05d5\u05dd",  # RTL mark + Hebrew
    "a\u200bb",  # zero-width space
    "\u200d",  # zero-width joiner alone
    "nul\x00byte",
    "x" * 10000,
    "\ud800",  # lone surrogate: not encodable as plain UTF-8
    "",
    "\u0120the",  # GPT-2 style
    "##ing",
    "\u2581word",  # sentencepiece
    "\U0001f600",
    "\r\n\t",
    "\"quoted\" 'single' \\back",
    "[SEP]",
)


# --------------------------------------------------------------------------
# helpers


def event_files(directory):
    return sorted(f for f in os.listdir(directory) if "tfevents" in f)


def run_python(code, *args, timeout=120):
    """Run code in a fresh interpreter that imports this checkout."""
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


# --------------------------------------------------------------------------
# 1. round trip through load()


def test_round_trip_numpy_uint8_hostile_tokens(tmp_path):
    rng = np.random.default_rng(1)
    T = len(HOSTILE_TOKENS)
    steps = {0: softmax(rng, 3, 4, T, T, causal=True),
             7: softmax(rng, 3, 4, T, T, causal=True),
             2 ** 40: softmax(rng, 3, 4, T, T, causal=True)}
    with AttentionWriter(tmp_path / "run") as w:
        for step, a in steps.items():
            w.add_attention("probe/hostile", a, tokens=list(HOSTILE_TOKENS), global_step=step,
                            walltime=1000.0 + step % 97, layer_ids=(2, 5, 7), segment_b=5, causal=True)
        writer_id = w._writer_id

    log = load(tmp_path)
    assert log.runs() == ["run"]
    assert log.tags("run") == ["probe/hostile"]
    assert log.steps("run", "probe/hostile") == sorted(steps)
    for seq, (step, a) in enumerate(steps.items()):
        rec = log.get("run", "probe/hostile", step)
        assert rec.kinds == ("self",)
        assert rec.tokens() == (HOSTILE_TOKENS, HOSTILE_TOKENS)
        assert rec.tokens()[0][9] == "\ud800" and len(rec.tokens()[0][8]) == 10000
        got = rec.attention()
        assert got.dtype == np.float32 and got.shape == a.shape
        assert np.abs(got - a).max() <= UINT8_TOL
        np.testing.assert_array_equal(got, np.rint(a * 255).astype(np.float32) / np.float32(255))
        assert rec.layer_ids() == (2, 5, 7)
        assert rec.segments() == (5, 5)
        assert rec.kind().causal is True
        assert not rec.has_neurons
        assert rec.model_type == ""
        header = log.header("run", "probe/hostile", step)
        assert header.sequence == seq and header.writer_id == writer_id
        assert header.kinds[0].dtype == attention_pb2.UINT8
        assert log.wall_time("run", "probe/hostile", step) == 1000.0 + step % 97
    # 1 byte per weight on disk, plus the headers (query and key tokens) and framing.
    size = sum(os.path.getsize(tmp_path / "run" / f) for f in event_files(tmp_path / "run"))
    token_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in HOSTILE_TOKENS)
    assert size < len(steps) * (3 * 4 * T * T + 2 * token_bytes + 1000)


def test_round_trip_torch_tuple_float16_pairs(tmp_path):
    """What transformers returns: a tuple of L tensors [1, H, Tq, Tk], here
    with query and key tokens of different lengths, requires_grad, bfloat16."""
    rng = np.random.default_rng(2)
    L, H, Tq, Tk = 4, 3, 6, 9
    a = softmax(rng, L, H, Tq, Tk)
    as_tuple = tuple(torch.tensor(a[i:i + 1], requires_grad=True) for i in range(L))
    b16 = tuple(t.detach().to(torch.bfloat16) for t in as_tuple)
    q_tokens, k_tokens = tokens(Tq, "q"), list(HOSTILE_TOKENS[:Tk])
    with AttentionWriter(str(tmp_path), dtype="float16") as w:
        w.add_attention("cross", as_tuple, tokens=(q_tokens, k_tokens), global_step=3, segment_b=(2, 4),
                        kind="cross")
        w.add_attention("cross", b16, tokens=(q_tokens, k_tokens), global_step=4, kind="cross")
    log = load(tmp_path)
    assert log.runs() == ["."]
    assert log.steps(".", "cross") == [3, 4]
    rec = log.get(".", "cross", 3)
    assert rec.kinds == ("cross",)
    assert rec.tokens("cross") == (tuple(q_tokens), tuple(k_tokens))
    assert rec.segments() == (2, 4)
    assert rec.layer_ids() == (0, 1, 2, 3)
    assert rec.kind().causal is False
    assert np.abs(rec.attention("cross") - a).max() <= FLOAT16_TOL
    np.testing.assert_array_equal(rec.attention(), a.astype(np.float16).astype(np.float32))
    assert log.header(".", "cross", 3).kinds[0].dtype == attention_pb2.FLOAT16
    expected_b16 = torch.cat(b16).float().numpy().astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(log.get(".", "cross", 4).attention(), expected_b16)


def test_round_trip_encoder_decoder_kinds(tmp_path):
    rng = np.random.default_rng(3)
    enc_tokens = ("<s>", "Hello", "\u0120world", "</s>", "<s>", "Bye", "</s>")
    dec_tokens = ("</s>", "<s>", "Hal", "lo", "!")
    Te, Td = len(enc_tokens), len(dec_tokens)
    encoder = KindRecord("encoder", softmax(rng, 2, 4, Te, Te), enc_tokens, enc_tokens,
                         layer_ids=(0, 1), query_segment_b=4, key_segment_b=4)
    decoder = KindRecord("decoder", softmax(rng, 3, 4, Td, Td, causal=True), dec_tokens,
                         dec_tokens, layer_ids=(0, 1, 2), causal=True)
    cross = KindRecord("cross", softmax(rng, 3, 4, Td, Te), dec_tokens, enc_tokens,
                       layer_ids=(0, 1, 2), key_segment_b=4)
    record = AttentionRecord([encoder, decoder, cross], model_type="bart")
    with AttentionWriter(tmp_path / "bart") as w:
        w.add_attention("probe/translate", record, global_step=11)
    rec = load(tmp_path).get("bart", "probe/translate", 11)
    assert rec.kinds == ("encoder", "decoder", "cross")
    assert rec.model_type == "bart"
    with pytest.raises(KeyError, match="several attention kinds"):
        rec.attention()
    for original in (encoder, decoder, cross):
        got = rec.kind(original.name)
        assert got.attention.shape == original.attention.shape
        assert np.abs(got.attention - original.attention).max() <= UINT8_TOL
        assert (got.query_tokens, got.key_tokens) == (original.query_tokens, original.key_tokens)
        assert got.layer_ids == original.layer_ids
        assert (got.query_segment_b, got.key_segment_b) == (original.query_segment_b, original.key_segment_b)
        assert got.causal == original.causal


def _neurons_kind(rng, name, L, H, Tq, Tk, D, causal, with_bias):
    queries = rng.standard_normal((L, H, Tq, D)).astype(np.float32) * 1.5
    keys = rng.standard_normal((L, H, Tk, D)).astype(np.float32) * 1.5
    scales = np.full(L, 1 / np.sqrt(D), np.float32)
    masked = np.zeros((L, Tq, Tk), bool)
    if causal:
        masked[:] = np.triu(np.ones((Tq, Tk), bool), 1)
    masked[:, :, -1] |= not causal  # a padded key position
    bias = rng.standard_normal((L, H, Tq, Tk)).astype(np.float32) if with_bias else None
    neurons = Neurons(queries=queries, keys=keys, scales=scales, masked=masked, bias=bias)
    attention = reference_attention(queries, keys, scales, masked, bias)
    return KindRecord(name, attention, tokens(Tq, name), tokens(Tk, name), tuple(range(L)),
                      causal=causal, neurons=neurons)


def test_round_trip_neurons_recompute_attention(tmp_path):
    rng = np.random.default_rng(4)
    encoder = _neurons_kind(rng, "encoder", 2, 3, 7, 7, 16, causal=False, with_bias=True)
    decoder = _neurons_kind(rng, "decoder", 3, 2, 5, 5, 8, causal=True, with_bias=False)
    with AttentionWriter(tmp_path) as w:
        w.add_attention("n", AttentionRecord([encoder, decoder], model_type="t5"), global_step=0)
    rec = load(tmp_path).get(".", "n", 0)
    assert rec.has_neurons
    for original in (encoder, decoder):
        n, before = rec.neurons(original.name), original.neurons
        np.testing.assert_array_equal(n.masked, before.masked)
        np.testing.assert_array_equal(n.scales, before.scales)
        np.testing.assert_allclose(n.queries, before.queries, rtol=2 ** -11, atol=1e-7)
        np.testing.assert_allclose(n.keys, before.keys, rtol=2 ** -11, atol=1e-7)
        assert (n.bias is None) == (before.bias is None)
        if before.bias is not None:
            np.testing.assert_allclose(n.bias, before.bias, rtol=2 ** -11, atol=1e-7)
        again = rec.recompute_attention(original.name)
        assert np.abs(again - original.attention).max() <= 1e-3
        assert np.abs(rec.attention(original.name) - original.attention).max() <= UINT8_TOL
        # masked positions get no attention, rows still sum to 1
        assert np.all(again[:, :, before.masked[0]] == 0)
        np.testing.assert_allclose(again.sum(-1), 1, atol=1e-5)


# --------------------------------------------------------------------------
# 2. through TensorBoard's real loaders


@pytest.fixture(scope="module")
def two_run_logdir(tmp_path_factory):
    """Two runs written by two writers; returns (logdir, expected) where expected
    is run -> tag -> step -> (wall_time, record, blobs the codec makes)."""
    logdir = tmp_path_factory.mktemp("loaders")
    rng = np.random.default_rng(5)
    T = len(HOSTILE_TOKENS)
    expected = {}
    for run, dtype in (("run_a", "uint8"), ("nested/run_b", "float16")):
        with AttentionWriter(logdir / run, dtype=dtype) as w:
            sequences = {}
            for step in (0, 10, 20):
                for tag in ("probe/hostile", "probe/seq2seq"):
                    if tag == "probe/hostile":
                        a = softmax(rng, 2, 3, T, T)
                        record = AttentionRecord([KindRecord("self", a, HOSTILE_TOKENS, HOSTILE_TOKENS,
                                                             (0, 1), 3, 3)], model_type="bert")
                    else:
                        record = AttentionRecord([
                            _neurons_kind(rng, "encoder", 2, 2, 6, 6, 4, causal=False, with_bias=True),
                            _neurons_kind(rng, "decoder", 2, 2, 4, 4, 4, causal=True, with_bias=False),
                            KindRecord("cross", softmax(rng, 2, 2, 4, 6), tokens(4, "decoder"),
                                       tokens(6, "encoder"), (0, 1))], model_type="t5")
                    wall = 1.7e9 + step
                    w.add_attention(tag, record, global_step=step, walltime=wall)
                    seq = sequences.get(tag, 0)
                    sequences[tag] = seq + 1
                    blobs = summary.step_blobs(record, seq, w._writer_id, dtype)
                    expected.setdefault(run, {}).setdefault(tag, {})[step] = (wall, record, blobs)
    return logdir, expected


def check_loader_blobs(provider, expected):
    got = provider_blobs(provider)
    assert sorted(got) == sorted(expected)
    for run, tags in expected.items():
        assert sorted(got[run]) == sorted(tags)
        for tag, steps in tags.items():
            assert sorted(got[run][tag]) == sorted(steps)
            for step, (wall, record, blobs) in steps.items():
                got_wall, got_blobs = got[run][tag][step]
                assert got_wall == pytest.approx(wall)
                assert got_blobs == blobs  # byte for byte what the codec made
                # The plugin's path: header, then one layer, without the rest.
                header = codec.parse_header(got_blobs[0])
                assert [k.name for k in header.kinds] == list(record.kinds)
                for k in header.kinds:
                    original = record.kind(k.name)
                    assert tuple(codec.token_strings(k.query_tokens)) == tuple(original.query_tokens)
                    assert tuple(codec.token_strings(k.key_tokens)) == tuple(original.key_tokens)
                    tol = UINT8_TOL if k.dtype == attention_pb2.UINT8 else FLOAT16_TOL
                    dtype = "uint8" if k.dtype == attention_pb2.UINT8 else "float16"
                    for i, ref in enumerate(k.attention):
                        # independent of the codec: the weights as plain numpy stores them
                        assert plain(ref, got_blobs[ref.index]) == stored(original.attention[i], dtype).tobytes()
                        layer = codec.to_float(codec.attention_layer(k, i, got_blobs[ref.index]))
                        assert np.abs(layer - original.attention[i]).max() <= tol


def test_python_loader_reads_the_same_bytes(two_run_logdir):
    logdir, expected = two_run_logdir
    mux, provider = python_loader(logdir)
    # the metadata tells TensorBoard it is a blob sequence of our plugin
    meta = mux.SummaryMetadata("run_a", "probe/hostile")
    assert meta.plugin_data.plugin_name == "attention"
    assert meta.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    check_loader_blobs(provider, expected)


def test_rust_data_server_reads_the_same_bytes(two_run_logdir):
    logdir, expected = two_run_logdir
    want = {run: {tag: sorted(steps) for tag, steps in tags.items()} for run, tags in expected.items()}

    def listed(provider):
        data = provider.read_blob_sequences(CTX, experiment_id="", plugin_name=metadata.PLUGIN_NAME,
                                            downsample=10 ** 6)
        return {run: {tag: sorted(d.step for d in seq) for tag, seq in tags.items()}
                for run, tags in data.items()}

    with rust_data_server(logdir) as provider:
        wait_until(lambda: listed(provider) == want, timeout=30, what="the data server to load every step")
        check_loader_blobs(provider, expected)


def test_tensorboard_load_fast_serves_the_written_bytes(two_run_logdir, tensorboard_factory):
    """A real `tensorboard --load_fast=true` (Rust data server) through the
    plugin's routes, with the installed plugin (conftest stops the session when
    the installed package is not this checkout)."""
    logdir, expected = two_run_logdir
    tb = tensorboard_factory(logdir, load_fast=True, extra_args=("--samples_per_plugin", "attention=0"))

    def listed():
        return {run: {tag: t["steps"] for tag, t in tags.items()} for run, tags in tb.attention_tags().items()}

    want = {run: {tag: sorted(steps) for tag, steps in tags.items()} for run, tags in expected.items()}
    wait_until(lambda: listed() == want, timeout=60, what="tensorboard to list every step")
    for run, tags in expected.items():
        for tag, steps in tags.items():
            for step, (wall, record, blobs) in steps.items():
                header = codec.parse_header(blobs[0])
                for k in header.kinds:
                    for i, layer_id in enumerate(k.layer_ids):
                        status, headers, body = tb.get(
                            "/data/plugin/attention/attention?" + _query(run=run, tag=tag, step=step,
                                                                          kind=k.name, layer=layer_id))
                        assert status == 200, body[:300]
                        # the stored bytes, inflated (format 4) by the plugin
                        assert body == codec.open_blob(k.attention[i], blobs[k.attention[i].index], "x")
                        dtype = "uint8" if k.dtype == attention_pb2.UINT8 else "float16"
                        assert body == stored(record.kind(k.name).attention[i], dtype).tobytes()
                header_json = tb.get_json("/data/plugin/attention/header?" + _query(run=run, tag=tag, step=step))
                assert header_json["sequence"] == header.sequence
                for kj, k in zip(header_json["kinds"], header.kinds):
                    # the lone surrogate may come back as itself or U+FFFD; the rest exactly
                    want_tokens = [t if t != "\ud800" else kj["query_tokens"][i]
                                   for i, t in enumerate(record.kind(k.name).query_tokens)]
                    assert kj["query_tokens"] == want_tokens


def _query(**params):
    from urllib.parse import urlencode
    return urlencode(params)


# --------------------------------------------------------------------------
# 3. scalars and attention in one run, read while training writes


def test_scalars_and_attention_in_one_run_under_both_loaders(tmp_path):
    logdir, run_dir = tmp_path, tmp_path / "train"
    n_steps, every = 60, 5
    attention_steps = list(range(0, n_steps, every))
    rng = np.random.default_rng(6)
    a = softmax(rng, 2, 4, 32, 32)
    toks = tokens(32)
    sw = SummaryWriter(str(run_dir))
    aw = AttentionWriter(sw)
    assert aw.logdir == str(run_dir)

    # The Python loader reloads over and over while the run is written.
    mux = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0, "scalars": 0})
    mux.AddRunsFromDirectory(str(logdir))
    provider = mux_data_provider.MultiplexerDataProvider(mux, str(logdir))
    stop, seen, reload_errors = threading.Event(), [], []

    def reload_loop():
        while not stop.is_set():
            try:
                mux.AddRunsFromDirectory(str(logdir))
                mux.Reload()
                seen.append((blob_steps(provider, "train", "probe"), scalar_steps(provider, "train", "loss")))
            except Exception as e:  # reported below, not swallowed
                reload_errors.append(e)
                return

    reloader = threading.Thread(target=reload_loop)
    with rust_data_server(logdir) as rust:
        reloader.start()
        try:
            for step in range(n_steps):
                sw.add_scalar("loss", 1.0 / (step + 1), step)
                if step % every == 0:
                    aw.add_attention("probe", a, tokens=toks, global_step=step)
                if step in (20, 40):
                    # Make sure both loaders have read the file mid-run, while it grows.
                    aw.flush()
                    wait_until(lambda: seen and step in seen[-1][0] and step in seen[-1][1], timeout=30,
                               what="the Python loader to see step %d" % step)
                    wait_until(lambda: step in blob_steps(rust, "train", "probe")
                               and step in scalar_steps(rust, "train", "loss"),
                               timeout=30, what="the data server to see step %d" % step)
            aw.close()
            sw.add_scalar("after_close", 1.0, 0)  # the SummaryWriter is the user's: still open
            sw.flush()
            assert event_files(run_dir) and len(event_files(run_dir)) == 1, event_files(run_dir)
            wait_until(lambda: seen and seen[-1] == (attention_steps, list(range(n_steps))), timeout=30,
                       what="the Python loader to see every step")
        finally:
            stop.set()
            reloader.join()
        assert not reload_errors, reload_errors
        assert len(seen) >= 3
        # A final reload from scratch as well: nothing vanished, nothing doubled.
        _, fresh = python_loader(logdir)
        assert blob_steps(fresh, "train", "probe") == attention_steps
        assert scalar_steps(fresh, "train", "loss") == list(range(n_steps))
        assert scalar_steps(fresh, "train", "after_close") == [0]
        wait_until(lambda: blob_steps(rust, "train", "probe") == attention_steps
                   and scalar_steps(rust, "train", "loss") == list(range(n_steps)),
                   timeout=30, what="the data server to see every step")
        data = rust.read_scalars(CTX, experiment_id="", plugin_name="scalars", downsample=1000)
        assert [d.value for d in data["train"]["loss"]] == pytest.approx([1.0 / (s + 1) for s in range(n_steps)])
    sw.close()
    assert len(event_files(run_dir)) == 1
    assert load(logdir).steps("train", "probe") == attention_steps


# --------------------------------------------------------------------------
# 4. bad input: a clear error, nothing written


def _bad_inputs():
    rng = np.random.default_rng(7)
    good = softmax(rng, 2, 3, 4, 4)
    t4 = tokens(4)
    nan = good.copy()
    nan[1, 2, 3, 0] = np.nan
    inf = good.copy()
    inf[0, 0, 0, 0] = np.inf
    above = good.copy()
    above[0, 1, 2, 3] = 1.5
    below = good.copy()
    below[1, 0, 0, 0] = -0.25
    t_layers = tuple(torch.from_numpy(good[i:i + 1]) for i in range(2))
    bad_kind = KindRecord("self", nan, tuple(t4), tuple(t4), (0, 1))
    float_layer_ids = KindRecord("self", good, tuple(t4), tuple(t4), (0.0, 1.7))
    cases = {
        # name: (args, kwargs, pattern the message must contain)
        "rank 3": ((good[0],), dict(tokens=t4), r"shape \(3, 4, 4\); expected \[layers, heads"),
        "rank 2 layer in tuple": (((good[0, 0], good[1, 0]),), dict(tokens=t4),
                                  r"attentions\[0\] has shape \(4, 4\); expected \[1, heads"),
        "layers differ in shape": (((good[:1], good[:1, :2]),), dict(tokens=t4), "differ in shape"),
        "too few query tokens": ((softmax(rng, 2, 3, 5, 4),), dict(tokens=(tokens(4), t4)),
                                 "query tokens has 4 tokens but the attention has 5"),
        "too many key tokens": ((softmax(rng, 2, 3, 4, 4),), dict(tokens=(t4, tokens(6))),
                                "key tokens has 6 tokens but the attention has 4"),
        "self tokens short": ((good,), dict(tokens=t4[:3]), "has 3 tokens but the attention has 4"),
        "tokens missing": ((good,), dict(), "tokens are required"),
        "tokens one string": ((good,), dict(tokens="abcd"), "one string"),
        "NaN": ((nan,), dict(tokens=t4), r"NaN or Inf \(first at layer, head, query, key = \(1, 2, 3, 0\)\)"),
        "Inf": ((inf,), dict(tokens=t4), "NaN or Inf"),
        "weight above 1": ((above,), dict(tokens=t4), r"outside \[0, 1\] \(min [0-9.e-]+, max 1.5\)"),
        "weight below 0": ((below,), dict(tokens=t4), r"outside \[0, 1\] \(min -0.25"),
        "scores not probabilities": ((good * 7 - 3,), dict(tokens=t4), "not scores"),
        "negative step": ((good,), dict(tokens=t4, global_step=-1), "global_step must be >= 0, got -1"),
        "bool step": ((good,), dict(tokens=t4, global_step=True), "global_step must be an int, got True"),
        "float step": ((good,), dict(tokens=t4, global_step=1.0), "global_step must be an int"),
        "empty tag": ((good,), dict(tokens=t4, tag=""), "tag must be a non-empty string"),
        "blank tag": ((good,), dict(tokens=t4, tag="  "), "tag must be a non-empty string"),
        "tag not str": ((good,), dict(tokens=t4, tag=None), "tag must be a non-empty string"),
        "batch of 2 in tuple": (((np.stack([good[0], good[0]]), np.stack([good[1], good[1]])),),
                                dict(tokens=t4), r"shape \(2, 3, 4, 4\): a batch of 2 examples where one"),
        "batch of 2 in torch tuple": ((tuple(torch.from_numpy(np.stack([g, g])) for g in good),),
                                      dict(tokens=t4), "a batch of 2 examples where one is expected"),
        "batch of 2 in [L, B, H, T, T]": ((np.stack([good, good], axis=1),), dict(tokens=t4),
                                          r"shape \(2, 2, 3, 4, 4\): a batch of 2 examples"),
        "int tokens": ((good,), dict(tokens=[1, 2, 3, 4]), r"query tokens\[0\] is int, not a str"),
        "bytes token": ((good,), dict(tokens=["a", b"b", "c", "d"]), r"query tokens\[1\] is bytes, not a str"),
        "None token": ((t_layers,), dict(tokens=["a", "b", None, "d"]), r"query tokens\[2\] is NoneType"),
        "empty tuple": (((),), dict(tokens=t4), "the model returned no attention weights"),
        "empty array": ((np.zeros((2, 3, 0, 0), np.float32),), dict(tokens=[]), "is empty"),
        "not numeric": ((np.array([["a"]]),), dict(tokens=t4), "not a numeric array"),
        "segment out of range": ((good,), dict(tokens=t4, segment_b=4), r"segment_b = 4 is outside 0..3"),
        "layer_ids count": ((good,), dict(tokens=t4, layer_ids=(0, 1, 2)), "names 3 layers but the attention has 2"),
        "unknown kind": ((good,), dict(tokens=t4, kind="selfish"), "kind 'selfish' is not one of"),
        "record with NaN": ((AttentionRecord([bad_kind]),), dict(), "NaN or Inf"),
        "record with float layer_ids": ((AttentionRecord([float_layer_ids]),), dict(), "layer_ids must be ints"),
        "record plus tokens": ((AttentionRecord([KindRecord("self", good, tuple(t4), tuple(t4), (0, 1))]),),
                               dict(tokens=t4), "come from the record"),
    }
    return good, t4, cases


_GOOD, _T4, _BAD = _bad_inputs()


@pytest.mark.parametrize("case", sorted(_BAD))
def test_bad_input_clear_error_and_nothing_written(tmp_path, case):
    (attention,), kwargs, pattern = _BAD[case]
    kwargs = dict(kwargs)
    tag = kwargs.pop("tag", "probe")
    kwargs.setdefault("global_step", 5)
    with AttentionWriter(tmp_path) as w:
        w.add_attention("probe", _GOOD, tokens=_T4, global_step=0)
        w.flush()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an error, not a warning plus garbage
            with pytest.raises(AttentionInputError, match=pattern):
                w.add_attention(tag, attention, **kwargs)
        w.add_attention("probe", _GOOD, tokens=_T4, global_step=1)
    log = load(tmp_path)
    assert log.tags(".") == ["probe"]
    assert log.steps(".", "probe") == [0, 1]  # no extra step
    assert [log.header(".", "probe", s).sequence for s in (0, 1)] == [0, 1]  # no sequence used up
    np.testing.assert_allclose(log.get(".", "probe", 1).attention(), _GOOD, atol=UINT8_TOL)


def test_rows_not_summing_to_one_warn_once_and_are_logged(tmp_path):
    rng = np.random.default_rng(8)
    a = softmax(rng, 3, 2, 5, 5)
    a[0, 0] *= 0.5  # 5 rows of one head sum to 0.5 ...
    a[2, 1, 3] = 0.9  # ... and one row of another to 4.5
    padded = softmax(rng, 3, 2, 5, 5)
    padded[:, :, 4] = 0  # a padding query attends to nothing: legitimate, no warning
    with AttentionWriter(tmp_path) as w:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            w.add_attention("maps", a, tokens=tokens(5), global_step=0)
        assert len(caught) == 1, [str(c.message) for c in caught]
        assert "6 of 30 rows do not sum to 1" in str(caught[0].message)
        assert caught[0].filename == __file__  # points at the user's call
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            w.add_attention("maps", padded, tokens=tokens(5), global_step=1)
    log = load(tmp_path)
    assert log.steps(".", "maps") == [0, 1]
    np.testing.assert_allclose(log.get(".", "maps", 0).attention(), a, atol=UINT8_TOL)
    np.testing.assert_allclose(log.get(".", "maps", 1).attention(), padded, atol=UINT8_TOL)


def test_writer_arguments_validated(tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of"):
        AttentionWriter(tmp_path, dtype="int8")
    with pytest.raises(ValueError, match="max_queue must be a positive int"):
        AttentionWriter(tmp_path, max_queue=0)
    with pytest.raises(TypeError, match="a logdir path, a torch.utils.tensorboard SummaryWriter or a "
                                        "tensorboardX SummaryWriter, got int; any other writer can log "
                                        r"tb_attention.summary.pb\(tag, record\)"):
        AttentionWriter(3)
    assert event_files(tmp_path) == []  # nothing created by a refused writer
    w = AttentionWriter(tmp_path)
    w.close()
    with pytest.raises(AttentionWriterError, match="closed"):
        w.add_attention("x", _GOOD, tokens=_T4, global_step=0)
    w.close()  # twice is fine


# --------------------------------------------------------------------------
# 5. I/O errors surface, naming the path


def test_unwritable_logdir_fails_in_the_constructor(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    target = blocker / "run"
    with pytest.raises(AttentionWriterError) as info:
        AttentionWriter(target)
    assert str(target) in str(info.value)


def _swap_for_dev_full(path, keep_dir):
    """Move the event file aside (so what was written stays readable) and put
    /dev/full in its place: the next write gets a real ENOSPC from the kernel."""
    os.makedirs(keep_dir, exist_ok=True)
    os.rename(path, os.path.join(keep_dir, os.path.basename(path)))
    os.symlink("/dev/full", path)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_disk_full_mid_run_surfaces_on_flush_and_later_calls(tmp_path):
    run, kept = tmp_path / "run", tmp_path / "kept"
    w = AttentionWriter(run)
    for step in range(3):
        w.add_attention("probe", _GOOD, tokens=_T4, global_step=step)
    w.flush()
    path = w._sink.path
    _swap_for_dev_full(path, kept)
    w.add_attention("probe", _GOOD, tokens=_T4, global_step=3)  # queued before the write fails
    with pytest.raises(AttentionWriterError) as info:
        w.flush()
    assert path in str(info.value) and "No space left on device" in str(info.value)
    # sticky: every later call says so too, none hangs or pretends to work
    with pytest.raises(AttentionWriterError, match="No space left on device"):
        w.add_attention("probe", _GOOD, tokens=_T4, global_step=4)
    with pytest.raises(AttentionWriterError, match="No space left on device"):
        w.flush()
    with pytest.raises(AttentionWriterError, match="No space left on device"):
        w.close()
    os.unlink(path)  # the /dev/full link; load() must not read it
    # the training thread carries on: records written before stay readable,
    # and a new writer works in the same process.
    assert load(kept).steps(".", "probe") == [0, 1, 2]
    with AttentionWriter(tmp_path / "again") as w2:
        w2.add_attention("probe", _GOOD, tokens=_T4, global_step=9)
    assert load(tmp_path / "again").steps(".", "probe") == [9]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_disk_full_surfaces_on_close(tmp_path):
    """No flush in between: close() itself must raise, not swallow the error."""
    w = AttentionWriter(tmp_path / "run")
    w.add_attention("probe", _GOOD, tokens=_T4, global_step=0)
    w.flush()
    path = w._sink.path
    _swap_for_dev_full(path, tmp_path / "kept")
    w.add_attention("probe", _GOOD, tokens=_T4, global_step=1)
    with pytest.raises(AttentionWriterError) as info:
        w.close()
    assert path in str(info.value) and "No space left on device" in str(info.value)
    os.unlink(path)
    assert load(tmp_path / "kept").steps(".", "probe") == [0]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_disk_full_surfaces_from_the_context_manager(tmp_path):
    with pytest.raises(AttentionWriterError, match="No space left on device"):
        with AttentionWriter(tmp_path / "run") as w:
            w.add_attention("probe", _GOOD, tokens=_T4, global_step=0)
            w.flush()
            path = w._sink.path
            _swap_for_dev_full(path, tmp_path / "kept")
            w.add_attention("probe", _GOOD, tokens=_T4, global_step=1)
    os.unlink(path)
    assert load(tmp_path / "kept").steps(".", "probe") == [0]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_run_directory_removed_mid_run(tmp_path):
    run = tmp_path / "run"
    w = AttentionWriter(run)
    w.add_attention("probe", _GOOD, tokens=_T4, global_step=0)
    w.flush()
    path = w._sink.path
    shutil.rmtree(run)
    w.add_attention("probe", _GOOD, tokens=_T4, global_step=1)
    with pytest.raises(AttentionWriterError) as info:
        w.flush()
    assert path in str(info.value) and "No such file or directory" in str(info.value)
    with pytest.raises(AttentionWriterError):
        w.close()
    assert not run.exists()  # not silently recreated


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_disk_full_in_a_summary_writers_file(tmp_path):
    sw = SummaryWriter(str(tmp_path / "run"))
    aw = AttentionWriter(sw)
    sw.add_scalar("loss", 1.0, 0)
    aw.add_attention("probe", _GOOD, tokens=_T4, global_step=0)
    aw.flush()
    path = sw._get_file_writer().event_writer._file_name
    _swap_for_dev_full(path, tmp_path / "kept")
    aw.add_attention("probe", _GOOD, tokens=_T4, global_step=1)
    with pytest.raises(AttentionWriterError) as info:
        aw.flush()
    assert path in str(info.value) and "No space left on device" in str(info.value)
    with pytest.raises(AttentionWriterError):
        aw.close()
    os.unlink(path)
    assert load(tmp_path / "kept").steps(".", "probe") == [0]
    with contextlib.suppress(Exception):  # the user's writer is broken too; theirs to close
        sw.close()


# --------------------------------------------------------------------------
# 6. SIGKILL right after flush()

KILLED_CHILD = """
    import sys
    import numpy as np
    from tb_attention import AttentionWriter
    logdir, n = sys.argv[1], int(sys.argv[2])
    w = AttentionWriter(logdir)
    for step in range(n):
        a = np.full((2, 3, 16, 16), 1 / 16, np.float32)
        a[:, :, :, step % 16] += 0.5
        w.add_attention("probe", a / a.sum(-1, keepdims=True),
                        tokens=["t%d" % i for i in range(16)], global_step=step)
    w.flush()
    print("flushed", w._sink.path, flush=True)
    big = np.full((4, 4, 256, 256), 1 / 256, np.float32)  # 1 MB records, written back to back
    step = n
    while True:
        w.add_attention("probe", big, tokens=["b%d" % i for i in range(256)], global_step=step)
        step += 1
"""


def _expect_flushed_steps(log, n):
    steps = log.steps(".", "probe")
    assert steps[:n] == list(range(n))
    for step in range(n):
        a = log.get(".", "probe", step).attention()
        assert a.shape == (2, 3, 16, 16)
        assert np.argmax(a[0, 0, 0]) == step % 16


def test_sigkill_after_flush_keeps_flushed_steps(tmp_path):
    n = 7
    env = dict(os.environ, PYTHONPATH=REPO)
    with sigkilled(subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_CHILD), str(tmp_path), str(n)],
                                    stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)) as child:
        word, path = child.stdout.readline().split()
        assert word == "flushed"
        flushed_size = os.path.getsize(path)
        # Kill it while it writes big records after the flush.
        # at least one big record complete after the flushed ones
        wait_until(lambda: os.path.getsize(path) > flushed_size + 4 * 4 * 256 * 256 + 8000, timeout=60,
                   what="the child to write past the flush")
    assert child.returncode == -signal.SIGKILL

    ends, torn = record_ends(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = load(tmp_path)
    torn_warnings = [c for c in caught if "torn record" in str(c.message)]
    assert len(torn_warnings) == int(torn), [str(c.message) for c in caught]
    assert len(caught) == int(torn)
    _expect_flushed_steps(log, n)
    # every complete record is an event; 1 file_version event + n flushed + the big ones
    assert len(log.steps(".", "probe")) == len(ends) - 1
    mux, provider = python_loader(tmp_path)
    assert blob_steps(provider, ".", "probe")[:n] == list(range(n))

    # The kill lands between two writes most of the time. What a kill inside
    # write(2) leaves is a prefix of the record being written: cut the file
    # inside its last complete record (in the length, the payload and the
    # footer) and read each prefix like a crashed run.
    with open(path, "rb") as f:
        data = f.read()
    start, end = ends[-2], ends[-1]
    for cut in (start + 5, start + 12 + 100, end - 2):
        crashed = tmp_path / ("crashed_at_%d" % cut)
        crashed.mkdir()
        (crashed / os.path.basename(path)).write_bytes(data[:cut])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log = load(crashed)
        assert len(caught) == 1 and "torn record" in str(caught[0].message), [str(c.message) for c in caught]
        assert str(crashed) in str(caught[0].message)
        _expect_flushed_steps(log, n)
        assert len(log.steps(".", "probe")) == len(ends) - 2
    # TensorBoard's loaders read the same steps from the last (footer-torn) file
    _, provider = python_loader(crashed)
    assert blob_steps(provider, ".", "probe") == log.steps(".", "probe")
    with rust_data_server(crashed) as rust:
        wait_until(lambda: blob_steps(rust, ".", "probe") == log.steps(".", "probe"), timeout=30,
                   what="the data server to read the crashed run")


# --------------------------------------------------------------------------
# 7. flush at interpreter exit

EXIT_CHILD = """
    import sys
    import numpy as np
    from tb_attention import AttentionWriter
    logdir, mode = sys.argv[1], sys.argv[2]
    if mode == "shared":
        from torch.utils.tensorboard import SummaryWriter
        sw = SummaryWriter(logdir)
        w = AttentionWriter(sw)
    else:
        w = AttentionWriter(logdir, max_queue=2)
    a = np.full((3, 4, 64, 64), 1 / 64, np.float32)
    for step in range(12):
        if mode == "shared":
            sw.add_scalar("loss", float(step), step)
        w.add_attention("probe", a, tokens=["t%d" % i for i in range(64)], global_step=step)
    if mode == "raise":
        raise RuntimeError("training crashed")
    if mode == "disk full":
        import os
        w.flush()
        path = w._sink.path
        os.rename(path, path + ".kept")
        os.symlink("/dev/full", path)
        w.add_attention("probe", a, tokens=["t%d" % i for i in range(64)], global_step=99)
    # no close(), no flush(): the interpreter exits with records queued
"""


@pytest.mark.parametrize("mode", ["own file", "shared", "raise"])
def test_flush_at_interpreter_exit(tmp_path, mode):
    r = run_python(EXIT_CHILD, tmp_path, mode)
    assert (r.returncode != 0) == (mode == "raise"), r.stderr
    if mode == "raise":
        assert "training crashed" in r.stderr
    assert "tb-attention" not in r.stderr, r.stderr
    assert load(tmp_path).steps(".", "probe") == list(range(12))
    if mode == "shared":
        assert len(event_files(tmp_path)) == 1
        _, provider = python_loader(tmp_path)
        assert scalar_steps(provider, ".", "loss") == list(range(12))
        assert blob_steps(provider, ".", "probe") == list(range(12))


def test_error_at_interpreter_exit_is_reported(tmp_path):
    r = run_python(EXIT_CHILD, tmp_path, "disk full")
    path = [os.path.join(tmp_path, f) for f in event_files(tmp_path) if not f.endswith(".kept")][0]
    assert "tb-attention: flushing at exit failed" in r.stderr and path in r.stderr, r.stderr
    assert "No space left on device" in r.stderr
    os.unlink(path)
    assert load(tmp_path).steps(".", "probe") == list(range(12))  # the .kept file


# --------------------------------------------------------------------------
# back-pressure: a stalled disk blocks the training thread, memory stays bounded


def _in_frame(thread, filename, function):
    """The source line `thread` is at inside `function` of `filename` (its
    innermost such frame), or "" when that function is not on its stack."""
    import linecache
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        code = frame.f_code
        if code.co_name == function and os.path.basename(code.co_filename) == filename:
            return linecache.getline(code.co_filename, frame.f_lineno).strip() or "?"
        frame = frame.f_back
    return ""


def test_stalled_disk_blocks_training_within_the_memory_bound(tmp_path, monkeypatch):
    """The event file is swapped for a FIFO nobody reads: every write blocks in
    open(2), as on a hung network filesystem. add_attention must then block
    once the records in flight reach the byte bound (here: one record), not
    pile up max_queue records; reading the FIFO releases everything, in order."""
    from tb_attention import writer as writer_module
    monkeypatch.setattr(writer_module, "_MAX_QUEUED_BYTES", 1)
    w = AttentionWriter(tmp_path / "run", max_queue=8)
    w.add_attention("probe", _GOOD, tokens=_T4, global_step=0)
    w.flush()
    path = w._sink.path
    os.rename(path, tmp_path / "before")
    os.mkfifo(path)
    done, errors = [], []

    def train():
        try:
            for step in range(1, 16):
                w.add_attention("probe", _GOOD, tokens=_T4, global_step=step)
                done.append(step)
        except Exception as e:  # reported below
            errors.append(e)

    received = bytearray()

    def drain():
        # Each record is one open/append/close of the FIFO by TensorBoard's
        # thread. Opened read-write, the FIFO always has a writer (us), so we
        # never see EOF between records, and always a reader, so none is lost.
        fd = os.open(path, os.O_RDWR)
        try:
            while not received.endswith(b"STOP"):
                received.extend(os.read(fd, 1 << 20))
        finally:
            os.close(fd)

    trainer = threading.Thread(target=train, daemon=True)
    reader = threading.Thread(target=drain, daemon=True)
    trainer.start()
    try:
        # In flight while the disk hangs: one record in TensorBoard's writer thread
        # (stuck in open), one in its queue, one in ours (waiting to hand it over).
        # Event-driven, no time window: wait until the whole pipeline is stuck
        # (our writer thread blocked handing a record to TensorBoard's full
        # queue, the training thread inside add_attention), then look.
        def stuck():
            return (len(done) >= 3 and _in_frame(w._thread, "event_file_writer.py", "write")
                    and _in_frame(trainer, "writer.py", "_put"))
        wait_until(stuck, timeout=30, what="the trainer and the writer thread to block")
        blocked_at = list(done)
        waiting_on = _in_frame(trainer, "writer.py", "_put")
    finally:  # whatever happened, let the disk go again
        reader.start()
    assert blocked_at == [1, 2, 3], blocked_at  # blocked, not queueing more
    assert "self._space.wait" in waiting_on, waiting_on  # at the byte bound, not the record queue
    trainer.join(timeout=60)
    assert not trainer.is_alive() and not errors, errors
    w.close()
    with open(path, "wb") as f:  # after every record: release the drain thread
        f.write(b"STOP")
    reader.join(timeout=30)
    assert not reader.is_alive()
    os.unlink(path)
    (tmp_path / "run" / "events.out.tfevents.after").write_bytes(bytes(received[:-4]))
    os.rename(tmp_path / "before", tmp_path / "run" / "events.out.tfevents.before")
    assert load(tmp_path).steps("run", "probe") == list(range(16))


@pytest.mark.parametrize("walltime, step, tag", [(0.0, 0, "p"), (1.7e9, 2 ** 63 - 1, "probe/é"),
                                                 (12.5, 300, "x" * 200)])
def test_event_bytes_are_protobufs_serialization(walltime, step, tag):
    """The writer builds each Event's bytes by hand (summary.event_bytes):
    byte for byte what protobuf serializes for the same Event."""
    from tensorboard.compat.proto import event_pb2
    from tb_attention import metadata, summary
    from tb_attention.record import from_raw as record_from_raw

    rng = np.random.default_rng(step % 97)
    record = record_from_raw(softmax(rng, 2, 3, 130, 130), tokens(130))
    blobs = summary.step_blobs(record, 4, "w")
    meta = metadata.create_summary_metadata("d")
    event = event_pb2.Event(wall_time=walltime, step=step)
    summary.add_value(event.summary, tag, blobs, meta)
    assert summary.event_bytes(walltime, step, tag, blobs, meta.SerializeToString()) == \
        event.SerializeToString()
