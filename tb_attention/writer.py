"""AttentionWriter: log AttentionRecords (or raw attention tensors) to a TensorBoard logdir.

The training thread only validates, copies to CPU and enqueues. A background
thread encodes the step (tb_attention.summary: statistics, codec), builds the
Event and hands it to a sink (tb_attention.sinks): an event file of its own,
or the event file of the torch or tensorboardX SummaryWriter given, so
attention and scalars are one run in one file (TensorBoard's Python loader
never goes back to an older event file in a directory: a second file in the
same run would make it drop scalars).
"""
import atexit
import math
import numbers
import operator
import os
import queue
import sys
import threading
import time
import warnings
import weakref

from tensorboard.compat.proto import event_pb2

from tb_attention import codec, files, metadata, sinks, summary
from tb_attention.record import AttentionInputError, AttentionRecord, from_encoder_decoder, from_raw


class AttentionWriterError(IOError):
    """Writing to the logdir failed; raised on the next call after the failure."""


_STOP = object()

# Records waiting for the background thread may hold at most this much memory
# (one record always gets through, however large). A count alone would let
# max_queue 32x32x1024x1024 records, 4 GiB each as float32, pile up.
_MAX_QUEUED_BYTES = 1 << 30


def _record_nbytes(record):
    total = 0
    for name in record.kinds:
        k = record.kind(name)
        total += k.attention.nbytes
        n = k.neurons
        if n is not None:
            total += n.queries.nbytes + n.keys.nbytes + n.masked.nbytes
            total += 0 if n.bias is None else n.bias.nbytes
    return total

_live_writers = weakref.WeakSet()


@atexit.register
def _close_all_at_exit():
    for w in list(_live_writers):
        try:
            w.close()
        except Exception as e:  # exit must go on, but never swallow the error
            sys.stderr.write("tb-attention: flushing at exit failed: %s\n" % e)


def _check_run_name(logdir):
    """The run's own directory name (the end of every run name TensorBoard
    gives it) must be one both loaders read: refused before any file is made."""
    summary.check_name("run directory", os.path.basename(os.path.abspath(logdir)))


