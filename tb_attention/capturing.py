"""capture: run a transformers model once and return its attention.

    record = tb_attention.capture(model, inputs, tokenizer=tok, neurons=True)

One probe pass, in eval mode and without gradients, through an attention
implementation that returns weights:

- route "interface" (most models): tb-attention registers its own attention
  function in transformers' AttentionInterface (and eager's additive float
  masks under the same name in AttentionMaskInterface) and switches the model
  to it for the pass. Each attention call then hands it the module, queries,
  keys (after RoPE, before grouped keys are repeated), the additive mask, the
  scaling and any score bias (T5's `position_bias`). It delegates to the
  model's own `eager_attention_forward`, so the weights are exactly eager's,
  and records them with the inputs behind them.
- route "outputs" (XLM, XLNet and model types without an adapter): eager mode
  and output_attentions=True; weights only.

Afterwards every module's train/eval flag, every config's attention
implementation and the torch RNG states (CPU and CUDA) are put back exactly as
they were, also when the forward raises.

Which modules hold which kind of attention, and everything else that differs
between architectures, is in `adapters.py`.
"""
import collections
import contextlib
import dataclasses
import inspect
import sys
import threading
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import adapters as _adapters
from .record import AttentionInputError, AttentionRecord, KindRecord, Neurons, validate_kind

PROBE_IMPLEMENTATION = "tb_attention_probe"
NO_TOKENIZER_FORMAT = "id:%d"  # token strings without a tokenizer: "id:2023"

# Keys a tokenizer may return that no model takes.
_TOKENIZER_ONLY_KEYS = ("special_tokens_mask", "offset_mapping", "length",
                        "overflow_to_sample_mapping", "num_truncated_tokens")


class NeuronsNotSupportedWarning(UserWarning):
    """capture(..., neurons=True) on an architecture without neuron support:
    the attention is captured, the queries/keys are not."""


# --------------------------------------------------------------------------
# Public API


def capture(model, inputs, tokenizer=None, neurons: bool = False,
            layers: Union[None, Sequence[int], Mapping[str, Sequence[int]]] = None
            ) -> Union[AttentionRecord, List[AttentionRecord]]:
    """Attention of `model` on `inputs`, as an AttentionRecord.

    model: a transformers PreTrainedModel (any head; see adapters.ADAPTERS for
        the architectures with a dedicated adapter; others fall back to
        output_attentions, without neurons).
    inputs: a BatchEncoding / dict of tensors (input_ids required; attention_mask,
        token_type_ids, decoder_input_ids, decoder_attention_mask, labels
        optional) or an input_ids tensor ([T] or [B, T]).
        Encoder-decoder models: without decoder_input_ids the decoder gets the
        labels shifted right behind the decoder start token (as the model does
        in training); without labels either, what the model itself would do:
        BART shifts input_ids right, T5 (which would refuse) gets the decoder
        start token alone (the first step of generation).
    tokenizer: gives the token strings (convert_ids_to_tokens, unchanged) and
        the separator id for sentence pairs. Without it tokens are "id:<id>".
    neurons: also capture queries, keys, scales, mask and score bias. On an
        architecture without neuron support this warns
        (NeuronsNotSupportedWarning, listing the supported model types) and
        returns the attention without neurons.
    layers: layer indices to keep (negative counts from the end), for every
        kind, or a dict kind -> indices. All layers by default.

    Returns one AttentionRecord for a batch of one, else a list with one record
    per example, padding positions (attention_mask == 0) removed. Removing
    padding does not undo its effect on the model: with left padding, models
    that number positions from the start of the row (GPT-2) compute something
    else than for the unpadded example, and the record shows what they computed.
    """
    records = _capture(model, inputs, tokenizer, neurons, layers)
    return records[0] if len(records) == 1 else records


def capture_batch(model, inputs, tokenizer=None, neurons: bool = False, layers=None
                  ) -> List[AttentionRecord]:
    """As `capture`, but always a list (one record per example)."""
    return _capture(model, inputs, tokenizer, neurons, layers)


def _check_arguments(model, tokenizer, neurons):
    if not callable(model) or getattr(model, "config", None) is None:
        raise AttentionInputError("model must be a transformers model (a PreTrainedModel, with a "
                                  ".config), got %s" % type(model).__name__)
    if tokenizer is not None and not callable(getattr(tokenizer, "convert_ids_to_tokens", None)):
        raise AttentionInputError("tokenizer must be a transformers tokenizer (with "
                                  "convert_ids_to_tokens) or None, got %s" % type(tokenizer).__name__)
    if not isinstance(neurons, (bool, np.bool_)):
        raise AttentionInputError("neurons must be True or False, got %r" % (neurons,))


