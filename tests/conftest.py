"""Shared test fixtures: real TensorBoard servers (one set per test module),
Chromium, and the hardening logdir the format and fuzzing modules share.
The helpers themselves live in tests/support/."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # tests.models, tests.support

# Re-exported: modules and benchmarks import these from here.
from tests.support import free_port, wait_until  # noqa: E402,F401
from tests.support.backends import TensorBoard, attention_listing  # noqa: E402,F401


def pytest_sessionstart(session):
    """The tests start TensorBoard, the demo and the host page with the
    INSTALLED package: a stale install would test other code than this
    checkout's, so say so and stop (never skip quietly)."""
    from tests.support import installed_differences
    differ = installed_differences()
    if differ:
        pytest.exit("the installed tb_attention is not this checkout (%s): run "
                    "`.venv/bin/python -m pip install -q --no-deps --force-reinstall .`"
                    % ", ".join(differ[:5] + (["..."] if len(differ) > 5 else [])), returncode=3)


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


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """The hardening logdir (tests/support/logdirs.py: build_served)."""
    from tests.support import logdirs
    return logdirs.build_served(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def served_backends(served):
    """{"wsgi", "rust"} over `served`: TensorBoard's WSGI app (Python loader)
    and one real `tensorboard --load_fast=true`, shared by the modules that
    test routes on it (one tensorboard for the session, not one per module)."""
    from tests.support import logdirs
    from tests.support.backends import ServerBackend, WsgiBackend
    rust = ServerBackend(TensorBoard(served.root, load_fast=True), "rust")
    try:
        backends = {"wsgi": WsgiBackend(served.root), "rust": rust}
        for b in backends.values():
            wait_until(lambda: logdirs.served_loaded(b), timeout=90, what="%s to load the logdir" % b.name)
        yield backends
    finally:
        rust.server.stop()
