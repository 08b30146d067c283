"""The Attention tab: TensorBoard plugin routes over context.data_provider.

Reads lazily: a request for one layer reads the step's header blob and that
layer's blob, nothing else. Decoded blobs live in a byte-bounded LRU; a step's
blobs never change once written, so they are cached by (run, tag, step,
wall_time, index) and their responses may be cached by the browser.
Routes are documented in docs/routes.md (and the README).
"""
import collections
import concurrent.futures
import math
import os
import posixpath
import re
import threading

import numpy as np
from werkzeug import wrappers

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin

from tb_attention import codec, metadata
from tb_attention import compare as _compare
from tb_attention import stats as _stats
from tb_attention.metadata import FormatError

# A past step's data never changes, so the browser may keep it for a day.
_IMMUTABLE_SECONDS = 86400
_IMMUTABLE_CACHE_CONTROL = "private, max-age=%d, immutable" % _IMMUTABLE_SECONDS
# A query parameter that is an integer: ASCII digits only (int() alone would
# also take "1_0", " 7", "+3" and non-ASCII digits) and short enough that
# converting it costs nothing.
_INT_RE = re.compile(r"-?[0-9]{1,30}", re.ASCII)
_CACHE_BYTES = 512 * 2 ** 20
_STATS_CACHE_BYTES = 64 * 2 ** 20
_STATS_READERS = 8  # step headers fetched at once by the stats route
# TensorBoard's downsample argument: every step the loader kept.
_ALL_KEPT = 2 ** 31 - 1
# Layer blobs of one overview read at once: the Rust data server answers each
# read_blob in ~45 ms however small the blob, so reading 12 layers one after
# the other costs half a second.
_OVERVIEW_READERS = 6
_OVERVIEW_BATCH_BYTES = 128 * 2 ** 20
_STATIC_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain",
}


class DataLossError(errors.PublicError):
    """A logged step is corrupt or truncated; other steps still load."""

    http_code = 500


def _frontend_root():
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "frontend")  # pyproject.toml maps frontend/ here
    if os.path.isdir(installed):
        return installed
    checkout = os.path.dirname(here)
    # A source checkout has frontend/ next to the package. Anywhere else (an
    # installed package without its frontend) that directory could be some
    # other package's site-packages/frontend: serve nothing rather than that.
    if os.path.isfile(os.path.join(checkout, "pyproject.toml")):
        return os.path.join(checkout, "frontend")
    return installed


class _ByteLRU:
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


def _int_arg(request, name, required=True, default=None, lo=None, hi=None):
    raw = request.args.get(name)
    if raw is None or raw == "":
        if required:
            raise errors.InvalidArgumentError("missing query parameter %r" % name)
        return default
    if not _INT_RE.fullmatch(raw):
        if re.fullmatch(r"-?[0-9]+", raw, re.ASCII):
            raise errors.InvalidArgumentError("query parameter %r = %s... is outside %s..%s"
                                              % (name, raw[:20], lo, hi))
        raise errors.InvalidArgumentError("query parameter %r must be an integer, got %r"
                                          % (name, raw[:100]))
    value = int(raw)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise errors.InvalidArgumentError("query parameter %r = %d is outside %s..%s"
                                          % (name, value, lo, hi))
    return value


def _str_arg(request, name):
    raw = request.args.get(name)
    if raw is None:
        raise errors.InvalidArgumentError("missing query parameter %r" % name)
    return raw


def _route(handler):
    """Turn our errors into a status and a JSON body that names the problem."""

    @wrappers.Request.application
    def app(self, request):
        try:
            return handler(self, request)
        except errors.PublicError as e:
            return _error(request, str(e), e.http_code)
        except FormatError as e:
            return _error(request, str(e), 500)

    return app


def _error(request, message, code):
    """The error body of docs/routes.md: {"error": {"message": ...}}, never cached."""
    return http_util.Respond(request, {"error": {"message": message}}, "application/json", code=code)


