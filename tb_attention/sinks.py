"""Where AttentionWriter's events go: an event file of its own, or the event
file of the SummaryWriter (torch's or tensorboardX's) the user logs scalars
with, so attention and scalars are one run in one file.

Every sink takes whole Event protos (tb_attention.summary builds them) on
the writer's background thread, through public writer API: an
EventFileWriter's or a SummaryWriter's `file_writer.add_event`.

One event file per run: TensorBoard's Python loader reads a run's event
files in order and never goes back to an older one, so two writers
appending to two files in one directory lose data (docs/faults.md). A sink
of its own therefore warns when the directory already holds an event file.
"""
import glob
import os
import time
import types
import warnings

from tensorboard import version as tensorboard_version
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.summary.writer.record_writer import RecordWriter

from tb_attention import files, tfrecord

# TensorBoard frames records computing CRC32C in pure Python (about 7 MB/s,
# holding the GIL) and offers no public way to replace it. In the versions
# listed here its RecordWriter.write writes exactly tfrecord.write_record's
# bytes (tests/test_writer.py::test_fast_framing_is_tensorboards compares
# them), so there an EventFileWriter's record writer gets the C CRC32C; in
# any other version TensorBoard's own code runs: slower, and correct.
FAST_CRC_TENSORBOARD_VERSIONS = ("2.21.",)


class SecondEventFileWarning(UserWarning):
    """A new event file in a run directory that already has one."""


def _fast_record_write(self, data):
    tfrecord.write_record(self._writer.write, data)


def accelerate(event_file_writer):
    """Give a TensorBoard EventFileWriter the C CRC32C, where that is known to
    frame byte-for-byte as TensorBoard does (see FAST_CRC_TENSORBOARD_VERSIONS).
    Returns whether it did. Speeds up the scalars of a shared file too."""
    if not tensorboard_version.VERSION.startswith(FAST_CRC_TENSORBOARD_VERSIONS):
        return False
    record_writer = getattr(getattr(event_file_writer, "_async_writer", None), "_writer", None)
    if type(record_writer) is not RecordWriter or not hasattr(record_writer, "_writer"):
        return False
    if not getattr(record_writer, "_tb_attention_fast", False):
        record_writer.write = types.MethodType(_fast_record_write, record_writer)
        record_writer._tb_attention_fast = True
    return True


def _warn_if_run_has_events(logdir):
    if files.is_url(logdir):  # RemoteLogdirError here when the store cannot be reached
        existing = [n for n in files.names(logdir) if "tfevents" in n]
    else:
        try:
            existing = sorted(glob.glob(os.path.join(glob.escape(logdir), "*tfevents*")))
        except OSError:
            return
    if existing:
        warnings.warn(
            "%s already holds an event file (%s); AttentionWriter adds a second one. TensorBoard's "
            "Python loader reads a run's files in order and never goes back to an older one, so while "
            "another writer still writes there its data gets lost: give AttentionWriter that writer "
            "(a torch or tensorboardX SummaryWriter) instead, or another directory"
            % (logdir, os.path.basename(existing[-1])), SecondEventFileWarning, stacklevel=4)


# Our own event file is closed and a new one begun once it holds this much
# (docs/faults.md): a damaged record header makes TensorBoard's loaders drop
# the rest of its file (and the Python loader a bad payload too), never the
# files after it, so damage takes at most this much from them.
ROTATE_BYTES = 64 * 2 ** 20


class OwnFile:
    """Event files of our own in a directory, one after another (ROTATE_BYTES).
    A URL logdir (s3://, memory://, ...) is written through TensorBoard's file
    layer, which its Python loader reads with: S3 through boto3 (S3_ENDPOINT),
    other schemes through fsspec; an object store has no append, so each
    flush uploads the file whole (at most ROTATE_BYTES)."""

    def __init__(self, logdir):
        self.logdir = logdir
        if files.is_url(logdir):
            files.prepare_tensorboard_layer(logdir)
        _warn_if_run_has_events(logdir)
        self._open()

    def _open(self):
        # One serialized event waiting in TensorBoard's queue is enough to keep
        # its thread busy; more would sit outside the writer's byte budget.
        self._writer = EventFileWriter(self.logdir, max_queue_size=1, flush_secs=30)
        accelerate(self._writer)
        self.path = self._writer._file_name
        self._bytes = 0
        self._second = int(time.time())

    def add_event(self, event):
        """An Event, or its serialized bytes (summary.event_bytes)."""
        # A new file only in a later second: its name (which starts with the
        # second) must sort after this one's, or the Python loader, which never
        # goes back to an earlier name, would skip it.
        if self._bytes >= ROTATE_BYTES and int(time.time()) > self._second:
            self.close()
            self._open()
        if isinstance(event, bytes):
            self._writer._async_writer.write(event)
            self._bytes += len(event) + 16  # the record's framing
        else:
            self._writer.add_event(event)
            self._bytes += event.ByteSize() + 16

    def flush(self):
        self._writer.flush()

    def close(self):
        async_writer = self._writer._async_writer
        self._writer.close()
        # TensorBoard's worker thread may die writing the last records while
        # close() stops it, and its close() does not look: raise it here.
        error = async_writer._worker.exception
        if error is not None:
            raise error


def summary_writer_kind(obj):
    """"torch" or "tensorboardX" for their SummaryWriters (and subclasses), else None."""
    for cls in type(obj).__mro__:
        if cls.__name__ != "SummaryWriter" or not hasattr(obj, "file_writer"):
            continue
        if cls.__module__.startswith("torch.utils.tensorboard"):
            return "torch"
        if cls.__module__.split(".")[0] == "tensorboardX":
            return "tensorboardX"
    return None


class SharedFile:
    """The event file of a torch or tensorboardX SummaryWriter (its public
    `file_writer`). The SummaryWriter stays the user's: closing this flushes."""

    def __init__(self, summary_writer, kind):
        self._sw = summary_writer
        self.logdir = summary_writer.get_logdir() if kind == "torch" else summary_writer.logdir
        self._convert = None
        if kind == "tensorboardX":  # its add_event takes its own generated Event class
            from tensorboardX.proto import event_pb2 as tbx_event_pb2

            self._convert = lambda event: tbx_event_pb2.Event.FromString(event.SerializeToString())

    def _file_writer(self):
        file_writer = self._sw.file_writer
        if file_writer is None:
            # Writing on would make the SummaryWriter open a second event file.
            raise IOError("its SummaryWriter was closed: attention logged after that is not written (the "
                          "SummaryWriter would open a second event file, splitting the run)")
        accelerate(getattr(file_writer, "event_writer", None))
        return file_writer

    @property
    def path(self):
        file_writer = self._sw.file_writer
        event_writer = getattr(file_writer, "event_writer", None)
        return getattr(event_writer, "_file_name", None) or self.logdir

    def add_event(self, event):
        if self._convert is not None:
            event = self._convert(event)
        self._file_writer().add_event(event, event.step, event.wall_time)

    def flush(self):
        if self._sw.file_writer is not None:  # a closed SummaryWriter flushed when it closed
            self._sw.file_writer.flush()

    def close(self):
        self.flush()