class AttentionWriter:
    """Logs attention to a TensorBoard logdir.

    AttentionWriter("runs/exp1") writes its own event file into that directory;
    AttentionWriter(summary_writer) writes into a torch or tensorboardX
    SummaryWriter's event file, so attention and scalars are one run.
    compress=False stores payloads uncompressed (format 3 and older): about
    4x the bytes on disk, for about half the background thread's time.
    encode_threads: threads that quantize, measure and compress the layers
    of a step side by side (numpy and zstd release the GIL); 2 takes about
    half the time of 1 per step where a core is free, as on a machine
    training on its GPU; 1 keeps the work on the background thread alone.
    A logdir may be a URL (s3://bucket/runs/exp1, memory://..., any fsspec
    scheme): a store that fails raises tb_attention.RemoteLogdirError naming
    the URL and the cause, here or on the call after the failure.
    """

    def __init__(self, logdir_or_summary_writer, dtype="uint8", max_queue=8, compress=True,
                 encode_threads=2):
        if dtype not in codec.DTYPES:
            raise ValueError("dtype must be one of %s, got %r" % (sorted(codec.DTYPES), dtype))
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError("max_queue must be a positive int, got %r" % (max_queue,))
        if isinstance(encode_threads, bool) or not isinstance(encode_threads, int) or encode_threads < 1:
            raise ValueError("encode_threads must be a positive int, got %r" % (encode_threads,))
        target = logdir_or_summary_writer
        kind = sinks.summary_writer_kind(target)
        if kind is not None:
            self._sink = sinks.SharedFile(target, kind)
            _check_run_name(self._sink.logdir)
        elif isinstance(target, (str, os.PathLike)):
            logdir = os.fspath(target)
            if not logdir:
                raise ValueError("logdir is empty")
            _check_run_name(logdir)
            try:
                self._sink = sinks.OwnFile(logdir)
            except files.RemoteLogdirError:
                raise
            except Exception as e:
                if files.is_url(logdir):
                    raise files.remote_error(logdir, e) from e
                if not isinstance(e, OSError):
                    raise
                raise AttentionWriterError("cannot create an event file in %s: %s" % (logdir, e)) from e
        else:
            raise TypeError(
                "AttentionWriter takes a logdir path, a torch.utils.tensorboard SummaryWriter or a "
                "tensorboardX SummaryWriter, got %s; any other writer can log "
                "tb_attention.summary.pb(tag, record) through its own add_summary" % type(target).__name__)
        self.logdir = self._sink.logdir
        self._dtype = dtype
        # zstd per payload (format 4): a quarter of the bytes or less, for about
        # half the background thread's time at 128 tokens (bench_scale.py)
        self._compress = bool(compress)
        self._writer_id = codec.new_writer_id()
        self._sequences = {}
        self._logged = set()  # (tag, step): a second one replaces the first for load() and the dashboard
        self._metadata = metadata.create_summary_metadata()
        self._metadata_bytes = self._metadata.SerializeToString()
        self._queue = queue.Queue(maxsize=max_queue)
        self._queued_bytes = 0
        self._space = threading.Condition()
        self._error = None  # the event file failed: sticky, nothing more is written
        self._refused = _Refusals()
        self._closed = False
        self._lock = threading.Lock()
        self._helpers = _Helpers(encode_threads - 1)
        self._thread = threading.Thread(target=self._run, name="tb-attention-writer", daemon=True)
        self._thread.start()
        # A forked child (DataLoader workers, os.fork) inherits this object
        # but not its background thread: its 9th record waited forever.
        self._pid = os.getpid()
        _live_writers.add(self)

    @property
    def dtype(self):
        """How attention weights are stored: "uint8" or "float16"."""
        return self._dtype

    # -- training thread ---------------------------------------------------

    def add_attention(self, tag, attention=None, tokens=None, global_step=None, walltime=None,
                      layer_ids=None, segment_b=None, causal=False, kind="self",
                      special_tokens=None, *, encoder=None, decoder=None, cross=None,
                      encoder_tokens=None, decoder_tokens=None):
        """Log one example's attention at a step.

        attention: an AttentionRecord (from tb_attention.capture), a tuple of L
        tensors [1, H, Tq, Tk] (what transformers returns), or one array
        [L, H, Tq, Tk]. With raw tensors, tokens is a list of strings (self
        attention) or a pair (query_tokens, key_tokens), and special_tokens
        the key positions of special tokens ([CLS], [SEP], ...) for the
        "special_tokens" statistic (unknown, NaN, without them).
        An encoder-decoder model's raw tensors go in one call instead, as
        BertViz takes them: encoder=, decoder=, cross= (any of them) with
        encoder_tokens and decoder_tokens (decoder self-attention is causal).
        global_step: an int or a 0-d integer tensor/array; None means step 0
        (as torch's SummaryWriter). Logging a tag at a step twice warns: the
        step keeps only the last.

        An AttentionRecord is taken as it is, without a copy: the writer owns
        its arrays from here on and its background thread reads them later,
        so do not change them after this call (a record from capture(...,
        dtype="uint8") is checked in microseconds and queued). Raw tensors
        are copied (to float32) before this returns.
        """
        self._check_process()
        self._raise_error()
        summary.check_tag(tag)
        step = _step(global_step)
        if walltime is None:
            walltime = time.time()
        elif (isinstance(walltime, bool) or not isinstance(walltime, numbers.Real)
              or not math.isfinite(walltime)):
            raise AttentionInputError("walltime must be a finite number (seconds since the epoch), got %r"
                                      % (walltime,))
        raw_fields = (tokens is not None or segment_b is not None or special_tokens is not None
                      or causal is not False or kind != "self")
        if encoder is not None or decoder is not None or cross is not None:
            if attention is not None or raw_fields:
                raise AttentionInputError(
                    "with encoder=, decoder= or cross= give the tokens as encoder_tokens and "
                    "decoder_tokens (and only layer_ids besides); not attention, tokens, kind, "
                    "causal, segment_b or special_tokens")
            record = from_encoder_decoder(encoder, decoder, cross, encoder_tokens, decoder_tokens,
                                          layer_ids=layer_ids)
        elif encoder_tokens is not None or decoder_tokens is not None:
            raise AttentionInputError("encoder_tokens and decoder_tokens go with encoder=, decoder= "
                                      "or cross= attention")
        elif attention is None:
            raise AttentionInputError("no attention given: pass attention (a record or tensors), "
                                      "or encoder=, decoder=, cross=")
        elif isinstance(attention, AttentionRecord):
            if raw_fields or layer_ids is not None:
                raise AttentionInputError(
                    "tokens, layer_ids, segment_b, special_tokens, causal and kind come from the "
                    "record; pass them only with raw attention tensors")
            record = attention
        else:
            record = from_raw(attention, tokens, layer_ids=layer_ids, segment_b=segment_b,
                              causal=causal, kind=kind, special_tokens=special_tokens)
        summary.check_record(record, self._dtype, compressed=self._compress)
        with self._lock:
            if self._closed:
                raise AttentionWriterError("this AttentionWriter for %s is closed" % self.logdir)
            if (tag, step) in self._logged:
                warnings.warn(
                    "%r was already logged at step %d by this writer: the step keeps only the last "
                    "(load() and the dashboard show it); an encoder-decoder's kinds go in one call "
                    "(encoder=, decoder=, cross=)" % (tag, step), stacklevel=2)
            # the sequence number advances only once the record is queued: a
            # Ctrl-C while waiting must not leave a gap the dashboard blames
            # on TensorBoard's sampling
            sequence = self._sequences.get(tag, 0)
            self._put((tag, step, float(walltime), record, sequence), _record_nbytes(record))
            self._sequences[tag] = sequence + 1
            self._logged.add((tag, step))
        self._refused.raise_once()  # earlier steps' refusals; this one is queued

    def _check_process(self):
        if os.getpid() != self._pid:
            raise AttentionWriterError(
                "this AttentionWriter for %s was created in process %d; process %d is a fork of "
                "it (a DataLoader worker, os.fork) without its writing thread: create an "
                "AttentionWriter in the child, or log from the parent" % (self.logdir, self._pid,
                                                                           os.getpid()))

    def _put(self, item, nbytes):
        # A bounded queue: when the disk is slower than training, training waits
        # here instead of memory growing without limit. Wake up now and then so a
        # dead background thread turns into an exception instead of a hang.
        with self._space:
            while self._queued_bytes and self._queued_bytes + nbytes > _MAX_QUEUED_BYTES:
                self._space.wait(0.5)
                self._raise_error()
            self._queued_bytes += nbytes
        try:
            while True:
                try:
                    self._queue.put(item + (nbytes,), timeout=0.5)
                    return
                except queue.Full:
                    self._raise_error()
        except BaseException:  # KeyboardInterrupt too: the bytes were never queued
            self._release(nbytes)
            raise

    def _release(self, nbytes):
        with self._space:
            self._queued_bytes -= nbytes
            self._space.notify_all()

    def flush(self):
        """Block until everything added so far is in the event file."""
        self._check_process()
        self._raise_error()
        self._queue.join()
        self._raise_error()
        try:
            self._to_sink(self._sink.flush)
        except Exception as e:
            self._error = self._wrap(e)  # sticky: later calls raise it too
            raise self._error from e
        self._refused.raise_once()

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _live_writers.discard(self)
        if os.getpid() != self._pid:
            return  # a fork's copy: the file and its thread are the parent's
        self._queue.put(_STOP)
        self._thread.join()
        self._helpers.stop()
        try:
            self._to_sink(self._sink.close)
        except Exception as e:
            if self._error is None:
                self._error = self._wrap(e)
        self._raise_pending()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            try:  # keep the user's exception, not ours
                self.close()
            except AttentionWriterError:
                pass

    def _raise_pending(self):
        self._raise_error()
        self._refused.raise_once()

    def _raise_error(self):
        """The event file failed: raised by every call from then on."""
        error = self._error
        if error is not None:
            raise error

    def _wrap(self, e):
        if isinstance(e, files.RemoteLogdirError):  # it names the URL and the cause
            return e
        return AttentionWriterError("writing attention to %s failed: %s" % (self._sink.path, e))

    def _to_sink(self, method, *args):
        """The sink's method: the remote store's errors as RemoteLogdirError."""
        try:
            return method(*args)
        except Exception as e:
            if files.is_url(self.logdir):
                raise files.remote_error(self._sink.path, e) from e
            raise

    # -- background thread -------------------------------------------------

    def _run(self):
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:
                    event = self._refused.event_or_none(self._encode, *item[:-1])
                    if event is not None:
                        self._to_sink(self._sink.add_event, event)
            except Exception as e:  # surfaced to the user on their next call
                self._error = self._wrap(e)
            finally:
                if item is not _STOP:
                    self._release(item[-1])
                item = None  # do not hold the last record while waiting for the next
                self._queue.task_done()

    def _encode(self, tag, step, walltime, record, sequence):
        blobs = summary.step_blobs(record, sequence, self._writer_id, self._dtype, self._compress,
                                   pmap=self._helpers.map)
        summary.check_event_size(blobs, tag, record, self._dtype)
        if isinstance(self._sink, sinks.OwnFile):  # the Event's bytes, payloads copied once
            return summary.event_bytes(walltime, step, tag, blobs, self._metadata_bytes)
        event = event_pb2.Event(wall_time=walltime, step=step)
        summary.add_value(event.summary, tag, blobs, self._metadata)
        return event


