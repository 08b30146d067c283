"""capture: run a transformers model once and return its attention.

    record = tb_attention.capture(model, inputs, tokenizer=tok, neurons=True)

One probe pass (interface.py), in eval mode and without gradients, through
an attention implementation that returns weights; the model's state is put
back exactly afterwards. Then, per example of the batch:

- every attention tensor is checked to be [heads, query tokens, key tokens]
  over the positions the record names BEFORE anything is indexed; another
  layout is converted exactly by the model type's adapter (Longformer's
  sliding windows) or refused with an error naming the model type and the
  shape (pooled, landmark, block-sparse attention);
- attention the model returns that is not softmax probabilities (scores
  before the softmax) is refused, naming the model type;
- padding is removed, positions are named (inputs.py), neurons kept where
  their recomputation matched the model (scores.py), else the reason.

Everything that differs between architectures and cannot be seen at run
time is in `adapters.py`.
"""
import collections
import dataclasses
import sys
import warnings
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np

from . import adapters as _adapters
from . import codec as _codec
from . import device as _device
from . import inputs as _inputs
from . import interface as _interface
from . import scores as _scores
from .interface import PROBE_IMPLEMENTATION, AttentionCall  # noqa: F401  (public names)
from .record import (AttentionInputError, AttentionRecord, KindRecord, Neurons, expand_keys,
                     validate_image, validate_kind)

NO_TOKENIZER_FORMAT = _inputs.NO_TOKENIZER_FORMAT


class NeuronsNotSupportedWarning(UserWarning):
    """capture(..., neurons=True) where the model's attention cannot give
    faithful neurons: the attention is captured, the queries/keys are not,
    and the message (and the record's `no_neurons`) says why."""


# --------------------------------------------------------------------------
# Public API


def capture(model, inputs=None, tokenizer=None, neurons: bool = False,
            layers: Union[None, Sequence[int], Mapping[str, Sequence[int]]] = None,
            heads: Union[None, Sequence[int], Mapping[str, Sequence[int]]] = None,
            dtype: Optional[str] = None,
            **model_inputs) -> Union[AttentionRecord, List[AttentionRecord]]:
    """Attention of `model` on `inputs`, as an AttentionRecord.

    model: a transformers PreTrainedModel (any head).
    inputs: a tokenizer's or processor's output (dict / BatchEncoding /
        BatchFeature) or the model's main input tensor: token ids ([T] or
        [B, T]; attention_mask, token_type_ids, decoder_input_ids,
        decoder_attention_mask, labels optional), `pixel_values` [B, C, H, W]
        (positions named "[CLS]", "patch (r, c)"; the record's `image` holds
        the patch grid and a thumbnail), or `input_features` / `input_values`
        (audio; positions named "frame <i>").
        Or as keywords: capture(model, pixel_values=x), capture(model, input_ids=ids,
        attention_mask=mask); keywords are added to `inputs`.
        Encoder-decoder models: without decoder_input_ids the decoder gets the
        labels shifted right behind the decoder start token (as the model does
        in training); without labels either, what the model itself would do:
        BART shifts input_ids right, T5 and Whisper get the decoder start
        token alone (the first step of generation). `*ForCausalLM` classes of
        encoder-decoder families are decoder-only.
    tokenizer: gives the token strings (convert_ids_to_tokens, unchanged) and
        the separator id for sentence pairs. Without it tokens are "id:<id>".
    neurons: also capture queries, keys, scales, mask, score bias, soft-cap
        and sinks, wherever the model's attention runs through transformers'
        AttentionInterface and the softmax of those terms gives back the
        model's own weights. Elsewhere this warns (NeuronsNotSupportedWarning,
        naming the model type and the reason) and returns the attention alone.
    layers: layer indices to keep (negative counts from the end), for every
        kind, or a dict kind -> indices. All layers by default.
    heads: head indices to keep (negative counts from the end), for every
        kind, or a dict kind -> indices; picked on the model's device before
        anything is copied. The record's heads are then these, in this order
        (its head 0 is the model's heads[0]). All heads by default.
    dtype: None keeps the weights exactly, as float32 on the host. "uint8"
        (round(w * 255), what AttentionWriter stores by default) or
        "float16" quantizes them on the model's device, a few rows at a
        time, and copies them into pinned host memory without blocking on
        CUDA: a record of a quarter (uint8) of the float32 bytes, that
        add_attention takes without a copy or a check of every weight (the
        range checks ran on the device). rec.attention() still gives
        float32. Probe and the Trainer callback pass their writer's dtype.

    Returns one AttentionRecord for a batch of one, else a list with one record
    per example, padding positions (attention_mask == 0) removed. Removing
    padding does not undo its effect on the model: with left padding, models
    that number positions from the start of the row (GPT-2) compute something
    else than for the unpadded example, and the record shows what they computed.
    """
    records = _capture(model, _merged(model, inputs, model_inputs), tokenizer, neurons, layers,
                       dtype, heads)
    return records[0] if len(records) == 1 else records


