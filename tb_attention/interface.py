"""The probe pass: one forward of a transformers model that returns its
attention weights and, where the model's attention runs through
transformers' AttentionInterface, the queries, keys and score terms behind
them.

Pass 1 registers tb-attention's own attention function in the
AttentionInterface (and eager's additive float masks under the same name in
the AttentionMaskInterface) and runs the model with it and
`output_attentions=True`. The function calls the model's own
`eager_attention_forward`, so the weights are eager's, and it records what
each call was given. Which call is which layer of which kind comes from the
model's own `output_attentions`: the tensors it returns are the ones the
function returned (matched by identity, else by value). Nothing depends on
the model type: a model whose layers never call the function simply returns
attentions nothing matches.

When pass 1 cannot account for every attention the model returns (layers
that compute attention their own way), pass 2 runs the model in plain eager
mode with `output_attentions=True`: weights only, no neurons.

Neurons are checked while the model runs: for every call the softmax of
the recorded terms (scores.py) must give back the weights the model
computed; a call that does anything else between q.k and the softmax makes
its kind "attention only", with the reason.

Afterwards every module's train/eval flag, every config's attention
implementation, the output-capturing hooks transformers installs for
`output_attentions` and the torch RNG states (CPU and CUDA) are put back
exactly as they were, also when the forward raises.
"""
import collections
import contextlib
import dataclasses
import sys
import threading
from typing import Any, Dict, List, Optional

import numpy as np

from . import scores as _scores
from .record import AttentionInputError

PROBE_IMPLEMENTATION = "tb_attention_probe"

# output field of a transformers model output -> attention kind
OUTPUT_FIELDS = (
    ("self", "attentions"),
    ("encoder", "encoder_attentions"),
    ("decoder", "decoder_attentions"),
    ("cross", "cross_attentions"),
)


@dataclasses.dataclass
class AttentionCall:
    """One attention computation of the probe pass (numpy, float32, batch kept)."""

    name: str  # qualified module name, where the computation lives
    kind: str
    layer: int
    attention: np.ndarray  # [B, H, Tq, Tk] (other layouts are converted or refused later)
    neurons: Optional["_scores.CallNeurons"] = None
    masked: Optional[np.ndarray] = None  # bool [B, Tq, Tk] as the model masked it, when seen
    has_sinks: bool = False
    extra: Optional[np.ndarray] = None  # an adapter's extra output for this layer (Longformer)
    via_interface: bool = False  # computed by the probe function (else read from eager outputs)
    # (min, max, largest row sum) of the model's weights, taken on its device
    # when `attention` holds them quantized (capture(..., dtype=...))
    value_range: Any = None


@dataclasses.dataclass
class PassResult:
    calls: List[AttentionCall]
    # kind -> why its neurons are missing (only for kinds that miss them, when asked)
    no_neurons: Dict[str, str]
    route: str  # "interface" or "eager"


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
        weights = session.record(module, query, key, attention_mask, scaling, kwargs, weights)
    return out, weights


class _Session:
    """What the probe function saw during one forward."""

    def __init__(self, model, neurons, early=None):
        self.neurons = neurons
        # early(weights) -> what is kept of them, taken during the call; the
        # model then gets a stand-in of their shape (one element, broadcast),
        # so its output_attentions holds no layer's weights: at 32 x 32 x 2048
        # those are 16 GiB of float32 (512 MiB a layer), the record 4 of uint8
        self.early = early
        self.names = {id(m): n for n, m in model.named_modules()}
        # (name, weights tensor or its stand-in, CallNeurons or reason str or None, masked, sinks,
        #  what early() kept or None)
        self.seen = []
        self.counts = collections.Counter()
        self.masks = {}  # id(mask tensor) -> (tensor, hard mask numpy), shared by layers

    def record(self, module, query, key, mask, scaling, kwargs, weights):
        name = self.names.get(id(module))
        if name is None:
            return  # not this model's module
        if weights is None:
            raise RuntimeError("the eager attention of %s returned no weights" % name)
        n = self.counts[name]
        self.counts[name] += 1
        if n:
            name = "%s#%d" % (name, n)  # one module called for several layers (ALBERT)
        terms = _scores.terms(module, query, key, mask, scaling, kwargs)
        neurons = _scores.capture(terms, weights) if self.neurons else None
        kept = None
        if self.early is not None:
            kept = self.early(weights)
            weights = weights.new_zeros(()).expand(weights.shape)
        self.seen.append((name, weights, neurons, self._hard_mask(mask, query, key),
                          terms.sinks is not None, kept))
        return weights

    def _hard_mask(self, mask, query, key):
        if mask is None:
            return None
        cached = self.masks.get(id(mask))
        if cached is None or cached[0] is not mask:
            cached = (mask, _scores.hard_mask(mask, query.shape[0], query.shape[-2], key.shape[-2]))
            self.masks[id(mask)] = cached
        return cached[1]