class _Helpers:
    """Threads that run a step's jobs (codec.encode_step's pmap) beside the
    writer's own thread, which runs them too. Daemon threads of our own:
    concurrent.futures refuses new work once the interpreter begins to
    exit, before the atexit flush that writes the last steps."""

    def __init__(self, count):
        self._count = count
        self._tasks = queue.SimpleQueue()
        for i in range(count):
            threading.Thread(target=self._work, name="tb-attention-encode-%d" % i, daemon=True).start()

    def _work(self):
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task()

    def stop(self):
        for _ in range(self._count):
            self._tasks.put(None)

    def map(self, fn, items):
        """[fn(item) for item in items], the items shared out among the
        threads; raises the first error once every started job has ended."""
        items = list(items)
        results = [None] * len(items)
        state = {"claimed": 0, "ended": 0, "error": None}
        changed = threading.Condition()

        def drain():
            while True:
                with changed:
                    i = state["claimed"]
                    if i >= len(items) or state["error"] is not None:
                        return
                    state["claimed"] = i + 1
                try:
                    result, error = fn(items[i]), None
                except BaseException as e:  # handed to the writer's thread below
                    result, error = None, e
                with changed:
                    results[i] = result
                    if error is not None and state["error"] is None:
                        state["error"] = error
                    state["ended"] += 1
                    changed.notify_all()

        for _ in range(min(self._count, len(items) - 1)):
            self._tasks.put(drain)
        drain()
        with changed:
            changed.wait_for(lambda: state["ended"] == state["claimed"])
        if state["error"] is not None:
            raise state["error"]
        return results


