"""capture's inputs: what the model is given, and what its positions are.

The main input is the model's own `main_input_name`: token ids
(`input_ids`), an image (`pixel_values`, [B, C, H, W]) or audio
(`input_features`, e.g. Whisper's log-mel frames, or `input_values`, raw
samples). A tokenizer's or processor's output (a dict / BatchEncoding /
BatchFeature) or the bare tensor.

Positions get names a reader recognises: token strings (the tokenizer's,
else "id:<id>"), "[CLS]" / "patch (r, c)" for images (with the patch grid
and a small thumbnail of the image, for the dashboard's image mode), and
"frame <i>" for audio frames.
"""
import dataclasses
import inspect
from typing import Any, Dict, Mapping, Optional

import numpy as np

from .record import AttentionInputError, ImageLayout

NO_TOKENIZER_FORMAT = "id:%d"  # token strings without a tokenizer: "id:2023"
THUMBNAIL = 64  # largest side of an image's stored thumbnail, pixels

# Keys a tokenizer may return that no model takes.
_TOKENIZER_ONLY_KEYS = ("special_tokens_mask", "offset_mapping", "length",
                        "overflow_to_sample_mapping", "num_truncated_tokens")
_TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids",
              "decoder_attention_mask", "labels", "position_ids")
# main input -> (modality, dimensions of one example)
MAIN_INPUTS = {"input_ids": ("text", 1), "pixel_values": ("image", 3),
               "input_features": ("audio", 2), "input_values": ("audio", 1)}


@dataclasses.dataclass
class Batch:
    size: int
    model_kwargs: Dict[str, Any]
    modality: str  # "text", "image" or "audio": what the "input" side's positions are
    ids: Dict[str, np.ndarray]  # side -> int64 [B, T] (token sides only)
    keep: Dict[str, np.ndarray]  # side -> bool [B, T], False = padding (token sides only)
    token_type: Optional[np.ndarray]  # [B, T] for side "input", or None
    pixels: Optional[np.ndarray] = None  # float32 [B, C, H, W] of an image input


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


def forward_parameters(model):
    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}


def is_encoder_decoder(model):
    """Encoder-decoder as this model class runs it: `*ForCausalLM` classes of
    encoder-decoder families take no decoder_input_ids and are decoder-only."""
    return (bool(getattr(model.config, "is_encoder_decoder", False))
            and "decoder_input_ids" in forward_parameters(model))


def as_dict(model, inputs):
    import torch

    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs
                                   and isinstance(inputs[0], str)):
        raise AttentionInputError(
            "capture takes token ids, not text: tokenize first, e.g. "
            "capture(model, tokenizer(text, return_tensors='pt'), tokenizer=tokenizer)")
    if torch.is_tensor(inputs) or isinstance(inputs, (np.ndarray, list, tuple)):
        return {getattr(model, "main_input_name", "input_ids") or "input_ids": inputs}
    if isinstance(inputs, Mapping):
        return dict(inputs)
    raise AttentionInputError(
        "inputs must be a BatchEncoding / dict of tensors (a tokenizer's or processor's output) "
        "or the model's main input tensor, got %s" % type(inputs).__name__)


def _main_input(model, inputs):
    main = getattr(model, "main_input_name", "input_ids") or "input_ids"
    if inputs.get(main) is None:
        present = [k for k in MAIN_INPUTS if inputs.get(k) is not None]
        if not present:
            raise AttentionInputError(
                "inputs have no %s (keys: %s): capture needs the model's main input to name the "
                "positions (token ids, pixel_values or audio features)" % (main, sorted(inputs)))
        main = present[0]
    if main not in MAIN_INPUTS:
        raise AttentionInputError("%s takes %r as its main input; capture reads token ids, "
                                  "pixel_values, input_features or input_values" % (type(model).__name__, main))
    return main


