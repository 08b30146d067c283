"""The Attention tab's HTTP routes (docs/routes.md): arguments in, answers out.

In the style of TensorBoard's text_plugin.py: each `*_route` reads the
request's arguments and sends what its `*_impl` returns; an `*_impl` takes
plain values and returns data, so the logic runs without a request.
Reading and caching steps is tb_attention.store's job, building the answers
tb_attention.answers'.
"""
import os
import posixpath
import re

from werkzeug import wrappers

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin

from tb_attention import answers, codec, metadata, page, pagedata, store
from tb_attention.aggregate import HOWS, Aggregate
from tb_attention.metadata import FormatError
from tb_attention.pagestate import PageError
from tb_attention.store import DataLossError, StepKey

# A step's data never changes while it is the same step (same wall time: a
# run deleted and logged again, or logged again into its folder, gives the
# step a new one), so an answer whose URL names the step's version (`v`, as
# the steps route lists it) may be kept by the browser for a day. Without
# it, or with another version, the answer is not stored: the same URL could
# later mean other data.
_IMMUTABLE_SECONDS = 86400
_IMMUTABLE_CACHE_CONTROL = "private, max-age=%d, immutable" % _IMMUTABLE_SECONDS
_UNVERSIONED_CACHE_CONTROL = "no-store"
# A query parameter that is an integer: ASCII digits only (int() alone would
# also take "1_0", " 7", "+3" and non-ASCII digits) and short enough that
# converting it costs nothing.
_INT_RE = re.compile(r"-?[0-9]{1,30}", re.ASCII)
_MAX_STEP = 2 ** 63 - 1
# The steps route reads this many of the newest headers to see whether two
# writers log to the tag at once (tb_attention.provenance).
_WRITER_SAMPLE = 4
_MAX_INDEX = 2 ** 31 - 1
# Blobs of one overview held at once at most (large layers are pooled and dropped).
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


# -- the HTTP edge -------------------------------------------------------------


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


def _step_key(request, suffix=""):
    """StepKey of the request's run, tag and step (run_a, step_a with suffix "_a")."""
    return StepKey(_str_arg(request, "run" + suffix), _str_arg(request, "tag"),
                   _int_arg(request, "step" + suffix, lo=0, hi=_MAX_STEP))


def _context(request):
    return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)


def _route(handler):
    """Turn our errors into a status and a JSON body that names the problem."""

    @wrappers.Request.application
    def app(self, request):
        try:
            return handler(self, request)
        except errors.PublicError as e:
            return _error(request, str(e), e.http_code)
        except FormatError as e:  # a read the store did not map: still that step's problem
            return _error(request, str(e), 500)

    return app


def _error(request, message, code):
    """The error body of docs/routes.md: {"error": {"message": ...}}, never cached."""
    return http_util.Respond(request, {"error": {"message": message}}, "application/json", code=code)


def _versions_match(request, wall_times, suffixes=("",)):
    """Whether the request names the version of every step it reads (`v`,
    `v_a`/`v_b` for compare): only then is the answer immutable."""
    return all(_int_arg(request, "v" + s, required=False, lo=0, hi=_MAX_STEP)
               == answers.step_version(w) for s, w in zip(suffixes, wall_times))


def _json(request, body, immutable=None):
    """immutable None: an answer that changes as steps arrive (no-cache);
    True/False: a step's answer (_versioned)."""
    if immutable is None:
        return http_util.Respond(request, body, "application/json")
    return _versioned(http_util.Respond(request, body, "application/json", expires=_IMMUTABLE_SECONDS),
                      immutable)


def _binary(request, body, headers, immutable, content_encoding=None):
    return _versioned(http_util.Respond(request, body, "application/octet-stream",
                                        expires=_IMMUTABLE_SECONDS, headers=list(headers.items()),
                                        content_encoding=content_encoding),
                      immutable)


def _accepts_zstd(request):
    """Whether the browser inflates zstd (Accept-Encoding). Chromium offers
    it to localhost and https only: to a TensorBoard reached over plain http
    by address it offers gzip and deflate, and fails on a zstd body."""
    for coding in request.headers.get("Accept-Encoding", "").split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() == "zstd":
            q = params.strip().lower().replace(" ", "")
            return not re.fullmatch(r"q=0(\.0*)?", q)
    return False


