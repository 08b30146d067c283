"""tb_attention.capture against the models' own eager attention.

Every reference below comes from the model itself: a deep copy switched to
attn_implementation="eager" and run with output_attentions=True, never from
tb-attention's probe.
"""
import copy

import numpy as np
import pytest
import torch
import transformers

import tb_attention
from tb_attention import adapters, interface
from tb_attention import capturing as capture_mod
from tb_attention.capturing import NeuronsNotSupportedWarning, capture, capture_batch, probe
from tb_attention.record import AttentionInputError, AttentionRecord
from tests.models import (ARCHS, ENCODER_DECODER_ARCHS, NEURON_ARCHS, minilm, tiny_config,
                          tiny_model)
from tests.support.records import reference_attention

CAUSAL_SELF = {"ctrl", "gpt2", "llama", "qwen2"}
OUTPUT_FIELDS = dict(interface.OUTPUT_FIELDS)
# ids for models without a tokenizer: nothing equal to any special id of the tiny configs
# (0..3), so segments stay 0 unless a test asks for them.
PLAIN_IDS = [11, 17, 23, 42, 8, 30, 60, 61, 45, 12]
DECODER_IDS = [9, 33, 52, 14, 70, 21]


def example_inputs(arch, tok):
    """A single (unpadded) example for `arch`: a sentence pair where a tokenizer exists."""
    if tok is not None:
        enc = tok("the cat sat on the mat", "why did the dog run", return_tensors="pt")
        inputs = dict(enc)
    else:
        ids = torch.tensor([PLAIN_IDS])
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if arch in ENCODER_DECODER_ARCHS:
        inputs["decoder_input_ids"] = torch.tensor([DECODER_IDS])
    return inputs


def eager_reference(model, inputs, drop_token_types=False):
    """kind -> float32 [L, H, Tq, Tk] of the first example, from the model's own
    eager attention with output_attentions=True (on a deep copy)."""
    ref = copy.deepcopy(model)
    ref.set_attn_implementation("eager")
    ref.eval()
    kwargs = dict(inputs)
    if drop_token_types:
        kwargs.pop("token_type_ids", None)
    with torch.no_grad():
        out = ref(**kwargs, output_attentions=True)
    result = {}
    for kind, field in OUTPUT_FIELDS.items():
        per_layer = getattr(out, field, None)
        if per_layer:
            result[kind] = torch.stack([a[0] for a in per_layer]).float().numpy()
    assert result, "the model returned no attention"
    return result


def fp16(x):
    return None if x is None else np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def recompute_fp16(neurons):
    """What the neuron view shows after the on-disk float16 round trip."""
    return reference_attention(fp16(neurons.queries), fp16(neurons.expanded_keys()), neurons.scales,
                          neurons.masked, fp16(neurons.bias))


def expected_kinds(arch):
    return ("encoder", "decoder", "cross") if arch in ENCODER_DECODER_ARCHS else ("self",)


# --------------------------------------------------------------------------
# Attention weights, every architecture


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_matches_models_own_eager_output(arch):
    model, tok = tiny_model(arch)
    inputs = example_inputs(arch, tok)
    rec = capture(model, inputs, tokenizer=tok)
    ref = eager_reference(model, inputs, drop_token_types=(arch == "distilbert"))

    assert isinstance(rec, AttentionRecord)
    assert rec.model_type == arch
    assert rec.kinds == expected_kinds(arch)
    assert not rec.has_neurons
    for kind in rec.kinds:
        a = rec.attention(kind)
        assert a.dtype == np.float32
        assert a.shape == ref[kind].shape, (kind, a.shape, ref[kind].shape)
        assert a.shape[:2] == (2, 4)
        np.testing.assert_allclose(a, ref[kind], atol=1e-6, rtol=0)
        assert rec.layer_ids(kind) == (0, 1)
        q_tokens, k_tokens = rec.tokens(kind)
        assert len(q_tokens) == a.shape[2] and len(k_tokens) == a.shape[3]
        expect_causal = kind == "decoder" or (kind == "self" and arch in CAUSAL_SELF)
        assert rec.kind(kind).causal == expect_causal
        if expect_causal:  # the weights agree with the flag
            upper = np.triu(np.ones(a.shape[-2:], bool), 1)
            assert np.all(a[..., upper] == 0)
        else:
            assert np.any(a[..., np.triu(np.ones(a.shape[-2:], bool), 1)] > 1e-3)