def _capture(model, inputs, tokenizer, neurons, layers):
    from tb_attention.integrations import transformer_lens  # its own hook points, not transformers'

    if transformer_lens.is_transformer_lens_model(model):
        return transformer_lens.capture(model, inputs, tokenizer=tokenizer, neurons=neurons, layers=layers)
    _check_arguments(model, tokenizer, neurons)
    adapter, known = _adapters.for_model(model)
    if neurons and not adapter.neurons:
        warnings.warn(
            "tb_attention.capture: neurons (queries/keys) are not supported for model type %r; "
            "capturing attention only. Neurons are supported for: %s"
            % (adapter.model_type, ", ".join(_adapters.neuron_model_types())),
            NeuronsNotSupportedWarning, stacklevel=_caller_stacklevel())
        neurons = False
    batch = _prepare_inputs(model, inputs, adapter)
    calls = _run_probe(model, adapter, batch.model_kwargs, neurons)
    selected = _select_layers(calls, adapter, layers)
    sep_ids = _separator_ids(adapter, tokenizer, model.config)
    return [
        _example_record(b, selected, adapter, known, batch, tokenizer, sep_ids, model.config)
        for b in range(batch.size)
    ]


def _caller_stacklevel():
    """warnings.warn stacklevel of the first frame outside tb_attention, seen
    from the function calling this one (so warnings name the user's line also
    through tb_attention.capture in __init__)."""
    level, frame = 1, sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("tb_attention"):
        level += 1
        frame = frame.f_back
    return level + 1


def probe(model, inputs, neurons: bool = False) -> List["AttentionCall"]:
    """The raw attention calls of one probe pass, batch dimension kept, each
    named by the module it happened in (e.g. "encoder.layer.3.attention.self";
    a module shared across layers, as in ALBERT, gets "#<call>" appended).
    For debugging and for building other views; `capture` is built on it."""
    adapter, _ = _adapters.for_model(model)
    if neurons and not adapter.neurons:
        raise AttentionInputError(
            "no neurons for model type %r; supported: %s"
            % (adapter.model_type, ", ".join(_adapters.neuron_model_types())))
    batch = _prepare_inputs(model, inputs, adapter)
    return _run_probe(model, adapter, batch.model_kwargs, neurons)


@dataclasses.dataclass
class AttentionCall:
    """One attention computation of the probe pass (numpy, float32, batch kept)."""

    name: str  # qualified module name, where the computation lives
    kind: str
    layer: int
    attention: np.ndarray  # [B, H, Tq, Tk]
    queries: Optional[np.ndarray] = None  # [B, H, Tq, D]
    keys: Optional[np.ndarray] = None  # [B, H, Tk, D], expanded per query head
    scale: Optional[float] = None
    masked: Optional[np.ndarray] = None  # bool [B, Tq, Tk]
    bias: Optional[np.ndarray] = None  # [B, H, Tq, Tk] or None when zero


# --------------------------------------------------------------------------
# Inputs


@dataclasses.dataclass
class _Batch:
    size: int
    model_kwargs: Dict[str, Any]
    ids: Dict[str, np.ndarray]  # side -> int64 [B, T]
    keep: Dict[str, np.ndarray]  # side -> bool [B, T], False = padding
    token_type: Optional[np.ndarray]  # [B, T] for side "input", or None


def _as_tensor(value, name):
    import torch

    if torch.is_tensor(value):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, (list, tuple)):
        try:
            return torch.tensor(value)
        except (TypeError, ValueError) as e:
            raise AttentionInputError(
                "inputs[%r] is not a (nested) list of numbers: %s" % (name, e)) from None
    return value


def _forward_parameters(model):
    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}


