"""What an attention call does between q.k and the softmax, read from the
arguments transformers hands its attention function, and checked.

The terms, in the order eager attention applies them (record.Neurons):
scaling, logit soft-capping (`softcap`, Gemma 2), an additive score bias
(`position_bias`: T5's relative bias, MPT's ALiBi; and any finite part of an
additive mask), the mask (causal, padding, sliding window, chunks: the
positions the mask sets to -inf or the dtype's minimum) and attention sinks
(`s_aux` / `sinks`: one learned logit per head that takes part in the
softmax and is dropped after it, gpt-oss). Queries and keys are taken as the
function receives them, after RoPE and any q/k norm.

`capture` recomputes the weights from those terms in float32 and compares
them with the weights the model's own eager attention returned: if they
differ by more than the model's precision allows, the call did something
else too (or in another order), and the result is the reason instead of
neurons. This is what makes neurons "the model's real computation" without
a list of model types.
"""
import dataclasses
from typing import Any, Optional

import numpy as np

# largest |recomputed - model's weights| accepted, by the dtype the model computes in
TOLERANCE = {"float32": 1e-4, "float64": 1e-6, "float16": 2e-3, "bfloat16": 1.5e-2}
BIAS_KWARGS = ("position_bias",)
SINK_KWARGS = ("s_aux", "sinks")


@dataclasses.dataclass
class Terms:
    query: Any = None  # torch [B, H, Tq, D]
    key: Any = None  # torch [B, Hk, Tk, D]
    mask: Any = None  # the attention_mask argument, as given
    scale: float = 1.0
    softcap: float = 0.0
    bias: Any = None  # torch, broadcastable to [B, H, Tq, Tk]
    sinks: Any = None  # torch [H]


@dataclasses.dataclass
class CallNeurons:
    """Neurons of one call, numpy, batch kept."""

    queries: np.ndarray  # float32 [B, H, Tq, D]
    keys: np.ndarray  # float32 [B, Hk, Tk, D]: once per key head (grouped keys kept grouped)
    scale: float
    masked: np.ndarray  # bool [B, Tq, Tk]
    bias: Optional[np.ndarray]  # float32 [B, H, Tq, Tk] or None
    softcap: float
    sinks: Optional[np.ndarray]  # float32 [H] or None
    error: float  # max |recomputed - the model's weights|


def terms(module, query, key, mask, scaling, kwargs) -> Terms:
    t = Terms(query=query, key=key, mask=mask)
    t.scale = float(scaling) if scaling is not None else float(query.shape[-1]) ** -0.5
    cap = kwargs.get("softcap")
    t.softcap = float(cap) if isinstance(cap, (int, float)) and cap and cap > 0 else 0.0
    for name in BIAS_KWARGS:
        if kwargs.get(name) is not None:
            t.bias = kwargs[name]
    for name in SINK_KWARGS:
        if kwargs.get(name) is not None:
            t.sinks = kwargs[name]
    if t.sinks is None and _is_tensor(getattr(module, "sinks", None)):
        t.sinks = module.sinks  # eager functions that read module.sinks (gpt-oss)
    return t


def _is_tensor(x):
    import torch

    return torch.is_tensor(x)


def hard_mask(mask, batch, tq, tk):
    """bool numpy [B, Tq, Tk] (True = masked) of an attention_mask argument
    (which may broadcast over the batch or the queries), or None when the mask
    differs between heads."""
    hard4, _ = _split_mask(mask, tk)
    if hard4.shape[1] > 1 and not bool((hard4 == hard4[:, :1]).all()):
        return None
    return hard4[:, 0].expand(batch, tq, tk).cpu().numpy()


def _split_mask(mask, tk):
    """(hard bool [B, h, Tq, Tk], finite additive part or None) of a mask."""
    import torch

    m = mask[..., :tk]
    if m.ndim == 2:
        m = m[:, None, None, :]
    elif m.ndim == 3:
        m = m[:, None]
    if m.dtype == torch.bool:
        return ~m, None
    hard = m <= torch.finfo(m.dtype).min / 2
    rest = torch.where(hard, torch.zeros((), dtype=m.dtype, device=m.device), m)
    return hard, (rest.float() if bool(rest.ne(0).any()) else None)


