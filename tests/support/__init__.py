"""Helpers the test modules share, instead of importing each other.

    records   attention records to log, and the bytes the format stores for them
    events    event files built by hand (damaged, foreign, old or newer steps)
    backends  TensorBoard as the tests run it: a `tensorboard` subprocess, its
              WSGI app in process, its two loaders as data providers
    logdirs   the logdirs several modules serve
    browser   the dashboard in headless Chromium: pages, waiting for "drawn", pixels
"""
import contextlib
import os
import signal
import socket
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


@contextlib.contextmanager
def sigkilled(child):
    """The child process, SIGKILLed (as a crash would end it) when the block ends."""
    try:
        yield child
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