# --------------------------------------------------------------------------
# Neurons: faithful to the model's own eager attention, also after float16


@pytest.mark.parametrize("arch", NEURON_ARCHS + ("ctrl",))
def test_neurons_reproduce_models_own_attention(arch):
    model, tok = tiny_model(arch)
    inputs = example_inputs(arch, tok)
    rec = capture(model, inputs, tokenizer=tok, neurons=True)
    ref = eager_reference(model, inputs, drop_token_types=(arch == "distilbert"))
    assert rec.has_neurons
    for kind in rec.kinds:
        n = rec.neurons(kind)
        L, H, Tq, Tk = rec.attention(kind).shape
        assert n.queries.shape[:3] == (L, H, Tq) and n.keys.shape[:3] == (L, H // n.key_groups, Tk)
        assert n.masked.shape == (L, Tq, Tk) and n.masked.dtype == bool
        assert n.scales.shape == (L,)
        recomputed = rec.recompute_attention(kind)
        err = np.abs(recomputed - ref[kind]).max()
        assert err < 1e-3, (kind, err)
        err16 = np.abs(recompute_fp16(n) - ref[kind]).max()
        assert err16 < 1e-3, (kind, err16)
        causal = rec.kind(kind).causal
        assert np.array_equal(n.masked[0], np.triu(np.ones((Tq, Tk), bool), 1) if causal
                              else np.zeros((Tq, Tk), bool))


def test_neuron_details_per_architecture():
    # LLaMA: grouped-query attention (2 key heads for 4 query heads) kept once per
    # key head, expanded per query head on demand (tests/test_scale_big.py: against repeat_kv).
    model, _ = tiny_model("llama")
    n = capture(model, example_inputs("llama", None), neurons=True).neurons()
    assert model.config.num_key_value_heads == 2 and n.keys.shape[1] == 2 and n.key_groups == 2
    e = n.expanded_keys()
    np.testing.assert_array_equal(e[:, 0], n.keys[:, 0])
    np.testing.assert_array_equal(e[:, 1], n.keys[:, 0])
    np.testing.assert_array_equal(e[:, 2], n.keys[:, 1])
    np.testing.assert_array_equal(e[:, 3], n.keys[:, 1])
    assert not np.array_equal(n.keys[:, 0], n.keys[:, 1])
    np.testing.assert_allclose(n.scales, 8 ** -0.5, rtol=1e-6)
    assert n.bias is None
    # T5: no scaling; the relative position bias is the score bias, shared by the layers
    # of a stack, and absent from cross attention.
    model, _ = tiny_model("t5")
    rec = capture(model, example_inputs("t5", None), neurons=True)
    for kind in ("encoder", "decoder"):
        b = rec.neurons(kind).bias
        assert b is not None and np.abs(b).max() > 0.1
        np.testing.assert_array_equal(b[0], b[1])
        np.testing.assert_array_equal(rec.neurons(kind).scales, [1.0, 1.0])
    assert rec.neurons("cross").bias is None
    # GPT-2 with scale_attn_by_inverse_layer_idx: the scale is the model's per-layer one.
    config = tiny_config("gpt2")
    config.scale_attn_by_inverse_layer_idx = True
    torch.manual_seed(0)
    model = transformers.GPT2Model(config).eval()
    inputs = example_inputs("gpt2", None)
    rec = capture(model, inputs, neurons=True)
    np.testing.assert_allclose(rec.neurons().scales, [8 ** -0.5, 8 ** -0.5 / 2], rtol=1e-6)
    ref = eager_reference(model, inputs)["self"]
    assert np.abs(rec.recompute_attention() - ref).max() < 1e-3


def test_pretrained_minilm_sentence_pair():
    model, tok = minilm()
    first, second = "The cat sat on the mat because it was tired.", "Where did the cat sit?"
    enc = tok(first, second, return_tensors="pt")
    rec = capture(model, enc, tokenizer=tok, neurons=True)

    tokens = tuple(tok.convert_ids_to_tokens(enc["input_ids"][0].tolist()))
    assert rec.tokens() == (tokens, tokens)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    b = tokens.index("[SEP]") + 1
    assert tokens[b] == "where"
    assert rec.segments() == (b, b)
    assert int(enc["token_type_ids"][0, b]) == 1 and int(enc["token_type_ids"][0, b - 1]) == 0

    ref = eager_reference(model, enc)["self"]
    assert rec.attention().shape == (6, 12, len(tokens), len(tokens))
    np.testing.assert_allclose(rec.attention(), ref, atol=1e-6, rtol=0)
    assert np.abs(rec.recompute_attention() - ref).max() < 1e-3
    err16 = np.abs(recompute_fp16(rec.neurons()) - ref).max()
    print("MiniLM float16 neuron recompute max abs error: %.3g" % err16)
    assert err16 < 1e-3, err16


# --------------------------------------------------------------------------
# Encoder-decoder kinds and tokens


@pytest.mark.parametrize("arch", ENCODER_DECODER_ARCHS)
def test_encoder_decoder_kinds_and_tokens(arch):
    model, _ = tiny_model(arch)
    inputs = example_inputs(arch, None)
    rec = capture(model, inputs)
    enc_tokens = tuple("id:%d" % i for i in PLAIN_IDS)
    dec_tokens = tuple("id:%d" % i for i in DECODER_IDS)
    assert rec.kinds == ("encoder", "decoder", "cross")
    assert rec.tokens("encoder") == (enc_tokens, enc_tokens)
    assert rec.tokens("decoder") == (dec_tokens, dec_tokens)
    assert rec.tokens("cross") == (dec_tokens, enc_tokens)
    assert rec.attention("cross").shape == (2, 4, len(DECODER_IDS), len(PLAIN_IDS))
    assert [rec.kind(k).causal for k in rec.kinds] == [False, True, False]


@pytest.mark.parametrize("arch", ENCODER_DECODER_ARCHS)
def test_encoder_decoder_default_decoder_inputs(arch):
    model, _ = tiny_model(arch)
    ids = torch.tensor([PLAIN_IDS])
    start = getattr(model.config, "decoder_start_token_id", None)
    start = model.config.pad_token_id if start is None else start
    rec = capture(model, ids)
    if arch == "bart":
        # No decoder ids, no labels: BART shifts the input right itself; so does capture,
        # and the reference below lets BartModel build its own decoder inputs.
        expect = ("id:%d" % start,) + tuple("id:%d" % i for i in PLAIN_IDS[:-1])
        assert rec.tokens("decoder")[0] == expect
        ref = eager_reference(model, {"input_ids": ids})
        for kind in rec.kinds:
            np.testing.assert_allclose(rec.attention(kind), ref[kind], atol=1e-6, rtol=0)
    else:
        # T5 refuses to run without decoder inputs: the decoder start token alone.
        assert rec.tokens("decoder") == (("id:%d" % start,), ("id:%d" % start,))
        np.testing.assert_allclose(rec.attention("decoder"), 1.0)
    # Labels: shifted right behind the start token, -100 dropped as padding.
    labels = torch.tensor([[40, 41, 42, -100]])
    rec = capture(model, {"input_ids": ids, "labels": labels})
    expect = ("id:%d" % start, "id:40", "id:41", "id:42")
    assert rec.tokens("decoder")[0] == expect
    ref = eager_reference(model, {"input_ids": ids,
                                  "decoder_input_ids": torch.tensor([[start, 40, 41, 42]])})
    np.testing.assert_allclose(rec.attention("cross"), ref["cross"], atol=1e-6, rtol=0)


def test_head_models_and_conditional_generation():
    tr = transformers
    for arch, cls in (("gpt2", tr.GPT2LMHeadModel), ("bert", tr.BertForSequenceClassification),
                      ("t5", tr.T5ForConditionalGeneration), ("bart", tr.BartForConditionalGeneration),
                      ("llama", tr.LlamaForCausalLM)):
        model, tok = tiny_model(arch, model_class=cls)
        inputs = example_inputs(arch, tok)
        rec = capture(model, inputs, tokenizer=tok, neurons=True)
        ref = eager_reference(model, inputs)
        assert rec.kinds == expected_kinds(arch), cls.__name__
        for kind in rec.kinds:
            np.testing.assert_allclose(rec.attention(kind), ref[kind], atol=1e-6, rtol=0)
            assert np.abs(rec.recompute_attention(kind) - ref[kind]).max() < 1e-3
    calls = probe(model, example_inputs("llama", None))
    assert [c.name for c in calls] == ["model.layers.0.self_attn", "model.layers.1.self_attn"]


# --------------------------------------------------------------------------
# Model state: mode, attention implementation, RNG


def _impls(model):
    return [(c, c._attn_implementation) for c in interface.configs_of(model)]


@pytest.mark.parametrize("arch,impl", [("bert", "sdpa"), ("bert", "eager"), ("t5", "sdpa"),
                                       ("xlnet", None)])
def test_mode_and_attention_implementation_restored(arch, impl):
    model, tok = tiny_model(arch)
    if impl is not None:
        model.set_attn_implementation(impl)
    model.train()
    frozen = [m for m in model.modules()][3]
    frozen.eval()  # a mixed train/eval model must come back mixed
    flags = [(m, m.training) for m in model.modules()]
    before = _impls(model)
    assert len(before) >= (3 if arch == "t5" else 1)  # T5's stacks hold config copies
    grad = torch.is_grad_enabled()

    rec = capture(model, example_inputs(arch, tok), tokenizer=tok)
    assert rec.attention(rec.kinds[0]).shape[0] == 2
    assert [(m, m.training) for m in model.modules()] == flags
    assert [(c, c._attn_implementation) for c, _ in before] == before
    assert torch.is_grad_enabled() == grad
    if impl is not None:
        assert model.config._attn_implementation == impl


def test_state_restored_after_exception_inside_forward():
    model, tok = tiny_model("bert")
    model.train()
    before = _impls(model)
    rng = torch.get_rng_state()

    def boom(module, args, output):
        torch.rand(3)  # the forward also consumed randomness before failing
        raise RuntimeError("boom in layer 1")

    handle = model.encoder.layer[1].attention.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom in layer 1"):
        capture(model, example_inputs("bert", tok), tokenizer=tok, neurons=True)
    handle.remove()
    assert all(m.training for m in model.modules())
    assert [(c, c._attn_implementation) for c, _ in before] == before
    assert model.config._attn_implementation == "sdpa"
    assert torch.equal(torch.get_rng_state(), rng)
    assert getattr(interface._ACTIVE, "session", None) is None
    # and the model still works both ways
    assert capture(model, example_inputs("bert", tok), tokenizer=tok).attention().shape[0] == 2
    model(**example_inputs("bert", tok))


def test_rng_state_untouched_training_bit_identical():
    model, tok = tiny_model("bert")
    inputs = example_inputs("bert", tok)
    assert model.config.hidden_dropout_prob > 0
    model.train()
    # A forward that draws random numbers even in eval mode (like noise-injecting
    # layers) makes the restore observable.
    handle = model.embeddings.register_forward_hook(lambda m, a, o: (torch.rand(7), None)[1])

    torch.manual_seed(123)
    plain = model(**inputs).last_hidden_state

    torch.manual_seed(123)
    state = torch.get_rng_state()
    capture(model, inputs, tokenizer=tok, neurons=True)
    assert torch.equal(torch.get_rng_state(), state)
    probed = model(**inputs).last_hidden_state
    handle.remove()
    assert torch.equal(plain, probed)
    # the dropout really is random in train mode, so the comparison means something
    assert not torch.equal(plain, model(**inputs).last_hidden_state)


# --------------------------------------------------------------------------
# Batches, padding, layers


def _pad_right(rows, pad):
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])
    return ids, mask


