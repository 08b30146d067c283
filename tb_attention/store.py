"""The plugin's reads of logged steps through TensorBoard's data provider, cached.

StepStore owns what the routes read: the listing of every attention tag,
the kept steps of a tag (reused while the tag is unchanged), a byte-bounded
LRU of blobs, decoded headers and finished answers, the thread pool that
reads blobs a few at once, and the one mapping from read errors to the
errors a route answers (`read_errors`). Reads are lazy: one layer reads the
step's header blob and that layer's blobs, nothing else. A step's blobs never
change once written, so they are cached by StepKey and wall time.
"""
import collections
import concurrent.futures
import contextlib
import threading
from typing import NamedTuple

import numpy as np
from tensorboard import errors
from tensorboard.data import provider

from tb_attention import codec, metadata
from tb_attention.metadata import FormatError

_CACHE_BYTES = 512 * 2 ** 20
_STATS_CACHE_BYTES = 64 * 2 ** 20
# Blobs read at once: the Rust data server answers each read_blob in ~45 ms
# however small the blob, so reading 12 layers one after the other costs
# half a second; the stats route reads every step's header this way too.
# Not more: compare computes on these threads too, and with 8 a cold
# compare at 512 tokens took ~30% longer on 2 cores (stats the same).
_READERS = 6
# TensorBoard's downsample argument: every step the loader kept.
_ALL_KEPT = 2 ** 31 - 1


class StepKey(NamedTuple):
    run: str
    tag: str
    step: int


class DataLossError(errors.PublicError):
    """A logged step is corrupt or truncated; other steps still load."""

    http_code = 500


@contextlib.contextmanager
def read_errors(key, blob=None):
    """What a failed read of step `key` answers (blob: the index read, when
    reading one): a step that cannot be decoded is a DataLossError naming it
    (500: that step only is broken), a blob the loader dropped since the
    listing is 404 (reload)."""
    try:
        yield
    except FormatError as e:
        raise DataLossError("step %d of tag %r of run %r: %s" % (key.step, key.tag, key.run, e)) from e
    except Exception as e:
        if blob is None:
            raise
        if isinstance(e, errors.NotFoundError):
            raise errors.NotFoundError(
                "step %d of tag %r of run %r is no longer kept by TensorBoard (newer steps "
                "replaced it): reload" % (key.step, key.tag, key.run)) from None
        bad = metadata.name_breakers(key.run + key.tag)
        if bad:  # data logged before the writer refused such names
            raise DataLossError(
                "step %d of tag %r of run %r: TensorBoard's default data server cannot read "
                "attention under a run or tag name containing %s (tb-attention now refuses such "
                "names); start TensorBoard with --load_fast=false to see it"
                % (key.step, key.tag, key.run, ", ".join(bad))) from e
        # Another writer's event under our plugin name, e.g. a tensor that is
        # not a rank-1 string tensor: the Python loader's read_blob raises
        # IndexError on it. That step only is broken.
        raise DataLossError("step %d of tag %r is not attention data tb-attention wrote: "
                            "TensorBoard cannot read its blob %d (%s)"
                            % (key.step, key.tag, blob, type(e).__name__)) from e


class ByteLRU:
    """LRU of values with a known size in bytes, bounded by total bytes."""

    def __init__(self, max_bytes):
        self._max = max_bytes
        self._items = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        return None

    def put(self, key, value, size):
        if size > self._max:
            return
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self._max:
                _, (_, old) = self._items.popitem(last=False)
                self._bytes -= old


class TagInfo(NamedTuple):
    """One attention tag as list_blob_sequences reports it."""

    validator: tuple  # (max_step, max_wall_time, max_length): changes when a step arrives
    metadata_error: str  # why its plugin metadata is unreadable (newer or foreign), or ""

    @property
    def max_step(self):
        return self.validator[0]


