"""The dashboard in headless Chromium (Playwright), as the e2e modules drive it.

Synchronisation: the dashboard's root element #tba carries
data-state="drawn" plus data-view / data-step / data-layer / data-hover ...
of what is on screen once a view has drawn (frontend/app.js); tests wait for
those attributes (wait_drawn), never for a fixed time.
"""
import contextlib
import io
import json
import os

from tests.support import REPO

# The tracked tests/screenshots/*.png are rewritten only on request
# (TBA_SCREENSHOTS=1); otherwise every run writes to build/screenshots/
# (ignored), so `bash tests/run.sh` leaves the working tree clean.
TRACKED_SCREENSHOTS = os.path.join(REPO, "tests", "screenshots")
SCREENSHOTS = (TRACKED_SCREENSHOTS if os.environ.get("TBA_SCREENSHOTS") == "1"
               else os.path.join(REPO, "build", "screenshots"))
TIMEOUT = 90_000  # ms; a loaded CI machine reads the 512-token record slowly


class Watch:
    """Dialogs, page errors, console errors and CSP violations of a page."""

    def __init__(self, page):
        self.dialogs = []
        self.errors = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append("pageerror: %s" % e))
        page.on("console", self._console)

    def _dialog(self, d):
        self.dialogs.append(d.message)
        d.dismiss()

    def _console(self, m):
        if m.type == "error" or "Content Security Policy" in m.text:
            self.errors.append("console %s: %s" % (m.type, m.text))


def url(board, **state):
    from urllib.parse import quote
    parts = "".join("&p.attention.%s=%s" % (k, quote(str(v), safe="")) for k, v in state.items())
    return "%s/#attention%s" % (board.url, parts)


def plugin_frame(page):
    handle = page.wait_for_selector("iframe", state="attached", timeout=TIMEOUT)
    frame = handle.content_frame()
    assert frame is not None
    return frame


def drawn_selector(**attrs):
    sel = '#tba[data-state="drawn"]'
    for k, v in attrs.items():
        sel += '[data-%s="%s"]' % (k, str(v).replace('"', '\\"'))
    return sel


def wait_drawn(frame, **attrs):
    frame.wait_for_selector(drawn_selector(**attrs), state="attached", timeout=TIMEOUT)
    return root_attrs(frame)


def wait_compare(frame, **want):
    """Wait until the compare view has drawn with these data-detail values."""
    frame.wait_for_function("""(want) => {
        const r = document.getElementById('tba');
        if (!r || r.dataset.state !== 'drawn' || r.dataset.view !== 'compare') return false;
        const d = Object.fromEntries((r.dataset.detail || '').split(';').map(p => p.split('=')));
        return Object.entries(want).every(([k, v]) => d[k] === v);
    }""", arg={k: str(v) for k, v in want.items()}, timeout=TIMEOUT)
    return detail(frame)


def root_attrs(frame):
    return frame.evaluate("() => Object.fromEntries([...document.getElementById('tba').attributes].map(a => [a.name, a.value]))")


def open_dashboard(page, board, **state):
    page.goto(url(board, **state))
    frame = plugin_frame(page)
    expect = {k: v for k, v in state.items() if k in ("view", "run", "tag", "step", "kind", "layer", "head")}
    wait_drawn(frame, **expect)
    return frame


def geometry(frame, canvas):
    return json.loads(frame.get_attribute('canvas[data-name="%s"]' % canvas, "data-geometry"))


def detail(frame):
    d = root_attrs(frame).get("data-detail", "")
    return dict(p.split("=", 1) for p in d.split(";") if "=" in p)


def canvas_pixels(frame, canvas, points):
    """RGBA of the canvas at CSS-pixel points (read from the canvas itself)."""
    return frame.evaluate("""([name, pts]) => {
        const c = document.querySelector(`canvas[data-name="${name}"]`);
        const sx = c.width / parseFloat(c.style.width), sy = c.height / parseFloat(c.style.height);
        const ctx = c.getContext('2d');
        return pts.map(([x, y]) => Array.from(ctx.getImageData(Math.floor(x * sx), Math.floor(y * sy), 1, 1).data));
    }""", [canvas, points])


def element_image(frame, selector):
    from PIL import Image
    return Image.open(io.BytesIO(frame.locator(selector).screenshot())).convert("RGB")


def ink(img, x, y, r=2):
    """Largest distance from white in a (2r+1)^2 neighbourhood of a screenshot."""
    best = 0
    for dx in range(-r, r + 1):
        for dy in range(-r, r + 1):
            px = img.getpixel((int(round(x)) + dx, int(round(y)) + dy))
            best = max(best, sum(255 - c for c in px))
    return best


def save_screenshot(page, name):
    from PIL import Image
    os.makedirs(SCREENSHOTS, exist_ok=True)
    img = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    path = os.path.join(SCREENSHOTS, name + ".png")
    # palette PNGs; noisy ones (512 random tokens) with fewer colours, or at half size
    for scale, colors in ((1, 256), (1, 48), (2, 64)):
        small = img.resize((img.width // scale, img.height // scale), Image.LANCZOS) if scale > 1 else img
        small.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if os.path.getsize(path) < 150_000:
            break


def press(page, frame, key):
    """A key press inside the plugin's iframe (focus it first, as a user's click would)."""
    frame.click('[data-name="step-label"]')
    page.keyboard.press(key)


def top_hash_keys(page):
    from urllib.parse import unquote
    h = page.evaluate("() => location.hash")
    out = {}
    for part in h.lstrip("#").split("&"):
        if part.startswith("p.attention.") and "=" in part:
            k, v = part.split("=", 1)
            out[unquote(k)[len("p.attention."):]] = unquote(v)
    return out


def edge_point(geo, q, k):
    """A point on the head-view line from query q to key k that sits between
    two rows (away from the horizontal lines of the other tokens)."""
    ya, yb = q + 0.5, k + 0.5
    # the row boundary crossed nearest the line's middle, far from where
    # lines of the same query start
    m = min(range(min(q, k) + 1, max(q, k) + 1), key=lambda m: abs((m - ya) / (yb - ya) - 0.5))
    t = (m - ya) / (yb - ya)
    assert 0.15 <= t <= 0.85, "no clean point on the line %d -> %d" % (q, k)
    x = geo["lineX0"] + t * (geo["lineX1"] - geo["lineX0"])
    return x, geo["top"] + m * geo["rowH"]


def next_frames(frame):
    """Resolve after two animation frames of the page: a redraw that a mouse
    move requested (one frame) has then been drawn."""
    frame.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


@contextlib.contextmanager
def watched_page(browser, **context_args):
    """A page in a fresh browser context (closed afterwards), its .watch a Watch."""
    ctx = browser.new_context(**context_args)
    try:
        p = ctx.new_page()
        p.watch = Watch(p)
        yield p
    finally:
        ctx.close()