def _assert_same_record(got, want, atol=1e-5):
    assert got.kinds == want.kinds
    for kind in want.kinds:
        assert got.tokens(kind) == want.tokens(kind)
        assert got.segments(kind) == want.segments(kind)
        np.testing.assert_allclose(got.attention(kind), want.attention(kind), atol=atol, rtol=0)
        if want.has_neurons:
            np.testing.assert_allclose(got.recompute_attention(kind), want.attention(kind),
                                       atol=1e-4, rtol=0)
            np.testing.assert_array_equal(got.neurons(kind).masked, want.neurons(kind).masked)


def test_batch_with_padding_gives_one_record_per_example():
    model, tok = tiny_model("bert")
    pairs = [("the cat sat on the mat", "the dog ran home"), ("a big red bird", "it flew")]
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs], padding=True, return_tensors="pt")
    assert int(enc["attention_mask"].sum()) < enc["attention_mask"].numel()  # really padded
    records = capture(model, enc, tokenizer=tok, neurons=True)
    assert isinstance(records, list) and len(records) == 2
    assert capture_batch(model, tok(*pairs[0], return_tensors="pt"), tokenizer=tok)[0].kinds == ("self",)
    for rec, pair in zip(records, pairs):
        single = capture(model, tok(*pair, return_tensors="pt"), tokenizer=tok, neurons=True)
        assert "[PAD]" not in rec.tokens()[0]
        _assert_same_record(rec, single)
        assert rec.segments()[0] == rec.tokens()[0].index("[SEP]") + 1


