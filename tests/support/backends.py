"""TensorBoard as the tests run it, real parts only.

- TensorBoard: a `tensorboard` subprocess (the INSTALLED package) on a free port;
- WsgiBackend: TensorBoard's own WSGI app in process, over a real
  EventMultiplexer and MultiplexerDataProvider (what `--load_fast=false` runs);
- python_loader / rust_data_server: TensorBoard's two loaders as data
  providers (the Rust data server binary spawned as TensorBoard spawns it);
- ServerBackend: a TensorBoard subprocess answering WsgiBackend's get().
"""
import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from tensorboard import context as tb_context
from werkzeug import datastructures, test as werkzeug_test, wrappers

from tb_attention import metadata
from tb_attention.proto import attention_pb2
from tests.support import free_port, wait_until

PREFIX = "/data/plugin/attention/"
CTX = tb_context.RequestContext()


def url(route, **params):
    """A route's path with params form-encoded."""
    return PREFIX + route + ("?" + urllib.parse.urlencode(params) if params else "")


class TensorBoard:
    """A real `tensorboard` subprocess on a free port."""

    def __init__(self, logdir, load_fast=True, extra_args=(), python=None):
        """python: the interpreter whose installed tb_attention it serves
        (this one by default; a benchmark's baseline may be another venv's);
        load_fast: True, False or "auto" (TensorBoard's default)."""
        self.logdir = str(logdir)
        self.load_fast = load_fast
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self._log = tempfile.NamedTemporaryFile(prefix="tensorboard-", suffix=".log", delete=False)
        cmd = [python or sys.executable, "-m", "tensorboard.main", "--logdir", self.logdir,
               "--port", str(self.port), "--host", "127.0.0.1", "--reload_interval", "1",
               "--load_fast", {True: "true", False: "false"}.get(load_fast, load_fast), *extra_args]
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the installed package, as users get it
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=tempfile.gettempdir())
        wait_until(self._ready, timeout=90, what="tensorboard on port %d" % self.port)

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("tensorboard exited with %s:\n%s" % (self.proc.returncode, self.output()))
        try:
            return self.get_json("/data/plugins_listing") is not None
        except (urllib.error.URLError, ConnectionError):
            return False

    def output(self):
        with open(self._log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def get(self, path, headers=None):
        """(status, headers, body) for a GET of path."""
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get_json(self, path):
        status, _, body = self.get(path)
        assert status == 200, "GET %s -> %s: %s" % (path, status, body[:500])
        return json.loads(body)

    def attention_tags(self):
        """{run: {tag: entry}} of the attention plugin: see attention_listing."""
        return attention_listing(self.get_json)

    def wait_kept(self, expected, timeout=180):
        """Wait until every {run: (tag, n)} of expected lists at least n kept steps."""
        def loaded():
            runs = self.attention_tags()
            return all(run in runs and tag in runs[run] and runs[run][tag]["kept"] >= n
                       for run, (tag, n) in expected.items())
        wait_until(loaded, timeout=timeout, interval=0.5, what="TensorBoard to load every test run")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self._log.name)


def attention_listing(get_json, prefix=PREFIX):
    """{run: {tag: entry}}: the `tags` route's entries, each merged with its
    `steps` route's answer (steps, kept, written, kinds, model_type, error),
    as the dashboard merges them. get_json(path) -> the parsed 200 answer."""
    out = {}
    for r in get_json(prefix + "tags")["runs"]:
        for t in r["tags"]:
            q = urllib.parse.urlencode({"run": r["run"], "tag": t["tag"]})
            out.setdefault(r["run"], {})[t["tag"]] = dict(t, **get_json(prefix + "steps?" + q))
    return out


# -- HTTP answers of both kinds of backend --------------------------------------


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = datastructures.Headers(list(headers.items()) if isinstance(headers, dict) else headers)
        self.body = body

    def json(self):
        assert self.headers.get("Content-Type") == "application/json", self.headers
        return json.loads(self.body)

    def error(self):
        body = self.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message"}, body
        return body["error"]["message"]

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.headers.get("Content-Type"), self.body[:300])


class CountingProvider:
    """The real data provider, recording what it is asked to read (instrumentation)."""

    def __init__(self, real):
        self.real = real
        self.blob_keys = []
        self.sequence_reads = 0

    def read_blob_sequences(self, ctx=None, **kwargs):
        self.sequence_reads += 1
        return self.real.read_blob_sequences(ctx, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def read_blob(self, ctx=None, *, blob_key):
        self.blob_keys.append(blob_key)
        return self.real.read_blob(ctx, blob_key=blob_key)


class WsgiBackend:
    """TensorBoard's WSGI app over a real multiplexer, in process, with
    TensorBoard's default sample sizes (10 attention steps per tag)."""

    name = "wsgi"

    def __init__(self, logdir, counting=False):
        from tensorboard.backend import application
        from tensorboard.backend.event_processing import data_ingester
        from tensorboard.backend.event_processing import data_provider as tb_data_provider
        from tensorboard.backend.event_processing import plugin_event_multiplexer
        from tensorboard.plugins.scalar import scalars_plugin
        from tb_attention import plugin

        self.logdir = str(logdir)
        self.multiplexer = plugin_event_multiplexer.EventMultiplexer(
            size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
            tensor_size_guidance=dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE))
        self.reload()
        self.provider = tb_data_provider.MultiplexerDataProvider(self.multiplexer, self.logdir)
        if counting:
            self.provider = CountingProvider(self.provider)
        flags = argparse.Namespace(logdir=self.logdir, samples_per_plugin={}, window_title="", path_prefix="")
        app = application.TensorBoardWSGIApp(
            flags, [plugin.AttentionPlugin, scalars_plugin.ScalarsPlugin],
            data_provider=self.provider, deprecated_multiplexer=self.multiplexer)
        self.client = werkzeug_test.Client(app, wrappers.Response)

    def reload(self):
        self.multiplexer.AddRunsFromDirectory(self.logdir)
        self.multiplexer.Reload()

    def get(self, path):
        r = self.client.get(path)
        return Resp(r.status_code, r.headers, r.get_data())


