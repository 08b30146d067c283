"""AttentionCallback: the transformers Trainer logs attention on probe texts.

    from tb_attention.integrations.transformers import AttentionCallback

    trainer = Trainer(model=model, args=TrainingArguments(..., report_to=["tensorboard"]),
                      train_dataset=ds, processing_class=tokenizer,
                      callbacks=[AttentionCallback(["the cat sat on the mat"], every_n_steps=50)])
    trainer.train()

Every `every_n_steps` optimizer steps, and once more at the end of training,
the callback runs the probe texts through the model (tb_attention.Probe:
eval mode, no gradients, training state restored exactly) and logs one
attention tag per text.

Where it writes: into the Trainer's own TensorBoard run, through the
SummaryWriter of its TensorBoardCallback (`tb_writer`), so scalars and
attention are one run and one event file. Without a TensorBoardCallback
(report_to without "tensorboard") it writes its own event file to
args.logging_dir when the TrainingArguments have one, else to
$TENSORBOARD_LOGGING_DIR, else to output_dir/runs/<date>_<host> (the
TensorBoardCallback's default).

Only the main process (state.is_world_process_zero) logs.
"""
import os
import sys
import warnings

from transformers.trainer_callback import CallbackHandler, TrainerCallback

from tb_attention.probe import DEFAULT_TAG_PREFIX, Probe


def _find_handler(callback):
    """The Trainer's CallbackHandler that is calling `callback` right now.

    Callbacks are not handed the Trainer nor its other callbacks; the handler
    is the `self` of CallbackHandler.call_event up the stack."""
    frame = sys._getframe(1)
    for _ in range(32):
        if frame is None:
            break
        obj = frame.f_locals.get("self")
        if isinstance(obj, CallbackHandler) and any(c is callback for c in obj.callbacks):
            return obj
        frame = frame.f_back
    return None


def _tensorboard_callback(handler):
    if handler is None:
        return None
    for c in handler.callbacks:
        if type(c).__name__ == "TensorBoardCallback" and hasattr(c, "tb_writer"):
            return c
    return None


def _is_torch_summary_writer(w):
    return (type(w).__module__.startswith("torch.utils.tensorboard")
            and hasattr(w, "_get_file_writer") and hasattr(w, "get_logdir"))


def _tokenizer_of(processing_class):
    """A tokenizer from the Trainer's processing_class (a tokenizer, or a
    processor holding one)."""
    if processing_class is None:
        return None
    if hasattr(processing_class, "convert_ids_to_tokens"):
        return processing_class
    return getattr(processing_class, "tokenizer", None)


class AttentionCallback(TrainerCallback):
    """Logs the model's attention on probe texts every `every_n_steps` steps and
    at the end of training, into the Trainer's TensorBoard run.

    texts: a str, a list of them or a dict name -> text (see tb_attention.Probe);
        token ids work too when there is no tokenizer.
    tokenizer: defaults to the Trainer's processing_class.
    every_n_steps: log when state.global_step % every_n_steps == 0.
    neurons: also log queries and keys (the neuron view).
    tag_prefix, layers: as in tb_attention.Probe.
    log_at_end: also log the last step of training.
    """

    def __init__(self, texts, tokenizer=None, every_n_steps: int = 50, neurons: bool = False,
                 tag_prefix: str = DEFAULT_TAG_PREFIX, layers=None, log_at_end: bool = True):
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError("every_n_steps must be a positive int, got %r" % (every_n_steps,))
        self.texts = texts
        self.tokenizer = tokenizer
        self.every_n_steps = every_n_steps
        self.neurons = neurons
        self.tag_prefix = tag_prefix
        self.layers = layers
        self.log_at_end = log_at_end
        self.logdir = None  # where the attention went (set on the first log)
        self.probe = None
        self._handler = None
        self._last_step = None

    # -- Trainer events ----------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        self.probe = None
        self._last_step = None
        self._handler = _find_handler(self)
        tb = _tensorboard_callback(self._handler)
        if tb is not None:
            # The TensorBoardCallback closes its SummaryWriter in on_train_end;
            # run before it there, so the last step is logged and flushed into
            # the writer while it is still open. (Moving ourselves to an earlier
            # place leaves the handler's loop over the callbacks intact: the
            # callbacks after us keep their places.)
            callbacks = self._handler.callbacks
            ours, theirs = callbacks.index(self), callbacks.index(tb)
            if ours > theirs:
                callbacks.pop(ours)
                callbacks.insert(theirs, self)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero:
            return
        step = state.global_step
        at_end = self.log_at_end and state.max_steps and step >= state.max_steps
        if step % self.every_n_steps == 0 or at_end:
            self._log(args, step, model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.log_at_end and self._last_step != state.global_step and model is not None:
            self._log(args, state.global_step, model, processing_class)
        if self.probe is not None:
            self.probe.close()  # flushes while the Trainer's SummaryWriter is open

    # -- logging -----------------------------------------------------------

    def _log(self, args, step, model, processing_class):
        if model is None:
            return
        if self.probe is None:
            tokenizer = self.tokenizer if self.tokenizer is not None else _tokenizer_of(processing_class)
            self.probe = Probe(model, tokenizer, self.texts, self._writer_target(args),
                               every_n_steps=self.every_n_steps, neurons=self.neurons,
                               tag_prefix=self.tag_prefix, layers=self.layers)
        self.probe.model = model
        self.probe.log(step)
        self._last_step = step

    def _writer_target(self, args):
        """The Trainer's SummaryWriter, else a logdir for our own event file."""
        tb = _tensorboard_callback(self._handler)
        if tb is not None:
            if tb.tb_writer is None and getattr(tb, "logging_dir", None):
                tb._init_summary_writer(args)  # what its own on_log would do next
            writer = tb.tb_writer
            if writer is not None and _is_torch_summary_writer(writer):
                self.logdir = writer.get_logdir()
                return writer
            if writer is not None:
                # tensorboardX: its own run beside the Trainer's, never a second
                # event file in the same directory (the Python loader drops data then).
                self.logdir = os.path.join(writer.logdir if hasattr(writer, "logdir") else
                                           getattr(tb, "logging_dir", args.output_dir), "attention")
                return self.logdir
        logdir = getattr(args, "logging_dir", None) or os.environ.get("TENSORBOARD_LOGGING_DIR")
        if not logdir:
            from transformers.integrations.integration_utils import default_logdir

            logdir = os.path.join(args.output_dir, default_logdir())
            if self._handler is None and "tensorboard" in (getattr(args, "report_to", None) or ()):
                warnings.warn(
                    "AttentionCallback could not find the Trainer's TensorBoardCallback; "
                    "writing attention to its own event file in %s" % logdir)
        self.logdir = os.path.expanduser(logdir)
        return self.logdir