@pytest.mark.parametrize("arch", ["gpt2", "llama", "t5", "bart", "xlnet", "xlm", "ctrl"])
def test_batch_padding_other_architectures(arch):
    model, _ = tiny_model(arch)
    rows = [PLAIN_IDS, PLAIN_IDS[:6]]
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    if arch == "xlnet":  # XLNet pads on the left
        ids = torch.tensor([rows[0], [pad] * 4 + rows[1]])
        mask = torch.tensor([[1] * 10, [0] * 4 + [1] * 6])
    else:
        ids, mask = _pad_right(rows, pad)
    inputs = {"input_ids": ids, "attention_mask": mask}
    dec_rows = [DECODER_IDS[:3], DECODER_IDS]
    if arch in ENCODER_DECODER_ARCHS:
        inputs["decoder_input_ids"], inputs["decoder_attention_mask"] = _pad_right(dec_rows, pad)
    neurons = arch in NEURON_ARCHS
    records = capture(model, inputs, neurons=neurons)
    assert len(records) == 2
    for b, rec in enumerate(records):
        single_inputs = {"input_ids": torch.tensor([rows[b]])}
        if arch in ENCODER_DECODER_ARCHS:
            single_inputs["decoder_input_ids"] = torch.tensor([dec_rows[b]])
        single = capture(model, single_inputs, neurons=neurons)
        assert rec.tokens(rec.kinds[0])[0] == tuple("id:%d" % i for i in rows[b])
        _assert_same_record(rec, single)


