"""Probe: log a model's attention on fixed texts every N training steps.

    probe = tb_attention.Probe(model, tokenizer, ["the cat sat on the mat"],
                               "runs/exp1", every_n_steps=50)
    for step, batch in enumerate(loader):
        loss = model(**batch).loss
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        probe.maybe_log(step)
    probe.close()

Each probe text is run through the model by tb_attention.capture: eval mode,
no gradients, an attention implementation that returns weights; afterwards
the train/eval flags, the attention implementation and the torch RNG states
are put back exactly, so training goes on as if the probe had not run (the
loss trajectory with and without a probe is bit-identical, dropout included).
The record goes to the writer's queue; encoding and writing happen on the
writer's background thread.

Under torch.distributed only rank 0 writes, and no other rank touches the
logdir. Who runs the probe's forward pass depends on the model as it is at
run time: a replicated model (plain, DDP) is probed by rank 0 alone, the
other ranks return at once; a sharded one (FSDP2 `fully_shard` modules,
DTensor parameters) needs every rank in its forward pass (parameters are
all-gathered), so every rank runs the probe and only rank 0 keeps the
record. The schedule (should_log) is a function of the step alone, so ranks
calling maybe_log with the same step agree on it.
"""
import collections
import re
import time
from typing import Mapping, Optional

from tb_attention.record import AttentionInputError

DEFAULT_TAG_PREFIX = "probe/"

# Config attributes that cap the number of positions a model takes.
_POSITION_LIMITS = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len",
                    "max_sequence_length")
# Models whose position ids start after the padding index (RoBERTa's
# create_position_ids_from_input_ids): padding_idx + 1 positions are not usable.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer",
                     "data2vec-text", "mpnet", "ibert", "luke", "mluke")


def position_limit(config):
    """(most tokens the model takes, the config attribute saying so), or
    (None, None) when the config names no limit (relative positions, as in T5)."""
    for attr in _POSITION_LIMITS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
                pad = getattr(config, "pad_token_id", None)
                value -= (pad if isinstance(pad, int) else 1) + 1
            return value, attr
    return None, None


def _slug(text, limit=40):
    words = re.findall(r"[a-z0-9]+", text.lower())
    slug = ""
    for w in words:
        candidate = w if not slug else slug + "_" + w
        if len(candidate) > limit:
            break
        slug = candidate
    return slug or (words[0][:limit] if words else "")


def probe_tags(texts, prefix=DEFAULT_TAG_PREFIX):
    """[(tag, text)] of probe texts: a dict gives its keys as names; a list
    gives each str text a name from its first words ("the_cat_sat_on_the_mat"),
    each non-str input (token ids) its index; repeated names get "_2", "_3"."""
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, Mapping):
        items = [(str(k), v) for k, v in texts.items()]
    else:
        try:
            texts = list(texts)
        except TypeError:
            raise AttentionInputError("texts must be a str, a list of texts or a dict name -> text, "
                                      "got %s" % type(texts).__name__) from None
        items = [((_slug(t) or "text%d" % i) if isinstance(t, str) else "%d" % i, t)
                 for i, t in enumerate(texts)]
    if not items:
        raise AttentionInputError("no probe texts given")
    seen = collections.Counter()
    out = []
    for name, text in items:
        seen[name] += 1
        if seen[name] > 1:
            name = "%s_%d" % (name, seen[name])
        out.append((prefix + name, text))
    return out


def describe(text, limit=50):
    """A short quote of a probe text for error messages."""
    if isinstance(text, str):
        return repr(text if len(text) <= limit else text[:limit - 3] + "...")
    return "input %s" % type(text).__name__