def _prepare_inputs(model, inputs, adapter) -> _Batch:
    import torch

    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                   and isinstance(inputs[0], str)):
        raise AttentionInputError(
            "capture takes token ids, not text: tokenize first, e.g. "
            "capture(model, tokenizer(text, return_tensors='pt'), tokenizer=tokenizer)")
    if torch.is_tensor(inputs) or isinstance(inputs, (np.ndarray, list, tuple)):
        inputs = {"input_ids": inputs}
    elif isinstance(inputs, Mapping):
        inputs = dict(inputs)
    else:
        raise AttentionInputError(
            "inputs must be a BatchEncoding / dict of tensors or an input_ids tensor, got %s"
            % type(inputs).__name__)
    if inputs.get("input_ids") is None:
        raise AttentionInputError(
            "inputs have no input_ids (keys: %s): capture needs token ids to name the tokens"
            % sorted(inputs))
    inputs = {k: _as_tensor(v, k) for k, v in inputs.items()}
    for k, v in list(inputs.items()):
        if torch.is_tensor(v) and v.ndim == 1 and k in (
                "input_ids", "attention_mask", "token_type_ids", "decoder_input_ids",
                "decoder_attention_mask", "labels", "position_ids"):
            inputs[k] = v.unsqueeze(0)

    input_ids = inputs["input_ids"]
    if input_ids.ndim != 2 or input_ids.is_floating_point():
        raise AttentionInputError(
            "input_ids must be integer token ids of shape [batch, tokens], got %s %s"
            % (input_ids.dtype, tuple(input_ids.shape)))
    B, T = input_ids.shape
    if T == 0:
        raise AttentionInputError("input_ids hold no tokens")
    for k in ("attention_mask", "token_type_ids"):
        v = inputs.get(k)
        if v is not None and tuple(v.shape) != (B, T):
            raise AttentionInputError(
                "inputs[%r] has shape %s but input_ids has %s" % (k, tuple(v.shape), (B, T)))

    ids = {"input": input_ids.detach().cpu().numpy().astype(np.int64)}
    vocab = getattr(model.config, "vocab_size", None)
    if isinstance(vocab, int) and (ids["input"].min() < 0 or ids["input"].max() >= vocab):
        bad = ids["input"][(ids["input"] < 0) | (ids["input"] >= vocab)][0]
        # torch would say "index out of range in self" from inside the embedding
        raise AttentionInputError("input_ids hold token id %d, outside the model's vocabulary 0..%d"
                                  % (bad, vocab - 1))
    mask = inputs.get("attention_mask")
    keep = {"input": np.ones((B, T), bool) if mask is None else mask.detach().cpu().numpy() != 0}
    tt = inputs.get("token_type_ids")
    token_type = None if tt is None else tt.detach().cpu().numpy()

    labels = inputs.pop("labels", None)
    if adapter.encoder_decoder:
        dec, dec_keep = _decoder_inputs(model, inputs, labels, B, adapter.decoder_default, keep["input"])
        ids["decoder"] = dec.detach().cpu().numpy().astype(np.int64)
        keep["decoder"] = dec_keep

    params = _forward_parameters(model)
    for k in _TOKENIZER_ONLY_KEYS:
        inputs.pop(k, None)
    if "token_type_ids" in inputs and params and "token_type_ids" not in params:
        inputs.pop("token_type_ids")  # read for segments only (e.g. DistilBERT)
    if "use_cache" in params and "use_cache" not in inputs:
        inputs["use_cache"] = False
    device = _model_device(model)
    if device is not None:
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
    return _Batch(size=B, model_kwargs=inputs, ids=ids, keep=keep, token_type=token_type)


def _shift_right(ids, start, pad):
    import torch

    shifted = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1)
    return shifted.masked_fill(shifted == -100, pad)


