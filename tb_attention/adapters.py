"""One small adapter per architecture, in one registry.

An Adapter says, for one transformers `model_type`, everything capture needs
that differs between architectures:

- where the attention modules live: for each attention kind ("self",
  "encoder", "decoder", "cross") a regular expression over a module's
  qualified name (as in `model.named_modules()`), whose first group is the
  layer index. The expression may match after any prefix, so the same adapter
  serves `BertModel` ("encoder.layer.3.attention.self") and
  `BertForSequenceClassification` ("bert.encoder.layer.3.attention.self").
  A pattern without a group means one module shared by all layers (ALBERT):
  the layer index is then the order of its calls.
- how the weights are reached: route "interface" runs the model through
  tb-attention's own attention function registered in transformers'
  AttentionInterface, which sees queries, keys (after RoPE), mask, scaling and
  score bias of every call (this is what neurons need); route "outputs" runs
  the model in eager mode with output_attentions=True and reads the named
  output fields (models whose attention does not go through the interface).
- whether neurons (queries/keys) can be captured,
- which kinds are causal,
- how to find where sentence B starts (token type ids and/or a separator).

No other module branches on model types: add an architecture by adding an
entry to ADAPTERS (and a tiny model to tests/models.py to prove it faithful).
"""
import dataclasses
import re
from typing import Dict, FrozenSet, Optional, Tuple

# Which token sequence the queries and keys of each kind come from:
# "input" = input_ids (the encoder's, or the only one), "decoder" = decoder_input_ids.
KIND_SIDES = {
    "self": ("input", "input"),
    "encoder": ("input", "input"),
    "decoder": ("decoder", "decoder"),
    "cross": ("decoder", "input"),
}

OUTPUT_FIELDS = (
    ("self", "attentions"),
    ("encoder", "encoder_attentions"),
    ("decoder", "decoder_attentions"),
    ("cross", "cross_attentions"),
)


@dataclasses.dataclass(frozen=True)
class Adapter:
    model_type: str
    # (kind, regex over qualified module names; group 1 = layer index), route "interface"
    modules: Tuple[Tuple[str, str], ...] = ()
    route: str = "interface"  # "interface" | "outputs"
    # (kind, output attribute) read with output_attentions=True, route "outputs"
    outputs: Tuple[Tuple[str, str], ...] = ()
    neurons: bool = False
    causal_kinds: FrozenSet[str] = frozenset()
    # self-attention is causal when this config attribute is true (BERT as decoder, XLM "causal")
    causal_config_flag: Optional[str] = None
    # strategies tried in order: "token_type" (first index with token_type_ids == 1; applies
    # whenever token_type_ids are given) and "separator" (the token after the first run of
    # separator tokens, when anything follows it)
    segments: Tuple[str, ...] = ()
    # attribute names of the separator token id, looked up on the tokenizer, then the config
    separator: Tuple[str, ...] = ()
    # encoder-decoder models given no decoder_input_ids nor labels: "start" = the decoder
    # start token alone (the first step of generation); "shift_input" = input_ids shifted
    # right behind it, which is what the model itself does then (BART)
    decoder_default: str = "start"
    notes: str = ""

    def __post_init__(self):
        object.__setattr__(self, "_compiled", tuple(
            (kind, re.compile(r"(?:^|\.)" + pattern + r"$")) for kind, pattern in self.modules))

    @property
    def kinds(self) -> Tuple[str, ...]:
        pairs = self.modules if self.route == "interface" else self.outputs
        seen = []
        for kind, _ in pairs:
            if kind not in seen:
                seen.append(kind)
        return tuple(seen)

    @property
    def encoder_decoder(self) -> bool:
        return "cross" in self.kinds or "decoder" in self.kinds

    def locate(self, module_name: str):
        """(kind, layer index or None for a shared module) of an attention
        module, or None when this adapter does not capture it."""
        for kind, rx in self._compiled:
            m = rx.search(module_name)
            if m:
                return kind, (int(m.group(1)) if rx.groups else None)
        return None

    def is_causal(self, config, kind) -> Optional[bool]:
        if kind in self.causal_kinds:
            return True
        if kind == "self" and self.causal_config_flag:
            return bool(getattr(config, self.causal_config_flag, False))
        return False


_BERT_SEGMENTS = dict(segments=("token_type", "separator"), separator=("sep_token_id",))
_PAIR_BY_SEPARATOR = dict(segments=("separator",), separator=("sep_token_id", "eos_token_id"))
_DECODER_ONLY = dict(neurons=True, causal_kinds=frozenset({"self"}))