def test_layer_selection():
    model, tok = tiny_model("bert")
    inputs = example_inputs("bert", tok)
    full = capture(model, inputs, tokenizer=tok, neurons=True)
    one = capture(model, inputs, tokenizer=tok, neurons=True, layers=[1])
    assert one.layer_ids() == (1,)
    np.testing.assert_array_equal(one.attention(), full.attention()[1:])
    np.testing.assert_array_equal(one.neurons().queries, full.neurons().queries[1:])
    assert capture(model, inputs, layers=[-1]).layer_ids() == (1,)
    assert capture(model, inputs, layers=[1, 0]).layer_ids() == (0, 1)
    with pytest.raises(AttentionInputError, match="layers 0..1"):
        capture(model, inputs, layers=[2])

    t5, _ = tiny_model("t5")
    rec = capture(t5, example_inputs("t5", None), layers={"encoder": [0], "cross": [1]})
    assert [rec.layer_ids(k) for k in rec.kinds] == [(0,), (0, 1), (1,)]
    rec = capture(t5, example_inputs("t5", None), layers=[1])
    assert [rec.layer_ids(k) for k in rec.kinds] == [(1,), (1,), (1,)]
    with pytest.raises(AttentionInputError, match="self"):
        capture(t5, example_inputs("t5", None), layers={"self": [0]})