def _np(t):
    # A copy, never a view: nothing the model does in place later can change it.
    return np.array(t.detach().float().cpu().numpy(), dtype=np.float32, copy=True)


def keep_float32(kind, t):
    """run()'s default keep: the weights as float32 numpy, no value range."""
    return _np(t), None


def configs_of(model):
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
_PLAIN = (str, int, float, bool, type(None))


class _ModuleState:
    """What a forward may change in a module besides its tensors: its
    children (BigBird swaps its attention modules for short inputs), plain
    attributes (its attention_type), the training flag and forward hooks
    (transformers installs some for output_attentions on first use)."""

    def __init__(self, m):
        self.m = m
        self.training = m.training
        self.children = dict(m._modules)
        self.hooks = set(m._forward_hooks)
        self.plain = {k: v for k, v in vars(m).items() if isinstance(v, _PLAIN) and k != "training"}

    def restore(self):
        m = self.m
        m.training = self.training
        if dict(m._modules) != self.children:
            m._modules.clear()
            m._modules.update(self.children)
        for key in [k for k in m._forward_hooks if k not in self.hooks]:
            del m._forward_hooks[key]
        for k, v in list(vars(m).items()):
            if k in self.plain:
                if v is not self.plain[k] and v != self.plain[k]:
                    setattr(m, k, self.plain[k])
            elif isinstance(v, _PLAIN) and k != "training" and not k.startswith("_abc"):
                delattr(m, k)  # added by the forward (e.g. the hooks-installed flag)


@contextlib.contextmanager
def probe_mode(model, implementation):
    """eval mode, no grad, `implementation` on every config; restore exactly
    (module states, implementations, RNG)."""
    import torch

    modules = [_ModuleState(m) for m in model.modules()]
    impls = [(c, c.__dict__.get("_attn_implementation_internal", _MISSING)) for c in configs_of(model)]
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
        for m in modules:
            m.restore()
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _outputs(out, extras):
    """[(kind, [tensor per layer], [extra per layer or None])] of a model output."""
    found = []
    for kind, field in OUTPUT_FIELDS:
        per_layer = getattr(out, field, None) if not isinstance(out, dict) else out.get(field)
        if not per_layer:
            continue
        layers = [a[0] if isinstance(a, (tuple, list)) else a for a in per_layer]  # XLNet: content stream
        if any(a is None for a in layers):
            continue
        extra = getattr(out, extras[kind], None) if kind in extras else None
        found.append((kind, layers, list(extra) if extra else [None] * len(layers)))
    return found


def _forward(model, implementation, kwargs, session=None):
    previous = getattr(_ACTIVE, "session", None)
    _ACTIVE.session = session
    try:
        with probe_mode(model, implementation):
            return model(**kwargs, output_attentions=True)
    finally:
        _ACTIVE.session = previous


def _match(session, tensor, used):
    """Index of the call whose weights are `tensor`: the same tensor, else the
    one unused call with equal values (several equal ones, as a one-token
    decoder's all-ones layers, would be a guess: then None)."""
    seen = session.seen
    for i, call in enumerate(seen):
        if call[1] is tensor and i not in used:
            return i
    equal = [i for i, call in enumerate(seen) if i not in used
             and tuple(call[1].shape) == tuple(tensor.shape) and bool((call[1] == tensor).all())]
    return equal[0] if len(equal) == 1 else None