def capture_batch(model, inputs=None, tokenizer=None, neurons: bool = False, layers=None,
                  heads=None, dtype=None, **model_inputs) -> List[AttentionRecord]:
    """As `capture`, but always a list (one record per example)."""
    return _capture(model, _merged(model, inputs, model_inputs), tokenizer, neurons, layers,
                    dtype, heads)


def _merged(model, inputs, keywords):
    if not keywords:
        if inputs is None:
            raise AttentionInputError("inputs must be a BatchEncoding / dict of tensors (a tokenizer's "
                                      "or processor's output), the model's main input tensor, or "
                                      "tensors as keywords (input_ids=..., pixel_values=...); got None")
        return inputs
    if inputs is None:
        return dict(keywords)
    merged = _inputs.as_dict(model, inputs)
    both = sorted(set(merged) & set(keywords))
    if both:
        raise AttentionInputError("%s given both in inputs and as keywords" % ", ".join(both))
    merged.update(keywords)
    return merged


def probe(model, inputs, neurons: bool = False) -> List[AttentionCall]:
    """The raw attention calls of one probe pass, batch dimension kept, each
    named by the module it happened in (e.g. "encoder.layer.3.attention.self";
    a module called for several layers, as in ALBERT, gets "#<call>" appended),
    with their neurons (`scores.CallNeurons`) when asked and faithful.
    For debugging and for building other views; `capture` is built on it."""
    _check_arguments(model, None, neurons)
    adapter, _ = _adapters.for_model(model)
    batch = _inputs.prepare(model, inputs, adapter)
    return _interface.run(model, batch.model_kwargs, neurons, dict(adapter.extras),
                          adapter.interface).calls


def _check_arguments(model, tokenizer, neurons):
    if not callable(model) or getattr(model, "config", None) is None:
        raise AttentionInputError("model must be a transformers model (a PreTrainedModel, with a "
                                  ".config), got %s" % type(model).__name__)
    if tokenizer is not None and not callable(getattr(tokenizer, "convert_ids_to_tokens", None)):
        raise AttentionInputError("tokenizer must be a transformers tokenizer (with "
                                  "convert_ids_to_tokens) or None, got %s" % type(tokenizer).__name__)
    if not isinstance(neurons, (bool, np.bool_)):
        raise AttentionInputError("neurons must be True or False, got %r" % (neurons,))


