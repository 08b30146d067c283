"""AttentionCallback: the transformers Trainer logs attention on probe texts.

    from tb_attention.integrations.transformers import AttentionCallback

    trainer = Trainer(model=model, args=TrainingArguments(..., report_to=["tensorboard"]),
                      train_dataset=ds, processing_class=tokenizer)
    trainer.add_callback(AttentionCallback(["the cat sat on the mat"], trainer=trainer))
    trainer.train()

When: once before the first training step (the untrained model, or the
model as it resumes), every `every_n_steps` optimizer steps (default: the
Trainer's own logging interval, state.logging_steps) and at the last step.
Each time the probe texts run through the model (tb_attention.Probe: eval
mode, no gradients, training state restored exactly) and each text's
attention is logged under its own tag.

Where, through public Trainer API only:
- with a TensorBoardCallback among `trainer.callback_handler.callbacks`
  (report_to has "tensorboard"): into its SummaryWriter (its public
  `tb_writer`, which it opens in its own on_train_begin), so the Trainer's
  scalars and the attention are one run in one event file. That needs the
  Trainer: pass `trainer=`. The last step is logged and flushed when the
  Trainer says training stops (control.should_training_stop), before the
  TensorBoardCallback closes its writer in on_train_end.
- without one: an event file of its own in the directory the
  TensorBoardCallback would use ($TENSORBOARD_LOGGING_DIR, else
  output_dir/runs/<date>_<host>), closed at the end of training.

Only the main process (state.is_world_process_zero) writes. It alone runs
the probe when the model is replicated (DDP); when the model the Trainer
hands to callbacks is sharded (FSDP2 modules or DTensor parameters, see
tb_attention.probe.is_sharded; `sharded=` overrides) every process runs the
probe's forward pass with it, at the same steps.
"""
import os
import warnings

from transformers.trainer_callback import TrainerCallback

from tb_attention.probe import DEFAULT_TAG_PREFIX, Probe, check_sharded, runs_sharded


def _tokenizer_of(processing_class):
    """A tokenizer from the Trainer's processing_class (a tokenizer, or a
    processor holding one)."""
    if processing_class is None:
        return None
    if hasattr(processing_class, "convert_ids_to_tokens"):
        return processing_class
    return getattr(processing_class, "tokenizer", None)


def _reports_to_tensorboard(args):
    report_to = getattr(args, "report_to", None) or ()
    return "tensorboard" in ([report_to] if isinstance(report_to, str) else report_to)