def max_pool(maps, size):
    """[H, Tq, Tk] -> [H, ceil(Tq/pq), ceil(Tk/pk)] by max over pq x pk cells,
    with pq = ceil(Tq/size) (1 when the map already fits)."""
    H, Tq, Tk = maps.shape
    pq, pk = max(1, math.ceil(Tq / size)), max(1, math.ceil(Tk / size))
    if pq == 1 and pk == 1:
        return maps, 1, 1
    Sq, Sk = math.ceil(Tq / pq), math.ceil(Tk / pk)
    padded = maps
    if (Sq * pq, Sk * pk) != (Tq, Tk):
        padded = np.zeros((H, Sq * pq, Sk * pk), dtype=maps.dtype)
        padded[:, :Tq, :Tk] = maps
    if pk > 16:
        return padded.reshape(H, Sq, pq, Sk, pk).max(axis=(2, 4)), pq, pk
    # numpy reduces short strided axes slowly (34 ms for 12 heads at 512 tokens):
    # take the max over the key cell as pk strided slices (5 ms), then over
    # the query rows, which are contiguous.
    cells = padded.reshape(H, Sq * pq, Sk, pk)
    cols = cells[..., 0].copy()
    for k in range(1, pk):
        np.maximum(cols, cells[..., k], out=cols)
    return cols.reshape(H, Sq, pq, Sk).max(axis=2), pq, pk