def prepare(model, inputs, adapter) -> Batch:
    inputs = {k: _as_tensor(v, k) for k, v in as_dict(model, inputs).items()}
    main = _main_input(model, inputs)
    modality, dims = MAIN_INPUTS[main]
    for k, v in list(inputs.items()):
        if _is_tensor(v) and (k in _TEXT_KEYS and v.ndim == 1 or k == main and v.ndim == dims):
            inputs[k] = v.unsqueeze(0)
    if modality == "text":
        batch = _text(model, inputs)
    else:
        batch = _signal(inputs, main, modality, dims)
    labels = inputs.pop("labels", None)
    if is_encoder_decoder(model):
        dec, dec_keep = _decoder_inputs(model, inputs, labels, batch.size, adapter.decoder_default,
                                        batch.keep.get("input"))
        batch.ids["decoder"] = dec.detach().cpu().numpy().astype(np.int64)
        batch.keep["decoder"] = dec_keep
    elif labels is not None:
        inputs["labels"] = labels
    _finish_kwargs(model, inputs)
    batch.model_kwargs = inputs
    return batch


def _is_tensor(v):
    import torch

    return torch.is_tensor(v)


def _text(model, inputs):
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
    ids = input_ids.detach().cpu().numpy().astype(np.int64)
    vocab = _vocab_size(model)
    if isinstance(vocab, int) and (ids.min() < 0 or ids.max() >= vocab):
        bad = ids[(ids < 0) | (ids >= vocab)][0]
        # torch would say "index out of range in self" from inside the embedding
        raise AttentionInputError("input_ids hold token id %d, outside the model's vocabulary 0..%d"
                                  % (bad, vocab - 1))
    mask = inputs.get("attention_mask")
    keep = np.ones((B, T), bool) if mask is None else mask.detach().cpu().numpy() != 0
    tt = inputs.get("token_type_ids")
    return Batch(size=B, model_kwargs={}, modality="text", ids={"input": ids}, keep={"input": keep},
                 token_type=None if tt is None else tt.detach().cpu().numpy())


def _vocab_size(model):
    try:
        embeddings = model.get_input_embeddings()
    except Exception:  # models without one raise NotImplementedError, or worse
        embeddings = None
    n = getattr(embeddings, "num_embeddings", None)
    return n if isinstance(n, int) else getattr(model.config, "vocab_size", None)


def _signal(inputs, main, modality, dims):
    x = inputs[main]
    if x.ndim != dims + 1 or not x.is_floating_point():
        shape = {"pixel_values": "[batch, channels, height, width]",
                 "input_features": "[batch, features, frames]",
                 "input_values": "[batch, samples]"}[main]
        raise AttentionInputError("%s must be a float tensor %s, got %s %s"
                                  % (main, shape, x.dtype, tuple(x.shape)))
    mask = inputs.get("attention_mask")
    if mask is not None and not bool((mask != 0).all()):
        raise AttentionInputError(
            "the attention_mask of this %s input pads some examples: capture removes padding "
            "only from token inputs; capture each example alone" % modality)
    pixels = x.detach().float().cpu().numpy() if modality == "image" else None
    return Batch(size=int(x.shape[0]), model_kwargs={}, modality=modality, ids={}, keep={},
                 token_type=None, pixels=pixels)


def _finish_kwargs(model, inputs):
    import torch

    params = forward_parameters(model)
    for k in _TOKENIZER_ONLY_KEYS + ("output_attentions", "return_dict"):
        inputs.pop(k, None)  # the probe pass sets these itself
    if "token_type_ids" in inputs and params and "token_type_ids" not in params:
        inputs.pop("token_type_ids")  # read for segments only (e.g. DistilBERT)
    if "use_cache" in params and "use_cache" not in inputs:
        inputs["use_cache"] = False
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = None
    if device is not None:
        for k, v in inputs.items():
            if torch.is_tensor(v):
                inputs[k] = v.to(device)


def _shift_right(ids, start, pad):
    import torch

    shifted = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1)
    return shifted.masked_fill(shifted == -100, pad)


def _decoder_start(model):
    config = model.config
    for source in (config, getattr(model, "generation_config", None)):
        start = getattr(source, "decoder_start_token_id", None)
        if isinstance(start, int):
            return start
    start = getattr(config, "pad_token_id", None)
    if start is None:
        raise AttentionInputError(
            "encoder-decoder model without decoder_input_ids and without a "
            "decoder_start_token_id in its config: pass decoder_input_ids")
    return start


