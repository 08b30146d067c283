"""The architecture sweep: every model type of the installed transformers,
built tiny from its own config class, checked against tb-attention's capture.

    from tests.sweep import model_types, check
    for mt in model_types():
        print(check(mt).line())

Used by tests/test_sweep.py (a sample with a fixed seed) and by
tests/benchmarks/sweep_architectures.py (every model type; writes the table
the README shows).

The list of model types comes from transformers itself (its auto mapping of
model types to base model classes), never from a hand-written list. Each is
built from its config class with every size-like attribute it has shrunk
(hidden size 32, 2 layers, 4 heads, ...). Whether that works is part of the
result: a model type that cannot be built tiny, or cannot run on the inputs
the sweep makes, is reported as such ("not run"), not counted either way.

Each model that runs is checked:
- attention: capture's weights equal the model's own eager
  `output_attentions` (1e-5), on a deep copy run the plain transformers way;
- neurons: capture(neurons=True) either gives neurons whose recomputation
  (after float16 storage) equals that attention within 1e-3, or warns
  (NeuronsNotSupportedWarning) with a reason naming the model type;
- batch: a batch of two (text: right-padded) gives per example what the
  example alone gives (1e-5), unless the model's own eager output changes
  with the batch too (then it is the model, and the line says so);
- state: train/eval flags, attention implementation, hooks and the RNG state
  are as before.
A capture that raises AttentionInputError is "refused" (its message is the
reason); any other exception is a crash, and wrong numbers are "WRONG".
"""
import contextlib
import copy
import dataclasses
import inspect
import signal
import time
import traceback
import warnings

import numpy as np

# Size-like config attributes and their tiny values. Only attributes the
# config class has are set; lists (per-stage sizes) are handled in _shrink.
SIZES = {
    "hidden_size": 32, "d_model": 32, "n_embd": 32, "dim": 32, "emb_dim": 32, "embed_dim": 32,
    "d_embed": 32, "embedding_dim": 32,
    "num_hidden_layers": 2, "num_layers": 2, "n_layer": 2, "n_layers": 2, "encoder_layers": 2,
    "decoder_layers": 2, "num_decoder_layers": 2, "num_encoder_layers": 2, "depth": 2,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_heads": 4,
    "encoder_attention_heads": 4, "decoder_attention_heads": 4, "num_decoder_attention_heads": 4,
    "num_key_value_heads": 2, "num_kv_heads": 2, "multi_query_group_num": 2,
    "head_dim": 8, "d_kv": 8, "kv_channels": 8, "attention_head_dim": 8,
    "intermediate_size": 64, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "d_ff": 64,
    "n_inner": 64, "ffn_dim": 64, "dim_feedforward": 64, "ffn_hidden_size": 64,
    "d_inner": 64, "dff": 64, "hidden_dim": 64, "decoder_intermediate_size": 64,
    "moe_intermediate_size": 16, "shared_expert_intermediate_size": 16,
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "moe_num_experts": 4,
    "num_experts_per_tok": 2, "moe_topk": 2, "n_group": 1, "topk_group": 1,
    "kv_lora_rank": 16, "q_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
    "v_head_dim": 8, "qk_head_dim": 16,
    "max_position_embeddings": 64, "n_positions": 64, "n_ctx": 64, "max_seq_len": 64,
    "image_size": 32, "patch_size": 8, "num_channels": 3,
    "max_source_positions": 16, "max_target_positions": 32, "num_mel_bins": 16,
    "projection_dim": 16, "embedding_size": 16, "vocab_size": 99,
    "first_k_dense_replace": 0, "num_nextn_predict_layers": 0,
}
# The models' own initialisers, wider than their defaults (0.02), so that
# attention is peaked rather than nearly uniform: a wrong computation cannot
# hide in uniform weights (tests/models.py does the same).
INIT = {"initializer_range": 0.2, "init_std": 0.2, "initializer_factor": 1.0}
# Per model type: config values beyond SIZES, and input lengths, where the
# generic ones cannot work (each says why).
OVERRIDES = {
    # block-sparse attention needs more tokens than its global + window + random blocks
    "big_bird": dict(block_size=2, num_random_blocks=1),
    "bigbird_pegasus": dict(block_size=2, num_random_blocks=1),
    # rotary dims default to 64, more than a tiny head
    "gptj": dict(rotary_dim=4), "codegen": dict(rotary_dim=4),
    # SqueezeBERT needs its embedding as wide as its hidden states
    "squeezebert": dict(embedding_size=32),
    # sliding windows of a few tokens, so that windowed layouts really are windowed
    "longformer": dict(attention_window=[4, 4]), "led": dict(attention_window=[4, 4]),
    # windows smaller than the 8 x 8 patch grid of a 32-pixel image (the default 7 fails there)
    "swin": dict(window_size=4), "donut-swin": dict(window_size=4), "maskformer-swin": dict(window_size=4),
}
LENGTHS = {"big_bird": 20, "bigbird_pegasus": 20}
TIMEOUT = 120  # seconds a model type may take in the full sweep
VOCAB = 99
MAX_PARAMS = 3_000_000
T_TEXT = 10
SEED = 0