class _Refusals:
    """Steps the background thread refused alone (too large once compressed,
    or failing to encode): raised once, on the user's next call. Unlike a
    failing event file they stop nothing: later steps are written."""

    def __init__(self):
        self._messages = []
        self._lock = threading.Lock()

    def event_or_none(self, encode, tag, step, *args):
        """encode(tag, step, *args), or None when this one record cannot be written."""
        try:
            return encode(tag, step, *args)
        except summary.RecordTooLarge as e:
            message = "step %d of %s" % (step, e)
        except Exception as e:  # this record's encoding; the event file is untouched
            message = "step %d of %r: encoding failed: %s: %s" % (step, tag, type(e).__name__, e)
        with self._lock:
            self._messages.append(message)
        return None

    def raise_once(self):
        with self._lock:
            messages, self._messages = self._messages, []
        if messages:
            raise AttentionWriterError(
                "%d step(s) were not written (steps logged before and after them were): %s"
                % (len(messages), "; ".join(messages)))


def _step(global_step):
    """An Event's step from an int, a numpy integer or a 0-d integer
    tensor/array; None is step 0, as torch's SummaryWriter writes it."""
    if global_step is None:
        return 0
    if (isinstance(global_step, (bool, str, bytes)) or getattr(global_step, "ndim", 0) != 0
            or not hasattr(type(global_step), "__index__")):
        raise AttentionInputError("global_step must be an int, got %r (a 0-d integer tensor works too)"
                                  % (global_step,))
    dtype = getattr(global_step, "dtype", None)
    if dtype is not None and str(dtype).replace("torch.", "") == "bool":
        raise AttentionInputError("global_step must be an int, got a bool tensor %r" % (global_step,))
    try:
        step = operator.index(global_step)
    except TypeError:
        raise AttentionInputError("global_step must be an int, got %r (a 0-d integer tensor works too)"
                                  % (global_step,)) from None
    if step < 0:
        raise AttentionInputError("global_step must be >= 0, got %d" % step)
    if step >= 2 ** 63:  # an Event's step is an int64
        raise AttentionInputError("global_step must be at most 2**63-1 = %d, got %d" % (2 ** 63 - 1, step))
    return step