def _decoder_inputs(model, inputs, labels, batch_size, default, input_keep):
    """decoder_input_ids (added to inputs) and the decoder keep mask."""
    import torch

    dec = inputs.get("decoder_input_ids")
    dec_mask = inputs.get("decoder_attention_mask")
    derived_keep = None
    if dec is None:
        config = model.config
        start = getattr(config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None)
        if start is None:
            start = getattr(config, "pad_token_id", None)
        if start is None:
            raise AttentionInputError(
                "encoder-decoder model without decoder_input_ids and without a "
                "decoder_start_token_id in its config: pass decoder_input_ids")
        pad = getattr(config, "pad_token_id", None)
        pad = start if pad is None else pad
        if labels is not None:
            labels = labels.to(inputs["input_ids"].device)
            if labels.ndim != 2 or labels.shape[0] != batch_size:
                raise AttentionInputError("labels must be [batch, tokens], got %s" % (tuple(labels.shape),))
            dec = _shift_right(labels, start, pad)
            label_keep = (labels != -100).cpu().numpy()
            derived_keep = np.concatenate([np.ones((batch_size, 1), bool), label_keep[:, :-1]], axis=1)
        elif default == "shift_input":
            dec = _shift_right(inputs["input_ids"], start, pad)
            derived_keep = np.concatenate([np.ones((batch_size, 1), bool), input_keep[:, :-1]], axis=1)
        else:
            dec = torch.full((batch_size, 1), int(start), dtype=inputs["input_ids"].dtype,
                             device=inputs["input_ids"].device)
        inputs["decoder_input_ids"] = dec
    if dec.ndim != 2 or dec.shape[0] != batch_size or dec.is_floating_point():
        raise AttentionInputError(
            "decoder_input_ids must be integer ids of shape [%d, tokens], got %s"
            % (batch_size, tuple(dec.shape)))
    if dec_mask is not None:
        if tuple(dec_mask.shape) != tuple(dec.shape):
            raise AttentionInputError(
                "decoder_attention_mask has shape %s but decoder_input_ids has %s"
                % (tuple(dec_mask.shape), tuple(dec.shape)))
        keep = dec_mask.detach().cpu().numpy() != 0
    elif derived_keep is not None:
        keep = derived_keep
    else:
        keep = np.ones(tuple(dec.shape), bool)
    return dec, keep


def _model_device(model):
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return None


# --------------------------------------------------------------------------
# The probe pass


_ACTIVE = threading.local()
_REGISTERED = False
_EAGER_CACHE: Dict[type, Any] = {}


def _register():
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(PROBE_IMPLEMENTATION, _probe_attention)
    AttentionMaskInterface.register(PROBE_IMPLEMENTATION, eager_mask)
    _REGISTERED = True


def _generic_eager(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                   position_bias=None, **kwargs):
    """eager attention for modules whose modeling file has no
    `eager_attention_forward`: scores, bias, additive mask, float32 softmax."""
    import torch

    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    w = torch.matmul(query, key.transpose(2, 3)) * scaling
    if position_bias is not None:
        w = w + position_bias
    if attention_mask is not None:
        w = w + attention_mask[:, :, :, : key.shape[-2]]
    w = torch.nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    w = torch.nn.functional.dropout(w, p=dropout, training=module.training)
    return torch.matmul(w, value).transpose(1, 2).contiguous(), w


def _eager_function(module):
    cls = type(module)
    fn = _EAGER_CACHE.get(cls)
    if fn is None:
        fn = getattr(sys.modules.get(cls.__module__), "eager_attention_forward", None) or _generic_eager
        _EAGER_CACHE[cls] = fn
    return fn