class AttentionCallback(TrainerCallback):
    """Logs the model's attention on probe texts before training, every
    `every_n_steps` steps and at the last step, into the Trainer's TensorBoard run.

    texts: a str, a list of them or a dict name -> text (see tb_attention.Probe);
        token ids work too when there is no tokenizer.
    trainer: the Trainer; needed to write into its TensorBoardCallback's run
        (report_to with "tensorboard"), so add the callback after building the
        Trainer: trainer.add_callback(AttentionCallback(texts, trainer=trainer)).
    tokenizer: defaults to the Trainer's processing_class.
    every_n_steps: log when state.global_step % every_n_steps == 0; default:
        the Trainer's logging interval (args.logging_steps, as state.logging_steps).
    neurons: also log queries and keys (the neuron view).
    tag_prefix, layers: as in tb_attention.Probe.
    log_at_start, log_at_end: also log before the first step / at the last step.
    sharded: whether every process runs the probe's forward pass (True) or
        the main process alone (False); None: decided from the model.
    """

    def __init__(self, texts, trainer=None, tokenizer=None, every_n_steps=None, neurons: bool = False,
                 tag_prefix: str = DEFAULT_TAG_PREFIX, layers=None, log_at_start: bool = True,
                 log_at_end: bool = True, sharded=None):
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int)
                                          or every_n_steps < 1):
            raise ValueError("every_n_steps must be a positive int or None, got %r" % (every_n_steps,))
        if trainer is not None and not hasattr(trainer, "callback_handler"):
            raise TypeError("trainer must be a transformers Trainer, got %s" % type(trainer).__name__)
        self.texts = texts
        self.trainer = trainer
        self.tokenizer = tokenizer
        self.every_n_steps = every_n_steps
        self.neurons = neurons
        self.tag_prefix = tag_prefix
        self.layers = layers
        self.log_at_start = log_at_start
        self.log_at_end = log_at_end
        check_sharded(sharded)
        self.sharded = sharded
        self.logdir = None  # where the attention went (set on the first log)
        self.probe = None
        self.logged_steps = []  # steps written (main process only)
        self._probed = []  # steps probed; on every process that runs the probe
        self._every = every_n_steps
        self._start = 0
        self._done = False

    # -- Trainer events ----------------------------------------------------

    def on_init_end(self, args, state, control, **kwargs):
        self._check_target(args)

    def on_train_begin(self, args, state, control, **kwargs):
        self._check_target(args)
        self.probe, self.logdir, self.logged_steps, self._probed, self._done = None, None, [], [], False
        self._every = self.every_n_steps or max(int(state.logging_steps or 1), 1)
        self._start = state.global_step

    def on_step_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        # The first step's begin, not train_begin: by now every callback's
        # on_train_begin ran, so a TensorBoardCallback listed after this one
        # has opened its writer too.
        if self.log_at_start and state.global_step == self._start and not self._probed:
            self._log(args, state, model, processing_class)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self._every == 0:
            self._log(args, state, model, processing_class)
        self._maybe_finish(args, state, control, model, processing_class)

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._maybe_finish(args, state, control, model, processing_class)  # early stopping

    def on_epoch_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._maybe_finish(args, state, control, model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self._done or not self._runs_probe(state, model):
            return
        if not self._tensorboard_closed(state):  # our own file, or theirs still open
            self._finish(args, state, model, processing_class)
        elif state.is_world_process_zero and self.log_at_end and state.global_step not in self.logged_steps:
            warnings.warn("AttentionCallback: the TensorBoardCallback closed its writer before the "
                          "last step (%d) could be logged" % state.global_step)

    # -- logging -----------------------------------------------------------

    def _maybe_finish(self, args, state, control, model, processing_class):
        if control.should_training_stop and not self._done:
            self._finish(args, state, model, processing_class)

    def _finish(self, args, state, model, processing_class):
        """The last step; then close (flush) while the Trainer's writer is open."""
        if self.log_at_end:
            self._log(args, state, model, processing_class)
        if self.probe is not None:
            self.probe.close()
        self._done = True

    def _runs_probe(self, state, model):
        """The main process always; every process when the model is sharded
        (its forward pass is collective). The same answer on every process."""
        if state.is_world_process_zero:
            return True
        if model is None:
            return False
        return runs_sharded(self.sharded, model)

    def _log(self, args, state, model, processing_class):
        step = state.global_step
        if model is None or self._done or step in self._probed or not self._runs_probe(state, model):
            return
        if self.probe is None:
            tokenizer = self.tokenizer if self.tokenizer is not None else _tokenizer_of(processing_class)
            # other processes run the forward pass only: the Probe opens no writer there
            target = self._writer_target(args) if state.is_world_process_zero else args.output_dir
            self.probe = Probe(model, tokenizer, self.texts, target,
                               every_n_steps=self._every, neurons=self.neurons,
                               tag_prefix=self.tag_prefix, layers=self.layers, sharded=self.sharded)
        self.probe.model = model
        self._probed.append(step)
        if self.probe.log(step):
            self.logged_steps.append(step)

    def _tensorboard_callback(self):
        if self.trainer is None:
            return None
        from transformers.integrations import TensorBoardCallback

        return next((c for c in self.trainer.callback_handler.callbacks
                     if isinstance(c, TensorBoardCallback)), None)

    def _tensorboard_closed(self, state):
        """Whether the TensorBoardCallback has closed its writer. Other
        processes have none; they tell from the callbacks' order (the one
        listed before this callback ran its on_train_end first), so every
        process makes the main process's choice."""
        tb = self._tensorboard_callback()
        if tb is None:
            return False
        if state.is_world_process_zero:
            return tb.tb_writer is None
        callbacks = self.trainer.callback_handler.callbacks
        return self in callbacks and callbacks.index(tb) < callbacks.index(self)

    def _check_target(self, args):
        if self.trainer is None and _reports_to_tensorboard(args):
            raise ValueError(
                "AttentionCallback writes into the Trainer's TensorBoard run (report_to has "
                "'tensorboard') and needs the Trainer for it: build the Trainer without this "
                "callback, then trainer.add_callback(AttentionCallback(texts, trainer=trainer))")

    def _writer_target(self, args):
        """The Trainer's SummaryWriter, else a logdir for our own event file."""
        tb = self._tensorboard_callback()
        if tb is not None:
            if tb.tb_writer is None:
                raise RuntimeError("AttentionCallback: the Trainer's TensorBoardCallback has no open "
                                   "writer on the main process (its on_train_begin has not run)")
            writer = tb.tb_writer
            self.logdir = writer.get_logdir() if hasattr(writer, "get_logdir") else getattr(writer, "logdir", None)
            return writer
        logdir = os.environ.get("TENSORBOARD_LOGGING_DIR")
        if not logdir:
            from transformers.integrations.integration_utils import default_logdir

            logdir = os.path.join(args.output_dir, default_logdir())
        self.logdir = os.path.expanduser(logdir)
        return self.logdir