def _interface_calls(session, outputs, keep):
    """AttentionCalls of pass 1, or None when an attention the model returned
    does not come from the probe function."""
    calls, used = [], set()
    for kind, layers, extra in outputs:
        for layer, (a, x) in enumerate(zip(layers, extra)):
            i = _match(session, a, used)
            if i is None:
                return None
            used.add(i)
            name, weights, neurons, masked, sinks, kept = session.seen[i]
            attention, value_range = keep(kind, weights if kept is None else kept)
            calls.append(AttentionCall(name=name, kind=kind, layer=layer, attention=attention,
                                       neurons=neurons, masked=masked, has_sinks=sinks,
                                       extra=None if x is None else _np(x), via_interface=True,
                                       value_range=value_range))
    return calls


def run(model, kwargs, neurons, extras=None, interface=True, keep=keep_float32,
        early=None) -> PassResult:
    """The attention calls of one forward of `model` on `kwargs`.

    extras: kind -> name of an output field to hand over with each layer
    (an adapter's: Longformer's global attentions). interface=False skips
    pass 1 (model types known to compute attention their own way).
    keep(kind, weights tensor) -> (AttentionCall.attention, .value_range):
    what is kept of each layer's weights (float32 numpy by default;
    capture(..., dtype=) quantizes on the device, tb_attention.device).
    early(weights tensor) -> what keep() is then given instead of the
    weights, taken inside each call of pass 1 (see _Session)."""
    extras = extras or {}
    if interface:
        _register()
        calls, seen = _interface_pass(model, kwargs, neurons, extras, keep, early)
        if calls is None and early is not None and seen:
            # a model that does something with the weights it returns besides
            # returning them (a stand-in would not do): once more, keeping them
            calls, seen = _interface_pass(model, kwargs, neurons, extras, keep, None)
        if calls:
            return PassResult(calls, _neuron_reasons(calls, neurons, model), "interface")
    out = _forward(model, "eager", kwargs)
    outputs = _outputs(out, extras)
    if not outputs:
        raise AttentionInputError(
            "%s returned no attention weights with output_attentions=True in eager mode: "
            "nothing to capture" % type(model).__name__)
    calls = [AttentionCall(name="%s.%d" % (dict(OUTPUT_FIELDS)[kind], layer), kind=kind, layer=layer,
                           attention=None, extra=None if x is None else _np(x))
             for kind, layers, extra in outputs for layer, (a, x) in enumerate(zip(layers, extra))]
    arrays = [a for _, layers, _ in outputs for a in layers]
    for c, a in zip(calls, arrays):
        c.attention, c.value_range = keep(c.kind, a)
    if interface and seen:
        why = ("the attention it returns is not what its calls of transformers' AttentionInterface "
               "computed (it splits or post-processes those weights, or computes some layers its own "
               "way), so queries and keys cannot be matched to it")
    else:
        why = ("its attention layers do not run through transformers' AttentionInterface (they "
               "compute attention their own way), so tb-attention sees no queries and keys")
    return PassResult(calls, {k: why for k in dict.fromkeys(c.kind for c in calls)} if neurons else {},
                      "eager")


def _interface_pass(model, kwargs, neurons, extras, keep, early):
    """(AttentionCalls of pass 1 or None: pass 2 then; whether the model's
    layers called the probe function)."""
    session = _Session(model, neurons, early)
    try:
        out = _forward(model, PROBE_IMPLEMENTATION, kwargs, session)
    except Exception:
        if session.seen and early is None:
            raise  # the model's layers ran through the probe: a real error
        return None, bool(session.seen)  # an unknown implementation refused: plain eager below
    outputs = _outputs(out, extras)
    return (_interface_calls(session, outputs, keep) if outputs else None), bool(session.seen)


def _neuron_reasons(calls, neurons, model):
    """kind -> the first reason a call of that kind has no faithful neurons."""
    reasons = {}
    if not neurons:
        return reasons
    for c in calls:
        if not isinstance(c.neurons, _scores.CallNeurons) and c.kind not in reasons:
            reasons[c.kind] = "%s: %s" % (c.name, c.neurons or "no neurons recorded")
    for c in calls:
        if c.kind in reasons:
            c.neurons = None
    return reasons
