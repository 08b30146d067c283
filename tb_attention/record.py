"""AttentionRecord: one forward pass's attention (and optionally the query/key
vectors behind it), as captured from a model, built from raw tensors, or read
back from a logdir.

Everything here is numpy; torch is only touched by `_to_numpy`, lazily.
"""
import dataclasses
import warnings
from typing import Optional, Sequence, Tuple

import numpy as np

KIND_NAMES = ("self", "encoder", "decoder", "cross")


class AttentionInputError(ValueError):
    """The attention or tokens handed to capture/add_attention are unusable."""


@dataclasses.dataclass(frozen=True)
class Neurons:
    """Query/key vectors of the stored layers of one attention kind, and
    every step the model takes between q.k and the softmax, in its order:

        s = queries @ keys.T * scale
        s = softcap * tanh(s / softcap)        (softcaps[l] > 0: Gemma 2 style)
        s = s + bias                           (T5 relative bias, ALiBi, ...)
        s[masked] = -inf                       (causal, padding, sliding window)
        attention = softmax([s, sink])[:-1]    (sinks: one learned logit per head)

    (see `AttentionRecord.recompute_attention`). Queries and keys are what
    the attention function receives: after RoPE and after q/k norms.

    Grouped keys (GQA, MQA: Llama/Mistral configs with num_key_value_heads <
    num_attention_heads) are kept once per key head, as the model computed
    them: keys is then [L, Hk, Tk, D] with Hk dividing H, and query head h
    uses key head h // (H // Hk), the order of transformers' repeat_kv.
    `expanded_keys()` gives them per query head.
    """

    queries: np.ndarray  # float32 [L, H, Tq, D], after RoPE
    keys: np.ndarray  # float32 [L, Hk, Tk, D]: Hk = H, or the key heads of grouped attention
    scales: np.ndarray  # float32 [L]
    masked: np.ndarray  # bool [L, Tq, Tk]; True = position masked out
    bias: Optional[np.ndarray] = None  # float32 [L, H, Tq, Tk] additive score bias
    softcaps: Optional[np.ndarray] = None  # float32 [L]; 0 = no soft-capping in that layer
    sinks: Optional[np.ndarray] = None  # float32 [L, H] sink logits; -inf = no sink

    @property
    def key_groups(self) -> int:
        """Query heads per stored key head (1: a key per query head)."""
        return max(1, self.queries.shape[1] // max(1, self.keys.shape[1]))

    def expanded_keys(self) -> np.ndarray:
        """keys per query head, float32 [L, H, Tk, D] (a copy when grouped)."""
        return expand_keys(self.keys, self.key_groups, axis=1)


def expand_keys(keys, groups, axis):
    """Grouped keys repeated per query head along axis (transformers' repeat_kv)."""
    return keys if groups == 1 else np.repeat(keys, groups, axis=axis)


@dataclasses.dataclass(frozen=True)
class KindRecord:
    name: str
    # [L, H, Tq, Tk]: float32; or as tb_attention.capture(..., dtype=) keeps
    # it, uint8 round(w * 255) or float16 (AttentionRecord.attention() gives
    # float32 of any of them).
    attention: np.ndarray
    query_tokens: Tuple[str, ...]
    key_tokens: Tuple[str, ...]
    layer_ids: Tuple[int, ...]
    query_segment_b: int = 0  # first token of sentence B; 0 = no sentence pair
    key_segment_b: int = 0
    causal: bool = False
    neurons: Optional[Neurons] = None
    # Key positions of the tokens the tokenizer marks special ([CLS], <s>, ...);
    # None when not known (raw tensors logged without special_tokens=).
    key_special: Optional[Tuple[int, ...]] = None
    # Why there are no neurons when they were asked for ("" when they are
    # there or were not asked for).
    no_neurons: str = ""
    # The model's softmax also spreads weight over learned sink logits, so
    # rows sum to less than 1 (gpt-oss).
    has_sinks: bool = False

    @property
    def num_layers(self):
        return self.attention.shape[0]

    @property
    def num_heads(self):
        return self.attention.shape[1]


@dataclasses.dataclass(frozen=True)
class ImageLayout:
    """Where the tokens of an image input sit in the image: token
    `first_patch + r * cols + c` is patch (r, c), `patch_size` pixels of the
    `size` (height, width) input; `thumbnail` a small uint8 RGB copy of it
    [h, w, 3] (the model's normalised input rescaled to 0..255), or None."""

    rows: int
    cols: int
    first_patch: int
    patch_size: Tuple[int, int]
    size: Tuple[int, int]
    thumbnail: Optional[np.ndarray] = None


class AttentionRecord:
    """Attention of one example: one KindRecord per attention kind."""

    def __init__(self, kinds: Sequence[KindRecord], model_type: str = "",
                 image: Optional[ImageLayout] = None):
        if not kinds:
            raise AttentionInputError("an AttentionRecord needs at least one attention kind")
        names = [k.name for k in kinds]
        if len(set(names)) != len(names):
            raise AttentionInputError("attention kinds repeat: %s" % names)
        self._kinds = {k.name: k for k in kinds}
        self.model_type = model_type
        self.image = image

    @property
    def kinds(self) -> Tuple[str, ...]:
        return tuple(self._kinds)

    def kind(self, kind: Optional[str] = None) -> KindRecord:
        if kind is None:
            if len(self._kinds) != 1:
                raise KeyError(
                    "this record has several attention kinds %s: name one" % (self.kinds,)
                )
            return next(iter(self._kinds.values()))
        try:
            return self._kinds[kind]
        except KeyError:
            raise KeyError("no attention kind %r; this record has %s" % (kind, self.kinds)) from None

    def attention(self, kind: Optional[str] = None) -> np.ndarray:
        """float32 [L, H, Tq, Tk]: the array itself when the record holds
        float32, else converted on each call (uint8: v / 255)."""
        a = self.kind(kind).attention
        if a.dtype == np.float32:
            return a
        if a.dtype == np.uint8:
            return a.astype(np.float32) / np.float32(255.0)
        return a.astype(np.float32)

    def tokens(self, kind: Optional[str] = None) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        k = self.kind(kind)
        return k.query_tokens, k.key_tokens

    def segments(self, kind: Optional[str] = None) -> Tuple[int, int]:
        k = self.kind(kind)
        return k.query_segment_b, k.key_segment_b

    def layer_ids(self, kind: Optional[str] = None) -> Tuple[int, ...]:
        return self.kind(kind).layer_ids

    @property
    def has_neurons(self) -> bool:
        return any(k.neurons is not None for k in self._kinds.values())

    def neurons(self, kind: Optional[str] = None) -> Neurons:
        k = self.kind(kind)
        if k.neurons is None:
            raise KeyError("no neurons logged for attention kind %r: %s" % (
                k.name, k.no_neurons or "capture with neurons=True to log them"))
        return k.neurons

    def recompute_attention(self, kind: Optional[str] = None) -> np.ndarray:
        """Softmax of the scores rebuilt from the logged queries, keys, scale,
        soft-cap, bias, mask and sinks: exactly what the neuron view shows.
        float32 [L, H, Tq, Tk]."""
        n = self.neurons(kind)
        return softmax_scores(n.queries, n.expanded_keys(), n.scales, n.masked, n.bias, n.softcaps, n.sinks)

    def _repr_html_(self):
        """In a notebook: a compact head view (tb_attention.show for the other views)."""
        from tb_attention import page  # the page and its bundle, only in a notebook

        return page.repr_html(self)

    def __repr__(self):
        parts = []
        for k in self._kinds.values():
            parts.append(
                "%s: %d layers x %d heads, %d x %d tokens%s"
                % (k.name, k.num_layers, k.num_heads, len(k.query_tokens), len(k.key_tokens),
                   ", neurons" if k.neurons is not None else "")
            )
        return "AttentionRecord(%s%s)" % (
            "model_type=%r; " % self.model_type if self.model_type else "", "; ".join(parts))


def _key_heads(n, H, kind):
    """The key heads neurons keep: H, or fewer that H query heads group over."""
    hk = n.keys.shape[1] if n.keys.ndim == 4 else H
    if hk < 1 or H % hk:
        raise AttentionInputError("%s neurons: keys have %d heads, which %d query heads do not group "
                                  "over (key heads must divide query heads)" % (kind, hk, H))
    return hk


def softmax_scores(queries, keys, scales, masked, bias=None, softcaps=None, sinks=None):
    """The attention a softmax over logged scores gives. Inputs as in Neurons."""
    q = np.asarray(queries, dtype=np.float32)
    k = np.asarray(keys, dtype=np.float32)
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(scales, np.float32)[:, None, None, None]
    if softcaps is not None:
        cap = np.asarray(softcaps, np.float32)[:, None, None, None]
        safe = np.where(cap > 0, cap, np.float32(1))
        scores = np.where(cap > 0, safe * np.tanh(scores / safe), scores)
    if bias is not None:
        scores = scores + bias
    scores = np.where(masked[:, None, :, :], -np.inf, scores)
    top = np.max(scores, axis=-1, keepdims=True)
    sink = None
    if sinks is not None:
        sink = np.asarray(sinks, np.float32)[:, :, None, None]
        top = np.maximum(top, sink)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(scores - top)
    total = e.sum(axis=-1, keepdims=True)
    if sink is not None:
        total = total + np.exp(sink - top)
    return (e / np.where(total > 0, total, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------
# Building records from raw tensors, with the checks add_attention promises.


def _to_numpy(x, what, copy=True):
    """A float32 numpy copy of a numpy array or torch tensor (any device);
    with copy=False, a view where no conversion is needed."""
    if type(x).__module__.startswith("torch"):
        # Copy with numpy, not torch: torch's CPU copies use its intra-op
        # thread pool, which blocks the training thread for tens of ms when
        # the cores are busy (measured: 10-90 ms for one 12x12x128x128 record).
        t = x.detach()
        if getattr(t, "is_meta", False):
            raise AttentionInputError("%s is a tensor on the 'meta' device: it has a shape %s but no "
                                      "data; log a tensor with values" % (what, tuple(t.shape)))
        if t.is_complex():
            raise AttentionInputError("%s is a complex tensor (%s): attention weights are real"
                                      % (what, t.dtype))
        try:
            view = t.numpy(force=True)  # a view on CPU; one device copy otherwise
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            view = t.float().numpy(force=True)
        return np.array(view, dtype=np.float32, copy=True) if copy else np.asarray(view, np.float32)
    if np.iscomplexobj(x):  # numpy would drop the imaginary part with a warning
        raise AttentionInputError("%s is a complex array: attention weights are real" % what)
    try:
        return np.array(x, dtype=np.float32, copy=True) if copy else np.asarray(x, np.float32)
    except (TypeError, ValueError) as e:
        raise AttentionInputError("%s is not a numeric array: %s" % (what, e)) from None


def stack_layers(attentions, what="attentions"):
    """A tuple of L tensors [1, H, Tq, Tk] (what transformers returns) or one
    array [L, H, Tq, Tk] -> float32 numpy [L, H, Tq, Tk]."""
    if isinstance(attentions, (tuple, list)):
        if not attentions:
            raise AttentionInputError(
                "%s is empty: the model returned no attention weights. transformers "
                "returns none under SDPA attention; use tb_attention.capture(), or run "
                "the model with attn_implementation='eager' and output_attentions=True" % what)
        # Views here; np.stack below makes the one copy.
        layers = [_to_numpy(a, "%s[%d]" % (what, i), copy=False) for i, a in enumerate(attentions)]
        for i, a in enumerate(layers):
            if a.ndim == 4:
                if a.shape[0] != 1:
                    raise AttentionInputError(
                        "%s[%d] has shape %s: a batch of %d examples where one is expected. "
                        "Pick one example, e.g. [a[i:i+1] for a in %s], or use "
                        "tb_attention.capture(), which splits a batch into one record per "
                        "example" % (what, i, tuple(a.shape), a.shape[0], what))
                layers[i] = a[0]
            elif a.ndim != 3:
                raise AttentionInputError(
                    "%s[%d] has shape %s; expected [1, heads, query_len, key_len]"
                    % (what, i, tuple(a.shape)))
        shapes = {a.shape for a in layers}
        if len(shapes) != 1:
            raise AttentionInputError("the layers of %s differ in shape: %s" % (what, sorted(shapes)))
        return np.stack(layers)
    a = _to_numpy(attentions, what)
    if a.ndim == 5:
        if a.shape[1] != 1:
            raise AttentionInputError(
                "%s has shape %s: a batch of %d examples where one is expected. Pick one "
                "example, e.g. %s[:, i]" % (what, tuple(a.shape), a.shape[1], what))
        a = a[:, 0]
    if a.ndim != 4:
        raise AttentionInputError(
            "%s has shape %s; expected [layers, heads, query_len, key_len] or a tuple of "
            "layers [1, heads, query_len, key_len]" % (what, tuple(a.shape)))
    return a


def check_tokens(tokens, length, what):
    if isinstance(tokens, str):
        raise AttentionInputError("%s is one string; expected a list of %d token strings" % (what, length))
    try:
        tokens = tuple(tokens)
    except TypeError:
        raise AttentionInputError("%s must be a list of token strings" % what) from None
    for i, t in enumerate(tokens):
        if not isinstance(t, str):
            raise AttentionInputError("%s[%d] is %s, not a str" % (what, i, type(t).__name__))
    if len(tokens) != length:
        raise AttentionInputError(
            "%s has %d tokens but the attention has %d positions on that side"
            % (what, len(tokens), length))
    return tokens


def check_attention_values(a, what, sinks=False):
    """Raise on NaN/Inf or weights outside [0, 1]; warn once when rows do not
    sum to 1 (some users log post-processed maps on purpose). With sinks, rows
    summing to less than 1 are what the model computed."""
    if a.size == 0:
        raise AttentionInputError("%s is empty (shape %s)" % (what, tuple(a.shape)))
    lo, hi = float(a.min()), float(a.max())  # NaN propagates into both
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise AttentionInputError(
            "%s holds NaN or Inf (first at layer, head, query, key = %s)" % (what, tuple(int(i) for i in bad)))
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise AttentionInputError(
            "%s holds weights outside [0, 1] (min %g, max %g): log softmax probabilities, "
            "not scores" % (what, lo, hi))
    sums = a.sum(axis=-1)
    # Fully masked rows (all zero) are legitimate: padding queries.
    off = (np.abs(sums - 1) > 1e-2) & (sums > 1e-6)
    if sinks:
        off &= sums > 1
    if off.any():
        # stacklevel: the caller of add_attention / summary.pb (through
        # summary.check_record and validate_kind)
        warnings.warn(
            "%s: %d of %d rows do not sum to 1; logging them as they are"
            % (what, int(off.sum()), off.size), stacklevel=5)


def check_segment(segment_b, length, what):
    if segment_b is None:
        return 0
    if isinstance(segment_b, bool) or not isinstance(segment_b, (int, np.integer)):
        raise AttentionInputError("%s must be an int, got %s" % (what, type(segment_b).__name__))
    if not 0 <= segment_b < length:
        raise AttentionInputError("%s = %d is outside 0..%d" % (what, segment_b, length - 1))
    return int(segment_b)


def check_special(positions, length, what):
    """Special-token key positions: None (unknown) or distinct ints in 0..length-1."""
    if positions is None:
        return None
    try:
        pos = tuple(positions)
    except TypeError:
        raise AttentionInputError("%s must be a sequence of token positions, got %r"
                                  % (what, positions)) from None
    if any(isinstance(j, bool) or not isinstance(j, (int, np.integer)) for j in pos):
        raise AttentionInputError("%s must be ints (token positions), got %r" % (what, pos))
    pos = tuple(int(j) for j in pos)
    if len(set(pos)) != len(pos) or any(not 0 <= j < length for j in pos):
        raise AttentionInputError("%s must be distinct positions in 0..%d, got %s"
                                  % (what, length - 1, pos))
    return pos


def check_layer_ids(layer_ids, num_layers):
    if layer_ids is None:
        return tuple(range(num_layers))
    try:
        ids = tuple(layer_ids)
    except TypeError:
        raise AttentionInputError("layer_ids must be a sequence of ints, got %r" % (layer_ids,)) from None
    # int() would quietly turn 1.7 into 1, and a float here would only fail
    # later, in the writer's background thread, breaking the writer.
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in ids):
        raise AttentionInputError("layer_ids must be ints, got %r" % (ids,))
    ids = tuple(int(i) for i in ids)
    if len(ids) != num_layers:
        raise AttentionInputError(
            "layer_ids names %d layers but the attention has %d" % (len(ids), num_layers))
    if len(set(ids)) != len(ids) or any(i < 0 for i in ids):
        raise AttentionInputError("layer_ids must be distinct non-negative ints, got %s" % (ids,))
    # The header stores them as int32: a larger one would only fail in the
    # writer's background thread, breaking the writer for every later step.
    if any(i >= 2 ** 31 for i in ids):
        raise AttentionInputError("layer_ids must be below 2**31, got %s" % (ids,))
    return ids


def validate_kind(k: KindRecord):
    """Every check add_attention promises, on one kind; raises AttentionInputError."""
    if k.name not in KIND_NAMES:
        raise AttentionInputError("attention kind %r is not one of %s" % (k.name, KIND_NAMES))
    a = k.attention
    if not isinstance(a, np.ndarray) or a.ndim != 4:
        raise AttentionInputError(
            "%s attention must be a 4-d array [layers, heads, query_len, key_len], got shape %s"
            % (k.name, getattr(a, "shape", None)))
    L, H, Tq, Tk = a.shape
    what = "%s attention" % k.name
    check_tokens(k.query_tokens, Tq, "%s query tokens" % k.name)
    check_tokens(k.key_tokens, Tk, "%s key tokens" % k.name)
    if a.dtype == np.uint8:  # quantized (capture): every byte is a weight in [0, 1]
        if a.size == 0:
            raise AttentionInputError("%s is empty (shape %s)" % (what, tuple(a.shape)))
    else:
        check_attention_values(a, what, sinks=k.has_sinks)
    check_layer_ids(k.layer_ids, L)
    check_segment(k.query_segment_b, Tq, "%s query_segment_b" % k.name)
    check_segment(k.key_segment_b, Tk, "%s key_segment_b" % k.name)
    check_special(k.key_special, Tk, "%s key_special" % k.name)
    n = k.neurons
    if n is not None:
        D = n.queries.shape[-1] if n.queries.ndim == 4 else -1
        expect = {
            "queries": (n.queries, (L, H, Tq, D)),
            "keys": (n.keys, (L, _key_heads(n, H, k.name), Tk, D)),
            "scales": (n.scales, (L,)),
            "masked": (n.masked, (L, Tq, Tk)),
        }
        if n.bias is not None:
            expect["bias"] = (n.bias, (L, H, Tq, Tk))
        if n.softcaps is not None:
            expect["softcaps"] = (n.softcaps, (L,))
        if n.sinks is not None:
            expect["sinks"] = (n.sinks, (L, H))
        for name, (arr, shape) in expect.items():
            if tuple(arr.shape) != shape:
                raise AttentionInputError(
                    "%s neurons: %s has shape %s, expected %s" % (k.name, name, tuple(arr.shape), shape))
            if name == "masked":  # bools: nothing to check (a 2048-token model's are 128 MB)
                continue
            if name != "sinks" and np.isfinite(arr.sum()):
                continue  # NaN and Inf reach the sum; no bool array the size of arr
            finite = np.isfinite(arr) | (np.isneginf(arr) if name == "sinks" else False)
            if not finite.all():
                raise AttentionInputError("%s neurons: %s holds NaN or Inf" % (k.name, name))
        if n.softcaps is not None and (n.softcaps < 0).any():
            raise AttentionInputError("%s neurons: softcaps must be >= 0 (0 = none)" % k.name)


def validate_image(record):
    """An AttentionRecord's ImageLayout names positions of its input side."""
    im = record.image
    if im is None:
        return
    ints = (im.rows, im.cols, im.first_patch) + tuple(im.patch_size) + tuple(im.size)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in ints) or min(ints[:2]) < 1 \
            or min(ints) < 0:
        raise AttentionInputError("image layout must hold positive ints, got %r" % (im,))
    for name in record.kinds:
        if name in ("self", "encoder") and len(record.kind(name).query_tokens) < im.first_patch + im.rows * im.cols:
            raise AttentionInputError(
                "the image's %d x %d patches from position %d do not fit the %d %s positions"
                % (im.rows, im.cols, im.first_patch, len(record.kind(name).query_tokens), name))
    t = im.thumbnail
    if t is not None and (not isinstance(t, np.ndarray) or t.dtype != np.uint8 or t.ndim != 3
                          or t.shape[2] != 3 or t.size == 0):
        raise AttentionInputError("the image thumbnail must be uint8 [height, width, 3], got %s %s"
                                  % (getattr(t, "dtype", type(t).__name__), getattr(t, "shape", "")))


def from_raw(attentions, tokens, layer_ids=None, segment_b=None, causal=False, kind="self",
             special_tokens=None):
    """An AttentionRecord of one kind from raw tensors (see add_attention)."""
    a = stack_layers(attentions)
    _, _, Tq, Tk = a.shape
    if tokens is None:
        raise AttentionInputError("tokens are required with raw attention tensors")
    if not isinstance(tokens, (str, tuple, list)):
        # any iterable (a generator gave the query side every token and the
        # key side none); read once, here
        try:
            tokens = list(tokens)
        except TypeError:
            raise AttentionInputError("tokens must be a list of token strings, got %s"
                                      % type(tokens).__name__) from None
    if (isinstance(tokens, tuple) and len(tokens) == 2
            and not isinstance(tokens[0], str) and not isinstance(tokens[1], str)):
        q_tokens, k_tokens = tokens
    else:
        q_tokens = k_tokens = tokens
    q_tokens = check_tokens(q_tokens, Tq, "query tokens")
    k_tokens = check_tokens(k_tokens, Tk, "key tokens")
    if isinstance(segment_b, tuple):
        if len(segment_b) != 2:
            raise AttentionInputError("segment_b must be an int or a pair (query, key) of ints, got %r"
                                      % (segment_b,))
        q_seg, k_seg = segment_b
    else:
        q_seg = k_seg = segment_b
    if not isinstance(causal, (bool, np.bool_)):  # bool("no") is True
        raise AttentionInputError("causal must be True or False, got %r" % (causal,))
    rec = KindRecord(
        name=kind, attention=a, query_tokens=q_tokens, key_tokens=k_tokens,
        layer_ids=check_layer_ids(layer_ids, a.shape[0]),
        query_segment_b=check_segment(q_seg, Tq, "segment_b"),
        key_segment_b=check_segment(k_seg, Tk, "segment_b"),
        causal=bool(causal),
        key_special=check_special(special_tokens, Tk, "special_tokens"))
    return AttentionRecord([rec])


def from_encoder_decoder(encoder, decoder, cross, encoder_tokens, decoder_tokens, layer_ids=None):
    """One AttentionRecord of an encoder-decoder model's raw tensors, as
    BertViz takes them: any of encoder (over encoder_tokens), decoder (causal,
    over decoder_tokens) and cross (decoder queries, encoder keys)."""
    needs = {"encoder": (encoder, ("encoder_tokens",)), "decoder": (decoder, ("decoder_tokens",)),
             "cross": (cross, ("decoder_tokens", "encoder_tokens"))}
    given = {"encoder_tokens": encoder_tokens, "decoder_tokens": decoder_tokens}
    kinds = []
    for name, (attention, token_names) in needs.items():
        if attention is None:
            continue
        missing = [t for t in token_names if given[t] is None]
        if missing:
            raise AttentionInputError("%s attention needs %s" % (name, " and ".join(missing)))
        # cross: a pair (query tokens, key tokens), as from_raw tells pairs from lists
        tokens = given[token_names[0]] if name != "cross" else (list(decoder_tokens), list(encoder_tokens))
        try:
            record = from_raw(attention, tokens, layer_ids=layer_ids, causal=(name == "decoder"), kind=name)
        except AttentionInputError as e:
            raise AttentionInputError("%s attention: %s" % (name, e)) from None
        kinds.append(record.kind())
    return AttentionRecord(kinds)
