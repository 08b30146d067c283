"""AttentionCallback for PyTorch Lightning: attention on probe texts in the
TensorBoardLogger's run.

    from tb_attention.integrations.lightning import AttentionCallback

    trainer = lightning.Trainer(logger=TensorBoardLogger("runs"), log_every_n_steps=50,
                                callbacks=[AttentionCallback(["the cat sat on the mat"], tokenizer=tok)])
    trainer.fit(lit_module, loader)

When: at the start of training, every `every_n_steps` optimizer steps
(trainer.global_step; default: the Trainer's log_every_n_steps) and at the
end. Each time the probe texts run through the model (tb_attention.Probe:
eval mode, no gradients, training state restored exactly) and each text's
attention is logged under its own tag.

Which model: `model=` (a module, or the name of the LightningModule's
attribute holding it); by default the LightningModule itself when it is a
transformers or TransformerLens model, else the first such submodule.

Where: into the first TensorBoardLogger's SummaryWriter (its public
`experiment`), so the logged metrics and the attention are one run in one
event file; without a TensorBoardLogger, an event file of its own in
trainer.log_dir. Only global rank zero writes. Under a sharded strategy
(FSDP2 `fully_shard` in configure_model, e.g. ModelParallelStrategy) the
probe's forward pass is collective, so every rank runs it at the same steps
(decided from the model, tb_attention.probe.is_sharded; `sharded=`
overrides); otherwise global rank zero alone runs it.
"""
import lightning.pytorch as pl

from tb_attention.probe import DEFAULT_TAG_PREFIX, Probe, check_sharded, runs_sharded


def _capturable(module):
    from tb_attention.integrations import transformer_lens

    if transformer_lens.is_transformer_lens_model(module):
        return True
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(module, PreTrainedModel)


class AttentionCallback(pl.Callback):
    """Logs a Lightning model's attention on probe texts into the TensorBoardLogger's run.

    texts: a str, a list of them or a dict name -> text (see tb_attention.Probe).
    tokenizer: turns str texts into tokens (default: the LightningModule's
        `tokenizer` attribute, if any; TransformerLens models use their own).
    model: the transformers / TransformerLens model to probe, or the name of
        the LightningModule's attribute holding it (default: found, see above).
    every_n_steps: default trainer.log_every_n_steps.
    neurons, tag_prefix, layers: as in tb_attention.Probe.
    log_at_start, log_at_end: also log at the start / the end of training.
    sharded: whether every rank runs the probe's forward pass (True) or
        global rank zero alone (False); None (default) decides from the model.
    """

    def __init__(self, texts, tokenizer=None, model=None, every_n_steps=None, neurons: bool = False,
                 tag_prefix: str = DEFAULT_TAG_PREFIX, layers=None, log_at_start: bool = True,
                 log_at_end: bool = True, sharded=None):
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int)
                                          or every_n_steps < 1):
            raise ValueError("every_n_steps must be a positive int or None, got %r" % (every_n_steps,))
        check_sharded(sharded)
        self.texts = texts
        self.tokenizer = tokenizer
        self.model = model
        self.every_n_steps = every_n_steps
        self.neurons = neurons
        self.tag_prefix = tag_prefix
        self.layers = layers
        self.log_at_start = log_at_start
        self.log_at_end = log_at_end
        self.sharded = sharded
        self.probe = None
        self.logdir = None
        self.logged_steps = []  # steps written (global rank zero)
        self._probed = []  # steps this process ran the probe at
        self._target = None

    def on_train_start(self, trainer, pl_module):
        self.probe, self.logged_steps, self._probed = None, [], []
        self._target = self._writer_target(trainer)  # on every rank: trainer.log_dir is collective
        if self.log_at_start:
            self._log(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        every = self.every_n_steps or max(int(trainer.log_every_n_steps), 1)
        if trainer.global_step % every == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        if self.log_at_end:
            self._log(trainer, pl_module)
        if self.probe is not None:
            self.probe.close()  # flushed before the logger closes its writer (in teardown)

    def on_exception(self, trainer, pl_module, exception):
        # Flush what was logged while the logger's writer is open: Lightning
        # closes it ("failed") right after this hook.
        if self.probe is not None:
            self.probe.close()

    def _log(self, trainer, pl_module):
        step = trainer.global_step
        if step in self._probed:
            return
        model = self._model(pl_module)
        sharded = runs_sharded(self.sharded, model)
        if not trainer.is_global_zero and not sharded:
            return
        if self.probe is None:
            tokenizer = self.tokenizer if self.tokenizer is not None else getattr(pl_module, "tokenizer", None)
            # other ranks run the forward pass only: the Probe opens no writer there
            target = self._target if trainer.is_global_zero else self.logdir
            self.probe = Probe(model, tokenizer, self.texts, target, neurons=self.neurons,
                               tag_prefix=self.tag_prefix, layers=self.layers, sharded=self.sharded)
        self._probed.append(step)
        if self.probe.log(step):
            self.logged_steps.append(step)

    def _model(self, pl_module):
        if isinstance(self.model, str):
            model = getattr(pl_module, self.model, None)
            if model is None:
                raise AttributeError("the LightningModule has no attribute %r (AttentionCallback model=)"
                                     % self.model)
            return model
        if self.model is not None:
            return self.model
        for module in pl_module.modules():
            if _capturable(module):
                return module
        raise ValueError("AttentionCallback found no transformers or TransformerLens model in %s: "
                         "pass model= (the module, or the name of the attribute holding it)"
                         % type(pl_module).__name__)

    def _writer_target(self, trainer):
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                self.logdir = logger.log_dir
                return logger.experiment if trainer.is_global_zero else None
        self.logdir = trainer.log_dir
        return self.logdir