def capture(t: Terms, weights):
    """CallNeurons of one call, or a str saying why its neurons cannot be
    faithful."""
    import torch

    q, k = t.query, t.key
    B, H, Tq, D = q.shape
    Tk = k.shape[-2]
    if tuple(weights.shape) != (B, H, Tq, Tk):
        return "its weights have shape %s for queries %s and keys %s" % (
            tuple(weights.shape), tuple(q.shape), tuple(k.shape))
    if k.shape[1] != H and (k.shape[1] == 0 or H % k.shape[1]):
        return "%d query heads do not group over %d key heads" % (H, k.shape[1])
    hard = torch.zeros((B, 1, Tq, Tk), dtype=torch.bool)
    soft = None
    if t.mask is not None:
        hard, soft = _split_mask(t.mask, Tk)
        if hard.shape[1] > 1 and not bool((hard == hard[:, :1]).all()):
            return "the mask differs between heads (tb-attention keeps one mask per layer)"
        hard = hard[:, :1].expand(B, 1, Tq, Tk)
    bias = None
    for part in (t.bias, soft):
        if part is not None:
            part = part[..., :Tk].float().expand(B, H, Tq, Tk)
            bias = part if bias is None else bias + part
    sinks = None
    if t.sinks is not None:
        sinks = t.sinks.detach().float().reshape(-1)
        if sinks.numel() != H:
            return "%d sink logits for %d heads" % (sinks.numel(), H)
    q32, k32 = q.detach().float(), k.detach().float()
    masked = hard[:, 0].cpu()
    tol = TOLERANCE.get(str(weights.dtype).replace("torch.", ""), 1e-4)
    error = _error(q32, k32, t.scale, t.softcap, bias, masked, sinks, weights)
    if not error <= tol:
        if sinks is not None and _error(q32, k32, t.scale, t.softcap, bias, masked, None, weights) <= tol:
            return ("its attention function is given sink logits (s_aux) but returns the plain softmax "
                    "without them and applies the sink to its output instead, so the weights it returns "
                    "are not the ones its output is made of")
        return ("the softmax of its scaled q.k%s, mask%s%s differs from the weights the model "
                "computed by %.3g (more than %g): its attention does something tb-attention does not log"
                % (", soft-cap" if t.softcap else "", ", bias" if bias is not None else "",
                   ", sinks" if sinks is not None else "", error, tol))
    return CallNeurons(
        queries=_np(q32), keys=_np(k32), scale=t.scale, masked=hard[:, 0].cpu().numpy(),
        bias=None if bias is None or not bool(bias.ne(0).any()) else _np(bias),
        softcap=t.softcap, sinks=None if sinks is None else _np(sinks), error=error)


# heads recomputed at once: float32 temporaries of at most this many scores
CHECK_CHUNK = 2 ** 24


def _error(q, k, scale, softcap, bias, masked, sinks, weights):
    """max |recomputed - weights| over rows with at least one key (fully
    masked rows are padding, where eager's additive mask gives a uniform
    row), a few heads at a time so that a long sequence needs no second copy
    of the whole layer's scores."""
    import torch

    live = ~masked.all(-1)
    if not bool(live.any()):
        return 0.0
    B, H, Tq, Tk = weights.shape
    step = max(1, CHECK_CHUNK // max(1, B * Tq * Tk))
    error = 0.0
    for h in range(0, H, step):
        part = slice(h, h + step)
        # grouped keys expanded for these heads only, as transformers' repeat_kv
        heads = torch.arange(h, min(H, h + step), device=k.device) // (H // k.shape[1])
        mine = recompute(q[:, part], k.index_select(1, heads), scale, softcap,
                         None if bias is None else bias[:, part], masked,
                         None if sinks is None else sinks[part])
        diff = (mine - weights[:, part].detach().float().cpu()).abs().amax(-1).amax(1)  # [B, Tq]
        error = max(error, float(diff[live].max()))
    return error


def recompute(q, k, scale, softcap, bias, masked, sinks):
    """torch float32 [B, H, Tq, Tk]: the Neurons formula (record.softmax_scores), in torch."""
    import torch

    s = torch.matmul(q, k.transpose(-1, -2)).cpu() * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    if bias is not None:
        s = s + bias.cpu()
    s = s.masked_fill(masked[:, None], float("-inf"))
    if sinks is not None:
        sink = sinks.cpu().reshape(1, -1, 1, 1).expand(s.shape[0], -1, s.shape[2], 1)
        s = torch.cat([s, sink], dim=-1)
    top = s.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(s - top)
    p = e / e.sum(-1, keepdim=True).clamp_min(1e-30)
    return p[..., :-1] if sinks is not None else p


def _np(t):
    return np.array(t.detach().float().cpu().numpy(), dtype=np.float32, copy=True)