# --------------------------------------------------------------------------
# Unsupported neurons, segments, tokens, inputs


@pytest.mark.parametrize("arch", ["xlnet", "xlm"])
def test_neurons_on_unsupported_architecture_warn_and_keep_attention(arch):
    model, _ = tiny_model(arch)
    inputs = example_inputs(arch, None)
    with pytest.warns(NeuronsNotSupportedWarning) as caught:
        rec = capture(model, inputs, neurons=True)
    message = str(caught[0].message)
    assert "model type %r (%s)" % (arch, type(model).__name__) in message
    assert "do not run through transformers' AttentionInterface" in message
    assert caught[0].filename == __file__  # points at the caller
    assert not rec.has_neurons
    np.testing.assert_allclose(rec.attention(), eager_reference(model, inputs)["self"], atol=1e-6)
    # the record says why, and so does asking it for neurons (not "capture with neurons=True")
    assert "neurons=True, but model type %r" % arch in rec.kind().no_neurons
    with pytest.raises(KeyError, match="do not run through transformers' AttentionInterface") as e:
        rec.recompute_attention()
    assert "capture with neurons=True" not in str(e.value)
    with pytest.raises(KeyError, match="capture with neurons=True"):
        capture(model, inputs).neurons()  # not asked for: that is the advice


def test_segments_by_token_type_and_by_separator():
    # BERT with token_type_ids, and without them (from the [SEP]).
    model, tok = tiny_model("bert")
    enc = tok("the cat sat", "a dog ran", return_tensors="pt")
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    b = tokens.index("[SEP]") + 1
    assert capture(model, enc, tokenizer=tok).segments() == (b, b)
    assert capture(model, {"input_ids": enc["input_ids"]}, tokenizer=tok).segments() == (b, b)
    assert capture(model, tok("the cat sat", return_tensors="pt"), tokenizer=tok).segments() == (0, 0)
    # RoBERTa: <s> A </s></s> B </s>, token types all zero.
    model, _ = tiny_model("roberta")
    ids = torch.tensor([[0, 11, 12, 13, 2, 2, 21, 22, 2]])
    rec = capture(model, {"input_ids": ids, "token_type_ids": torch.zeros_like(ids)})
    assert rec.segments() == (6, 6)
    assert capture(model, torch.tensor([[0, 11, 12, 13, 2]])).segments() == (0, 0)
    # XLNet: A <sep> B <sep> <cls> with token types 0.. 1.. 2.
    model, _ = tiny_model("xlnet")
    ids = torch.tensor([[11, 12, 4, 21, 22, 23, 4, 3]])
    tt = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2]])
    assert capture(model, {"input_ids": ids, "token_type_ids": tt}).segments() == (3, 3)
    # T5: pairs are "A </s> B </s>": the encoder keys and queries, and the cross keys.
    model, _ = tiny_model("t5")
    ids = torch.tensor([[11, 12, 13, 1, 21, 22, 1]])
    rec = capture(model, {"input_ids": ids, "decoder_input_ids": torch.tensor([[0, 5, 6]])})
    assert rec.segments("encoder") == (4, 4)
    assert rec.segments("cross") == (0, 4)
    assert rec.segments("decoder") == (0, 0)