ADAPTERS: Dict[str, Adapter] = {a.model_type: a for a in (
    Adapter("bert", modules=(("self", r"encoder\.layer\.(\d+)\.attention\.self"),),
            neurons=True, causal_config_flag="is_decoder", **_BERT_SEGMENTS),
    Adapter("roberta", modules=(("self", r"encoder\.layer\.(\d+)\.attention\.self"),),
            neurons=True, causal_config_flag="is_decoder", **_PAIR_BY_SEPARATOR,
            notes="RoBERTa's token_type_ids are all 0 even for pairs: segment B starts "
                  "after the '</s></s>' between the sentences."),
    Adapter("distilbert", modules=(("self", r"transformer\.layer\.(\d+)\.attention"),),
            neurons=True, **_BERT_SEGMENTS,
            notes="DistilBERT takes no token_type_ids; capture reads them (from a BERT "
                  "tokenizer) for segments only and does not pass them to the model."),
    Adapter("albert",
            modules=(("self", r"encoder\.albert_layer_groups\.\d+\.albert_layers\.\d+\.attention"),),
            neurons=True, **_BERT_SEGMENTS,
            notes="ALBERT shares one attention module across layers: layer index = call order."),
    Adapter("electra", modules=(("self", r"encoder\.layer\.(\d+)\.attention\.self"),),
            neurons=True, causal_config_flag="is_decoder", **_BERT_SEGMENTS),
    Adapter("xlm", route="outputs", outputs=(("self", "attentions"),),
            causal_config_flag="causal", segments=("token_type",),
            notes="XLM's attention does not use the AttentionInterface: weights only, read "
                  "from output_attentions."),
    Adapter("xlnet", route="outputs", outputs=(("self", "attentions"),),
            segments=("token_type",),
            notes="XLNet's relative attention does not use the AttentionInterface: weights "
                  "only, from output_attentions. Without perm_mask/target_mapping it is "
                  "bidirectional; with target_mapping (two-stream) the content stream is kept. "
                  "XLNet tokenizers pad on the left; padding removal handles that."),
    Adapter("ctrl", modules=(("self", r"h\.(\d+)\.multi_head_attention"),),
            **_DECODER_ONLY,
            notes="CTRL's token_type_ids are extra word embeddings, not segments."),
    Adapter("gpt2", modules=(("self", r"h\.(\d+)\.attn"),),
            **_DECODER_ONLY,
            notes="scale = head_dim**-0.5 (if scale_attn_weights) / (layer + 1) (if "
                  "scale_attn_by_inverse_layer_idx), as the model's own `scaling`."),
    Adapter("llama", modules=(("self", r"layers\.(\d+)\.self_attn"),),
            **_DECODER_ONLY,
            notes="Queries/keys after RoPE; grouped keys expanded to one per query head."),
    Adapter("qwen2", modules=(("self", r"layers\.(\d+)\.self_attn"),),
            **_DECODER_ONLY,
            notes="As LLaMA; a sliding window, when enabled, shows up in the mask."),
    Adapter("bart", modules=(("encoder", r"encoder\.layers\.(\d+)\.self_attn"),
                             ("decoder", r"decoder\.layers\.(\d+)\.self_attn"),
                             ("cross", r"decoder\.layers\.(\d+)\.encoder_attn")),
            neurons=True, causal_kinds=frozenset({"decoder"}), decoder_default="shift_input",
            **_PAIR_BY_SEPARATOR,
            notes="Without decoder_input_ids BART feeds its decoder the input shifted right; "
                  "capture does the same."),
    Adapter("t5", modules=(("encoder", r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention"),
                           ("decoder", r"decoder\.block\.(\d+)\.layer\.0\.SelfAttention"),
                           ("cross", r"decoder\.block\.(\d+)\.layer\.1\.EncDecAttention")),
            neurons=True, causal_kinds=frozenset({"decoder"}),
            segments=("separator",), separator=("eos_token_id",),
            notes="scale 1.0; the relative position bias is the neurons' score bias."),
)}


def neuron_model_types() -> Tuple[str, ...]:
    return tuple(sorted(t for t, a in ADAPTERS.items() if a.neurons))


def generic_adapter(model_type: str, encoder_decoder: bool) -> Adapter:
    """For a model type without an entry: attention weights from
    output_attentions in eager mode, no neurons, no segments. Causality is
    not known in advance: capture infers it from the weights."""
    fields = OUTPUT_FIELDS[1:] if encoder_decoder else OUTPUT_FIELDS[:1]
    return Adapter(model_type, route="outputs", outputs=fields,
                   causal_kinds=frozenset({"decoder"}) if encoder_decoder else frozenset(),
                   notes="no adapter for this model type: generic output_attentions route")


def for_model(model) -> Tuple[Adapter, bool]:
    """(adapter, known): the registered adapter for the model's config.model_type,
    or a generic one (known=False)."""
    config = model.config
    model_type = getattr(config, "model_type", "") or ""
    adapter = ADAPTERS.get(model_type)
    if adapter is not None:
        return adapter, True
    return generic_adapter(model_type, bool(getattr(config, "is_encoder_decoder", False))), False