class NotRun(Exception):
    """The sweep could not build or run this model type (not a capture result)."""


def model_types():
    """Every model type transformers maps to a base model class, sorted."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return sorted(MODEL_MAPPING_NAMES)


def model_class(model_type):
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    names = MODEL_MAPPING_NAMES[model_type]
    names = names if isinstance(names, (tuple, list)) else (names,)
    for name in names:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    raise NotRun("transformers has no class %s" % (names,))


def _shrink(config_cls, default):
    from transformers import PretrainedConfig

    values = default.to_dict()
    attrs = set(values) | set(getattr(config_cls, "attribute_map", {}))
    out = {}
    for name, tiny in SIZES.items():
        if name not in attrs:
            continue
        current = getattr(default, name, None)
        if isinstance(current, bool):
            continue
        if isinstance(current, int) and current > tiny or current is None and name in (
                "head_dim", "intermediate_size", "n_inner", "d_ff"):
            out[name] = tiny
    size = getattr(default, "image_size", None)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        out["image_size"] = [SIZES["image_size"]] * 2
    # per-stage lists (Swin-like): two stages, 2 heads each (divides every stage's width)
    stages = {"depths": 1, "num_heads": 2, "hidden_sizes": 32, "embed_dims": 32}
    for name in list(stages) + ["sr_ratios"]:
        current = getattr(default, name, None)
        if isinstance(current, (list, tuple)) and len(current) >= 2 and all(isinstance(v, int) for v in current):
            out[name] = [min(v, stages[name]) for v in current[:2]] if name in stages else list(current[:2])
    if "kv_lora_rank" in attrs and "num_key_value_heads" in out:
        out["num_key_value_heads"] = SIZES["num_attention_heads"]  # multi-head latent attention: no groups
    for name, value in INIT.items():
        if name in attrs and isinstance(getattr(default, name, None), float):
            out[name] = value
    for name, sub in vars(default).items():
        if isinstance(sub, PretrainedConfig):
            out[name] = tiny_config_of(type(sub), sub).to_dict()
    for name in ("layer_types", "mlp_layer_types"):
        current = getattr(default, name, None)
        if isinstance(current, (list, tuple)) and current:
            n = out.get("num_hidden_layers", getattr(default, "num_hidden_layers", None))
            if isinstance(n, int):
                # the first and last kinds of layer, so that both show up in 2 layers
                kinds = list(dict.fromkeys(current))
                out[name] = (kinds + kinds)[:n] if len(kinds) > 1 else [current[0]] * n
    return out


def _fix_token_ids(config):
    """Special token ids outside the tiny vocabulary move to its top."""
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int):
        return
    free = iter(range(vocab - 1, 4, -1))
    moved = {}
    for name, value in list(vars(config).items()):
        if not name.endswith(("token_id", "token_index")) or isinstance(value, bool):
            continue
        if isinstance(value, int) and value >= vocab:
            if value not in moved:
                moved[value] = next(free)
            setattr(config, name, moved[value])
        elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            setattr(config, name, [moved.setdefault(v, next(free)) if v >= vocab else v for v in value])


def tiny_config_of(config_cls, default=None):
    default = config_cls() if default is None else default
    kwargs = _shrink(config_cls, default)
    try:
        config = config_cls(**kwargs)
    except Exception:
        if not any(k in kwargs for k in ("layer_types", "mlp_layer_types")):
            raise
        kwargs.pop("layer_types", None)  # derived properties on some configs (Mamba)
        kwargs.pop("mlp_layer_types", None)
        config = config_cls(**kwargs)
    _fix_token_ids(config)
    return config


def tiny_config(model_type):
    import transformers

    config = tiny_config_of(transformers.CONFIG_MAPPING[model_type])
    for key, value in OVERRIDES.get(model_type, {}).items():
        setattr(config, key, value)
    return config


def build(model_type, seed=SEED, cls=None):
    """A tiny random model of `model_type` (its base class unless `cls`),
    eval mode; NotRun when it cannot be built small."""
    import torch

    cls = cls or model_class(model_type)
    try:
        config = tiny_config(model_type)
    except Exception as e:
        raise NotRun("no tiny config: %s: %s" % (type(e).__name__, _short(e))) from None
    try:
        with torch.device("meta"):
            meta = cls(config)
        n = sum(p.numel() for p in meta.parameters())
    except Exception as e:
        raise NotRun("cannot build from a tiny config: %s: %s" % (type(e).__name__, _short(e))) from None
    if n > MAX_PARAMS:
        raise NotRun("not tiny: %d parameters from the shrunk config" % n)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(config)
    model.eval()
    return model


def _short(e, n=160):
    s = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return s if len(s) <= n else s[:n - 3] + "..."


# --------------------------------------------------------------------------
# Inputs


def _special_ids(config):
    ids = set()
    for name, value in vars(config).items():
        if name.endswith(("token_id", "token_index")):
            for v in (value if isinstance(value, list) else [value]):
                if isinstance(v, int) and not isinstance(v, bool):
                    ids.add(v)
    return ids


def _ids(config, n, rng):
    vocab = getattr(config, "vocab_size", None) or VOCAB
    pool = [i for i in range(5, min(vocab, VOCAB)) if i not in _special_ids(config)]
    return [int(i) for i in rng.choice(pool, size=n, replace=False)]


def _image_size(config):
    c = getattr(config, "vision_config", None) or config
    size = getattr(c, "image_size", 32)
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    return getattr(c, "num_channels", 3), size


def example_inputs(model, rng, lengths=(T_TEXT,)):
    """[(inputs of one example)] for each length (token models; other
    modalities ignore the length but still give one example each)."""
    import torch
    from tb_attention.inputs import is_encoder_decoder

    config = model.config
    main = model.main_input_name
    examples = []
    for n in lengths:
        if main == "input_ids":
            ex = {"input_ids": torch.tensor([_ids(config, n, rng)])}
        elif main == "pixel_values":
            channels, (h, w) = _image_size(config)
            ex = {"pixel_values": torch.from_numpy(rng.standard_normal((1, channels, h, w)).astype(np.float32))}
        elif main == "input_features" and hasattr(config, "num_mel_bins"):
            frames = 2 * getattr(config, "max_source_positions", 16)
            ex = {"input_features": torch.from_numpy(
                rng.standard_normal((1, config.num_mel_bins, frames)).astype(np.float32))}
        elif main == "input_values":
            ex = {"input_values": torch.from_numpy(rng.standard_normal((1, 1600)).astype(np.float32))}
        else:
            raise NotRun("the sweep makes no inputs for main input %r" % main)
        if is_encoder_decoder(model):
            ex["decoder_input_ids"] = torch.tensor([_ids(config, max(3, n - 4), rng)])
        examples.append(ex)
    return examples


def pad_batch(model, examples):
    """One batch of the examples: token inputs right-padded with masks."""
    import torch

    pad = getattr(model.config, "pad_token_id", None)
    vocab = getattr(model.get_input_embeddings(), "num_embeddings", None) if "input_ids" in examples[0] else None
    pad = pad if isinstance(pad, int) and (vocab is None or pad < vocab) else 0
    masks = {"input_ids": "attention_mask", "decoder_input_ids": "decoder_attention_mask"}
    batch = {k: torch.cat([e[k] for e in examples]) for k in examples[0] if k not in masks}
    for key, mask_key in masks.items():
        if key not in examples[0]:
            continue
        rows = [e[key][0].tolist() for e in examples]
        T = max(len(r) for r in rows)
        batch[key] = torch.tensor([r + [pad] * (T - len(r)) for r in rows])
        batch[mask_key] = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])
    return batch


# --------------------------------------------------------------------------
# Checks


@dataclasses.dataclass
class Result:
    model_type: str
    status: str  # "neurons", "attention", "refused", "no attention", "not run", "WRONG", "CRASH"
    reason: str = ""
    model_class: str = ""
    seconds: float = 0.0
    notes: str = ""

    @property
    def failed(self):
        return self.status in ("WRONG", "CRASH")

    def line(self):
        return "%-28s %-12s %-40s %5.2fs %s%s" % (
            self.model_type, self.status, self.model_class, self.seconds, self.reason,
            (" [%s]" % self.notes) if self.notes else "")


def eager_attentions(model, inputs):
    """kind -> float32 [B, L, H, Tq, Tk] from the model's own eager
    output_attentions, on a deep copy switched to eager the plain way."""
    import torch
    from tb_attention.interface import OUTPUT_FIELDS

    ref = copy.deepcopy(model)
    ref.set_attn_implementation("eager")
    for m in ref.modules():  # some models (Falcon) read only their config's setting
        c = getattr(m, "config", None)
        if c is not None and hasattr(c, "_attn_implementation_internal"):
            c._attn_implementation_internal = "eager"
    ref.eval()
    kwargs = dict(inputs)
    if "use_cache" in inspect.signature(ref.forward).parameters:
        kwargs["use_cache"] = False  # FSMT builds its causal mask only then; capture does the same
    torch.manual_seed(SEED)  # models that draw random numbers (ViT-MAE's masking) draw the same
    with torch.no_grad():
        out = ref(**kwargs, output_attentions=True)
    result = {}
    for kind, field in OUTPUT_FIELDS:
        per_layer = getattr(out, field, None)
        if per_layer and all(a is not None for a in per_layer):
            per_layer = [a[0] if isinstance(a, (tuple, list)) else a for a in per_layer]
            if len({tuple(a.shape) for a in per_layer}) == 1:
                result[kind] = torch.stack(per_layer, 1).float().numpy()
            else:
                result[kind] = [a.float().numpy() for a in per_layer]
    return result


def _state(model):
    import torch
    from tb_attention.interface import configs_of

    return ([m.training for m in model.modules()],
            [(id(c), c.__dict__.get("_attn_implementation_internal")) for c in configs_of(model)],
            [sorted(m._forward_hooks) for m in model.modules()],
            torch.get_rng_state())


def _same_state(a, b):
    import torch

    return a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and torch.equal(a[3], b[3])


def _fp16(x):
    return None if x is None else np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def recompute_fp16(n):
    """What the neuron view shows after the float16 round trip."""
    from tb_attention.record import softmax_scores

    return softmax_scores(_fp16(n.queries), _fp16(n.expanded_keys()), n.scales, n.masked, _fp16(n.bias),
                          n.softcaps, n.sinks)


def check(model_type, seed=SEED, timeout=None):
    """The Result of every check on one model type; with a timeout (seconds,
    main thread only) a model type that takes longer is "not run"."""
    t0 = time.time()
    try:
        with _time_limit(timeout):
            result = _check(model_type, seed)
    except NotRun as e:
        result = Result(model_type, "not run", str(e))
    except Exception as e:  # the sweep's own failure, or capture's crash (reported as such)
        result = Result(model_type, "CRASH", "%s: %s | %s" % (type(e).__name__, _short(e), _where(e)))
    result.seconds = time.time() - t0
    return result


@contextlib.contextmanager
def _time_limit(seconds):
    if not seconds:
        yield
        return

    def expire(signum, frame):
        raise NotRun("took more than %d s" % seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _where(e):
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if "tb_attention" in f.filename] or frames
    f = mine[-1]
    return "%s:%d" % (f.filename.split("/")[-1], f.lineno)


def _check(model_type, seed):
    import torch
    from tb_attention.capturing import NeuronsNotSupportedWarning, capture_batch
    from tb_attention.record import AttentionInputError

    model = build(model_type, seed)
    cls = type(model).__name__
    rng = np.random.default_rng(seed)
    n = LENGTHS.get(model_type, T_TEXT)
    single, short = example_inputs(model, rng, (n, n - 3))
    try:
        ref = eager_attentions(model, single)
    except Exception as e:
        raise NotRun("the model itself fails on the sweep's inputs in eager mode: %s: %s"
                     % (type(e).__name__, _short(e))) from None
    model.train()
    list(model.modules())[-1].eval()  # a mixed train/eval model must come back mixed
    torch.manual_seed(SEED)
    before = _state(model)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (rec,) = capture_batch(model, single, neurons=True)
    except AttentionInputError as e:
        if not _same_state(before, _state(model)):
            return Result(model_type, "WRONG", "model state not restored after a refusal", cls)
        status = "refused" if ref else "no attention"
        return Result(model_type, status, str(e), cls)
    if not _same_state(before, _state(model)):
        return Result(model_type, "WRONG", "model state (mode, implementation, hooks or RNG) not restored", cls)
    if not ref:
        return Result(model_type, "WRONG", "captured attention the model's eager output does not have", cls)
    model.eval()
    wrong = _compare(model_type, rec, ref)
    if wrong:
        return Result(model_type, "WRONG", wrong, cls)
    status, reason = _neuron_status(model_type, rec, ref, caught, NeuronsNotSupportedWarning)
    if status == "WRONG":
        return Result(model_type, status, reason, cls)
    notes = _batch_check(model, [single, short], rec.has_neurons)
    if notes.startswith("WRONG"):
        return Result(model_type, "WRONG", notes[6:], cls)
    return Result(model_type, status, reason, cls, notes=notes)


def _compare(model_type, rec, ref):
    from tb_attention import adapters

    for kind in rec.kinds:
        want = ref.get(kind)
        got = rec.attention(kind)
        if want is None:
            return "%s attention captured but not in the model's eager output" % kind
        if isinstance(want, list) or want[0].shape != got.shape:
            shape = want[0].shape if not isinstance(want, list) else [w.shape for w in want]
            if adapters.ADAPTERS.get(model_type, adapters.DEFAULT).convert is not None:
                continue  # windowed layouts: converted, checked against an oracle in test_capture_layouts
            return "%s attention has shape %s, the model's %s" % (kind, got.shape, shape)
        err = float(np.abs(got - want[0]).max())
        if err > 1e-5:
            return "%s attention differs from the model's eager output_attentions by %.3g" % (kind, err)
    missing = set(ref) - set(rec.kinds)
    if missing:
        return "the model's eager output has %s attention the record lacks" % sorted(missing)
    return ""


def _neuron_status(model_type, rec, ref, caught, warning_cls):
    warned = [str(w.message) for w in caught if issubclass(w.category, warning_cls)]
    without = [k for k in rec.kinds if rec.kind(k).neurons is None]
    precision = ""
    for kind in rec.kinds:
        n = rec.kind(kind).neurons
        if n is None or isinstance(ref[kind], list) or ref[kind][0].shape != rec.attention(kind).shape:
            continue
        err32 = float(np.abs(rec.recompute_attention(kind) - ref[kind][0]).max())
        err = float(np.abs(recompute_fp16(n) - ref[kind][0]).max())
        if err32 > 1e-4 or err > 1e-2:
            return "WRONG", "%s neurons recompute the attention only to %.3g (%.3g in float16)" % (
                kind, err32, err)
        if err > 1e-3:  # float32 is faithful: float16 storage loses it on large logits
            logits = np.abs(np.matmul(n.queries, np.swapaxes(n.expanded_keys(), -1, -2))
                            * n.scales[:, None, None, None]).max()
            precision = ("float16 storage: the %s neurons recompute to %.2g (logits up to %.0f; "
                         "float32 %.1g)" % (kind, err, logits, err32))
    if not without:
        return "neurons", precision
    if not warned or model_type not in warned[0]:
        return "WRONG", "no neurons for %s and no warning naming the model type" % without
    if any(not rec.kind(k).no_neurons for k in without):
        return "WRONG", "a kind without neurons does not say why"
    reason = rec.kind(without[0]).no_neurons.split(": ", 1)[-1]
    if len(without) < len(rec.kinds):
        return "neurons", "except the %s attention: %s" % (", ".join(without), reason)
    return "attention", reason


def _batch_check(model, examples, neurons):
    """"" when a batch gives each example what it gives alone; a note when
    the model's own eager attention changes with the batch too; "WRONG ..."."""
    from tb_attention.capturing import capture_batch

    batch = pad_batch(model, examples)
    import warnings as _w
    import torch
    from tb_attention.record import AttentionInputError

    with _w.catch_warnings():
        _w.simplefilter("ignore")
        torch.manual_seed(SEED)
        try:
            together = capture_batch(model, batch, neurons=neurons)
            alone = []
            for e in examples:
                torch.manual_seed(SEED)
                alone.append(capture_batch(model, e, neurons=neurons)[0])
        except AttentionInputError as e:
            return "a batch or a shorter example is refused: %s" % _short(e, 300)
    for b, (got, want) in enumerate(zip(together, alone)):
        if got.kinds != want.kinds:
            return "WRONG kinds %s in a batch, %s alone" % (got.kinds, want.kinds)
        for kind in want.kinds:
            if got.tokens(kind) != want.tokens(kind):
                return "WRONG example %d's %s tokens differ in a batch" % (b, kind)
            err = float(np.abs(got.attention(kind) - want.attention(kind)).max())
            if err > 1e-5:
                if _model_changes_with_batch(model, batch, examples, b, kind):
                    return "batching changes the model's own attention (its eager output too)"
                return "WRONG example %d's %s attention differs by %.3g in a padded batch" % (b, kind, err)
            if want.kind(kind).neurons is not None and got.kind(kind).neurons is not None:
                err = float(np.abs(got.recompute_attention(kind) - want.attention(kind)).max())
                if err > 1e-3:
                    return "WRONG example %d's %s neurons in a batch recompute to %.3g" % (b, kind, err)
    return ""


def _model_changes_with_batch(model, batch, examples, b, kind):
    together = eager_attentions(model, batch).get(kind)
    alone = eager_attentions(model, examples[b]).get(kind)
    if together is None or alone is None or isinstance(together, list) or isinstance(alone, list):
        return True
    shape = alone[0].shape
    sliced = together[b][..., :shape[-2], :shape[-1]]
    return float(np.abs(sliced - alone[0]).max()) > 1e-5


# Tiny models and input ids for the architecture tests

IDS = [11, 17, 23, 42, 8, 30, 60, 61, 45, 12]


def tiny(model_type, cls=None, **config):
    """A tiny random `model_type` (tiny_config's) with `config` on top."""
    import torch
    c = tiny_config(model_type)
    for k, v in config.items():
        setattr(c, k, v)
    cls = cls or model_class(model_type)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = cls(c)
    return model.eval()


def ids(n=len(IDS)):
    import torch
    return torch.tensor([IDS[:n]])