class AttentionPlugin(base_plugin.TBPlugin):
    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        self._cache = _ByteLRU(_CACHE_BYTES)
        # (experiment, run, tag) -> (validator, [BlobSequenceDatum]): the kept
        # steps of a tag, reused while list_blob_sequences reports the same
        # (max_step, max_wall_time, max_length), i.e. until the loader takes in
        # a new event for the tag. read_blob_sequences costs ~45 ms per call
        # under the Rust data server; list_blob_sequences about 1 ms.
        self._listings = {}
        self._listings_lock = threading.Lock()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            _OVERVIEW_READERS, thread_name_prefix="tb-attention-read")
        self._frontend = _frontend_root()
        # Per-step statistics read from step headers, by (run, tag, step,
        # wall_time): the stats route reads every step's header once.
        self._stats_cache = _ByteLRU(_STATS_CACHE_BYTES)

    def get_plugin_apps(self):
        return {
            "/static/*": self._serve_static,
            "/tags": self._serve_tags,
            "/steps": self._serve_steps,
            "/header": self._serve_header,
            "/attention": self._serve_attention,
            "/overview": self._serve_overview,
            "/neurons": self._serve_neurons,
            "/stats": self._serve_stats,
            "/compare": self._serve_compare,
        }

    def is_active(self):
        return False  # TensorBoard decides from data_plugin_names() and the data

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/static/index.js", tab_name="Attention")

    # -- static files --------------------------------------------------------

    @wrappers.Request.application
    def _serve_static(self, request):
        prefix = "/static/"
        path = request.path
        rel = path[path.index(prefix) + len(prefix):] if prefix in path else ""
        rel = posixpath.normpath(rel)
        ext = posixpath.splitext(rel)[1]
        if (not rel or rel.startswith(("/", "..")) or "\\" in rel or "\0" in rel
                or ext not in _STATIC_TYPES):
            return _error(request, "no such file: %s" % rel[:200], 404)
        full = os.path.realpath(os.path.join(self._frontend, *rel.split("/")))
        root = os.path.realpath(self._frontend)
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            return _error(request, "no such file: %s" % rel[:200], 404)
        with open(full, "rb") as f:
            body = f.read()
        return http_util.Respond(request, body, _STATIC_TYPES[ext])

    # -- data access ---------------------------------------------------------

    def _validators(self, ctx, experiment, run=None):
        """{(run, tag): validator} of every attention tag (of one run)."""
        listing = self._data_provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(runs=[run]) if run is not None else None)
        return {(r, t): (ts.max_step, ts.max_wall_time, ts.max_length)
                for r, tags in listing.items() for t, ts in tags.items()}

    def _cached_listing(self, experiment, run, tag, validator):
        with self._listings_lock:
            cached = self._listings.get((experiment, run, tag))
        return cached[1] if cached is not None and cached[0] == validator else None

    def _store_listing(self, experiment, run, tag, validator, data):
        data = sorted(data, key=lambda d: d.step)
        with self._listings_lock:
            self._listings[(experiment, run, tag)] = (validator, data)
        return data

    def _steps(self, ctx, experiment, run, tag):
        """[BlobSequenceDatum] of (run, tag), oldest first; 404 when absent."""
        validators = self._validators(ctx, experiment, run)
        if (run, tag) not in validators:
            if not any(r == run for r, _ in validators):
                raise errors.NotFoundError("no run %r with attention" % run)
            raise errors.NotFoundError("no attention tag %r in run %r" % (tag, run))
        validator = validators[(run, tag)]
        data = self._cached_listing(experiment, run, tag, validator)
        if data is None:
            # Listed before read: data newer than the validator is refetched next time.
            result = self._data_provider.read_blob_sequences(
                ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME,
                downsample=_ALL_KEPT, run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]))
            data = self._store_listing(experiment, run, tag, validator, result.get(run, {}).get(tag, ()))
        if not data:
            raise errors.NotFoundError("no attention tag %r in run %r" % (tag, run))
        return data

    def _datum(self, ctx, experiment, run, tag, step):
        data = self._steps(ctx, experiment, run, tag)
        for d in data:
            if d.step == step:
                return d
        hint = ""
        if data and step < data[-1].step:  # older than the newest: maybe sampled away
            hint = (" among the %d steps TensorBoard kept; if it was logged, start TensorBoard "
                    "with --samples_per_plugin=attention=0 to keep every step" % len(data))
        raise errors.NotFoundError("no step %d for tag %r of run %r%s" % (step, tag, run, hint))

    def _blob(self, ctx, datum, key, index):
        cache_key = key + (datum.wall_time, index)
        blob = self._cache.get(cache_key)
        if blob is None:
            if not 0 <= index < len(datum.values):
                raise DataLossError("step %d is corrupt: its header points at blob %d of %d"
                                    % (datum.step, index, len(datum.values)))
            try:
                blob = self._data_provider.read_blob(ctx, blob_key=datum.values[index].blob_key)
            except errors.NotFoundError:
                raise errors.NotFoundError(
                    "step %d of tag %r of run %r is no longer kept by TensorBoard (newer steps "
                    "replaced it): reload" % (datum.step, key[1], key[0])) from None
            except Exception as e:
                # Another writer's event under our plugin name, e.g. a tensor
                # that is not a rank-1 string tensor: the Python loader's
                # read_blob raises IndexError on it. That step only is broken.
                raise DataLossError("step %d of tag %r is not attention data tb-attention wrote: "
                                    "TensorBoard cannot read its blob %d (%s)"
                                    % (datum.step, key[1], index, type(e).__name__)) from e
            if not isinstance(blob, bytes):
                raise DataLossError("step %d of tag %r is not attention data tb-attention wrote: "
                                    "blob %d is a %s, not bytes" % (datum.step, key[1], index,
                                                                     type(blob).__name__))
            self._cache.put(cache_key, blob, len(blob))
        return blob

    def _header(self, ctx, datum, key):
        cache_key = key + (datum.wall_time, "header")
        header = self._cache.get(cache_key)
        if header is None:
            if not datum.values:
                raise DataLossError("step %d holds no blobs" % datum.step)
            blob = self._blob(ctx, datum, key, 0)
            try:
                header = codec.parse_header(blob)
            except FormatError as e:
                raise DataLossError("step %d of tag %r: %s" % (datum.step, key[1], e)) from e
            self._cache.put(cache_key, header, len(blob))
        return header

    def _step_request(self, request):
        """(ctx, key, datum, header) for run, tag, step of the request."""
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        run, tag = _str_arg(request, "run"), _str_arg(request, "tag")
        step = _int_arg(request, "step", lo=0, hi=2 ** 63 - 1)
        datum = self._datum(ctx, experiment, run, tag, step)
        key = (run, tag, step)
        return ctx, key, datum, self._header(ctx, datum, key)

    def _kind_request(self, request):
        ctx, key, datum, header = self._step_request(request)
        name = _str_arg(request, "kind")
        try:
            kind = codec.find_kind(header, name)
        except KeyError:
            raise errors.NotFoundError("no attention kind %r at step %d; kinds: %s"
                                       % (name, key[2], [k.name for k in header.kinds])) from None
        return ctx, key, datum, kind

    @staticmethod
    def _layer_index(request, kind, step):
        layer = _int_arg(request, "layer", lo=0, hi=2 ** 31 - 1)
        layer_ids = list(kind.layer_ids)
        if layer not in layer_ids:
            raise errors.NotFoundError("no layer %d in %s attention at step %d; layers: %s"
                                       % (layer, kind.name, step, layer_ids))
        return layer_ids.index(layer)

    @staticmethod
    def _head(request, kind, required):
        head = _int_arg(request, "head", required=required, lo=0, hi=2 ** 31 - 1)
        if head is not None and head >= kind.num_heads:
            raise errors.NotFoundError("no head %d: %s attention has %d heads (0..%d)"
                                       % (head, kind.name, kind.num_heads, kind.num_heads - 1))
        return head

    def _layer_parts(self, key, kind, index):
        try:
            return codec.layer_parts(kind, index)
        except FormatError as e:
            raise DataLossError("step %d of tag %r: %s" % (key[2], key[1], e)) from e

    def _stored_part(self, ctx, key, datum, kind, index, part, blob=None):
        """dtype [heads, Tq, Tk] of one blob of a layer (all heads in format 1)."""
        if blob is None:
            blob = self._blob(ctx, datum, key, self._layer_parts(key, kind, index)[part][0].index)
        try:
            return codec.attention_part(kind, index, part, blob)
        except FormatError as e:
            raise DataLossError("step %d of tag %r: %s" % (key[2], key[1], e)) from e

    def _read_parts(self, ctx, key, datum, items):
        """Blobs of [(layer index, part, BlobRef)], fetched a few at once."""
        if len(items) == 1:
            return [self._blob(ctx, datum, key, items[0][2].index)]
        return list(self._readers.map(lambda item: self._blob(ctx, datum, key, item[2].index), items))

    def _stored_layer(self, ctx, key, datum, kind, index, parallel=True):
        """dtype [heads, Tq, Tk] of one layer. parallel=False from inside a
        reader task: the pool must never wait on itself."""
        items = [(index, p, ref) for p, (ref, _, _) in enumerate(self._layer_parts(key, kind, index))]
        blobs = (self._read_parts(ctx, key, datum, items) if parallel
                 else [self._blob(ctx, datum, key, ref.index) for _, _, ref in items])
        arrays = [self._stored_part(ctx, key, datum, kind, index, p, blob)
                  for (_, p, _), blob in zip(items, blobs)]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    # -- routes --------------------------------------------------------------

    @_route
    def _serve_tags(self, request):
        # One list_blob_sequences call and nothing else: listing every kept
        # step of every tag here made the first answer for 200 runs x 5 probes
        # x 100 steps take 1.7 s (read_blob_sequences turning 100k steps into
        # Python objects, plus a header read per tag); the steps route lists
        # the steps of the one tag the dashboard shows.
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        validators = self._validators(ctx, experiment)
        by_run = collections.defaultdict(dict)
        for (run, tag), (max_step, _, _) in validators.items():
            by_run[run][tag] = max_step
        runs = [{"run": run, "tags": [{"tag": tag, "max_step": by_run[run][tag]} for tag in sorted(by_run[run])]}
                for run in sorted(by_run)]
        return http_util.Respond(request, {"runs": runs}, "application/json")

    @_route
    def _serve_steps(self, request):
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        run, tag = _str_arg(request, "run"), _str_arg(request, "tag")
        data = self._steps(ctx, experiment, run, tag)
        body = {"run": run, "tag": tag, "steps": [d.step for d in data], "kept": len(data)}
        # Describe the tag by its newest step whose header is readable: one
        # corrupt step must not hide the tag's other steps.
        header, newer, error = None, 0, None
        for datum in reversed(data):
            try:
                header = self._header(ctx, datum, (run, tag, datum.step))
                break
            except DataLossError as e:
                newer += 1
                error = error or str(e)
        if header is None:
            body.update(model_type="", kinds=[], written=len(data))
        else:
            body.update(
                model_type=header.model_type,
                written=max(len(data), header.sequence + 1 + newer),
                kinds=[_kind_summary(k) for k in header.kinds])
        if error is not None:
            body["error"] = error
        return http_util.Respond(request, body, "application/json")

    @_route
    def _serve_header(self, request):
        ctx, key, datum, header = self._step_request(request)
        body = {
            "step": datum.step, "wall_time": datum.wall_time, "sequence": header.sequence,
            "model_type": header.model_type,
            "kinds": [dict(_kind_summary(k),
                           query_tokens=codec.token_strings(k.query_tokens),
                           key_tokens=codec.token_strings(k.key_tokens),
                           query_segment_b=k.query_segment_b, key_segment_b=k.key_segment_b,
                           dtype=codec.DTYPE_NAMES.get(k.dtype, "unknown"), head_dim=k.head_dim)
                      for k in header.kinds],
        }
        return _immutable(http_util.Respond(request, body, "application/json", expires=_IMMUTABLE_SECONDS))

    @_route
    def _serve_attention(self, request):
        ctx, key, datum, kind = self._kind_request(request)
        index = self._layer_index(request, kind, key[2])
        head = self._head(request, kind, required=False)
        if head is None:
            stored = self._stored_layer(ctx, key, datum, kind, index)
        else:  # only the blob holding that head (format 2 splits large layers)
            part = codec.part_of_head(kind, index, head)
            first = self._layer_parts(key, kind, index)[part][1]
            stored = self._stored_part(ctx, key, datum, kind, index, part)[head - first:head - first + 1]
        return _binary(request, stored.tobytes(), {
            "X-Attention-Shape": ",".join(map(str, stored.shape)),
            "X-Attention-Dtype": codec.DTYPE_NAMES[kind.dtype],
        })

    @_route
    def _serve_overview(self, request):
        ctx, key, datum, kind = self._kind_request(request)
        size = _int_arg(request, "size", required=False, default=64, lo=1, hi=512)
        cache_key = key + (datum.wall_time, kind.name, "overview", size)
        cached = self._cache.get(cache_key)
        if cached is None:
            items = [(index, p, ref) for index in range(len(kind.layer_ids))
                     for p, (ref, _, _) in enumerate(self._layer_parts(key, kind, index))]
            # Blobs are fetched a few at once (each read waits on the data
            # server), in batches of at most _OVERVIEW_BATCH_BYTES so that
            # large layers are pooled and dropped, never all held at once.
            batches, batch, size_of = [], [], 0
            for item in items:
                if batch and size_of + item[2].length > _OVERVIEW_BATCH_BYTES:
                    batches.append(batch)
                    batch, size_of = [], 0
                batch.append(item)
                size_of += item[2].length
            batches.append(batch)
            pooled = collections.defaultdict(list)
            for batch in batches:
                for (index, p, _), blob in zip(batch, self._read_parts(ctx, key, datum, batch)):
                    stored = self._stored_part(ctx, key, datum, kind, index, p, blob)
                    maps, pq, pk = max_pool(stored, size)
                    if maps.dtype != np.uint8:
                        maps = codec.quantize(maps.astype(np.float32), codec.DTYPES["uint8"])
                    pooled[index].append(maps)
            array = np.stack([np.concatenate(pooled[i]) for i in range(len(kind.layer_ids))])
            cached = (array.tobytes(), array.shape, (pq, pk))
            self._cache.put(cache_key, cached, array.nbytes)
        body, shape, pools = cached
        return _binary(request, body, {
            "X-Attention-Shape": ",".join(map(str, shape)),
            "X-Attention-Dtype": "uint8",
            "X-Overview-Pool": "%d,%d" % pools,
        })

    @_route
    def _serve_neurons(self, request):
        ctx, key, datum, kind = self._kind_request(request)
        index = self._layer_index(request, kind, key[2])
        head = self._head(request, kind, required=True)
        if not len(kind.neurons):
            raise errors.NotFoundError(
                "no neurons were logged at step %d of tag %r: capture with "
                "tb_attention.capture(model, inputs, tokenizer=tok, neurons=True)" % (key[2], key[1]))
        blob = self._blob(ctx, datum, key, kind.neurons[index].blob.index)
        try:
            q, k, masked, bias, scale = codec.neuron_layer(kind, index, blob)
        except FormatError as e:
            raise DataLossError("step %d of tag %r: %s" % (key[2], key[1], e)) from e
        # The order they are stored in (proto/attention.proto NeuronLayer)
        parts = [q[head].tobytes(), k[head].tobytes(), masked.tobytes()]
        if bias is not None:
            parts.append(bias[head].tobytes())
        return _binary(request, b"".join(parts), {
            "X-Neuron-Shape": "%d,%d,%d" % (q.shape[1], k.shape[1], q.shape[2]),
            "X-Neuron-Scale": repr(float(scale)),
            "X-Neuron-Has-Bias": "1" if bias is not None else "0",
        })

    @_route
    def _serve_stats(self, request):
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        run, tag = _str_arg(request, "run"), _str_arg(request, "tag")
        kind = request.args.get("kind") or None
        data = self._steps(ctx, experiment, run, tag)
        per_step, problems = self._all_step_stats(ctx, run, tag, data)
        names = []
        for item in per_step:
            for k in item or ():
                if k not in names:
                    names.append(k)
        if kind is None:
            if len(names) != 1:
                if not names:
                    raise errors.NotFoundError("no readable step of tag %r in run %r" % (tag, run))
                raise errors.InvalidArgumentError("tag %r has several attention kinds %s: "
                                                  "pass kind=" % (tag, names))
            kind = names[0]
        elif kind not in names:
            raise errors.NotFoundError("no attention kind %r in tag %r; kinds: %s" % (kind, tag, names))
        steps, layer_ids, heads, arrays = _stats.collect(
            [d.step for d in data], [(item or {}).get(kind) for item in per_step])
        body = {
            "run": run, "tag": tag, "kind": kind,
            "steps": steps.tolist(), "layer_ids": layer_ids.tolist(), "num_heads": heads,
            "stats": {n: _stats.json_rows(arrays[n]) for n in _stats.NAMES},
            "descriptions": dict(_stats.DESCRIPTIONS),
            "errors": problems,
        }
        return http_util.Respond(request, body, "application/json")

    def _all_step_stats(self, ctx, run, tag, data):
        """For every datum, {kind: stats.step_stats(...)} read from its header
        (cached by run, tag, step, wall_time; uncached headers fetched a few at
        a time), None for a step whose header is unreadable; and
        [{"step", "message"}] of the unreadable ones."""
        import concurrent.futures

        def one(datum):
            key = (run, tag, datum.step, datum.wall_time)
            cached = self._stats_cache.get(key)
            if cached is not None:
                return cached, None
            try:
                header = self._header(ctx, datum, (run, tag, datum.step))
            except DataLossError as e:
                return None, {"step": datum.step, "message": str(e)}
            cached = {k.name: _stats.step_stats(header, k.name) for k in header.kinds}
            size = 256 + sum(v.nbytes for item in cached.values() if item is not None
                             for v in item[2].values() if v is not None)
            self._stats_cache.put(key, cached, size)
            return cached, None

        uncached = sum(1 for d in data if self._stats_cache.get((run, tag, d.step, d.wall_time)) is None)
        if uncached > 1:
            with concurrent.futures.ThreadPoolExecutor(min(_STATS_READERS, uncached)) as pool:
                results = list(pool.map(one, data))
        else:
            results = [one(d) for d in data]
        return [r[0] for r in results], [r[1] for r in results if r[1] is not None]

    @_route
    def _serve_compare(self, request):
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        tag, name = _str_arg(request, "tag"), _str_arg(request, "kind")
        sides = [self._compare_side(ctx, experiment, request, tag, name, s) for s in "ab"]
        (key_a, datum_a, kind_a), (key_b, datum_b, kind_b) = sides
        problem = _compare.structure_mismatch(kind_a.layer_ids, kind_a.num_heads,
                                              kind_b.layer_ids, kind_b.num_heads)
        if problem is not None:
            raise errors.InvalidArgumentError(
                "cannot compare %s attention of run %r step %d with run %r step %d: %s"
                % (name, key_a[0], key_a[2], key_b[0], key_b[2], problem))
        cache_key = ("compare", name) + key_a + (datum_a.wall_time,) + key_b + (datum_b.wall_time,)
        body = self._cache.get(cache_key)
        if body is None:
            tokens = _compare.token_differences(
                codec.token_strings(kind_a.query_tokens), codec.token_strings(kind_a.key_tokens),
                codec.token_strings(kind_b.query_tokens), codec.token_strings(kind_b.key_tokens))
            jsd = None
            if tokens["match"]:
                jsd = _compare.json_matrix(self._layer_jsd(ctx, sides))
            body = {
                "tag": tag, "kind": name,
                "a": {"run": key_a[0], "step": key_a[2]}, "b": {"run": key_b[0], "step": key_b[2]},
                "layer_ids": list(kind_a.layer_ids), "num_heads": kind_a.num_heads,
                "units": "nats", "max": _compare.LN2, "jsd": jsd, "tokens": tokens,
            }
            self._cache.put(cache_key, body, 64 * (len(kind_a.layer_ids) * kind_a.num_heads + 64))
        return _immutable(http_util.Respond(request, body, "application/json", expires=_IMMUTABLE_SECONDS))

    def _compare_side(self, ctx, experiment, request, tag, name, side):
        """(key, datum, kind) of side "a" or "b" of a compare request."""
        run = _str_arg(request, "run_" + side)
        step = _int_arg(request, "step_" + side, lo=0, hi=2 ** 63 - 1)
        datum = self._datum(ctx, experiment, run, tag, step)
        key = (run, tag, step)
        header = self._header(ctx, datum, key)
        try:
            return key, datum, codec.find_kind(header, name)
        except KeyError:
            raise errors.NotFoundError("no attention kind %r at step %d of run %r; kinds: %s"
                                       % (name, step, run, [k.name for k in header.kinds])) from None

    def _layer_jsd(self, ctx, sides):
        """float32 [L, H]: mean JSD of every layer and head of two steps whose
        layers and heads match (their blobs fetched all at once, like overview's)."""
        layers = range(len(sides[0][2].layer_ids))  # attention has several blobs per layer in format 2

        def one(index):
            a, b = (codec.to_float(self._stored_layer(ctx, key, datum, kind, index, parallel=False))
                    for key, datum, kind in sides)
            # a head at a time bounds the temporaries (a few times one head's map)
            return np.array([_compare.mean_jsd(a[h], b[h]) for h in range(a.shape[0])], np.float32)
        # numpy lets go of the GIL in the row math: layers run on every core
        return np.stack(list(self._readers.map(one, layers)))

def _kind_summary(kind):
    return {
        "name": kind.name, "layer_ids": list(kind.layer_ids), "num_heads": kind.num_heads,
        "query_len": len(kind.query_tokens), "key_len": len(kind.key_tokens),
        "has_neurons": len(kind.neurons) > 0, "causal": kind.causal,
    }


def _immutable(response):
    """Respond(expires=...) says "private, max-age=N"; a step's data never
    changes, so also tell the browser not to revalidate it (docs/routes.md)."""
    response.headers["Cache-Control"] = _IMMUTABLE_CACHE_CONTROL
    return response


def _binary(request, body, headers):
    return _immutable(http_util.Respond(request, body, "application/octet-stream",
                                        expires=_IMMUTABLE_SECONDS, headers=list(headers.items())))
