"""tb_attention.capture of TransformerLens models (TransformerLens 4: the
TransformerBridge; its HookedTransformer is gone since 4.0), through their
own hook points.

Oracles: TransformerLens's own `run_with_cache` (hook_pattern, hook_q /
hook_rot_q, hook_k / hook_rot_k) and, for the pretrained MiniLM, the same
model captured through transformers; softmaxes recomputed in plain numpy.
No hub: the pretrained MiniLM ships in a package, the other models are
random ones booted from a config or a folder written here.
"""
import math
import warnings

import numpy as np
import pytest
import torch
import transformers

pytest.importorskip("transformer_lens")
from transformer_lens.config import TransformerBridgeConfig  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402

import transformer_lens.model_bridge.sources  # noqa: E402,F401  (attaches boot_native / boot_transformers)
import tb_attention  # noqa: E402
from tb_attention.capturing import NeuronsNotSupportedWarning  # noqa: E402
from tests.models import minilm, minilm_dir, tiny_tokenizer  # noqa: E402

TEXT = "The cat sat on the mat."


def cached(bridge, ids, **kwargs):
    bridge.eval()
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids, **kwargs)
    return cache


def np_softmax(scores, masked):
    s = np.where(masked, -np.inf, scores)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def qk(cache, layer, b=0):
    """Queries and keys [H, T, D] as the model multiplies them (after rotary,
    grouped keys repeated per head)."""
    names = cache.keys()
    q = cache["blocks.%d.attn.%s" % (layer, "hook_rot_q" if "blocks.%d.attn.hook_rot_q" % layer in names
                                     else "hook_q")][b].numpy()
    k = cache["blocks.%d.attn.%s" % (layer, "hook_rot_k" if "blocks.%d.attn.hook_rot_k" % layer in names
                                     else "hook_k")][b].numpy()
    q, k = q.transpose(1, 0, 2), k.transpose(1, 0, 2)
    return q, np.repeat(k, q.shape[0] // k.shape[0], axis=0)


@pytest.fixture(scope="module")
def minilm_bridge():
    return TransformerBridge.boot_transformers(minilm_dir(), device="cpu")


def test_pretrained_minilm_through_boot_transformers(minilm_bridge):
    bridge = minilm_bridge
    ids = bridge.to_tokens(TEXT)
    record = tb_attention.capture(bridge, ids, neurons=True)
    cache = cached(bridge, ids)
    k = record.kind()
    assert k.query_tokens == tuple(bridge.to_str_tokens(TEXT)) and k.query_tokens[0] == "[CLS]"
    assert record.model_type == "bert" and not k.causal and k.key_special == (0, len(k.key_tokens) - 1)
    assert k.layer_ids == tuple(range(6)) and record.attention().shape == (6, 12, 9, 9)
    for layer in range(6):
        # the attention is TransformerLens's own pattern, as it is
        np.testing.assert_array_equal(record.attention()[layer], cache["blocks.%d.attn.hook_pattern" % layer][0])
        q, kk = qk(cache, layer)
        np.testing.assert_array_equal(record.neurons().queries[layer], q)
        want = np_softmax(q @ kk.transpose(0, 2, 1) / math.sqrt(q.shape[-1]), np.zeros((9, 9), bool))
        assert np.abs(want - record.attention()[layer]).max() < 1e-3
    assert np.abs(record.recompute_attention() - record.attention()).max() < 1e-3
    # the same pretrained weights through transformers: the same attention
    model, tok = minilm()
    direct = tb_attention.capture(model, tok(TEXT, return_tensors="pt"), tokenizer=tok)
    assert direct.tokens() == record.tokens()
    np.testing.assert_allclose(direct.attention(), record.attention(), atol=1e-6)


@pytest.fixture(scope="module")
def llama_bridge(tmp_path_factory):
    """A random causal Llama with grouped keys and rotary positions, saved with a
    tokenizer and booted from that folder as TransformerLens users boot models."""
    folder = tmp_path_factory.mktemp("llama")
    config = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=64, vocab_size=99,
                                      max_position_embeddings=32, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(config).save_pretrained(str(folder))
    tiny_tokenizer().save_pretrained(str(folder))
    return TransformerBridge.boot_transformers(str(folder), device="cpu")


def test_causal_grouped_rotary_batch_with_padding(llama_bridge):
    bridge = llama_bridge
    enc = bridge.tokenizer(["the cat sat on the mat", "the dog"], return_tensors="pt", padding=True)
    lengths = enc["attention_mask"].sum(1).tolist()
    assert lengths == [8, 4]
    records = tb_attention.capture(bridge, enc, neurons=True)
    cache = cached(bridge, enc["input_ids"], attention_mask=enc["attention_mask"])
    assert [len(r.tokens()[0]) for r in records] == lengths
    assert records[1].tokens()[0] == ("[CLS]", "the", "dog", "[SEP]")
    for b, (record, n) in enumerate(zip(records, lengths)):
        assert record.model_type == "llama" and record.kind().causal
        for layer in range(2):
            pattern = cache["blocks.%d.attn.hook_pattern" % layer][b].numpy()[:, :n, :n]
            np.testing.assert_array_equal(record.attention()[layer], pattern)
            q, k = qk(cache, layer, b)
            want = np_softmax(q[:, :n] @ k[:, :n].transpose(0, 2, 1) / math.sqrt(q.shape[-1]),
                              np.triu(np.ones((n, n), bool), 1))
            assert np.abs(want - pattern).max() < 1e-3
            assert np.abs(record.recompute_attention()[layer] - pattern).max() < 1e-3
        assert record.neurons().masked[0].tolist() == np.triu(np.ones((n, n), bool), 1).tolist()


def native(**extra):
    return TransformerBridge.boot_native(TransformerBridgeConfig(
        d_model=32, n_layers=2, n_ctx=16, d_head=8, n_heads=4, d_vocab=50, act_fn="gelu", seed=0, **extra))


def test_native_models_and_neurons_that_cannot_be_rebuilt():
    ids = torch.tensor([[3, 14, 15, 9, 26, 5]])
    bridge = native()
    record = tb_attention.capture(bridge, ids, neurons=True)
    cache = cached(bridge, ids)
    assert record.tokens()[0] == ("id:3", "id:14", "id:15", "id:9", "id:26", "id:5")  # no tokenizer
    assert record.model_type == "transformer_lens" and record.kind().causal
    np.testing.assert_array_equal(record.attention()[1], cache["blocks.1.attn.hook_pattern"][0])
    assert np.abs(record.recompute_attention() - record.attention()).max() < 1e-3
    # A TL-native rotary model: hook_q is before rotary and no hook gives it
    # after; the neurons would not give the pattern back, so they are left out.
    rotary = native(positional_embedding_type="rotary", rotary_dim=8, n_key_value_heads=2,
                    normalization_type="RMS")
    with pytest.warns(NeuronsNotSupportedWarning, match="differs from hook_pattern"):
        record = tb_attention.capture(rotary, ids, neurons=True, layers=[-1])
    assert not record.has_neurons and record.layer_ids() == (1,)
    np.testing.assert_array_equal(record.attention()[0], cached(rotary, ids)["blocks.1.attn.hook_pattern"][0])
    with pytest.raises(tb_attention.AttentionInputError, match="layer 2 does not exist"):
        tb_attention.capture(bridge, ids, layers=[2])


def test_probe_logs_a_bridge_and_leaves_its_state(llama_bridge, tmp_path):
    bridge = llama_bridge
    bridge.train()
    flags = [m.training for m in bridge.modules()]
    rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on the way
        with tb_attention.Probe(bridge, None, ["the cat sat", [5, 7, 9]], str(tmp_path / "run"),
                                every_n_steps=2, neurons=True) as probe:
            for step in range(5):
                probe.maybe_log(step)
    assert [m.training for m in bridge.modules()] == flags and bridge.training
    assert torch.equal(torch.get_rng_state(), rng)
    log = tb_attention.load(str(tmp_path))
    assert log.tags("run") == ["probe/1", "probe/the_cat_sat"]
    assert log.steps("run", "probe/the_cat_sat") == [0, 2, 4]
    rec = log.get("run", "probe/the_cat_sat", 4)
    # tokens from the bridge's own to_tokens (its BOS, here [CLS])
    assert rec.tokens()[0] == tuple(bridge.to_str_tokens("the cat sat")) and rec.has_neurons
    with pytest.raises(tb_attention.AttentionInputError, match="cfg.n_ctx"):
        tb_attention.Probe(bridge, None, [list(range(40))], str(tmp_path / "never"))