def _probe_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The attention function registered as PROBE_IMPLEMENTATION: the model's
    own eager attention, with its inputs and weights recorded."""
    out, weights = _eager_function(module)(
        module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    session = getattr(_ACTIVE, "session", None)
    if session is not None:
        session.record(module, query, key, attention_mask, scaling, kwargs.get("position_bias"), weights)
    return out, weights


class _Session:
    def __init__(self, model, adapter, neurons):
        self.adapter = adapter
        self.neurons = neurons
        self.names = {id(m): n for n, m in model.named_modules()}
        self.calls: List[AttentionCall] = []
        self.counts = collections.Counter()  # calls per module name
        self.order = collections.Counter()  # calls per kind, for shared modules
        self.unmapped = []

    def record(self, module, query, key, mask, scaling, bias, weights):
        name = self.names.get(id(module))
        if name is None:
            return  # not this model's module
        where = self.adapter.locate(name)
        if where is None:
            if name not in self.unmapped:
                self.unmapped.append(name)
            return
        kind, layer = where
        n = self.counts[name]
        self.counts[name] += 1
        if layer is None:  # one module shared by all layers
            layer = self.order[kind]
            name = "%s#%d" % (name, n)
        self.order[kind] += 1
        if weights is None:
            raise RuntimeError("the eager attention of %s returned no weights" % name)
        call = AttentionCall(name=name, kind=kind, layer=layer, attention=_np(weights))
        if self.neurons:
            _add_neurons(call, query, key, mask, scaling, bias)
        self.calls.append(call)


def _np(t):
    # A copy, never a view: nothing the model does in place later can change it.
    return np.array(t.detach().float().cpu().numpy(), dtype=np.float32, copy=True)


def _add_neurons(call, query, key, mask, scaling, bias):
    import torch

    B, H, Tq, D = query.shape
    Tk = key.shape[-2]
    if key.shape[1] != H:
        if H % key.shape[1]:
            raise RuntimeError("%s: %d query heads do not group over %d key heads"
                               % (call.name, H, key.shape[1]))
        key = key.repeat_interleave(H // key.shape[1], dim=1)  # as transformers' repeat_kv
    call.queries = _np(query)
    call.keys = _np(key)
    call.scale = float(scaling) if scaling is not None else float(D) ** -0.5
    soft = None
    if mask is None:
        hard = torch.zeros((B, Tq, Tk), dtype=torch.bool)
    else:
        m = mask[..., :Tk]
        if m.dtype == torch.bool:
            hard4 = ~m
        else:
            hard4 = m <= torch.finfo(m.dtype).min / 2
            rest = torch.where(hard4, torch.zeros((), dtype=m.dtype, device=m.device), m)
            if bool(rest.ne(0).any()):
                soft = rest.float()
        hard4 = hard4.expand(B, hard4.shape[1], Tq, Tk)
        if hard4.shape[1] > 1 and not bool((hard4 == hard4[:, :1]).all()):
            raise AttentionInputError(
                "%s: the attention mask differs between heads; neurons keep one mask per layer"
                % call.name)
        hard = hard4[:, 0]
    call.masked = hard.cpu().numpy()
    total = None
    for part in (bias, soft):
        if part is not None:
            part = part[..., :Tk].float().expand(B, H, Tq, Tk)
            total = part if total is None else total + part
    if total is not None and bool(total.ne(0).any()):
        call.bias = _np(total)


def _configs_of(model):
    """Every config object the model's modules hold, and their sub-configs."""
    from transformers import PretrainedConfig

    found, todo = {}, []
    for m in model.modules():
        c = getattr(m, "config", None)
        if isinstance(c, PretrainedConfig):
            todo.append(c)
    while todo:
        c = todo.pop()
        if id(c) in found:
            continue
        found[id(c)] = c
        for key in getattr(c, "sub_configs", {}) or {}:
            sub = getattr(c, key, None)
            if isinstance(sub, PretrainedConfig):
                todo.append(sub)
    return list(found.values())


_MISSING = object()


@contextlib.contextmanager
def _probe_mode(model, implementation):
    """eval mode, no grad, `implementation` on every config; restore exactly."""
    import torch

    training = [(m, m.training) for m in model.modules()]
    impls = [(c, c.__dict__.get("_attn_implementation_internal", _MISSING)) for c in _configs_of(model)]
    cpu_rng = torch.get_rng_state()
    cuda_rng = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_rng = torch.cuda.get_rng_state_all()
    try:
        model.eval()
        for c, _ in impls:
            c._attn_implementation_internal = implementation
        with torch.no_grad():
            yield
    finally:
        for c, value in impls:
            if value is _MISSING:
                c.__dict__.pop("_attn_implementation_internal", None)
            else:
                c._attn_implementation_internal = value
        for m, flag in training:
            m.training = flag
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _run_probe(model, adapter, model_kwargs, neurons) -> List[AttentionCall]:
    if adapter.route == "interface":
        _register()
        session = _Session(model, adapter, neurons)
        previous = getattr(_ACTIVE, "session", None)
        _ACTIVE.session = session
        try:
            with _probe_mode(model, PROBE_IMPLEMENTATION):
                model(**model_kwargs)
        finally:
            _ACTIVE.session = previous
        calls = session.calls
        if session.unmapped:
            warnings.warn(
                "tb_attention.capture: attention in modules the %r adapter does not map was not "
                "captured: %s" % (adapter.model_type, ", ".join(session.unmapped)), stacklevel=4)
        if not calls:
            raise AttentionInputError(
                "no attention reached tb-attention's probe for model type %r (%s): the model "
                "does not route attention through transformers' AttentionInterface under the "
                "module names its adapter expects (%s)"
                % (adapter.model_type, type(model).__name__,
                   "; ".join("%s: %s" % kp for kp in adapter.modules)))
        return calls
    with _probe_mode(model, "eager"):
        out = model(**model_kwargs, output_attentions=True)
    calls = []
    for kind, field in adapter.outputs:
        per_layer = getattr(out, field, None)
        if not per_layer:
            continue
        for layer, a in enumerate(per_layer):
            if isinstance(a, (tuple, list)):  # XLNet two-stream: (content, query) stream
                a = a[0]
            calls.append(AttentionCall(name="%s.%d" % (field, layer), kind=kind, layer=layer,
                                       attention=_np(a)))
    if not calls:
        raise AttentionInputError(
            "%s returned no attention weights with output_attentions=True in eager mode"
            % type(model).__name__)
    return calls


