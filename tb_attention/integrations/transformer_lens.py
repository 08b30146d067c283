"""capture for TransformerLens models, through their own hook points.

    bridge = TransformerBridge.boot_transformers("gpt2")      # TransformerLens 4
    record = tb_attention.capture(bridge, bridge.to_tokens("The cat sat"), neurons=True)

tb_attention.capture hands any TransformerLens model (a HookedRootModule:
TransformerLens 4's TransformerBridge, or the HookedTransformer of earlier
versions, which names its hooks the same) to `capture` here. One forward
pass (eval mode, no gradients, training flags and RNG state put back)
caches, per layer:

- `blocks.{l}.attn.hook_pattern`: the attention, stored as it is (it is the
  model's own pattern: what the dashboard shows is what TransformerLens shows);
- with neurons=True, `hook_q` / `hook_k` (`hook_rot_q` / `hook_rot_k`, after
  rotary, where the model has them; grouped keys repeated per head as the
  model does) and `hook_attn_scores`: the scale is the model's (cfg.attn_scale
  or sqrt(d_head)); masked positions are those the scores mask (or, where
  the scores hook does not carry pre-softmax scores, the causal mask and the
  padding); whatever the scores hold beyond q.k * scale (ALiBi, soft-capping)
  is the score bias. The neurons are kept only when their softmax gives the
  pattern back within NEURON_TOLERANCE; otherwise a NeuronsNotSupportedWarning
  says so and the attention is logged alone (TransformerLens 4.3's
  TL-native rotary models expose no rotated q/k, for one).
"""
import warnings

import numpy as np

from tb_attention.capturing import NO_TOKENIZER_FORMAT, NeuronsNotSupportedWarning, _special_positions
from tb_attention.record import (AttentionInputError, AttentionRecord, KindRecord, Neurons,
                                 softmax_scores, validate_kind)

NEURON_TOLERANCE = 1e-3
_MASKED_BELOW = -1e9  # scores at or below this are masked (TL: -inf; HF: finfo.min)


def is_transformer_lens_model(model):
    """A TransformerLens HookedRootModule with attention hooks (checked without
    importing transformer_lens)."""
    return (any(c.__module__.split(".")[0] == "transformer_lens" for c in type(model).__mro__)
            and callable(getattr(model, "run_with_cache", None)) and hasattr(model, "cfg"))


def encode_text(model, text, tokenizer=None):
    """Model inputs ({"input_ids": [1, T], ...}) for one probe text: a str goes
    through the model's own to_tokens (BOS prepended as TransformerLens does),
    else through `tokenizer`; token ids and input dicts are taken as given."""
    import torch

    if isinstance(text, str):
        if getattr(model, "tokenizer", None) is not None:
            inputs = {"input_ids": model.to_tokens(text)}
        elif tokenizer is not None:
            inputs = {"input_ids": tokenizer(text, return_tensors="pt")["input_ids"]}
        else:
            raise AttentionInputError("probe text %r is a string but the TransformerLens model has no "
                                      "tokenizer: pass a tokenizer, or token ids" % text[:50])
    elif isinstance(text, dict):
        inputs = dict(text)
    else:
        inputs = {"input_ids": text}
    ids, _ = _inputs(model, inputs)
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if isinstance(n_ctx, int) and ids.shape[-1] > n_ctx:
        raise AttentionInputError("probe text is %d tokens long; the model takes at most %d (cfg.n_ctx)"
                                  % (ids.shape[-1], n_ctx))
    return inputs


def capture(model, inputs, tokenizer=None, neurons=False, layers=None):
    """AttentionRecords (one per example) of a TransformerLens model; see the module doc."""
    if not isinstance(neurons, (bool, np.bool_)):
        raise AttentionInputError("neurons must be True or False, got %r" % (neurons,))
    ids, mask = _inputs(model, inputs)
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    cfg = model.cfg
    selected = _layers(layers, int(cfg.n_layers))
    cache = _run(model, ids, mask, selected, neurons)
    causal = getattr(cfg, "attention_dir", "causal") == "causal"
    records = []
    for b in range(ids.shape[0]):
        keep = np.ones(ids.shape[1], bool) if mask is None else mask[b].numpy().astype(bool)
        if not keep.any():
            raise AttentionInputError("example %d has no tokens left after removing padding" % b)
        grid = np.ix_(keep, keep)
        attention = np.stack([cache[l]["pattern"][b][:, grid[0], grid[1]] for l in selected])
        kept_ids = ids[b].numpy()[keep]
        kind_neurons = None
        if neurons:
            kind_neurons = _neurons(cfg, [cache[l] for l in selected], b, keep, causal, attention)
        record = KindRecord(
            name="self", attention=np.ascontiguousarray(attention, dtype=np.float32),
            query_tokens=_names(kept_ids, tokenizer), key_tokens=_names(kept_ids, tokenizer),
            layer_ids=tuple(selected), causal=causal, neurons=kind_neurons,
            key_special=_special_positions(kept_ids, tokenizer))
        validate_kind(record)
        records.append(AttentionRecord([record], model_type=_model_type(model)))
    return records


def _inputs(model, inputs):
    import torch

    if isinstance(inputs, str):
        inputs = encode_text(model, inputs)
    mask = None
    if isinstance(inputs, dict) or hasattr(inputs, "keys"):
        if "input_ids" not in inputs:
            raise AttentionInputError("inputs need input_ids (keys: %s)" % sorted(inputs.keys()))
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    else:
        ids = inputs
    ids = ids if torch.is_tensor(ids) else torch.as_tensor(ids)
    if ids.ndim == 1:
        ids = ids.unsqueeze(0)
    if ids.ndim != 2 or ids.is_floating_point() or ids.shape[1] == 0:
        raise AttentionInputError("input_ids must be ints of shape [T] or [B, T], got %s %s"
                                  % (ids.dtype, tuple(ids.shape)))
    if mask is not None:
        mask = (mask if torch.is_tensor(mask) else torch.as_tensor(mask)).reshape(ids.shape).cpu()
        if bool(mask.all()):
            mask = None
    return ids, mask


