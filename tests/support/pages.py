"""Pages of attention (tb_attention.page) as the tests make and read them.

    planted_record()        8 tokens, 2 layers x 3 heads: every token attends to
                            itself, except layer 0 head 0 where "cat" (2) attends to
                            the second "the" (5); with query/key vectors (neurons)
    read_page(html)         the manifest and blobs of a page, decoded here with
                            plain zlib/base64/json (an oracle apart from frontend/payload.js)
    open_page(ctx, url)     a Chromium page with every request but the page itself
                            refused and recorded, console errors collected
    Root / shadow helpers   data-* attributes and canvas pixels inside an output's shadow root
"""
import base64
import json
import re
import struct
import zlib

import numpy as np

from tb_attention.record import AttentionRecord, KindRecord, Neurons

TOKENS = ("<s>", "the", "cat", "sat", "on", "the", "mat", ".")
T = len(TOKENS)
L, H, D = 2, 3, 4
WHITE = [255, 255, 255]


def planted_attention(q=2, k=5):
    a = np.zeros((L, H, T, T), np.float32)
    a[:, :, np.arange(T), np.arange(T)] = 1.0
    a[0, 0, q, q] = 0.0
    a[0, 0, q, k] = 1.0
    return a


def planted_record(tokens=TOKENS, q=2, k=5, neurons=True, seed=0):
    """The planted attention, with random query/key vectors (their own
    softmax is what the neuron view shows; the attention is the planted one)."""
    rng = np.random.default_rng(seed)
    n = None
    if neurons:
        n = Neurons(queries=rng.standard_normal((L, H, T, D)).astype(np.float32),
                    keys=rng.standard_normal((L, H, T, D)).astype(np.float32),
                    scales=np.full(L, 0.5, np.float32), masked=np.zeros((L, T, T), bool))
    kind = KindRecord(name="self", attention=planted_attention(q, k), query_tokens=tuple(tokens),
                      key_tokens=tuple(tokens), layer_ids=(0, 1), neurons=n)
    return AttentionRecord([kind], model_type="toy")


_DATA = re.compile(r'mount\(node, "([A-Za-z0-9+/=]*)"')


def read_page(text):
    """(manifest, blobs) of every output in an HTML text, in order."""
    out = []
    for b64 in _DATA.findall(text):
        raw = zlib.decompress(base64.b64decode(b64))
        n = struct.unpack("<I", raw[:4])[0]
        out.append((json.loads(raw[4:4 + n]), raw[4 + n:]))
    return out


def open_page(context, url):
    """A page at url with every other request refused and recorded (page.requests)."""
    page = context.new_page()
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append("pageerror: %s" % e))
    page.on("console", lambda m: page.errors.append("console: %s" % m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: (page.errors.append("dialog: %s" % d.message), d.dismiss()))

    def route(r):
        if r.request.url == url:
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    page.goto(url)
    return page


# JS: the .tba root of output `i` (an index into the page's outputs, in document order).
_ROOT = "const root = document.querySelectorAll('.tba-output')[%d].shadowRoot.querySelector('.tba');"


class Output:
    """One output (a .tba-output element) of a page: its root's attributes and its canvases."""

    def __init__(self, page, index=0):
        self.page, self.index = page, index
        self.sel = ".tba-output >> nth=%d" % index

    def wait(self, **attrs):
        cond = "".join('[data-%s="%s"]' % (k, v) for k, v in attrs.items())
        self.page.locator(self.sel).locator('.tba[data-state="drawn"]%s' % cond).wait_for(state="attached")

    def wait_detail(self, **parts):
        """Wait until the drawn view's data-detail has these key=value parts."""
        want = ["%s=%s" % kv for kv in parts.items()]
        self.page.wait_for_function("""([i, want]) => {
            const out = document.querySelectorAll('.tba-output')[i];
            const root = out && out.shadowRoot && out.shadowRoot.querySelector('.tba');
            if (!root || root.getAttribute('data-state') !== 'drawn') return false;
            const have = (root.getAttribute('data-detail') || '').split(';');
            return want.every((w) => have.includes(w));
        }""", arg=[self.index, want])

    def attrs(self):
        return self.page.evaluate("() => { %s return Object.fromEntries([...root.attributes].map(a => [a.name, a.value])); }"
                                  % (_ROOT % self.index))

    def detail(self):
        d = self.attrs().get("data-detail", "")
        return dict(p.split("=", 1) for p in d.split(";") if "=" in p)

    def geometry(self, canvas):
        return json.loads(self.page.locator(self.sel).locator('canvas[data-name="%s"]' % canvas).get_attribute("data-geometry"))

    def pixels(self, canvas, points):
        """RGBA of a canvas at CSS-pixel points."""
        return self.page.evaluate("""([name, pts]) => { %s
            const c = root.querySelector(`canvas[data-name="${name}"]`);
            const sx = c.width / parseFloat(c.style.width), sy = c.height / parseFloat(c.style.height);
            const ctx = c.getContext('2d');
            return pts.map(([x, y]) => Array.from(ctx.getImageData(Math.floor(x * sx), Math.floor(y * sy), 1, 1).data));
        }""" % (_ROOT % self.index), [canvas, points])

    def click(self, name):
        self.page.locator(self.sel).locator('[data-name="%s"], [data-view="%s"]' % (name, name)).first.click()


def matrix_centre(geo, i, j):
    return geo["ox"] + (j + 0.5) * geo["cell"], geo["oy"] + (i + 0.5) * geo["cell"]