def encode_text(text, tokenizer):
    """Model inputs (a dict of [1, T] tensors) for one probe text: a str
    (needs a tokenizer), token ids (list / tensor / array), or a dict /
    BatchEncoding already holding input_ids."""
    import torch

    if isinstance(text, str):
        if tokenizer is None:
            raise AttentionInputError(
                "probe text %s is a string but no tokenizer was given: pass the tokenizer, "
                "or token ids instead of text" % describe(text))
        enc = tokenizer(text, return_tensors="pt")
        return {k: v for k, v in enc.items() if torch.is_tensor(v)}
    if isinstance(text, Mapping):
        if "input_ids" not in text:
            raise AttentionInputError("a probe input dict needs input_ids (keys: %s)" % sorted(text))
        inputs = {}
        for k, v in text.items():
            t = v if torch.is_tensor(v) else torch.as_tensor(v)
            inputs[k] = t.unsqueeze(0) if t.ndim == 1 else t
        return inputs
    ids = text if torch.is_tensor(text) else torch.as_tensor(text)
    if ids.ndim == 1:
        ids = ids.unsqueeze(0)
    if ids.ndim != 2 or ids.shape[0] != 1 or ids.is_floating_point():
        raise AttentionInputError("probe token ids must be one sequence of ints, got %s %s"
                                  % (ids.dtype, tuple(ids.shape)))
    return {"input_ids": ids}


def check_length(inputs, config, what):
    """Raise AttentionInputError when the input is longer than the model takes."""
    limit, attr = position_limit(config)
    n = int(inputs["input_ids"].shape[-1])
    if limit is not None and n > limit:
        raise AttentionInputError(
            "%s is %d tokens long; the model takes at most %d (config.%s)" % (what, n, limit, attr))
    return n


def _distributed():
    """Whether torch.distributed is initialized (without importing it)."""
    import sys

    dist_mod = sys.modules.get("torch.distributed")  # never imported: not distributed
    return dist_mod is not None and dist_mod.is_available() and dist_mod.is_initialized()


def distributed_rank():
    """This process's rank under torch.distributed, 0 when not distributed."""
    if _distributed():
        import torch.distributed

        return torch.distributed.get_rank()
    return 0


def is_sharded(model) -> bool:
    """Whether a forward pass of `model` is collective, so every rank must run
    it: it holds FSDP2 (`fully_shard`) modules or DTensor parameters (FSDP2,
    tensor parallel). False when torch.distributed is not initialized."""
    if not _distributed():
        return False
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    for module in model.modules():
        if isinstance(module, FSDPModule):
            return True
        if any(isinstance(p, DTensor) for p in module.parameters(recurse=False)):
            return True
    return False


def check_sharded(sharded):
    """The `sharded=` argument of Probe and the callbacks: None, True or False."""
    if sharded is not None and not isinstance(sharded, bool):
        raise ValueError("sharded must be None (decide from the model), True or False, got %r" % (sharded,))
    return sharded


def runs_sharded(sharded, model) -> bool:
    """`sharded=` when given, else what the model is (is_sharded)."""
    return sharded if sharded is not None else is_sharded(model)


