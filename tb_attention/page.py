"""One self-contained HTML page of attention: a notebook output or a file.

    tb_attention.save_html(record, "attention.html", view="model")
    tb_attention.save_html(tb_attention.load("runs"), "probe.html", runs=["exp1"], tags=["probe/cat"])

The page draws with the dashboard's own views (frontend/, bundled by
tools/bundle.py into page_bundle.js and inlined as one classic script): the
same head, model, neuron, matrix, stats and compare views, the step scrubber
when several steps are given, PNG export. It needs no server and no network.
Its data (tb_attention.pagedata) is base64 text inside the script, so no
token or run name is ever parsed as HTML; the only HTML written from user
text is the static fallback (escaped).

A notebook output is an element and its script. The script finds the element
by id, draws into its shadow root (several outputs share no ids or styles)
and hides the element's static fallback, which is what shows where scripts
do not run (an untrusted notebook: a notice and one head as a picture).
"""
import base64
import html
import json
import os
import struct
import uuid
import zlib

import numpy as np

from tb_attention import answers
from tb_attention.pagedata import page_steps, payload
from tb_attention.pagestate import BUNDLE_PATH, PageError, bundle_meta

# Pages larger than this are refused unless max_bytes says otherwise (the
# dashboard asks before writing one).
DEFAULT_MAX_BYTES = 50 * 2 ** 20
FALLBACK_PIXELS = 256
DEFAULT_HEIGHT = 600
# A record shown by just being the last expression of a cell: kept small.
REPR_HEIGHT = 420
REPR_MAX_BYTES = 8 * 2 ** 20


