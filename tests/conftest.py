"""Shared test fixtures: real TensorBoard servers, one set per test module."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # tests.models etc.


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=60.0, interval=0.1, what="condition"):
    """Poll predicate until it returns a truthy value; fail after timeout.
    For readiness of external processes (TensorBoard reloads), not for pacing."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # not ready yet
            last_error = e
        time.sleep(interval)
    raise AssertionError("timed out after %.0f s waiting for %s (last error: %r)" % (timeout, what, last_error))


class TensorBoard:
    """A real `tensorboard` subprocess on a free port (of `python`'s environment)."""

    def __init__(self, logdir, load_fast=True, extra_args=(), python=sys.executable):
        self.logdir = str(logdir)
        self.load_fast = load_fast
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self._log = tempfile.NamedTemporaryFile(prefix="tensorboard-", suffix=".log", delete=False)
        cmd = [python, "-m", "tensorboard.main", "--logdir", self.logdir,
               "--port", str(self.port), "--host", "127.0.0.1", "--reload_interval", "1",
               "--load_fast", "true" if load_fast else "false", *extra_args]
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


def attention_listing(get_json, prefix="/data/plugin/attention/"):
    """{run: {tag: entry}}: the `tags` route's entries, each merged with its
    `steps` route's answer (steps, kept, written, kinds, model_type, error),
    as the dashboard merges them. get_json(path) -> the parsed 200 answer."""
    import urllib.parse
    out = {}
    for r in get_json(prefix + "tags")["runs"]:
        for t in r["tags"]:
            q = urllib.parse.urlencode({"run": r["run"], "tag": t["tag"]})
            out.setdefault(r["run"], {})[t["tag"]] = dict(t, **get_json(prefix + "steps?" + q))
    return out


@pytest.fixture(scope="module")
def tensorboard_factory():
    """start(logdir, load_fast=True, extra_args=()) -> TensorBoard; all stopped
    when the module's tests are done."""
    servers = []

    def start(logdir, load_fast=True, extra_args=()):
        server = TensorBoard(logdir, load_fast=load_fast, extra_args=extra_args)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (never `playwright install`)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