def _capture(model, inputs, tokenizer, neurons, layers, dtype=None, heads=None):
    from tb_attention.integrations import transformer_lens  # its own hook points, not transformers'

    if transformer_lens.is_transformer_lens_model(model):
        # dtype= (Probe passes its writer's) is ignored: the record stays float32 and
        # the writer quantizes it; heads= is refused rather than ignored
        if heads is not None:
            raise AttentionInputError("heads= is not supported for TransformerLens models (yet)")
        return transformer_lens.capture(model, inputs, tokenizer=tokenizer, neurons=neurons, layers=layers)
    _check_arguments(model, tokenizer, neurons)
    _device.check_dtype(dtype)
    adapter, known = _adapters.for_model(model)
    batch = _inputs.prepare(model, inputs, adapter)
    keeper = _Keeper(dtype, heads, float_needed=adapter.convert is not None)
    result = _interface.run(model, batch.model_kwargs, bool(neurons), dict(adapter.extras),
                            adapter.interface, keep=keeper, early=keeper.early)
    keeper.finish(result.calls)
    what = "model type %r (%s)" % (adapter.model_type, type(model).__name__)
    _check_probabilities(result.calls, what)
    selected = _select_layers(result.calls, layers)
    lengths = _side_lengths(batch, selected)
    for kind, calls in selected.items():
        for c in calls:
            c.attention = _token_matrix(c, lengths, batch, adapter, what, selected)
        _check_heads(kind, calls, what)
    reasons = {k: r for k, r in result.no_neurons.items() if k in selected} if neurons else {}
    if reasons:
        _warn_no_neurons(reasons, selected, what)
    no_neurons = {k: "neurons=True, but %s: %s" % (what, r) for k, r in reasons.items()}
    sep_ids = _separator_ids(adapter, tokenizer, model.config)
    return [_example_record(b, selected, adapter, known, batch, tokenizer, sep_ids, model.config,
                            no_neurons, dtype)
            for b in range(batch.size)]


class _Quantized:
    __slots__ = ("host", "value_range")

    def __init__(self, host, value_range):
        self.host, self.value_range = host, value_range


class _Keeper:
    """interface.run's keep: what capture keeps of each layer's weights, and
    of its neurons, for the heads= picked."""

    def __init__(self, dtype, heads, float_needed):
        self.dtype = None if float_needed else dtype  # adapters converting layouts need floats
        self.final_dtype = dtype
        self.heads = heads
        self.picked = {}  # kind -> head indices, once the number of heads is known

    def pick(self, kind, num_heads):
        """Head indices to keep of a kind with num_heads heads, or None (all)."""
        want = self.heads.get(kind) if isinstance(self.heads, Mapping) else self.heads
        if want is None:
            return None
        if kind not in self.picked:
            want = [want] if isinstance(want, (int, np.integer)) else list(want)
            chosen = []
            for i in want:
                if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                    raise AttentionInputError("heads must be ints, got %r" % (i,))
                j = int(i) + num_heads if i < 0 else int(i)
                if not 0 <= j < num_heads:
                    raise AttentionInputError("head %d is not in the %s attention, which has heads "
                                              "0..%d" % (int(i), kind, num_heads - 1))
                if j not in chosen:
                    chosen.append(j)
            if not chosen:
                raise AttentionInputError("heads selects no %s head" % kind)
            self.picked[kind] = chosen
        return self.picked[kind]

    @property
    def early(self):
        """interface.run's early: each layer quantized during its call (its
        float weights then freed), or None when floats are kept."""
        return None if self.dtype is None else self._quantized

    def _quantized(self, t):
        return _Quantized(_device.host_stored(t, self.dtype), _device.value_range(t))

    def __call__(self, kind, t):
        if isinstance(t, _Quantized):  # taken during the call (early)
            host = t.host
            picked = self.pick(kind, host.shape[1]) if host.dim() == 4 else None
            return (host if picked is None else host[:, picked]), t.value_range
        if t.dim() == 4:
            picked = self.pick(kind, t.shape[1])
            if picked is not None:
                t = t[:, picked]
        if self.dtype is None:
            return _interface.keep_float32(kind, t)
        return _device.host_stored(t, self.dtype), _device.value_range(t)

    def finish(self, calls):
        """numpy of every call (one wait for the device), neurons cut to the heads picked."""
        if isinstance(self.heads, Mapping):
            unknown = set(self.heads) - {c.kind for c in calls}
            if unknown:
                raise AttentionInputError("heads names kinds %s; this model has %s"
                                          % (sorted(unknown), sorted({c.kind for c in calls})))
        _device.synchronize([c.attention for c in calls if not isinstance(c.attention, np.ndarray)])
        for c in calls:
            if not isinstance(c.attention, np.ndarray):
                c.attention = c.attention.numpy()
                c.value_range = tuple(float(x) for x in c.value_range.cpu())
            picked = self.picked.get(c.kind)
            n = c.neurons
            if picked is not None and isinstance(n, _scores.CallNeurons):
                c.neurons = dataclasses.replace(
                    n, queries=n.queries[:, picked], keys=_picked_keys(n, picked),
                    bias=None if n.bias is None else n.bias[:, picked],
                    sinks=None if n.sinks is None else n.sinks[picked])