class StepStore:
    """Cached, lazy reads of attention steps for the routes."""

    def __init__(self, data_provider):
        self._provider = data_provider
        self.cache = ByteLRU(_CACHE_BYTES)
        # Per-step statistics read from step headers: the stats route reads
        # every step's header once.
        self._stats_cache = ByteLRU(_STATS_CACHE_BYTES)
        # (experiment, run, tag) -> (validator, [BlobSequenceDatum]): the kept
        # steps of a tag, reused while list_blob_sequences reports the same
        # validator, i.e. until the loader takes in a new event for the tag.
        # read_blob_sequences costs ~45 ms per call under the Rust data
        # server; list_blob_sequences about 1 ms.
        self._listings = {}
        self._metadata_errors = {}  # plugin content -> TagInfo.metadata_error
        self._lock = threading.Lock()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            _READERS, thread_name_prefix="tb-attention-read")

    def map(self, fn, items):
        """[fn(item)] computed on the reader threads (never call it from fn)."""
        items = list(items)
        if len(items) < 2:
            return [fn(item) for item in items]
        return list(self._readers.map(fn, items))

    def memo(self, cache_key, build, size_of):
        """The cached value of cache_key, else build() (cached at size_of(value) bytes)."""
        value = self.cache.get(cache_key)
        if value is None:
            value = build()
            self.cache.put(cache_key, value, size_of(value))
        return value

    # -- listings ------------------------------------------------------------

    def tags(self, ctx, experiment, run=None):
        """{(run, tag): TagInfo} of every attention tag (of one run). One
        list_blob_sequences call; the plugin metadata of each tag is checked
        (metadata.parse_plugin_metadata) once per distinct content."""
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(runs=[run]) if run is not None else None)
        return {(r, t): TagInfo((ts.max_step, ts.max_wall_time, ts.max_length),
                                self._metadata_error(ts.plugin_content))
                for r, tags in listing.items() for t, ts in tags.items()}

    def _metadata_error(self, content):
        error = self._metadata_errors.get(content)
        if error is None:
            try:
                metadata.parse_plugin_metadata(content)
                error = ""
            except (FormatError, TypeError) as e:
                error = str(e)
            with self._lock:
                if len(self._metadata_errors) > 1000:  # foreign writers: keep it bounded
                    self._metadata_errors.clear()
                self._metadata_errors[content] = error
        return error

    def steps(self, ctx, experiment, run, tag):
        """(TagInfo, [BlobSequenceDatum] oldest first) of (run, tag); 404 when absent."""
        infos = self.tags(ctx, experiment, run)
        if (run, tag) not in infos:
            if not any(r == run for r, _ in infos):
                raise errors.NotFoundError("no run %r with attention" % run)
            raise errors.NotFoundError("no attention tag %r in run %r" % (tag, run))
        info = infos[(run, tag)]
        with self._lock:
            cached = self._listings.get((experiment, run, tag))
        if cached is not None and cached[0] == info.validator:
            data = cached[1]
        else:
            # Listed before read: data newer than the validator is refetched next time.
            result = self._provider.read_blob_sequences(
                ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
                downsample=_ALL_KEPT, run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]))
            data = sorted(result.get(run, {}).get(tag, ()), key=lambda d: d.step)
            with self._lock:
                self._listings[(experiment, run, tag)] = (info.validator, data)
        if not data:
            raise errors.NotFoundError("no attention tag %r in run %r" % (tag, run))
        return info, data

    def step(self, ctx, experiment, key):
        """The Step of key, its header read; 404 when not kept."""
        _, data = self.steps(ctx, experiment, key.run, key.tag)
        for datum in data:
            if datum.step == key.step:
                return Step(self, ctx, key, datum)
        hint = ""
        if data and key.step < data[-1].step:  # older than the newest: maybe sampled away
            hint = (" among the %d steps TensorBoard kept; if it was logged, start TensorBoard "
                    "with --samples_per_plugin=attention=0 to keep every step" % len(data))
        raise errors.NotFoundError("no step %d for tag %r of run %r%s"
                                   % (key.step, key.tag, key.run, hint))

    # -- blobs ---------------------------------------------------------------

    def blob(self, ctx, key, datum, index):
        cache_key = (key, datum.wall_time, index)
        blob = self.cache.get(cache_key)
        if blob is None:
            if not 0 <= index < len(datum.values):
                raise DataLossError("step %d is corrupt: its header points at blob %d of %d"
                                    % (datum.step, index, len(datum.values)))
            with read_errors(key, blob=index):
                blob = self._provider.read_blob(ctx, blob_key=datum.values[index].blob_key)
            if not isinstance(blob, bytes):
                raise DataLossError("step %d of tag %r is not attention data tb-attention wrote: "
                                    "blob %d is a %s, not bytes" % (datum.step, key.tag, index,
                                                                     type(blob).__name__))
            self.cache.put(cache_key, blob, len(blob))
        return blob

    def header(self, ctx, key, datum):
        cache_key = (key, datum.wall_time, "header")
        header = self.cache.get(cache_key)
        if header is None:
            if not datum.values:
                raise DataLossError("step %d holds no blobs" % datum.step)
            blob = self.blob(ctx, key, datum, 0)
            with read_errors(key):
                header = codec.parse_header(blob)
            self.cache.put(cache_key, header, len(blob))
        return header

    def newest_header(self, ctx, run, tag, data):
        """(header, how many newer steps were unreadable, the first error or
        None) of the newest step whose header reads: one corrupt step must
        not hide the tag's other steps. header None when none reads."""
        newer, error = 0, None
        for datum in reversed(data):
            try:
                return self.header(ctx, StepKey(run, tag, datum.step), datum), newer, error
            except DataLossError as e:
                newer += 1
                error = error or str(e)
        return None, newer, error

    def writers(self, ctx, run, tag, data):
        """(writer_id, wall time) of each readable step of data (cached
        headers after the first time): enough to see two writers at once."""
        def one(datum):
            try:
                return self.header(ctx, StepKey(run, tag, datum.step), datum).writer_id, datum.wall_time
            except DataLossError:
                return None
        return [pair for pair in self.map(one, data) if pair is not None]

    def step_stats(self, ctx, run, tag, data):
        """For every datum, {kind: codec.stored_stats(...)} from its header
        (cached by step and wall time; uncached headers read a few at once),
        None for a step whose header is unreadable; and [{"step", "message"}]
        of the unreadable ones."""

        def one(datum):
            cache_key = (StepKey(run, tag, datum.step), datum.wall_time)
            cached = self._stats_cache.get(cache_key)
            if cached is not None:
                return cached, None
            try:
                header = self.header(ctx, cache_key[0], datum)
            except DataLossError as e:
                return None, {"step": datum.step, "message": str(e)}
            cached = {k.name: codec.stored_stats(header, k.name) for k in header.kinds}
            size = 256 + sum(v.nbytes for item in cached.values() if item is not None
                             for v in item[2].values() if v is not None)
            self._stats_cache.put(cache_key, cached, size)
            return cached, None

        uncached = sum(1 for d in data
                       if self._stats_cache.get((StepKey(run, tag, d.step), d.wall_time)) is None)
        results = self.map(one, data) if uncached > 1 else [one(d) for d in data]
        return [r[0] for r in results], [r[1] for r in results if r[1] is not None]