def _versioned(response, immutable):
    """Respond(expires=...) says "private, max-age=N"; a versioned step's data
    never changes, so also tell the browser not to revalidate it; an
    unversioned one is not stored at all (docs/routes.md)."""
    response.headers["Cache-Control"] = (_IMMUTABLE_CACHE_CONTROL if immutable
                                         else _UNVERSIONED_CACHE_CONTROL)
    return response


def _attention_target(request):
    """(layer, head) of an `attention` request: head a head index, None (the
    whole layer) or an aggregate over heads (HOWS); layer None for layer=all,
    which only an aggregate takes."""
    how = request.args.get("head")
    all_layers = request.args.get("layer") == "all"
    if how in HOWS:
        return (None if all_layers else _int_arg(request, "layer", lo=0, hi=_MAX_INDEX)), how
    if all_layers:
        raise errors.InvalidArgumentError("layer=all needs head=mean or head=max (an aggregate of every layer)")
    layer = _int_arg(request, "layer", lo=0, hi=_MAX_INDEX)
    if how and not re.fullmatch(r"[0-9]+", how, re.ASCII):
        raise errors.InvalidArgumentError("query parameter 'head' must be a head index, mean or max, got %r"
                                          % how[:100])
    return layer, _int_arg(request, "head", required=False, lo=0, hi=_MAX_INDEX)


def _compare_target(request):
    """(tag, kind, key A, key B, verdict) of a `compare` request: B of
    another probe (same kind name) with tag_b; verdict=1 asks only whether
    the two steps line up."""
    tag, kind = _str_arg(request, "tag"), _str_arg(request, "kind")
    key_a, key_b = _step_key(request, "_a"), _step_key(request, "_b")
    tag_b = request.args.get("tag_b")
    if tag_b:
        key_b = key_b._replace(tag=tag_b)
    verdict = bool(_int_arg(request, "verdict", required=False, default=0, lo=0, hi=1))
    return tag, kind, key_a, key_b, verdict


def _neuron_headers(shape, scale, has_bias, score_steps):
    """The `neurons` answer's headers (docs/routes.md)."""
    return {
        "X-Neuron-Shape": "%d,%d,%d" % shape,
        "X-Neuron-Scale": repr(scale),
        "X-Neuron-Has-Bias": "1" if has_bias else "0",
        # format 3: soft-cap (0 = none) and this head's sink logit ("" = none)
        "X-Neuron-Softcap": repr(score_steps["softcap"]),
        "X-Neuron-Sink": "" if score_steps["sink"] is None else repr(score_steps["sink"]),
    }


def _aggregate(step, kind, index, how):
    """The mean or max over heads of layer `index`, or of every layer when
    index is None (its blobs read a batch at a time and added up as they come)."""
    agg = Aggregate(how)
    if index is None:
        for _, part in step.parts(kind, _OVERVIEW_BATCH_BYTES):
            agg.add(part)
    else:
        agg.add(step.layer(kind, index))
    return agg.result()


def _page_state(request):
    """The view, kind, step, layer and head a saved page opens on."""
    state = {k: request.args[k] for k in ("kind", "view") if request.args.get(k)}
    for k in ("step", "layer", "head"):
        value = _int_arg(request, k, required=False, lo=0, hi=_MAX_STEP)
        if value is not None:
            state[k] = value
    return state


