"""load(): read logged attention back from a logdir, without TensorBoard.

For notebooks and tests. Reads event files directly, checking every record's
CRC; a torn last record (a process killed while writing) is skipped with a
warning, and so is any record that fails its checksum.
"""
import os
import stat
import warnings

from tensorboard.compat.proto import event_pb2

from tb_attention import codec, files, metadata, provenance, tfrecord
from tb_attention import stats as _stats

# What load() says about a damaged record of an event file; it goes on past
# a bad payload and past a bad header (at the next whole record), and stops
# at a torn record (the end of the file).
_DAMAGE = {
    tfrecord.TORN: "%s: skipped a torn record at byte %d (the writer stopped mid-record)",
    tfrecord.BAD_HEADER: "%s: record header at byte %d is corrupt; skipped %d bytes to the next "
                         "whole record",
    tfrecord.BAD_PAYLOAD: "%s: skipped a corrupt record at byte %d (checksum mismatch)",
}


def _file_bytes(path):
    """The bytes of the event file at path, or None (warned) for what is not
    a readable regular file: a dangling symlink or an unreadable file made
    load() raise for the whole logdir, and a FIFO made it hang forever."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            warnings.warn("%s: skipped, not a regular file" % path)
            return None
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        warnings.warn("%s: skipped, cannot be read (%s)" % (path, e.strerror or e))
        return None


def _records(path, data):
    """The payloads of the TFRecord file at path (its bytes: data), skipping
    what is damaged."""
    if data is None:
        return
    for record in tfrecord.scan(data, tfrecord.EVENT_FIRST_BYTE):
        if record.status == tfrecord.OK:
            yield record.payload
        elif record.status == tfrecord.BAD_HEADER:
            warnings.warn(_DAMAGE[record.status] % (path, record.start, record.length))
        else:
            warnings.warn(_DAMAGE[record.status] % (path, record.start))


def _is_event_file(name):
    return "tfevents" in name


class _Step:
    __slots__ = ("blobs", "wall_time")

    def __init__(self, blobs, wall_time):
        self.blobs = blobs
        self.wall_time = wall_time


class AttentionLog:
    """Everything logged under a logdir: runs -> tags -> steps."""

    def __init__(self, logdir):
        self.logdir = os.fspath(logdir)
        self._data = {}  # run -> tag -> step -> _Step
        if files.is_url(self.logdir):  # s3://, memory://, ...: RemoteLogdirError when it fails
            for run, url, source in files.event_files(self.logdir):
                self._read_file(run, url, files.read_bytes(source))
        else:
            self._read_local(files.local_path(self.logdir))
        self._warn_concurrent_writers()

    def _read_local(self, logdir):
        if not os.path.isdir(logdir):
            raise FileNotFoundError("no such logdir: %s" % logdir)
        for dirpath, dirnames, filenames in os.walk(logdir):
            dirnames.sort()
            run = os.path.relpath(dirpath, logdir)
            run = "." if run == os.curdir else run.replace(os.sep, "/")
            for name in sorted(filter(_is_event_file, filenames)):
                path = os.path.join(dirpath, name)
                self._read_file(run, path, _file_bytes(path))

    def _warn_concurrent_writers(self):
        for run, tags in self._data.items():
            for tag, steps in tags.items():
                seen = []
                for step in steps.values():
                    try:
                        seen.append((codec.parse_header(step.blobs[0]).writer_id, step.wall_time))
                    except (codec.FormatError, IndexError):
                        continue  # get() names what is wrong with that step
                writers = provenance.concurrent_writers(seen)
                if writers:
                    warnings.warn(provenance.warning(run, tag, writers))

    def _read_file(self, run, path, data):
        for payload in _records(path, data):
            try:
                event = event_pb2.Event.FromString(payload)
            except Exception:  # foreign or damaged bytes that passed the CRC
                warnings.warn("%s: skipped a record that is not a TensorBoard event" % path)
                continue
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME:
                    continue
                blobs = list(value.tensor.string_val)
                tags = self._data.setdefault(run, {}).setdefault(value.tag, {})
                tags[event.step] = _Step(blobs, event.wall_time)

    def runs(self):
        return sorted(self._data)

    def tags(self, run):
        return sorted(self._run(run))

    def steps(self, run, tag):
        return sorted(self._tag(run, tag))

    def get(self, run, tag, step):
        """The AttentionRecord logged at (run, tag, step)."""
        steps = self._tag(run, tag)
        if step not in steps:
            raise KeyError("no step %r for tag %r of run %r; steps: %s" % (step, tag, run, sorted(steps)))
        return codec.decode_step(steps[step].blobs)

    def blobs(self, run, tag, step):
        """The step's blob sequence as it is stored (codec.encode_step's layout)."""
        return list(self._tag(run, tag)[step].blobs)

    def wall_time(self, run, tag, step):
        return self._tag(run, tag)[step].wall_time

    def header(self, run, tag, step):
        """The step's StepHeader proto (sequence number, writer id, kinds)."""
        return codec.parse_header(self._tag(run, tag)[step].blobs[0])

    def stats(self, run, tag, kind=None):
        """Per-head statistics of every step of (run, tag), from the step headers.

        Returns a dict: "steps" int64 [S], "layer_ids" int64 [L] and, for each
        name in tb_attention.stats.NAMES ("entropy", "max_weight",
        "first_token", "special_tokens", "distance", "previous_token"), a
        float32 array [S, L, H]. NaN where a step has no value: steps written
        before statistics existed, statistics not defined for the kind
        (distance, previous_token of cross attention) or not known
        (special_tokens of raw tensors logged without special_tokens=).
        kind: the attention kind; may be left out when there is only one.
        See tb_attention/stats.py for the definitions.
        """
        steps = self.steps(run, tag)
        headers = [self.header(run, tag, s) for s in steps]
        name = _stats.choose_kind((k.name for h in headers for k in h.kinds), kind)
        # every step: these headers were read whole, so their sizes exist
        step_ids, layer_ids, _, arrays, _ = _stats.collect(
            steps, [codec.stored_stats(h, name) for h in headers], limit=None)
        result = {"steps": step_ids, "layer_ids": layer_ids}
        result.update(arrays)
        return result

    def _run(self, run):
        if run not in self._data:
            raise KeyError("no run %r with attention in %s; runs: %s" % (run, self.logdir, self.runs()))
        return self._data[run]

    def _tag(self, run, tag):
        tags = self._run(run)
        if tag not in tags:
            raise KeyError("no attention tag %r in run %r; tags: %s" % (tag, run, sorted(tags)))
        return tags[tag]


def load(logdir):
    """Everything logged under logdir: a local folder, or an fsspec URL
    (s3://bucket/runs, memory://runs, ...; tb_attention.RemoteLogdirError
    when the store cannot be read)."""
    return AttentionLog(logdir)