class Step:
    """One kept step of one tag (its header read), read layer by layer."""

    def __init__(self, store, ctx, key, datum):
        self.store, self.ctx, self.key, self.datum = store, ctx, key, datum
        self.header = store.header(ctx, key, datum)

    @property
    def wall_time(self):
        return self.datum.wall_time

    def kind(self, name, name_run=False):
        """The step's Kind proto called name; 404 naming the kinds there are."""
        try:
            return codec.find_kind(self.header, name)
        except KeyError:
            where = "step %d" % self.key.step + (" of run %r" % (self.key.run,) if name_run else "")
            raise errors.NotFoundError("no attention kind %r at %s; kinds: %s"
                                       % (name, where, [k.name for k in self.header.kinds])) from None

    def blob(self, index):
        return self.store.blob(self.ctx, self.key, self.datum, index)

    def layer_parts(self, kind, index):
        """[(BlobRef, first head, end head)] of one stored layer (codec.layer_parts)."""
        with read_errors(self.key):
            return codec.layer_parts(kind, index)

    def part(self, kind, index, part, blob=None):
        """dtype [heads, Tq, Tk] of one blob of a layer (all heads in format 1)."""
        if blob is None:
            blob = self.blob(self.layer_parts(kind, index)[part][0].index)
        with read_errors(self.key):
            return codec.attention_part(kind, index, part, blob)

    def layer(self, kind, index, parallel=True):
        """dtype [heads, Tq, Tk] of one layer. parallel=False from inside a
        reader task: the pool must never wait on itself."""
        refs = [ref for ref, _, _ in self.layer_parts(kind, index)]
        read = self.store.map if parallel else lambda fn, items: [fn(i) for i in items]
        blobs = read(lambda ref: self.blob(ref.index), refs)
        arrays = [self.part(kind, index, p, blob) for p, blob in enumerate(blobs)]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    def parts(self, kind, batch_bytes):
        """(layer index, dtype [heads, Tq, Tk]) of every blob of every layer,
        in order. Blobs are read a few at once, in batches of at most
        batch_bytes, so that large layers are used and dropped, never all held."""
        items = [(index, p, ref) for index in range(len(kind.layer_ids))
                 for p, (ref, _, _) in enumerate(self.layer_parts(kind, index))]
        batches, batch, size = [], [], 0
        for item in items:
            if batch and size + item[2].length > batch_bytes:
                batches.append(batch)
                batch, size = [], 0
            batch.append(item)
            size += item[2].length
        batches.append(batch)
        for batch in batches:
            blobs = self.store.map(lambda item: self.blob(item[2].index), batch)
            for (index, p, _), blob in zip(batch, blobs):
                yield index, self.part(kind, index, p, blob)

    def neurons(self, kind, index):
        """codec.neuron_layer of one stored layer."""
        blob = self.blob(kind.neurons[index].blob.index)
        with read_errors(self.key):
            return codec.neuron_layer(kind, index, blob)
