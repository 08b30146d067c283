"""What differs between architectures, in one registry of small adapters.

capture finds out at run time what a model's attention does (interface.py:
which layers run through transformers' AttentionInterface, which kinds the
model returns, what happens between q.k and the softmax). What it cannot
find out that way is here, per transformers `model_type`:

- segments: where sentence B starts ("token_type": the first index with
  token_type_ids == 1; "separator": the token after the first run of
  separator tokens, whose id attribute names are in `separator`, looked up on
  the tokenizer, then the config);
- causal: for attention read from outputs (no mask seen), which kinds are
  causal (`causal_kinds`, or self-attention when `causal_config_flag` is set);
- decoder_default: what an encoder-decoder decoder gets without
  decoder_input_ids or labels ("start": the decoder start token alone, the
  first step of generation; "shift_input": the input shifted right, which
  BART does itself);
- interface=False: skip the AttentionInterface pass (known never to use it);
- extras + convert: attention the model returns in another layout than
  [batch, heads, query tokens, key tokens], converted exactly (Longformer's
  and LED's sliding windows plus global tokens, scattered back into the
  token x token matrix);
- prefix_tokens: names of the tokens before an image's patches.

No other module branches on model types. A model type without an entry gets
DEFAULT: everything it does is found at run time.
"""
import dataclasses
from typing import Callable, Dict, FrozenSet, Optional, Tuple

import numpy as np

# Which token sequence the queries and keys of each kind come from:
# "input" = the main input (token ids, image patches, audio frames), "decoder" = decoder_input_ids.
KIND_SIDES = {
    "self": ("input", "input"),
    "encoder": ("input", "input"),
    "decoder": ("decoder", "decoder"),
    "cross": ("decoder", "input"),
}


@dataclasses.dataclass(frozen=True)
class Adapter:
    model_type: str
    interface: bool = True
    causal_kinds: FrozenSet[str] = frozenset({"decoder"})
    causal_config_flag: Optional[str] = None
    segments: Tuple[str, ...] = ()
    separator: Tuple[str, ...] = ()
    decoder_default: str = "start"
    extras: Tuple[Tuple[str, str], ...] = ()  # (kind, output field) handed to convert
    convert: Optional[Callable] = None  # (attention, extra, keep) -> [B, H, T, T] or a str
    prefix_tokens: Tuple[str, ...] = ()
    notes: str = ""

    def is_causal(self, config, kind) -> bool:
        if kind in self.causal_kinds:
            return True
        if kind == "self" and self.causal_config_flag:
            return bool(getattr(config, self.causal_config_flag, False))
        return False


def sliding_window_to_tokens(local, global_rows, keep):
    """Longformer / LED attention as a token x token matrix, exactly.

    local: [B, H, T, G + 2w + 1]: per query, its weights on the G global keys
    (the g-th global token of the example, in position order) and on the keys
    i - w .. i + w; rows of global queries are zero there, their weights are
    global_rows [B, H, T', G] (T' >= T, the model's padded length) over all
    keys. keep: bool [B, T], False = padding. Returns [B, H, T, T], or a str
    when the layout does not add up (then nothing is drawn)."""
    B, H, T, C = local.shape
    G = 0 if global_rows is None else global_rows.shape[-1]
    w2 = C - G - 1
    if w2 < 0 or w2 % 2:
        return "%d window columns and %d global ones do not make a window 2w+1" % (C - G, G)
    w = w2 // 2
    out = np.zeros((B, H, T, T), np.float32)
    rows = np.arange(T)[:, None]
    cols = rows - w + np.arange(2 * w + 1)[None, :]
    inside = (cols >= 0) & (cols < T)
    i_idx, j_idx = np.nonzero(inside)
    out[:, :, i_idx, cols[i_idx, j_idx]] = local[:, :, i_idx, G + j_idx]
    for b in range(B):
        quiet = keep[b] & (np.abs(local[b]).sum(axis=(0, 2)) == 0)  # global queries' local rows are 0
        positions = np.flatnonzero(quiet)
        if len(positions) > G:
            return "%d global tokens in example %d but %d global columns" % (len(positions), b, G)
        for g, p in enumerate(positions):
            out[b, :, :, p] += local[b, :, :, g]
            out[b, :, p, :] = global_rows[b, :, :T, g]
    off = np.abs(out.sum(-1) - 1)[np.broadcast_to(keep[:, None, :], out.shape[:3])]
    if off.size and off.max() > 1e-3:
        return "the converted rows do not sum to 1 (off by up to %.3g)" % float(off.max())
    return out


_BERT_SEGMENTS = dict(segments=("token_type", "separator"), separator=("sep_token_id",))
_PAIR_BY_SEPARATOR = dict(segments=("separator",), separator=("sep_token_id", "eos_token_id"))
_WINDOWED = dict(convert=sliding_window_to_tokens,
                 notes="Sliding-window attention returned per window (and global tokens apart): "
                       "scattered back onto the token x token band, global rows and columns included.")

ADAPTERS: Dict[str, Adapter] = {a.model_type: a for a in (
    Adapter("bert", causal_config_flag="is_decoder", **_BERT_SEGMENTS),
    Adapter("roberta", causal_config_flag="is_decoder", **_PAIR_BY_SEPARATOR,
            notes="RoBERTa's token_type_ids are all 0 even for pairs: segment B starts "
                  "after the '</s></s>' between the sentences."),
    Adapter("distilbert", **_BERT_SEGMENTS,
            notes="DistilBERT takes no token_type_ids; capture reads them (from a BERT "
                  "tokenizer) for segments only and does not pass them to the model."),
    Adapter("albert", **_BERT_SEGMENTS,
            notes="ALBERT shares one attention module across layers: layer index = call order."),
    Adapter("electra", causal_config_flag="is_decoder", **_BERT_SEGMENTS),
    Adapter("xlm", interface=False, causal_config_flag="causal", segments=("token_type",),
            notes="XLM's attention does not use the AttentionInterface: weights only."),
    Adapter("xlnet", interface=False, segments=("token_type",),
            notes="XLNet's relative attention does not use the AttentionInterface: weights "
                  "only. Without perm_mask/target_mapping it is bidirectional; with "
                  "target_mapping (two-stream) the content stream is kept. XLNet tokenizers "
                  "pad on the left; padding removal handles that."),
    Adapter("ctrl", causal_kinds=frozenset({"self"}),
            notes="CTRL's token_type_ids are extra word embeddings, not segments."),
    Adapter("bart", decoder_default="shift_input", **_PAIR_BY_SEPARATOR,
            notes="Without decoder_input_ids BART feeds its decoder the input shifted right; "
                  "capture does the same."),
    Adapter("t5", segments=("separator",), separator=("eos_token_id",),
            notes="scale 1.0; the relative position bias is the neurons' score bias."),
    Adapter("longformer", interface=False, extras=(("self", "global_attentions"),),
            **_PAIR_BY_SEPARATOR, **_WINDOWED),
    Adapter("led", interface=False, extras=(("encoder", "encoder_global_attentions"),),
            decoder_default="shift_input", **_WINDOWED),
    Adapter("deit", prefix_tokens=("[CLS]", "[DIST]")),
)}

DEFAULT = Adapter("")


def for_model(model) -> Tuple[Adapter, bool]:
    """(adapter, known): the registered adapter for the model's
    config.model_type, or DEFAULT under that model type (known=False)."""
    model_type = getattr(model.config, "model_type", "") or ""
    adapter = ADAPTERS.get(model_type)
    if adapter is not None:
        return adapter, True
    return dataclasses.replace(DEFAULT, model_type=model_type), False