def _png_gray(pixels):
    """A greyscale PNG of uint8 pixels [h, w]."""
    h, w = pixels.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _fallback(title, entry, kind, state, blobs_bytes):
    """What shows where the page's script does not run (an untrusted notebook,
    a viewer without scripts): a notice and one head as a still picture."""
    layers = kind["layer_ids"]
    layer = state.get("layer", layers[0])
    head = state.get("head", 0)
    L, H, Tq, Tk = len(layers), kind["num_heads"], len(kind["query_tokens"]), len(kind["key_tokens"])
    offset, _ = entry["attention"][kind["name"]]
    start = offset + (layers.index(layer) * H + head) * Tq * Tk
    att = np.frombuffer(blobs_bytes, np.uint8, count=Tq * Tk, offset=start).reshape(1, Tq, Tk)
    pooled, _, _ = answers.max_pool(att, FALLBACK_PIXELS)
    scale = max(1, FALLBACK_PIXELS // max(pooled.shape[1:]))  # scaled here: a sanitizer may drop CSS
    picture = np.repeat(np.repeat(255 - pooled[0], scale, axis=0), scale, axis=1)
    png = base64.b64encode(_png_gray(picture)).decode("ascii")
    caption = ("Still picture: layer %d, head %d of %s step %d (rows: the %d query tokens, columns: the %d key tokens; "
               "darker is more attention)." % (layer, head, html.escape(entry["run"]), entry["step"], Tq, Tk))
    return (
        '<div class="tba-fallback" style="font: 13px/1.4 sans-serif; padding: 8px; border: 1px solid #999;">'
        "<p><strong>tb-attention: %s</strong></p>"
        "<p>This output draws with a script, which did not run here. In Jupyter, trust the notebook "
        "(File &gt; Trust Notebook, or <code>jupyter trust NOTEBOOK.ipynb</code>) and reopen it, or run the cell again.</p>"
        '<p><img alt="attention of one head" src="data:image/png;base64,%s" width="%d" height="%d" '
        'style="border: 1px solid #999;"></p><p>%s</p></div>'
        % (html.escape(title), png, picture.shape[1], picture.shape[0], caption))


def _script(node_id, data, keys):
    with open(BUNDLE_PATH, encoding="utf-8") as f:
        bundle = f.read()
    version = bundle_meta()["version"]
    # The id and the data are [A-Za-z0-9+/=-] only: nothing in them can end the script.
    return (
        "<script>\n%s(function () {\n"
        "  var s = document.currentScript, id = %s;\n"
        "  var node = document.getElementById(id) || (s && s.getRootNode && s.getRootNode().getElementById && s.getRootNode().getElementById(id));\n"
        "  var b = window.__tbAttention[%s];\n"
        "  b.require(\"frontend/embed.js\").mount(node, \"%s\", b.css, { keys: %s });\n"
        "})();\n</script>" % (bundle, json.dumps(node_id), json.dumps(version), data, json.dumps(keys)))


class Page:
    """A page of attention ready to be written: as a notebook output (html())
    or a whole file (document()). Arguments as tb_attention.show()."""

    def __init__(self, x, view="head", *, runs=None, tags=None, steps=None, views=None, height=DEFAULT_HEIGHT,
                 theme=None, title=None, max_bytes=DEFAULT_MAX_BYTES, **state):
        meta = bundle_meta()
        chosen = page_steps(x, runs, tags, steps)
        if views is None:
            one = len(chosen) == 1
            views = [v for v in meta["views"] if not (one and v in ("stats", "compare"))]
        if isinstance(views, str) or not views or any(v not in meta["views"] for v in views):
            raise PageError("views=%r: a list of views, each one of %s" % (views, ", ".join(meta["views"])))
        if theme not in (None, "light", "dark"):
            raise PageError("theme must be None (follow the notebook or browser), 'light' or 'dark', got %r" % (theme,))
        if isinstance(height, bool) or not isinstance(height, (int, np.integer)) or not 120 <= height <= 10000:
            raise PageError("height must be an int of pixels in 120..10000, got %r" % (height,))
        p = payload(chosen, view, state, list(views), theme)
        entry, kind = p.shown
        self.title = title or "%s \u00b7 %s \u00b7 %d step%s" % (
            entry["run"], entry["tag"], len(chosen), "" if len(chosen) == 1 else "s")
        self.height = int(height)
        self.data = base64.b64encode(p.data).decode("ascii")
        given = {k: v for k, v in state.items() if v is not None}
        self.fallback = _fallback(self.title, entry, kind, given, p.blobs)
        size = len(self.data) + len(self.fallback) + os.path.getsize(BUNDLE_PATH)
        if max_bytes is not None and size > max_bytes:
            raise PageTooLarge("the page would be %.1f MB, over max_bytes=%d (%.1f MB): give fewer steps, layers "
                            "or tokens, or pass max_bytes=None" % (size / 2 ** 20, max_bytes, max_bytes / 2 ** 20))

    def html(self):
        """The page as a notebook output: an element and its script."""
        node_id = "tba-" + uuid.uuid4().hex
        return ('<div id="%s" class="tba-output" data-lm-suppress-shortcuts="true" style="height: %dpx;">%s</div>\n%s'
                % (node_id, self.height, self.fallback, _script(node_id, self.data, "node")))

    def document(self):
        """The page as a file of its own: opens from disk with no network (its
        Content-Security-Policy forbids every request)."""
        node_id = "tba-page"
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; img-src data: blob:\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<title>%s</title>\n<link rel=\"icon\" href=\"data:,\">\n"
            "<style>html, body { margin: 0; height: 100%%; }</style>\n</head>\n<body>\n"
            "<div id=\"%s\" class=\"tba-output\" style=\"height: 100vh;\">%s</div>\n%s\n</body>\n</html>\n"
            % (html.escape(self.title), node_id, self.fallback, _script(node_id, self.data, "window")))

    def _repr_html_(self):
        return self.html()


class PageTooLarge(PageError):
    """A page over max_bytes (the dashboard asks before writing it anyway)."""


def save_html(x, path, view="head", **options):
    """Write x (see show()) as one self-contained HTML file at path; returns the path.

    The file opens from disk, an e-mail attachment or a static file host with
    no server and no network, with the same views as the dashboard, the step
    scrubber when several steps are given, and PNG export. Options as show():
    runs, tags, steps, views, theme, title, max_bytes and the state (layer,
    head, heads, ...)."""
    page = Page(x, view, **options)
    text = page.document()
    path = os.fspath(path)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise PageError("path %r cannot be written: %s" % (path, e.strerror or e)) from None
    return path


def repr_html(record):
    """AttentionRecord._repr_html_: the head view alone, or a notice when that would be large."""
    try:
        return Page(record, "head", views=["head"], height=REPR_HEIGHT, max_bytes=REPR_MAX_BYTES).html()
    except PageError as e:
        return "<p><strong>tb-attention</strong>: %s. %s</p>" % (
            html.escape(repr(record)), html.escape("Not drawn inline: %s; call tb_attention.show(record, ...)" % e))