# --------------------------------------------------------------------------
# From calls to records


def _select_layers(calls, adapter, layers):
    """kind -> calls sorted by layer, restricted to the requested layers."""
    by_kind = collections.OrderedDict()
    for kind in adapter.kinds:
        mine = sorted((c for c in calls if c.kind == kind), key=lambda c: c.layer)
        if mine:
            by_kind[kind] = mine
    for kind, mine in by_kind.items():
        ids = [c.layer for c in mine]
        if len(set(ids)) != len(ids):
            raise RuntimeError("%s attention: layer indices repeat: %s (modules %s)"
                               % (kind, ids, [c.name for c in mine]))
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
    out = collections.OrderedDict()
    for kind, mine in by_kind.items():
        want = wanted[kind]
        if want is None:
            out[kind] = mine
            continue
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
                    "layer %d is not in the %s attention, which has layers 0..%d"
                    % (int(i), kind, n - 1))
            if j not in chosen:
                chosen.append(j)
        if not chosen:
            raise AttentionInputError("layers selects no %s layer" % kind)
        out[kind] = [c for c in mine if c.layer in sorted(chosen)]
    return out


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


def _tokens(ids, tokenizer):
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return tuple(NO_TOKENIZER_FORMAT % i for i in ids)
    toks = tokenizer.convert_ids_to_tokens(ids)
    return tuple(t if isinstance(t, str) else NO_TOKENIZER_FORMAT % i for t, i in zip(toks, ids))


def _example_record(b, selected, adapter, known, batch, tokenizer, sep_ids, config):
    kinds = []
    side_cache = {}

    def side(name):
        if name not in side_cache:
            keep = np.flatnonzero(batch.keep[name][b])
            if keep.size == 0:
                raise AttentionInputError("example %d has no tokens left after removing padding" % b)
            ids = batch.ids[name][b][keep]
            seg = 0
            if name == "input":
                tt = None if batch.token_type is None else batch.token_type[b][keep]
                seg = _segment_b(adapter, ids, tt, sep_ids)
            side_cache[name] = (keep, _tokens(ids, tokenizer), seg)
        return side_cache[name]

    for kind, calls in selected.items():
        q_side, k_side = _adapters.KIND_SIDES[kind]
        qi, q_tokens, q_seg = side(q_side)
        ki, k_tokens, k_seg = side(k_side)
        k_special = _special_positions(batch.ids[k_side][b][ki], tokenizer)
        grid = np.ix_(qi, ki)
        attention = np.stack([c.attention[b][:, grid[0], grid[1]] for c in calls]).astype(np.float32)
        if attention.shape[-2:] != (len(qi), len(ki)):
            raise RuntimeError("%s attention has shape %s for %d x %d tokens"
                               % (kind, attention.shape, len(qi), len(ki)))
        neurons = None
        if calls[0].queries is not None:
            bias = None
            if any(c.bias is not None for c in calls):
                bias = np.stack([
                    c.bias[b][:, grid[0], grid[1]] if c.bias is not None
                    else np.zeros(attention.shape[1:], np.float32) for c in calls])
            neurons = Neurons(
                queries=np.stack([c.queries[b][:, qi] for c in calls]),
                keys=np.stack([c.keys[b][:, ki] for c in calls]),
                scales=np.array([c.scale for c in calls], np.float32),
                masked=np.stack([c.masked[b][grid] for c in calls]),
                bias=bias)
        causal = adapter.is_causal(config, kind)
        if not known and kind == "self":
            causal = _looks_causal(attention)
        record = KindRecord(
            name=kind, attention=np.ascontiguousarray(attention), query_tokens=q_tokens,
            key_tokens=k_tokens, layer_ids=tuple(c.layer for c in calls),
            query_segment_b=q_seg if q_side == "input" else 0,
            key_segment_b=k_seg if k_side == "input" else 0,
            causal=bool(causal), neurons=neurons, key_special=k_special)
        validate_kind(record)
        kinds.append(record)
    return AttentionRecord(kinds, model_type=adapter.model_type)


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


def _looks_causal(attention):
    T = attention.shape[-1]
    if attention.shape[-2] != T or T < 2:
        return False
    upper = np.triu(np.ones((T, T), bool), 1)
    return bool(np.all(attention[..., upper] < 1e-6))