def test_distilbert_reads_token_types_for_segments_only():
    model, tok = tiny_model("distilbert")
    enc = tok("the cat sat", "a dog ran", return_tensors="pt")
    assert "token_type_ids" in enc
    rec = capture(model, enc, tokenizer=tok)
    tokens = rec.tokens()[0]
    assert rec.segments() == (tokens.index("[SEP]") + 1,) * 2


def test_tokens_exact_and_without_tokenizer():
    model, tok = tiny_model("bert")
    enc = tok("the cats ran", return_tensors="pt")
    rec = capture(model, enc, tokenizer=tok)
    assert rec.tokens()[0] == tuple(tok.convert_ids_to_tokens(enc["input_ids"][0].tolist()))
    assert "##s" in rec.tokens()[0]  # subword markers kept as the tokenizer gives them
    plain = capture(model, enc["input_ids"][0])  # a 1-d tensor, no tokenizer
    assert plain.tokens()[0] == tuple("id:%d" % i for i in enc["input_ids"][0].tolist())
    np.testing.assert_array_equal(plain.attention(), rec.attention())


def test_bad_inputs_raise_clear_errors():
    model, tok = tiny_model("bert")
    with pytest.raises(AttentionInputError, match="tokenize first"):
        capture(model, "the cat sat")
    with pytest.raises(AttentionInputError, match="input_ids"):
        capture(model, {"attention_mask": torch.ones(1, 3)})
    with pytest.raises(AttentionInputError, match="shape"):
        capture(model, {"input_ids": torch.tensor([[5, 6, 7]]),
                        "attention_mask": torch.ones(1, 4, dtype=torch.long)})
    with pytest.raises(AttentionInputError, match="integer"):
        capture(model, torch.rand(1, 3))


def test_neurons_by_what_the_model_does_not_by_name():
    # Mistral has no adapter: its layers call the AttentionInterface, so it has neurons,
    # and its sliding window (shorter than the text here) is in the mask.
    tr = transformers
    config = tr.MistralConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=8, intermediate_size=37,
                              vocab_size=99, max_position_embeddings=64, sliding_window=4,
                              initializer_range=0.2)
    torch.manual_seed(0)
    model = tr.MistralModel(config).eval()
    assert "mistral" not in adapters.ADAPTERS
    inputs = example_inputs("mistral", None)
    rec = capture(model, inputs, neurons=True)
    ref = eager_reference(model, inputs)["self"]
    assert rec.kinds == ("self",) and rec.kind().causal
    np.testing.assert_allclose(rec.attention(), ref, atol=1e-6)
    assert np.abs(recompute_fp16(rec.neurons()) - ref).max() < 1e-3
    T = len(PLAIN_IDS)
    i, j = np.indices((T, T))
    outside = (j > i) | (i - j >= 4)  # causal, and at most 4 keys back (this window size)
    np.testing.assert_array_equal(rec.neurons().masked[0], outside)
    assert np.all(rec.attention()[..., outside] == 0) and np.all(rec.attention()[..., ~outside] > 0)
    assert model.config._attn_implementation == "sdpa"


def test_package_level_capture_is_this_module():
    # tb_attention.capture (the package function) must stay callable once this
    # module (tb_attention.capturing) is imported, and give the same record.
    model, tok = tiny_model("bert")
    inputs = example_inputs("bert", tok)
    assert callable(tb_attention.capture)
    rec = tb_attention.capture(model, inputs, tokenizer=tok, neurons=True)
    np.testing.assert_array_equal(rec.attention(), capture(model, inputs, tokenizer=tok).attention())
    assert rec.has_neurons
    xlnet, _ = tiny_model("xlnet")
    with pytest.warns(NeuronsNotSupportedWarning) as caught:
        tb_attention.capture(xlnet, example_inputs("xlnet", None), neurons=True)
    assert caught[0].filename == __file__  # the user's line, not tb_attention's