def _decoder_inputs(model, inputs, labels, batch_size, default, input_keep):
    """decoder_input_ids (added to inputs) and the decoder keep mask."""
    import torch

    dec = inputs.get("decoder_input_ids")
    dec_mask = inputs.get("decoder_attention_mask")
    derived_keep = None
    if dec is None:
        start = _decoder_start(model)
        pad = getattr(model.config, "pad_token_id", None)
        pad = start if pad is None else pad
        if labels is not None:
            if labels.ndim != 2 or labels.shape[0] != batch_size:
                raise AttentionInputError("labels must be [batch, tokens], got %s" % (tuple(labels.shape),))
            dec = _shift_right(labels.long(), start, pad)
            label_keep = (labels != -100).cpu().numpy()
            derived_keep = np.concatenate([np.ones((batch_size, 1), bool), label_keep[:, :-1]], axis=1)
        elif default == "shift_input" and "input_ids" in inputs:
            dec = _shift_right(inputs["input_ids"], start, pad)
            derived_keep = np.concatenate([np.ones((batch_size, 1), bool), input_keep[:, :-1]], axis=1)
        else:
            dec = torch.full((batch_size, 1), int(start), dtype=torch.long)
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
        return dec, dec_mask.detach().cpu().numpy() != 0
    if derived_keep is not None:
        return dec, derived_keep
    return dec, np.ones(tuple(dec.shape), bool)


# --------------------------------------------------------------------------
# Names of positions


def token_names(ids, tokenizer):
    ids = [int(i) for i in ids]
    if tokenizer is None or not callable(getattr(tokenizer, "convert_ids_to_tokens", None)):
        return tuple(NO_TOKENIZER_FORMAT % i for i in ids)
    toks = tokenizer.convert_ids_to_tokens(ids)
    return tuple(t if isinstance(t, str) else NO_TOKENIZER_FORMAT % i for t, i in zip(toks, ids))


def _pair(v):
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return int(v[0]), int(v[1])
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v, v
    return None


def image_layout(config, pixels, positions, prefix_names=()):
    """(names, ImageLayout or None) of `positions` tokens over an image
    [C, H, W]: prefix tokens ([CLS], ...) then the patches row by row, when
    the count adds up to the patch grid; else plain "position <i>" (the model
    attends over something else than one token per patch) and no layout."""
    vision = getattr(config, "vision_config", None) or config
    patch = _pair(getattr(vision, "patch_size", None))
    H, W = pixels.shape[-2:]
    if patch is not None:
        rows, cols = H // patch[0], W // patch[1]
        prefix = positions - rows * cols
        if rows > 0 and cols > 0 and 0 <= prefix <= 8:
            named = list(prefix_names[:prefix]) if len(prefix_names) >= prefix else []
            if not named:
                named = ["[CLS]"] + ["[extra %d]" % i for i in range(1, prefix)] if prefix else []
            names = tuple(named) + tuple("patch (%d, %d)" % (r, c) for r in range(rows) for c in range(cols))
            return names, ImageLayout(rows=rows, cols=cols, first_patch=prefix, patch_size=patch,
                                      size=(int(H), int(W)), thumbnail=thumbnail(pixels))
    return tuple("position %d" % i for i in range(positions)), None


def frame_names(positions):
    return tuple("frame %d" % i for i in range(positions))


def thumbnail(pixels, largest=THUMBNAIL):
    """uint8 RGB [h, w, 3] of a normalised image [C, H, W]: its values
    rescaled to 0..255 (the model's input, whatever the processor's mean and
    std were) and averaged over blocks down to at most `largest` pixels a
    side. None for images that are not 1 or 3 channels."""
    x = np.asarray(pixels, np.float32)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        return None
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    f = max(1, -(-max(x.shape[1:]) // largest))
    h, w = x.shape[1] // f, x.shape[2] // f
    x = x[:, :h * f, :w * f].reshape(x.shape[0], h, f, w, f).mean(axis=(2, 4))
    if x.shape[0] == 1:
        x = np.repeat(x, 3, axis=0)
    return np.ascontiguousarray(np.rint(x.transpose(1, 2, 0) * 255).astype(np.uint8))