def _reshard(model):
    """Free what the probe's forward pass all-gathered: without a backward
    pass FSDP2 leaves the root module's parameters unsharded."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def unwrap_model(model):
    """The model inside DistributedDataParallel / DataParallel / torch.compile."""
    for _ in range(8):
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if inner is None and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            inner = getattr(model, "module", None)
        if inner is None:
            return model
        model = inner
    return model


class Probe:
    """Logs a model's attention on fixed probe texts every `every_n_steps`.

    model: a transformers model or a TransformerLens model (DDP /
        DataParallel / torch.compile wrappers are looked through).
    tokenizer: turns the texts into tokens and names them; may be None when
        the texts are token ids.
    texts: a str, a list of them, or a dict tag name -> text; instead of a
        str, token ids or a dict of model inputs. One tag per text:
        tag_prefix + name (see probe_tags).
    writer: an AttentionWriter, a torch or tensorboardX SummaryWriter
        (attention goes into its run and event file), or a logdir path (the probe opens its own
        AttentionWriter on first use, on rank 0 only, and close() closes it).
    every_n_steps: maybe_log(step) logs when step % every_n_steps == 0.
    neurons: also log queries and keys (the neuron view).
    layers: layer indices to keep (see tb_attention.capture).
    sharded: whether every rank runs the probe's forward pass (True) or rank
        0 alone (False); None (default) decides at each log from the model
        (is_sharded: FSDP2 modules or DTensor parameters). With a sharded
        model call maybe_log / log on every rank with the same step. Only
        rank 0 opens or writes the writer in every case.
    """

    def __init__(self, model, tokenizer, texts, writer, every_n_steps: int = 50,
                 neurons: bool = False, tag_prefix: str = DEFAULT_TAG_PREFIX, layers=None,
                 sharded: Optional[bool] = None):
        check_sharded(sharded)
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError("every_n_steps must be a positive int, got %r" % (every_n_steps,))
        if writer is None:
            raise ValueError("writer is required: an AttentionWriter, a torch SummaryWriter or a logdir")
        self.model = model
        self.tokenizer = tokenizer
        self.every_n_steps = every_n_steps
        self.neurons = bool(neurons)
        self.layers = layers
        self.sharded = sharded
        inner = unwrap_model(model)
        from tb_attention.integrations import transformer_lens

        lens = transformer_lens.is_transformer_lens_model(inner)
        config = None if lens else getattr(inner, "config", None)
        self._inputs = []
        for tag, text in probe_tags(texts, tag_prefix):
            # TransformerLens: its own to_tokens (BOS as it prepends it) and cfg.n_ctx
            inputs = transformer_lens.encode_text(inner, text, tokenizer) if lens else encode_text(text, tokenizer)
            if config is not None:
                check_length(inputs, config, "probe text %s" % describe(text))
            self._inputs.append((tag, inputs))
        self._target = writer
        self._writer = None
        self._owns_writer = False
        self.seconds = 0.0  # time spent in log() on the training thread
        self.logged_steps = []

    @property
    def tags(self):
        return [tag for tag, _ in self._inputs]

    @property
    def writer(self):
        """The AttentionWriter, opened on first use."""
        if self._writer is None:
            from tb_attention.writer import AttentionWriter

            if isinstance(self._target, AttentionWriter):
                self._writer = self._target
            else:
                self._writer = AttentionWriter(self._target)
                # Our own writer over a logdir or a SummaryWriter: ours to close
                # (closing it over a SummaryWriter only flushes; the user closes theirs).
                self._owns_writer = True
        return self._writer

    def should_log(self, step) -> bool:
        return int(step) % self.every_n_steps == 0

    def maybe_log(self, step) -> bool:
        """Log the probe texts at `step` when step % every_n_steps == 0. Returns
        whether this process wrote them (rank 0; see log)."""
        if not self.should_log(step):
            return False
        return self.log(step)

    def log(self, step) -> bool:
        """Log the probe texts at `step` now. Rank 0 runs and writes them;
        other ranks return False, after running the forward pass with rank 0
        when the model is sharded (then call log on every rank)."""
        rank = distributed_rank()
        sharded = runs_sharded(self.sharded, self.model)
        if rank != 0 and not sharded:
            return False
        from tb_attention import capturing

        start = time.perf_counter()
        writer = self.writer if rank == 0 else None  # other ranks never open it
        model = unwrap_model(self.model)
        try:
            for tag, inputs in self._inputs:
                # quantized on the model's device, as the writer stores it: the
                # record is a quarter of float32 and add_attention takes it as is
                record = capturing.capture(model, inputs, tokenizer=self.tokenizer,
                                           neurons=self.neurons, layers=self.layers,
                                           dtype=getattr(writer, "dtype", "uint8"))
                if writer is not None:
                    writer.add_attention(tag, record, global_step=int(step))
        finally:
            if sharded and _distributed():
                _reshard(self.model)
        self.seconds += time.perf_counter() - start
        if writer is None:
            return False
        self.logged_steps.append(int(step))
        return True

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        """Flush; close the writer if the probe opened it."""
        if self._writer is None:
            return
        if self._owns_writer:
            self._writer.close()
        else:
            self._writer.flush()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