class AttentionPlugin(base_plugin.TBPlugin):
    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._store = store.StepStore(context.data_provider)
        self._frontend = _frontend_root()

    def get_plugin_apps(self):
        return {
            "/static/*": self.static_route,
            "/tags": self.tags_route,
            "/steps": self.steps_route,
            "/header": self.header_route,
            "/attention": self.attention_route,
            "/overview": self.overview_route,
            "/neurons": self.neurons_route,
            "/stats": self.stats_route,
            "/compare": self.compare_route,
            "/html": self.html_route,
        }

    def is_active(self):
        return False  # TensorBoard decides from data_plugin_names() and the data

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/static/index.js", tab_name="Attention")

    @wrappers.Request.application
    def static_route(self, request):
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

    # -- listings ------------------------------------------------------------

    @_route
    def tags_route(self, request):
        return _json(request, self.tags_impl(*_context(request)))

    def tags_impl(self, ctx, experiment):
        # One list_blob_sequences call and nothing else: listing every kept
        # step of every tag here made the first answer for 200 runs x 5 probes
        # x 100 steps take 1.7 s (read_blob_sequences turning 100k steps into
        # Python objects, plus a header read per tag); the steps route lists
        # the steps of the one tag the dashboard shows.
        return answers.tags(self._store.tags(ctx, experiment))

    @_route
    def steps_route(self, request):
        run, tag = _str_arg(request, "run"), _str_arg(request, "tag")
        return _json(request, self.steps_impl(*_context(request), run, tag))

    def steps_impl(self, ctx, experiment, run, tag):
        info, data = self._store.steps(ctx, experiment, run, tag)
        header, newer, error = self._store.newest_header(ctx, run, tag, data)
        # A tag from a newer tb-attention (or a foreign writer) still lists
        # its steps; those whose own header is readable show.
        return answers.steps(run, tag, data, (header, newer), error or info.metadata_error,
                             self._store.writers(ctx, run, tag, data[-_WRITER_SAMPLE:]))

    # -- one step ------------------------------------------------------------

    @_route
    def header_route(self, request):
        body = self.header_impl(*_context(request), _step_key(request))
        return _json(request, body, _versions_match(request, [body["wall_time"]]))

    def header_impl(self, ctx, experiment, key):
        step = self._store.step(ctx, experiment, key)
        return answers.header(key.step, step.wall_time, step.header)

    @_route
    def attention_route(self, request):
        key, kind = _step_key(request), _str_arg(request, "kind")
        layer, head = _attention_target(request)
        packed = None
        if head is None and _accepts_zstd(request):
            packed = self.zstd_layer_impl(*_context(request), key, kind, layer)
        if packed is not None:
            body, shape, dtype, wall_time = packed
            encoding = "zstd"
        else:
            impl = self.aggregate_impl if head in HOWS else self.attention_impl
            stored, dtype, wall_time = impl(*_context(request), key, kind, layer, head)
            body, shape, encoding = stored.tobytes(), stored.shape, None
        response = _binary(request, body, {"X-Attention-Shape": ",".join(map(str, shape)),
                                           "X-Attention-Dtype": dtype},
                           _versions_match(request, [wall_time]), content_encoding=encoding)
        response.headers["Vary"] = "Accept-Encoding"  # one URL, zstd or raw bytes by the browser
        return response

    def attention_impl(self, ctx, experiment, key, kind_name, layer, head=None):
        """(stored [heads, Tq, Tk] of one layer, or [1, Tq, Tk] of one head;
        dtype name; the step's wall time)."""
        step = self._store.step(ctx, experiment, key)
        kind = step.kind(kind_name)
        index = answers.layer_index(kind, layer, key.step)
        answers.check_head(kind, head)
        if head is None:
            stored = step.layer(kind, index)
        else:  # only the blob holding that head (format 2 splits large layers)
            part = codec.part_of_head(kind, index, head)
            first = step.layer_parts(kind, index)[part][1]
            stored = step.part(kind, index, part)[head - first:head - first + 1]
        return stored, codec.DTYPE_NAMES[kind.dtype], step.wall_time

    def zstd_layer_impl(self, ctx, experiment, key, kind_name, layer):
        """(zstd bytes of one layer as stored, its shape, dtype name, the
        step's wall time), or None when the layer is not stored so
        (codec.zstd_layer). Sent as they are: over a 20 Mbit/s link (an SSH
        tunnel) a 512-token layer of 12 heads arrived in 0.25 s instead of
        1.4 s, and over loopback no slower (bench_content_encoding.py)."""
        step = self._store.step(ctx, experiment, key)
        kind = step.kind(kind_name)
        index = answers.layer_index(kind, layer, key.step)
        with store.read_errors(key):
            packed = codec.zstd_layer(kind, index, step.blob)
        if packed is None:
            return None
        return (*packed, codec.DTYPE_NAMES[kind.dtype], step.wall_time)

    def aggregate_impl(self, ctx, experiment, key, kind_name, layer, how):
        """([1, Tq, Tk] mean or max over the heads of one layer, or of every
        layer when layer is None, in the stored dtype; dtype name; the step's
        wall time), cached."""
        step = self._store.step(ctx, experiment, key)
        kind = step.kind(kind_name)
        index = None if layer is None else answers.layer_index(kind, layer, key.step)
        cache_key = (key, step.wall_time, kind.name, "aggregate", "all" if layer is None else layer, how)
        return (self._store.memo(cache_key, lambda: _aggregate(step, kind, index, how), lambda a: a.nbytes), codec.DTYPE_NAMES[kind.dtype],
                step.wall_time)

    @_route
    def overview_route(self, request):
        key, kind = _step_key(request), _str_arg(request, "kind")
        size = _int_arg(request, "size", required=False, default=64, lo=1, hi=512)
        body, shape, pools, wall_time = self.overview_impl(*_context(request), key, kind, size)
        return _binary(request, body, {"X-Attention-Shape": ",".join(map(str, shape)),
                                       "X-Attention-Dtype": "uint8",
                                       "X-Overview-Pool": "%d,%d" % pools},
                       _versions_match(request, [wall_time]))

    def overview_impl(self, ctx, experiment, key, kind_name, size=64):
        """(uint8 bytes of [L, H, Sq, Sk], that shape, (pq, pk), the step's wall time), cached."""
        step = self._store.step(ctx, experiment, key)
        kind = step.kind(kind_name)

        def build():
            array, pools = answers.overview(len(kind.layer_ids),
                                            step.parts(kind, _OVERVIEW_BATCH_BYTES), size)
            return array.tobytes(), array.shape, pools

        body, shape, pools = self._store.memo((key, step.wall_time, kind.name, "overview", size),
                                              build, lambda value: len(value[0]))
        return body, shape, pools, step.wall_time

    @_route
    def neurons_route(self, request):
        key, kind = _step_key(request), _str_arg(request, "kind")
        layer = _int_arg(request, "layer", lo=0, hi=_MAX_INDEX)
        head = _int_arg(request, "head", lo=0, hi=_MAX_INDEX)
        parts, shape, scale, has_bias, score_steps, wall_time = self.neurons_impl(
            *_context(request), key, kind, layer, head)
        return _binary(request, b"".join(parts), _neuron_headers(shape, scale, has_bias, score_steps),
                       _versions_match(request, [wall_time]))

    def neurons_impl(self, ctx, experiment, key, kind_name, layer, head):
        """([queries, keys, masked, (bias)] bytes of one head, (Tq, Tk, D), scale, has bias,
        {"softcap": 0 or the layer's cap, "sink": this head's sink logit or None},
        the step's wall time)."""
        step = self._store.step(ctx, experiment, key)
        kind = step.kind(kind_name)
        index = answers.layer_index(kind, layer, key.step)
        answers.check_head(kind, head)
        if not len(kind.neurons):
            raise errors.NotFoundError(
                "no neurons were logged at step %d of tag %r: %s" % (key.step, key.tag, kind.no_neurons or (
                    "capture with tb_attention.capture(model, inputs, tokenizer=tok, neurons=True)")))
        q, k, masked, bias, scale = step.neurons(kind, index)
        # The order they are stored in (proto/attention.proto NeuronLayer)
        # grouped keys (format 4) stored once per key head: this head's key head
        parts = [q[head].tobytes(), k[head // (q.shape[0] // k.shape[0])].tobytes(), masked.tobytes()]
        if bias is not None:
            parts.append(bias[head].tobytes())
        nl = kind.neurons[index]
        steps = {"softcap": float(nl.softcap),
                 "sink": float(nl.sinks[head]) if len(nl.sinks) == kind.num_heads else None}
        return (parts, (q.shape[1], k.shape[1], q.shape[2]), float(scale), bias is not None, steps,
                step.wall_time)

    # -- over steps ----------------------------------------------------------

    @_route
    def html_route(self, request):
        run, tag = _str_arg(request, "run"), _str_arg(request, "tag")
        state = _page_state(request)
        max_mb = _int_arg(request, "max_mb", required=False, default=50, lo=0, hi=2 ** 20)
        try:
            text = self.html_impl(*_context(request), run, tag, state, max_mb * 2 ** 20 or None)
        except page.PageTooLarge as e:
            return _error(request, str(e), 413)
        except PageError as e:
            return _error(request, str(e), 400)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", "attention-%s-%s.html" % (run, tag))
        return http_util.Respond(request, text, "text/html; charset=utf-8",
                                 headers=[("Content-Disposition", 'attachment; filename="%s"' % name)])

    def html_impl(self, ctx, experiment, run, tag, state, max_bytes):
        """The standalone page (tb_attention.page) of every kept step of (run, tag), opening on state."""
        _, data = self._store.steps(ctx, experiment, run, tag)
        steps = []
        for datum in data:
            key = StepKey(run, tag, datum.step)
            blobs = self._store.map(lambda i, k=key, d=datum: self._store.blob(ctx, k, d, i), range(len(datum.values)))
            steps.append(pagedata.PageStep(run, tag, datum.step, datum.wall_time, list(blobs)))
        view = state.pop("view", "head")
        if len(steps) == 1 and view in ("stats", "compare"):  # over steps: a page of one step has neither
            view = "head"
        return page.Page(steps, view, max_bytes=max_bytes, title="%s \u00b7 %s" % (run, tag), **state).document()

    @_route
    def stats_route(self, request):
        run, tag = _str_arg(request, "run"), _str_arg(request, "tag")
        kind = request.args.get("kind") or None
        return _json(request, self.stats_impl(*_context(request), run, tag, kind))

    def stats_impl(self, ctx, experiment, run, tag, kind=None):
        _, data = self._store.steps(ctx, experiment, run, tag)
        per_step, problems = self._store.step_stats(ctx, run, tag, data)
        return answers.stats(run, tag, kind, [d.step for d in data], per_step, problems)

    @_route
    def compare_route(self, request):
        tag, kind, key_a, key_b, verdict = _compare_target(request)
        body = self.compare_impl(*_context(request), tag, kind, key_a, key_b, verdict=verdict)
        return _json(request, body, _versions_match(
            request, [body["a"]["wall_time"], body["b"]["wall_time"]], ("_a", "_b")))

    def compare_impl(self, ctx, experiment, tag, kind_name, key_a, key_b, verdict=False):
        """The JSD of every layer and head of two steps (cached), or why there
        is none; with verdict, only whether they line up: the two headers are
        read, no layer."""
        sides = []
        for key in (key_a, key_b):
            step = self._store.step(ctx, experiment, key)
            sides.append((step, step.kind(kind_name, name_run=True)))
        (a, kind_a), (b, kind_b) = sides
        answers.check_comparable(kind_name, key_a, kind_a, key_b, kind_b)
        if verdict:
            return answers.compare(tag, kind_name, key_a, key_b, kind_a,
                                   answers.token_differences(kind_a, kind_b), None,
                                   (a.wall_time, b.wall_time), verdict=True)

        def layer_jsd(index):
            # Each side as float as soon as it is read: converting both after
            # reading both made a cold compare at 512 tokens ~15% slower
            # (measured in process, alternating with the code before).
            fa = codec.to_float(a.layer(kind_a, index, parallel=False))
            fb = codec.to_float(b.layer(kind_b, index, parallel=False))
            return answers.head_jsd(fa, fb)

        def build():
            tokens = answers.token_differences(kind_a, kind_b)
            jsd = None
            if tokens["match"]:
                # layers on every core (numpy lets go of the GIL in the row
                # math); each task reads its layer's blobs itself
                jsd = self._store.map(layer_jsd, range(len(kind_a.layer_ids)))
            return answers.compare(tag, kind_name, key_a, key_b, kind_a, tokens, jsd,
                                   (a.wall_time, b.wall_time))

        cache_key = ("compare", kind_name, key_a, a.wall_time, key_b, b.wall_time)
        return self._store.memo(cache_key, build,
                                lambda _: 64 * (len(kind_a.layer_ids) * kind_a.num_heads + 64))
