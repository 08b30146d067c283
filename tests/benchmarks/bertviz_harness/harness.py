"""Serve BertViz's own head_view / model_view HTML offline, for the browser
benchmark (tests/benchmarks/bench_dashboard.py).

BertViz's pages load require.js, d3 5.7.0 and jQuery 2.0.0 from cdnjs. Here
those files come from the npm registry instead (`npm pack`, into a temp dir,
at benchmark time; nothing is vendored in the repo), the three CDN URLs in
the generated HTML are rewritten to a local `python -m http.server` on
127.0.0.1, and everything else in the page is BertViz's output unchanged.

jQuery 2.0.0 was never published to npm (the `jquery` package goes from 1.9.1
to 2.1.0), so the page gets jquery@2.1.0, the nearest 2.x release. BertViz
uses jQuery only for `$(...).empty()/append/val/on`, the same code in both.

Also a command, to look at the pages by hand:
    python tests/benchmarks/bertviz_harness/harness.py --tokens 64
prints the URLs of a served head view and model view and serves until Ctrl-C.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

# package spec -> {path inside the npm tarball: file name served under /vendor/}
NPM_FILES = {
    "requirejs@2.3.6": {"package/require.js": "require.js"},
    "d3@5.7.0": {"package/dist/d3.min.js": "d3.min.js"},
    "jquery@2.1.0": {"package/dist/jquery.min.js": "jquery.min.js"},
}

# BertViz's CDN references (bertviz 1.4.1) -> local ones. require.config paths
# have no ".js": require.js appends it.
CDN_REWRITES = {
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js": "/vendor/require.js",
    "https://cdnjs.cloudflare.com/ajax/libs/d3/5.7.0/d3.min": "/vendor/d3.min",
    "https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.0/jquery.min": "/vendor/jquery.min",
}


def fetch_vendor(root):
    """npm pack the three packages and copy the needed files to root/vendor/."""
    vendor = os.path.join(root, "vendor")
    os.makedirs(vendor, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bertviz-npm-") as packs:
        out = subprocess.run(["npm", "pack", "--silent", "--pack-destination", packs, *NPM_FILES],
                             check=True, capture_output=True, text=True, cwd=packs).stdout.split()
        tarballs = sorted(os.path.join(packs, name) for name in out if name.endswith(".tgz"))
        if len(tarballs) != len(NPM_FILES):
            raise RuntimeError("npm pack gave %r for %s" % (out, list(NPM_FILES)))
        for spec, files in NPM_FILES.items():
            name, version = spec.rsplit("@", 1)
            tarball = os.path.join(packs, "%s-%s.tgz" % (name, version))
            with tarfile.open(tarball) as tf:
                for member, target in files.items():
                    with tf.extractfile(member) as src, open(os.path.join(vendor, target), "wb") as dst:
                        shutil.copyfileobj(src, dst)
    return vendor


def bertviz_html(view, attention, tokens):
    """BertViz's own page for a tuple of L torch tensors [1, H, T, T]
    (`view` is "head" or "model"), with the CDN URLs made local."""
    import bertviz
    fn = {"head": bertviz.head_view, "model": bertviz.model_view}[view]
    html = fn(attention, tokens, html_action="return").data
    for cdn, local in CDN_REWRITES.items():
        if html.count(cdn) != 1:
            raise RuntimeError("bertviz %s: expected %s once in the %s view HTML, found %d times "
                               "(another bertviz version?)" % (bertviz_version(), cdn, view, html.count(cdn)))
        html = html.replace(cdn, local)
    ends = html[:20000] + html[-20000:]  # the data sits in the middle, the code at the ends
    if "cdnjs" in ends or 'src="http' in ends:
        raise RuntimeError("bertviz %s HTML still references a CDN" % bertviz_version())
    # BertViz returns a notebook fragment; a page around it, nothing else.
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>bertviz %s view</title></head>\n'
            '<body>\n%s\n</body></html>\n' % (view, html))


def bertviz_version():
    from importlib.metadata import version
    return version("bertviz")


def write_page(root, name, view, attention, tokens):
    """Write BertViz's page to root/name; returns its size in bytes."""
    html = bertviz_html(view, attention, tokens)
    path = os.path.join(root, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(html)
    return os.path.getsize(path)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StaticServer:
    """`python -m http.server` (threaded) on 127.0.0.1, a free port, serving root."""

    def __init__(self, root):
        self.port = _free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "--directory", root],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/vendor/require.js", timeout=5) as r:
                    r.read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("http.server on port %d did not come up" % self.port)
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _main():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench_dashboard import random_attention, bert_tokens  # the benchmark's data
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bertviz-pages-")
    fetch_vendor(root)
    a = random_attention(args.layers, args.heads, args.tokens, seed=0)
    attention = tuple(torch.from_numpy(a[i:i + 1].copy()) for i in range(a.shape[0]))
    tokens = bert_tokens(args.tokens)
    for view in ("head", "model"):
        write_page(root, "%s_view.html" % view, view, attention, tokens)
    server = StaticServer(root)
    print("%s/head_view.html\n%s/model_view.html\n(serving %s; Ctrl-C stops)" % (server.url, server.url, root))
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    _main()
