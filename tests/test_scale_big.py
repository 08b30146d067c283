"""Issue 12, the large-model part: grouped keys stored once per key head
(GQA), records larger than one uncompressed TensorBoard Event (split by
heads, sized after compression), and a refused record not poisoning the
writer. The whole 32 x 32 x 2048 case runs in tests/benchmarks/bench_scale.py --big."""
import numpy as np
import pytest
import torch

import tb_attention
from tb_attention import codec
from tb_attention import page as tba_page
from tests.support.backends import CTX, WsgiBackend, url
from tests.support.pages import read_page

H, HK, D, T = 8, 2, 8, 9  # 4 query heads per key head
G = H // HK


def gqa_llama():
    import transformers as tr

    from tests.models import INIT_RANGE, VOCAB_SIZE

    config = tr.LlamaConfig(vocab_size=VOCAB_SIZE, initializer_range=INIT_RANGE, hidden_size=64,
                            num_hidden_layers=2, num_attention_heads=H, num_key_value_heads=HK,
                            head_dim=D, intermediate_size=37, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = tr.LlamaForCausalLM(config).eval()
    return model


def model_expanded_keys(model, ids, monkeypatch):
    """The keys the model's own eager attention multiplies with: the output
    of transformers' repeat_kv on the key states, [L, H, T, D] (the oracle)."""
    from transformers.models.llama import modeling_llama

    real, seen = modeling_llama.repeat_kv, []

    def spy(states, n_rep):
        out = real(states, n_rep)
        seen.append(out.detach().float().numpy()[0].copy())
        return out

    monkeypatch.setattr(modeling_llama, "repeat_kv", spy)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        model(ids)
    monkeypatch.setattr(modeling_llama, "repeat_kv", real)
    return np.stack(seen[0::2])  # keys, then values, per layer


def test_grouped_keys_are_kept_once_per_key_head_and_expanded_when_read(tmp_path, monkeypatch):
    model = gqa_llama()
    ids = torch.tensor([[5, 9, 13, 2, 7, 11, 3, 8, 4]])
    want = model_expanded_keys(model, ids, monkeypatch)  # [L, H, T, D], the model's own repeat_kv
    assert want.shape == (2, H, T, D)
    rec = tb_attention.capture(model, ids, neurons=True, dtype="uint8")
    n = rec.neurons()
    assert n.keys.shape == (2, HK, T, D) and n.key_groups == G
    np.testing.assert_allclose(n.keys, want[:, ::G], atol=1e-6)
    np.testing.assert_allclose(n.expanded_keys(), want, atol=1e-6)
    np.testing.assert_allclose(rec.recompute_attention(), rec.attention(), atol=1 / 510 + 1e-4)
    # heads= of two whole groups in order stays grouped; heads across groups get a key each
    picked = tb_attention.capture(model, ids, neurons=True, heads=[4, 5, 6, 7, 0, 1, 2, 3])
    assert picked.neurons().keys.shape == (2, HK, T, D)
    np.testing.assert_allclose(picked.neurons().expanded_keys(), want[:, [4, 5, 6, 7, 0, 1, 2, 3]],
                               atol=1e-6)
    mixed = tb_attention.capture(model, ids, neurons=True, heads=[0, 5])
    np.testing.assert_allclose(mixed.neurons().keys, want[:, [0, 5]], atol=1e-6)

    with tb_attention.AttentionWriter(str(tmp_path)) as w:
        w.add_attention("p", rec, global_step=0)
    log = tb_attention.load(str(tmp_path))
    header = log.header(".", "p", 0)
    kind = header.kinds[0]
    assert header.version == 4 and kind.key_heads == HK and kind.num_heads == H
    # the stored neuron bytes: queries per query head, keys per key head (hand-computed)
    for nl in kind.neurons:
        assert nl.blob.raw_length == H * T * D * 2 + HK * T * D * 2 + T * T
    back = log.get(".", "p", 0).neurons()
    np.testing.assert_array_equal(back.keys, n.keys.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(back.expanded_keys(), want.astype(np.float16).astype(np.float32))

    # the plugin's neurons route: the key head of each query head
    backend = WsgiBackend(tmp_path)
    for head in (0, 3, 4, 7):
        r = backend.get(url("neurons", run=".", tag="p", step=0, kind="self", layer=1, head=head))
        assert r.status == 200, r
        keys = np.frombuffer(r.body, "<f2", count=T * D, offset=T * D * 2).reshape(T, D)
        np.testing.assert_array_equal(keys, want[1, head].astype("<f2"))

    # a page's data: every layer's neurons laid out per query head, as before grouping
    (manifest, blobs), = read_page(tba_page.Page(rec, "neuron").html())
    off, size = manifest["steps"][0]["neurons"]["self"][1][:2]
    assert size == 2 * H * T * D * 2 + T * T
    keys = np.frombuffer(blobs, "<f2", count=H * T * D, offset=off + H * T * D * 2).reshape(H, T, D)
    np.testing.assert_array_equal(keys, want[1].astype("<f2"))


def test_grouped_keys_shrink_the_neuron_bytes_by_the_group_factor(tmp_path):
    """The same queries and keys, stored grouped and stored expanded."""
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1, H, T, D)).astype(np.float32)
    k = rng.normal(size=(1, HK, T, D)).astype(np.float32)
    masked = np.zeros((1, T, T), bool)
    scores = np.einsum("lhqd,lhkd->lhqk", q, np.repeat(k, G, axis=1)) * 0.5
    a = np.exp(scores - scores.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    toks = tuple("t%d" % i for i in range(T))
    sizes = {}
    for name, keys in (("grouped", k), ("expanded", np.repeat(k, G, axis=1))):
        n = tb_attention.Neurons(queries=q, keys=keys, scales=np.array([0.5], np.float32), masked=masked)
        rec = tb_attention.AttentionRecord([tb_attention.KindRecord(
            "self", a.astype(np.float32), toks, toks, (0,), neurons=n)])
        blobs = codec.encode_step(rec, 0, "w", statistics={}, compress_payloads=False)
        header = codec.parse_header(blobs[0])
        sizes[name] = header.kinds[0].neurons[0].blob.length
        decoded = codec.decode_step(blobs)
        np.testing.assert_allclose(decoded.recompute_attention(), a, atol=2e-3)
    keys_expanded = sizes["expanded"] - (H * T * D * 2 + T * T)
    keys_grouped = sizes["grouped"] - (H * T * D * 2 + T * T)
    assert keys_expanded == H * T * D * 2 and keys_grouped * G == keys_expanded


def test_key_heads_that_do_not_divide_the_query_heads_are_refused():
    from tb_attention.metadata import FormatError
    from tb_attention.record import AttentionInputError

    toks = tuple("t%d" % i for i in range(T))
    a = np.full((1, H, T, T), 1 / T, np.float32)
    n = tb_attention.Neurons(queries=np.zeros((1, H, T, D), np.float32), keys=np.zeros((1, 3, T, D), np.float32),
                             scales=np.ones(1, np.float32), masked=np.zeros((1, T, T), bool))
    with pytest.raises(AttentionInputError, match="keys have 3 heads, which 8 query heads do not group"):
        tb_attention.record.validate_kind(tb_attention.KindRecord("self", a, toks, toks, (0,), neurons=n))
    good = tb_attention.Neurons(queries=n.queries, keys=np.zeros((1, HK, T, D), np.float32),
                                scales=n.scales, masked=n.masked)
    blobs = codec.encode_step(tb_attention.AttentionRecord([tb_attention.KindRecord(
        "self", a, toks, toks, (0,), neurons=good)]), 0, "w", statistics={})
    header = codec.parse_header(blobs[0])
    header.kinds[0].key_heads = 3
    with pytest.raises(FormatError, match="claims 3 key heads for 8 query heads"):
        codec.parse_header(header.SerializeToString())


# --------------------------------------------------------------------------
# Records larger than one uncompressed Event: sized as written


def onehot(L, H, T, shift=0):
    """Every query on one key: uint8 payloads of a few bytes once compressed."""
    a = np.zeros((L, H, T, T), np.float32)
    a[:, :, np.arange(T), (np.arange(T) + shift) % T] = 1.0
    return a


def test_a_step_over_the_event_limit_before_compression_is_written_split_by_heads(tmp_path, monkeypatch):
    """The 32 x 32 x 2048 path scaled down: the uncompressed step exceeds the
    (lowered) Event limit, its compressed blobs do not; each layer is blobs of
    whole heads, and the dashboard's one-head read takes the header and one blob."""
    from tb_attention import summary
    from tests.support.backends import kept_data
    from tests.support.records import stored

    L, Hh, Tt = 3, 6, 40
    a = onehot(L, Hh, Tt, shift=3)
    raw = L * Hh * Tt * Tt  # uint8 bytes of the step's attention
    monkeypatch.setattr(summary, "MAX_EVENT_BYTES", raw // 2)
    monkeypatch.setattr(codec, "LAYER_BLOB_BYTES", 2 * Tt * Tt)  # two heads a blob: 3 blobs a layer
    with tb_attention.AttentionWriter(str(tmp_path)) as w:
        w.add_attention("big", a, tokens=["t%d" % i for i in range(Tt)], global_step=7)
    backend = WsgiBackend(tmp_path, counting=True)
    counting = backend.provider
    (datum,) = kept_data(counting.real, ".", "big")
    blob_keys = [v.blob_key for v in datum.values]
    kind = codec.parse_header(counting.real.read_blob(CTX, blob_key=blob_keys[0])).kinds[0]
    assert kind.heads_per_blob == 2 and len(kind.attention) == 3 * L
    assert all(ref.compression == 1 for ref in kind.attention)  # zstd
    assert sum(len(counting.real.read_blob(CTX, blob_key=k)) for k in blob_keys) <= raw // 2
    before = len(counting.blob_keys)
    r = backend.get(url("attention", run=".", tag="big", step=7, kind="self", layer=2, head=5))
    assert r.status == 200 and r.headers["X-Attention-Shape"] == "1,%d,%d" % (Tt, Tt)
    np.testing.assert_array_equal(np.frombuffer(r.body, np.uint8).reshape(Tt, Tt), stored(a[2, 5]))
    part = codec.layer_parts(kind, 2)[2][0]  # layer 2, heads 4-5
    assert counting.blob_keys[before:] == [blob_keys[0], blob_keys[part.index]]


def test_a_step_too_large_once_compressed_is_refused_by_name_and_later_steps_are_written(
        tmp_path, monkeypatch):
    from tb_attention import summary
    from tb_attention.writer import AttentionWriterError
    from tests.support.records import stored

    Tt = 16
    toks = ["t%d" % i for i in range(Tt)]
    rng = np.random.default_rng(5)
    noisy = rng.dirichlet(np.ones(Tt), size=(1, 512, Tt)).astype(np.float32)  # ~5 bits a weight
    small = onehot(1, 2, Tt)
    monkeypatch.setattr(summary, "MAX_EVENT_BYTES", 40_000)  # noisy: 131 kB raw, more compressed
    w = tb_attention.AttentionWriter(str(tmp_path))
    w.add_attention("p", small, tokens=toks, global_step=0)
    w.add_attention("p", noisy, tokens=toks, global_step=1)  # refused on the writer's thread
    w.add_attention("p", onehot(1, 2, Tt, shift=1), tokens=toks, global_step=2)
    with pytest.raises(AttentionWriterError) as e:
        w.flush()
    message = str(e.value)
    assert "1 step(s) were not written" in message and "step 1 of 'p'" in message, message
    assert "compressed" in message and "at most 2 GiB" in message and "1x512x16x16" in message, message
    w.add_attention("p", onehot(1, 2, Tt, shift=2), tokens=toks, global_step=3)  # not poisoned
    w.close()  # raises nothing more: the refusal was reported once
    log = tb_attention.load(str(tmp_path))
    assert log.steps(".", "p") == [0, 2, 3]
    for step, shift in ((0, 0), (2, 1), (3, 2)):
        np.testing.assert_array_equal(stored(log.get(".", "p", step).attention()), stored(onehot(1, 2, Tt, shift)))


# --------------------------------------------------------------------------
# capture(..., dtype=) keeps no layer's float weights past its call


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama", "bart", "t5"])
def test_quantized_capture_takes_each_layer_during_its_call(arch, monkeypatch):
    """The model's output_attentions held every layer's float weights until
    the forward ended (16 GiB of float32 at 32 x 32 x 2048); now each layer
    is quantized inside its call and the output holds one-element stand-ins.
    The bytes are those of the float capture, quantized (the oracle: round(w * 255))."""
    from tb_attention import interface
    from tests.models import tiny_model
    from tests.support.records import stored

    model, tok = tiny_model(arch)
    ids = torch.tensor([[5, 9, 13, 2, 7, 11]])
    real, held = interface._outputs, []

    def spy(out, extras):
        found = real(out, extras)
        held.append([(a.untyped_storage().nbytes(), a.numel() * a.element_size())
                     for _, layers, _ in found for a in layers])
        return found

    monkeypatch.setattr(interface, "_outputs", spy)
    exact = tb_attention.capture(model, ids, neurons=True)
    assert all(storage >= size > 4 for storage, size in held[-1])  # float weights, as returned
    quantized = tb_attention.capture(model, ids, neurons=True, dtype="uint8")
    assert all(storage <= 4 < size for storage, size in held[-1]), held[-1]  # one element each
    assert quantized.kinds == exact.kinds
    for kind in exact.kinds:
        np.testing.assert_array_equal(quantized.kind(kind).attention, stored(exact.attention(kind)))
        assert quantized.kind(kind).causal == exact.kind(kind).causal
        assert (quantized.kind(kind).neurons is None) == (exact.kind(kind).neurons is None)


def test_neuron_values_are_checked_without_a_bool_copy_of_each_array():
    """NaN and Inf still refused by name; huge finite values (whose sum
    overflows) still accepted."""
    from tb_attention.record import AttentionInputError, validate_kind

    toks = tuple("t%d" % i for i in range(T))
    a = np.full((1, H, T, T), 1 / T, np.float32)

    def kind(queries, keys):
        return tb_attention.KindRecord("self", a, toks, toks, (0,), neurons=tb_attention.Neurons(
            queries=queries, keys=keys, scales=np.ones(1, np.float32), masked=np.zeros((1, T, T), bool)))

    q, k = np.zeros((1, H, T, D), np.float32), np.zeros((1, HK, T, D), np.float32)
    big = np.full_like(q, 3e38)  # every value finite, their sum is not
    validate_kind(kind(big, k))
    for which, bad in (("queries", np.nan), ("keys", np.inf), ("keys", -np.inf)):
        qq, kk = q.copy(), k.copy()
        (qq if which == "queries" else kk)[0, 1, 2, 3] = bad
        with pytest.raises(AttentionInputError, match="self neurons: %s holds NaN or Inf" % which):
            validate_kind(kind(qq, kk))