def _picked_keys(n, picked):
    """CallNeurons keys [B, Hk, Tk, D] for the query heads picked: still
    grouped when the picked heads are whole groups in order (each key head
    once), else one key per picked head."""
    group = n.queries.shape[1] // n.keys.shape[1]
    owners = [h // group for h in picked]
    kept = list(dict.fromkeys(owners))
    per = len(picked) // len(kept)
    if owners == [o for o in kept for _ in range(per)]:
        return n.keys[:, kept]
    return n.keys[:, owners]


def _stack_example(calls, b, grid, qi, ki, last, final_dtype=None):
    """[L, H, Tq, Tk] of example b, in the dtype capture keeps (float32, or
    quantized: then quantized here if an adapter's conversion needed floats),
    written layer by layer into one array; after the last example each
    call's array is let go as soon as it is copied."""
    first = calls[0].attention
    H = first.shape[1]
    dtype = np.dtype(np.float32) if first.dtype.kind == "f" and first.dtype != np.float16 else first.dtype
    out = None
    whole = len(qi) == first.shape[2] and len(ki) == first.shape[3]
    for i, c in enumerate(calls):
        layer = c.attention[b] if whole else c.attention[b][:, grid[0], grid[1]]
        if out is None:
            out = np.empty((len(calls), H, len(qi), len(ki)), dtype)
        out[i] = layer
        if last:
            c.attention = np.empty((0,) + c.attention.shape[1:], c.attention.dtype)
    if final_dtype is not None and out.dtype != _codec.numpy_dtype(final_dtype):
        out = _codec.quantize(out, _codec.DTYPES[final_dtype])
    return out


def _warn_no_neurons(reasons, selected, what):
    rest = [k for k in selected if k not in reasons]
    warnings.warn("tb_attention.capture: no neurons for %s; capturing attention only%s. %s"
                  % (what, " for the %s attention (the %s attention has neurons)"
                     % (", ".join(reasons), ", ".join(rest)) if rest else "",
                     " ".join("%s attention: %s." % (k, r) for k, r in reasons.items())),
                  NeuronsNotSupportedWarning, stacklevel=_caller_stacklevel())


def _caller_stacklevel():
    """warnings.warn stacklevel of the first frame outside tb_attention, seen
    from the function calling this one (so warnings name the user's line also
    through tb_attention.capture in __init__)."""
    level, frame = 1, sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("tb_attention"):
        level += 1
        frame = frame.f_back
    return level + 1


# --------------------------------------------------------------------------
# Checks before anything is indexed


def _check_probabilities(calls, what):
    """Refuse attention that is not softmax probabilities: scores before the
    softmax (SqueezeBERT, ProphetNet) or other token mixing (linear
    attention) returned as output_attentions."""
    bad = []
    for c in calls:
        a = c.attention
        if a.size == 0:
            continue
        if c.value_range is not None:  # taken on the device before quantizing (_Keeper)
            lo, hi, top = c.value_range
        else:
            lo, hi = float(a.min()), float(a.max())
            top = float(a.sum(-1).max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise AttentionInputError("%s returned NaN or Inf in the %s attention of layer %d (%s)"
                                      % (what, c.kind, c.layer, c.name))
        # softmax weights are never negative; in bfloat16 a row may sum to 1.004 or so
        if lo < -1e-6 or hi > 1 + 1e-2 or top > 1.05:
            bad.append((c, lo, hi, top))
    if bad:
        c, lo, hi, top = bad[0]
        fine = sorted(set((x.kind, x.layer) for x in calls) - set((b[0].kind, b[0].layer) for b in bad))
        raise AttentionInputError(
            "%s returns its %s attention (layer %d) as values from %.3g to %.3g with rows summing "
            "to up to %.3g: not softmax probabilities (attention scores before the softmax, or "
            "another way of mixing tokens), so tb-attention cannot draw them as attention%s"
            % (what, c.kind, c.layer, lo, hi, top,
               "; these layers hold probabilities: %s" % ", ".join("%s %d" % f for f in fine)
               if fine else ""))


def _side_lengths(batch, selected):
    """side -> the padded number of positions the model saw on that side:
    token sides from the ids, an image's or audio's from the attention."""
    lengths = {side: ids.shape[1] for side, ids in batch.ids.items()}
    if "input" not in lengths:
        for kind in ("self", "encoder"):
            if kind in selected:
                lengths["input"] = selected[kind][0].attention.shape[-2]
                break
        else:
            if "cross" in selected:
                lengths["input"] = selected["cross"][0].attention.shape[-1]
    return lengths


def _token_matrix(call, lengths, batch, adapter, what, selected):
    """call.attention as [B, H, Tq, Tk] over the record's positions: as it
    is, converted exactly by the adapter, or refused."""
    q_side, k_side = _adapters.KIND_SIDES[call.kind]
    want = (batch.size, lengths.get(q_side), lengths.get(k_side))
    a = call.attention
    if a.ndim == 4 and (a.shape[0], a.shape[2], a.shape[3]) == want:
        return a
    if (a.ndim == 4 and a.shape[0] == want[0] and a.shape[2] >= want[1] and a.shape[3] >= want[2]
            and not a[:, :, :want[1], want[2]:].any()):
        # the model padded the sequence itself (BigBird, to whole blocks): the padding it
        # added gets no weight, so the token x token part is exactly what it computed
        return np.ascontiguousarray(a[:, :, :want[1], :want[2]])
    problem = "not [batch, heads, query positions, key positions] = [%d, H, %s, %s]" % (
        want[0], want[1], want[2])
    if a.ndim == 4 and a.shape[0] != want[0] and a.shape[0] % want[0] == 0:
        problem += " (%d attention maps per example: attention within windows)" % (a.shape[0] // want[0])
    if adapter.convert is not None and a.ndim == 4 and a.shape[0] == want[0] and want[1] == want[2]:
        keep = batch.keep.get(q_side)
        keep = np.ones((want[0], want[1]), bool) if keep is None else keep
        converted = adapter.convert(a, call.extra, keep)
        if not isinstance(converted, str):
            return converted
        problem += " and its %s layout does not convert: %s" % (adapter.model_type, converted)
    fine = [c.layer for c in selected[call.kind]
            if c.attention.ndim == 4 and (c.attention.shape[0], c.attention.shape[2], c.attention.shape[3]) == want]
    raise AttentionInputError(
        "%s: the %s attention of layer %d (%s) has shape %s, %s: the model attends over other "
        "positions than the tokens (a pooled, windowed, landmark or block-sparse layout), and "
        "tb-attention draws only token x token attention%s"
        % (what, call.kind, call.layer, call.name, tuple(a.shape), problem,
           "; layers %s have that shape: capture(..., layers={%r: %s})" % (fine, call.kind, fine)
           if fine else ""))


def _check_heads(kind, calls, what):
    heads = collections.OrderedDict()
    for c in calls:
        heads.setdefault(c.attention.shape[1], []).append(c.layer)
    if len(heads) > 1:
        raise AttentionInputError(
            "%s: its %s attention layers have different numbers of heads (%s); a record holds one "
            "number of heads per kind: capture the layers of one head count at a time, e.g. "
            "capture(..., layers={%r: %s})" % (what, kind, "; ".join(
                "%d heads in layers %s" % (h, ls) for h, ls in heads.items()), kind, next(iter(heads.values()))))


# --------------------------------------------------------------------------
# From calls to records


def _select_layers(calls, layers):
    """kind -> calls sorted by layer, restricted to the requested layers."""
    by_kind = collections.OrderedDict()
    for kind, _ in _interface.OUTPUT_FIELDS:
        mine = sorted((c for c in calls if c.kind == kind), key=lambda c: c.layer)
        if mine:
            by_kind[kind] = mine
    if layers is None:
        return by_kind
    if isinstance(layers, Mapping):
        unknown = set(layers) - set(by_kind)
        if unknown:
            raise AttentionInputError("layers names kinds %s; this model has %s"
                                      % (sorted(unknown), list(by_kind)))
        wanted = {k: layers.get(k) for k in by_kind}
    else:
        wanted = {k: layers for k in by_kind}
    return collections.OrderedDict(
        (kind, mine if wanted[kind] is None else _chosen(kind, mine, wanted[kind]))
        for kind, mine in by_kind.items())


def _chosen(kind, mine, want):
    if isinstance(want, (int, np.integer)):
        want = [want]
    n = len(mine)
    available = [c.layer for c in mine]
    chosen = []
    for i in want:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise AttentionInputError("layers must be ints, got %r" % (i,))
        j = int(i) + n if i < 0 else int(i)
        if j not in available:
            raise AttentionInputError(
                "layer %d is not in the %s attention, which has layers 0..%d" % (int(i), kind, n - 1))
        if j not in chosen:
            chosen.append(j)
    if not chosen:
        raise AttentionInputError("layers selects no %s layer" % kind)
    return [c for c in mine if c.layer in chosen]


def _separator_ids(adapter, tokenizer, config):
    for attr in adapter.separator:
        for source in (tokenizer, config):
            v = getattr(source, attr, None) if source is not None else None
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                return [int(v)]
            if isinstance(v, (list, tuple)) and v:
                return [int(x) for x in v]
    return []


def _segment_b(adapter, ids, token_type, sep_ids):
    for strategy in adapter.segments:
        if strategy == "token_type":
            if token_type is None:
                continue
            hit = np.flatnonzero(token_type == 1)
            return int(hit[0]) if hit.size else 0
        if strategy == "separator":
            if not sep_ids:
                continue
            is_sep = np.isin(ids, sep_ids)
            if not is_sep.any():
                return 0
            j = int(np.argmax(is_sep))
            while j < len(ids) and is_sep[j]:
                j += 1
            return j if j < len(ids) else 0
    return 0


class _Sides:
    """Positions kept, their names and segment start, per side, for one example."""

    def __init__(self, b, batch, lengths, adapter, tokenizer, sep_ids, config):
        self.b, self.batch, self.lengths = b, batch, lengths
        self.adapter, self.tokenizer, self.sep_ids, self.config = adapter, tokenizer, sep_ids, config
        self.cache = {}
        self.image = None

    def __call__(self, name):
        if name not in self.cache:
            self.cache[name] = self._side(name)
        return self.cache[name]

    def _side(self, name):
        batch, b = self.batch, self.b
        if name not in batch.ids:  # an image's patches or audio frames: all kept
            n = self.lengths[name]
            if batch.modality == "image":
                names, self.image = _inputs.image_layout(self.config, batch.pixels[b], n,
                                                         self.adapter.prefix_tokens)
            else:
                names = _inputs.frame_names(n)
            return np.arange(n), names, 0, None
        keep = np.flatnonzero(batch.keep[name][b])
        if keep.size == 0:
            raise AttentionInputError("example %d has no tokens left after removing padding" % b)
        ids = batch.ids[name][b][keep]
        seg = 0
        if name == "input":
            tt = None if batch.token_type is None else batch.token_type[b][keep]
            seg = _segment_b(self.adapter, ids, tt, self.sep_ids)
        return keep, _inputs.token_names(ids, self.tokenizer), seg, _special_positions(ids, self.tokenizer)


def _example_record(b, selected, adapter, known, batch, tokenizer, sep_ids, config, no_neurons,
                    dtype=None):
    sides = _Sides(b, batch, _side_lengths(batch, selected), adapter, tokenizer, sep_ids, config)
    kinds = []
    for kind, calls in selected.items():
        q_side, k_side = _adapters.KIND_SIDES[kind]
        qi, q_tokens, q_seg, _ = sides(q_side)
        ki, k_tokens, k_seg, k_special = sides(k_side)
        grid = np.ix_(qi, ki)
        attention = _stack_example(calls, b, grid, qi, ki, last=b == batch.size - 1,
                                   final_dtype=dtype)
        neurons = _neurons(calls, b, qi, ki, grid) if all(c.neurons is not None for c in calls) else None
        record = KindRecord(
            name=kind, attention=np.ascontiguousarray(attention), query_tokens=q_tokens,
            key_tokens=k_tokens, layer_ids=tuple(c.layer for c in calls),
            query_segment_b=q_seg if q_side == "input" else 0,
            key_segment_b=k_seg if k_side == "input" else 0,
            causal=_causal(calls, b, grid, attention, adapter, known, config, kind),
            neurons=neurons, key_special=k_special, no_neurons=no_neurons.get(kind, ""),
            has_sinks=any(c.has_sinks for c in calls))
        validate_kind(record)
        kinds.append(record)
    record = AttentionRecord(kinds, model_type=adapter.model_type, image=sides.image)
    validate_image(record)
    return record


def _neurons(calls, b, qi, ki, grid):
    ns = [c.neurons for c in calls]
    L, H = len(ns), ns[0].queries.shape[1]
    bias = None
    if any(n.bias is not None for n in ns):
        shape = (H, len(qi), len(ki))
        bias = np.stack([n.bias[b][:, grid[0], grid[1]] if n.bias is not None
                         else np.zeros(shape, np.float32) for n in ns])
    sinks = None
    if any(n.sinks is not None for n in ns):
        sinks = np.stack([n.sinks if n.sinks is not None else np.full(H, -np.inf, np.float32)
                          for n in ns]).astype(np.float32)
    softcaps = np.array([n.softcap for n in ns], np.float32)
    return Neurons(
        queries=np.stack([n.queries[b][:, qi] for n in ns]),
        keys=_stack_keys([n.keys[b][:, ki] for n in ns], H),
        scales=np.array([n.scale for n in ns], np.float32),
        masked=np.stack([n.masked[b][grid] for n in ns]),
        bias=bias, softcaps=softcaps if softcaps.any() else None, sinks=sinks)


def _stack_keys(keys, H):
    """[L, Hk, Tk, D] of each layer's keys; per query head if the layers
    group their heads differently."""
    if len({k.shape[0] for k in keys}) > 1:
        keys = [expand_keys(k, H // k.shape[0], axis=0) for k in keys]
    return np.stack(keys)


def _causal(calls, b, grid, attention, adapter, known, config, kind):
    """No query attends to a later key: read from the mask the model used
    when the probe saw it, else from the adapter, else from the weights."""
    T = attention.shape[-1]
    if attention.shape[-2] != T or T < 2:
        return adapter.is_causal(config, kind)
    upper = np.triu(np.ones((T, T), bool), 1)
    if all(c.via_interface for c in calls):  # no mask: every key is seen
        return all(c.masked is not None and bool(c.masked[b][grid][upper].all()) for c in calls)
    if known:
        return adapter.is_causal(config, kind)
    return bool(np.all(attention[..., upper] < 1e-6))


def _special_positions(ids, tokenizer):
    """Positions of the tokens the tokenizer marks special (all_special_ids,
    except the unknown token), for the special_tokens statistic; None without
    a tokenizer (unknown)."""
    if tokenizer is None:
        return None
    special = set(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or ()))
    unk = getattr(tokenizer, "unk_token_id", None)
    special.discard(unk)
    return tuple(int(j) for j in np.flatnonzero(np.isin(ids, sorted(special))))