class ServerBackend:
    """A TensorBoard subprocess answering the same get() as WsgiBackend."""

    def __init__(self, server, name):
        self.server = server
        self.name = name

    def reload(self):
        pass  # --reload_interval 1

    def get(self, path):
        status, headers, body = self.server.get(urllib.parse.quote(path, safe="/?&=%+"))
        return Resp(status, headers, body)


# -- TensorBoard's loaders as data providers -------------------------------------


def python_loader(logdir):
    """TensorBoard's Python loader keeping every step (what --load_fast=false runs)."""
    from tensorboard.backend.event_processing import data_provider as mux_data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    mux = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0, "scalars": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return mux, mux_data_provider.MultiplexerDataProvider(mux, str(logdir))


class RustDataServer:
    """The data server binary of tensorboard-data-server (what --load_fast=true
    runs), spawned the way TensorBoard's SubprocessServerDataIngester does,
    read through TensorBoard's own GrpcDataProvider."""

    def __init__(self, logdir):
        import grpc
        from tensorboard.data import grpc_provider, server_ingester
        from tensorboard.util import grpc_util

        binary = server_ingester.get_server_binary()
        self._tmp = tempfile.mkdtemp(prefix="tb-data-server-")
        port_file = os.path.join(self._tmp, "port")
        self.proc = subprocess.Popen(
            [binary.path, "--logdir=%s" % logdir, "--reload=1",
             "--samples-per-plugin=%s=all,scalars=all" % metadata.PLUGIN_NAME,
             "--port=0", "--port-file=%s" % port_file, "--die-after-stdin",
             "--error-file=%s" % os.path.join(self._tmp, "error")],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def port():
            assert self.proc.poll() is None, "data server exited with %s" % self.proc.returncode
            with open(port_file) as f:
                text = f.read()
            return text.endswith("\n") and int(text)

        addr = "localhost:%d" % wait_until(port, timeout=30, what="the data server's port file")
        creds, options = grpc_util.ChannelCredsType.LOCAL.channel_config()
        options.append(("grpc.max_receive_message_length", 256 * 1024 * 1024))
        self._channel = grpc.secure_channel(addr, creds, options=options)
        self.provider = grpc_provider.GrpcDataProvider(addr, grpc_provider.make_stub(self._channel))

    def stop(self):
        self._channel.close()
        self.proc.stdin.close()  # --die-after-stdin
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)


@contextlib.contextmanager
def rust_data_server(logdir):
    server = RustDataServer(str(logdir))
    try:
        yield server.provider
    finally:
        server.stop()


def provider_blobs(provider):
    """run -> tag -> step -> (wall_time, [blob bytes]) of every attention step,
    through list_blob_sequences / read_blob_sequences / read_blob."""
    listing = provider.list_blob_sequences(CTX, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    data = provider.read_blob_sequences(CTX, experiment_id="", plugin_name=metadata.PLUGIN_NAME,
                                        downsample=10 ** 6)
    assert set(data) == set(listing)
    result = {}
    for run, tags in data.items():
        assert set(tags) == set(listing[run])
        for tag, seq in tags.items():
            ts = listing[run][tag]
            assert ts.plugin_content == attention_pb2.AttentionPluginData(
                version=metadata.FORMAT_VERSION).SerializeToString()
            assert ts.max_step == max(d.step for d in seq)
            assert ts.max_length == max(len(d.values) for d in seq)
            result.setdefault(run, {})[tag] = {
                d.step: (d.wall_time, [provider.read_blob(CTX, blob_key=ref.blob_key) for ref in d.values])
                for d in seq}
    return result


def blob_steps(provider, run, tag):
    listing = provider.list_blob_sequences(CTX, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    if tag not in listing.get(run, {}):
        return []
    data = provider.read_blob_sequences(CTX, experiment_id="", plugin_name=metadata.PLUGIN_NAME,
                                        downsample=10 ** 6)
    return sorted(d.step for d in data[run][tag])


def scalar_steps(provider, run, tag):
    data = provider.read_scalars(CTX, experiment_id="", plugin_name="scalars", downsample=10 ** 6)
    return sorted(d.step for d in data.get(run, {}).get(tag, []))


def kept_data(provider, run, tag):
    """The kept BlobSequenceDatum of (run, tag), read straight from the provider."""
    from tensorboard.data import provider as tb_provider

    return provider.read_blob_sequences(
        CTX, experiment_id="", plugin_name=metadata.PLUGIN_NAME, downsample=1000,
        run_tag_filter=tb_provider.RunTagFilter(runs=[run], tags=[tag]))[run][tag]


def quoted_url(route, **params):
    """A route's path with every parameter percent-encoded (UTF-8, spaces as %20)."""
    return PREFIX + route + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def get_ok(backend, route, **params):
    """backend's 200 answer to route with params (asserted, with nosniff)."""
    r = backend.get(quoted_url(route, **params))
    assert r.status == 200, (route, params, r)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    return r