def _layers(layers, n_layers):
    if isinstance(layers, dict):
        unknown = set(layers) - {"self"}
        if unknown:
            raise AttentionInputError("a TransformerLens model has only 'self' attention; layers names %s"
                                      % sorted(unknown))
        layers = layers.get("self")
    if layers is None:
        return list(range(n_layers))
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -n_layers <= i < n_layers:
            raise AttentionInputError("layer %r does not exist: the model has %d layers" % (i, n_layers))
        out.append(int(i) % n_layers)
    if len(set(out)) != len(out):
        raise AttentionInputError("layers repeat: %s" % list(layers))
    return sorted(out)


_HOOKS = ("hook_pattern", "hook_q", "hook_k", "hook_rot_q", "hook_rot_k", "hook_attn_scores")


def _run(model, ids, mask, selected, neurons):
    """{layer: {hook short name: float32 numpy array}} of one probe pass."""
    import torch

    wanted = {"blocks.%d.attn.%s" % (l, h) for l in selected
              for h in (_HOOKS if neurons else _HOOKS[:1])}
    training = [(m, m.training) for m in model.modules()]
    device = _device(model)
    kwargs = {} if mask is None else {"attention_mask": mask.to(device)}
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            _, cache = model.run_with_cache(ids.to(device), names_filter=lambda n: n in wanted,
                                            return_cache_object=False, **kwargs)
    finally:
        for m, flag in training:
            m.training = flag
    out = {l: {} for l in selected}
    for name, value in cache.items():
        layer, hook = int(name.split(".")[1]), name.rsplit(".", 1)[1]
        out[layer][hook[5:]] = value.detach().float().cpu().numpy()
    missing = [l for l in selected if "pattern" not in out[l]]
    if missing:
        raise AttentionInputError("the model's blocks.%d.attn.hook_pattern did not fire" % missing[0])
    return out


def _device(model):
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _neurons(cfg, layer_caches, b, keep, causal, attention):
    """Neurons of example b rebuilt from the hooks, or None (with a warning)
    when the hooks do not give the pattern back."""
    grid = np.ix_(keep, keep)
    T = int(keep.sum())
    scale = _scale(cfg)
    queries, keys, masked, bias = [], [], [], []
    for c in layer_caches:
        q = c.get("rot_q", c.get("q"))
        k = c.get("rot_k", c.get("k"))
        if q is None or k is None:
            return _no_neurons("the model has no hook_q / hook_k")
        q, k = q[b][keep].transpose(1, 0, 2), k[b][keep].transpose(1, 0, 2)  # [H, T, D]
        if k.shape[0] != q.shape[0]:  # grouped keys, repeated per head as the model does
            k = np.repeat(k, q.shape[0] // k.shape[0], axis=0)
        raw = np.matmul(q, k.transpose(0, 2, 1)) * scale
        scores = c.get("attn_scores")
        pre_softmax = scores is not None and not np.allclose(scores, c["pattern"])
        if pre_softmax:
            scores = scores[b][:, grid[0], grid[1]]
            m = np.all(scores <= _MASKED_BELOW, axis=0)
            extra = np.where(m, 0.0, scores - raw)
        else:
            m = np.triu(np.ones((T, T), bool), 1) if causal else np.zeros((T, T), bool)
            extra = np.zeros_like(raw)
        queries.append(q)
        keys.append(k)
        masked.append(m)
        bias.append(extra.astype(np.float32))
    bias = np.stack(bias)
    if np.abs(bias).max() <= 1e-5 * max(1.0, np.abs(np.stack(queries)).max()):
        bias = None
    n = Neurons(queries=np.stack(queries).astype(np.float32), keys=np.stack(keys).astype(np.float32),
                scales=np.full(len(layer_caches), scale, np.float32), masked=np.stack(masked), bias=bias)
    error = float(np.abs(softmax_scores(n.queries, n.keys, n.scales, n.masked, n.bias) - attention).max())
    if not error <= NEURON_TOLERANCE:
        return _no_neurons("softmax(q.k * scale) differs from hook_pattern by up to %.3g" % error)
    return n


def _scale(cfg):
    if not getattr(cfg, "use_attn_scale", True):
        return 1.0
    attn_scale = getattr(cfg, "attn_scale", -1.0)
    if attn_scale is not None and attn_scale > 0:
        return 1.0 / float(attn_scale)
    return 1.0 / float(np.sqrt(cfg.d_head))


def _no_neurons(why):
    warnings.warn("tb_attention.capture: the neurons (queries/keys) of this TransformerLens model "
                  "cannot be rebuilt from its hooks (%s); capturing attention only" % why,
                  NeuronsNotSupportedWarning, stacklevel=4)
    return None


def _names(ids, tokenizer):
    """Token strings: the tokenizer's, else "id:<id>" as capture names them."""
    ids = [int(i) for i in ids]
    names = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [None] * len(ids)
    return tuple(n if isinstance(n, str) else NO_TOKENIZER_FORMAT % i for n, i in zip(names, ids))


def _model_type(model):
    """The wrapped transformers model's type ("gpt2"), else "transformer_lens"."""
    original = getattr(model, "original_model", None)
    config = getattr(original, "config", None)
    model_type = getattr(config, "model_type", None)
    return model_type if isinstance(model_type, str) and model_type else "transformer_lens"
