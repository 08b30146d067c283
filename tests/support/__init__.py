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


def installed_package():
    """(package dir, frontend dir) of the tb_attention a TensorBoard
    subprocess imports: PYTHONPATH dropped, started outside the checkout."""
    import subprocess
    import sys
    import tempfile
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import os, tb_attention.plugin as p; "
            "print(os.path.dirname(os.path.abspath(p.__file__))); print(p._frontend_root())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tempfile.gettempdir())
    if r.returncode != 0:
        return None, None
    package, frontend = r.stdout.split("\n")[:2]
    return package, frontend


def installed_differences():
    """What the installed tb_attention (as TensorBoard subprocesses get it)
    has different from this checkout: [] when it is this checkout's code
    (a regular or an editable install)."""
    package, frontend = installed_package()
    if package is None:
        return ["tb_attention is not installed"]
    pairs = []
    for sub, installed in (("tb_attention", package), ("frontend", frontend)):
        root = os.path.join(REPO, sub)
        for dirpath, dirnames, names in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "tests", "frontend")]
            for name in names:
                if name.endswith((".py", ".proto", ".js", ".css", ".html")):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    pairs.append((os.path.join(root, rel), os.path.join(installed, rel)))
    differ = []
    for here, there in pairs:
        try:
            with open(here, "rb") as a, open(there, "rb") as b:
                if a.read() != b.read():
                    differ.append(os.path.relpath(here, REPO))
        except FileNotFoundError:
            differ.append(os.path.relpath(here, REPO) + " (not installed)")
    return differ
