"""The demo end to end, as a user runs it: train, log probes, checkpoints and
MiniLM, serve TensorBoard on a free port, fetch the plugin's runs and the loss
scalars over HTTP, open the dashboard in headless Chromium and take a
screenshot of every view tab it offers, stop the server.

By default the demo runs with tiny settings (a few steps) and the
screenshots go to a temporary directory. With TBA_README_SCREENSHOTS=1 the
demo runs at its default size (3000 steps, about a minute of training) and the
screenshots are written to docs/screenshots/ for the README:

    TBA_README_SCREENSHOTS=1 .venv/bin/python -m pytest tests/test_demo.py -q -p no:cacheprovider

The demo and its TensorBoard use the installed tb_attention (PYTHONPATH is
dropped), as after `bash demo/run.sh`.
"""
import io
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import quote

import numpy as np
import pytest

from tests.conftest import REPO, attention_listing, free_port, wait_until

DEMO = os.path.join(REPO, "demo", "demo.py")
README_MODE = os.environ.get("TBA_README_SCREENSHOTS") == "1"
if README_MODE:  # the demo's defaults, as `bash demo/run.sh` runs it
    STEPS, LOG_EVERY, EARLY = 3000, 50, 600
    VIT_STEPS = list(range(0, 201, 20))
    DEMO_ARGS = []
    LOGGED_TIMEOUT = 600
else:
    STEPS, LOG_EVERY, EARLY = 12, 4, 4
    VIT_STEPS = [0, 2, 4]
    DEMO_ARGS = ["--steps", str(STEPS), "--log-every", str(LOG_EVERY), "--early-step", str(EARLY),
                 "--seq-len", "16", "--max-segment", "6", "--vit-steps", "4", "--vit-log-every", "2"]
    LOGGED_TIMEOUT = 120
README_SCREENSHOTS = os.path.join(REPO, "docs", "screenshots")
TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1280, "height": 800}

_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore http_proxy
PROBE_TAGS = ["probe/induction-0", "probe/induction-1", "probe/induction-2"]
VIT_TAGS = ["image/blue-bottom-left", "image/red-top-right"]
MINILM_TAGS = ["agreement/author", "agreement/keys", "coreference/tired", "coreference/trophy",
               "coreference/wide", "pair/cat-mat", "pair/paraphrase", "pair/question-answer"]

# What each screenshot shows (the dashboard's URL state, frontend/README.md).
# The final step of the first induction probe: layer 0 head 0 is the
# previous-token head, layer 1 head 0 the induction head (the demo prints
# which heads formed). MiniLM layer 3 head 1 sends "it" (token 10) mostly to
# "animal" (0.68 in coreference/tired, the largest of its 72 heads).
TRAIN_FINAL = {"run": "gpt2-train", "tag": "probe/induction-0", "step": STEPS}
VIEW_STATE = {
    "head": {"run": "minilm", "tag": "coreference/tired", "step": 0, "layer": 3, "heads": 1,
             "hover": "q10"},
    "model": dict(TRAIN_FINAL),
    "neuron": {"run": "minilm", "tag": "coreference/tired", "step": 0, "layer": 3, "head": 1,
               "query": 10},
    "matrix": dict(TRAIN_FINAL, layer=1, head=0, zoom=16),  # all 32 rows: the second copy is last
    # Views being added on other branches (their URL keys: stat; brun, bstep, cmode): the
    # previous-token statistic over training, and the final checkpoint against the early one.
    "stats": dict(TRAIN_FINAL, stat="previous_token"),
    "compare": {"run": "gpt2-checkpoint-final", "tag": "probe/induction-0", "step": STEPS,
                "brun": "gpt2-checkpoint-early", "bstep": EARLY, "cmode": "matrix",
                "layer": 1, "head": 0},
}
# Views without an entry get TRAIN_FINAL.
DRAWN_KEYS = ("run", "tag", "step", "layer", "head")


def _get_json(url):
    with _http.open(url, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def _stop(proc):
    """Terminate the demo's process group (the demo and its TensorBoard)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Demo:
    def __init__(self, tmp):
        self.logdir = tmp / "runs"
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.out_path = tmp / "demo.out"
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        cmd = [sys.executable, DEMO, *DEMO_ARGS, "--logdir", str(self.logdir),
               "--port", str(self.port), "--host", "127.0.0.1"]
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=str(tmp), start_new_session=True)

    def output(self):
        return self.out_path.read_text(errors="replace")

    def stop(self):
        _stop(self.proc)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = Demo(tmp_path_factory.mktemp("demo"))
    try:
        def serving_or_exited():
            return d.proc.poll() is not None or "TensorBoard: %s/#attention" % d.url in d.output()

        wait_until(serving_or_exited, timeout=LOGGED_TIMEOUT, interval=0.2,
                   what="the demo to finish logging")
        assert d.proc.poll() is None, "demo exited with %s:\n%s" % (d.proc.returncode, d.output())
        yield d
    finally:
        d.stop()


def test_demo_end_to_end(demo):
    url, logdir = demo.url, demo.logdir
    steps = list(range(0, STEPS + 1, LOG_EVERY))
    expected = {
        "gpt2-train": {tag: steps for tag in PROBE_TAGS},
        "gpt2-checkpoint-early": {tag: [EARLY] for tag in PROBE_TAGS},
        "gpt2-checkpoint-final": {tag: [STEPS] for tag in PROBE_TAGS},
        "minilm": {tag: [0] for tag in MINILM_TAGS},
        "vit-train": {tag: VIT_STEPS for tag in VIT_TAGS},
    }

    def all_loaded():  # TensorBoard picks up new event data every few seconds
        listing = attention_listing(lambda path: _get_json(url + path))
        got = {run: {tag: t["steps"] for tag, t in tags.items()} for run, tags in listing.items()}
        return listing if got == expected else None

    listing = wait_until(all_loaded, timeout=60, interval=0.5,
                         what="the demo's runs in /data/plugin/attention/tags and steps")
    tags = {(run, tag): t for run, ts in listing.items() for tag, t in ts.items()}

    train = tags[("gpt2-train", "probe/induction-0")]
    assert train["model_type"] == "gpt2"
    assert train["kept"] == train["written"] == len(steps)  # all steps kept
    (kind,) = train["kinds"]
    assert kind["name"] == "self" and kind["causal"] and kind["has_neurons"]
    assert kind["layer_ids"] == [0, 1] and kind["num_heads"] == 4
    assert tags[("gpt2-checkpoint-final", "probe/induction-0")]["kinds"] == train["kinds"]

    bert = tags[("minilm", "pair/question-answer")]
    assert bert["model_type"] == "bert"
    (kind,) = bert["kinds"]
    assert kind["has_neurons"] and not kind["causal"]
    assert len(kind["layer_ids"]) == 6 and kind["num_heads"] == 12

    vit = tags[("vit-train", "image/red-top-right")]
    assert vit["model_type"] == "vit"
    (kind,) = vit["kinds"]
    assert kind["has_neurons"] and not kind["causal"] and kind["layer_ids"] == [0, 1]
    header = _get_json(url + "/data/plugin/attention/header?run=vit-train&tag=image/red-top-right&step=0")
    assert header["kinds"][0]["query_tokens"][:2] == ["[CLS]", "patch (0, 0)"]
    assert (header["image"]["rows"], header["image"]["cols"], header["image"]["first_patch"]) == (4, 4, 1)

    # The loss curve lives in the same run as the probes' attention.
    scalar_tags = _get_json(url + "/data/plugin/scalars/tags")
    assert {"loss/train", "loss/repeated_segment", "heads/best_induction_score"} <= set(
        scalar_tags["gpt2-train"])
    def every_loss_step():  # all kept (the demo serves with scalars=0), once loaded
        loss = _get_json(url + "/data/plugin/scalars/scalars?run=gpt2-train&tag=loss/train")
        return [row[1] for row in loss] == list(range(1, STEPS + 1))

    wait_until(every_loss_step, timeout=60, interval=0.5, what="every step of loss/train")

    # One step's attention decodes: a row of a causal map sums to 1.
    with _http.open(
            url + "/data/plugin/attention/attention?run=gpt2-train&tag=probe/induction-0"
            "&step=%d&kind=self&layer=1&head=0" % STEPS, timeout=30) as r:
        body = r.read()
        shape = [int(x) for x in r.headers["X-Attention-Shape"].split(",")]
    assert shape[0] == 1 and len(body) == shape[0] * shape[1] * shape[2]
    assert abs(sum(body[-shape[2]:]) / 255 - 1) < 0.05

    report = json.loads((logdir / "demo_report.json").read_text())
    assert report["logged_steps"] == steps
    assert 0 < report["probe_fraction"] < 1
    assert os.path.isfile(logdir / "checkpoints" / ("gpt2-step-%d" % STEPS) / "config.json")
    out = demo.output()
    assert "Probe overhead" in out
    assert "ViT (%d steps" % VIT_STEPS[-1] in out
    if README_MODE:  # the [CLS] token learns to look at the square
        for first, last in report["vit"]["square"].values():
            assert last > 3 * first
    heads = report["specialised_heads"]
    if README_MODE:
        # At its default size the demo grows both circuits, and says so.
        kinds = {(h["layer"], h["kind"]) for h in heads}
        assert {(0, "previous-token"), (1, "induction")} <= kinds, heads
        for h in heads:
            assert h["last"] >= 0.5 > h["first"]
            assert "layer %d head %d: %s score" % (h["layer"], h["head"], h["kind"]) in out
    else:
        assert heads == [] and "No head reached 0.5 by step %d" % STEPS in out


def _save_png(png_bytes, path):
    """A palette PNG, smaller for busy pictures (the README's must stay small)."""
    from PIL import Image
    img = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    for scale, colors in ((1, 128), (1, 48), (2, 64)):
        small = img.resize((img.width // scale, img.height // scale), Image.LANCZOS) if scale > 1 else img
        small.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if os.path.getsize(path) < 200_000:
            break
    return img


def _dashboard_url(base, view, state):
    keys = dict(state, view=view)
    return "%s/#attention%s" % (base, "".join(
        "&p.attention.%s=%s" % (k, quote(str(v), safe="")) for k, v in keys.items()))


def _drawn(view, state):
    sel = '#tba[data-state="drawn"][data-view="%s"]' % view
    for k in DRAWN_KEYS:
        if k in state:
            sel += '[data-%s="%s"]' % (k, state[k])
    return sel


def test_screenshot_of_every_view(demo, browser, tmp_path):
    out_dir = README_SCREENSHOTS if README_MODE else str(tmp_path)
    os.makedirs(out_dir, exist_ok=True)
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.goto(_dashboard_url(demo.url, "head", VIEW_STATE["head"]))
        frame = page.wait_for_selector("iframe", state="attached", timeout=TIMEOUT_MS).content_frame()
        frame.wait_for_selector('#tba[data-state="drawn"]', state="attached", timeout=TIMEOUT_MS)
        views = frame.eval_on_selector_all("button[data-view]", "bs => bs.map(b => b.dataset.view)")
        assert {"head", "model", "neuron", "matrix"} <= set(views), views
        page.close()

        written = {}
        for view in views:
            state = VIEW_STATE.get(view, TRAIN_FINAL)
            page = ctx.new_page()
            page.goto(_dashboard_url(demo.url, view, state))
            frame = page.wait_for_selector("iframe", state="attached",
                                           timeout=TIMEOUT_MS).content_frame()
            frame.wait_for_selector(_drawn(view, state), state="attached", timeout=TIMEOUT_MS)
            assert frame.get_attribute('button[data-view="%s"]' % view, "aria-pressed") == "true"
            # Drawn means drawn with ink: the dashboard's area is not one flat colour.
            from PIL import Image
            area = Image.open(io.BytesIO(frame.locator("#tba").screenshot())).convert("L")
            hist = area.histogram()
            ink = 1 - max(hist) / sum(hist)
            assert ink > 0.02, "%s view: %.1f%% of its pixels differ from the background" % (
                view, 100 * ink)
            path = os.path.join(out_dir, "demo-%s.png" % view)
            _save_png(page.screenshot(), path)
            written[view] = os.path.getsize(path)
            page.close()
    finally:
        ctx.close()
    assert set(written) == set(views)
    if README_MODE:
        assert sum(written.values()) < 1_500_000, written


def test_screenshot_of_the_vit_in_image_mode(demo, browser, tmp_path):
    # the final step of the ViT: each head's [CLS] attention over the probe image
    out_dir = README_SCREENSHOTS if README_MODE else str(tmp_path)
    state = {"run": "vit-train", "tag": "image/red-top-right", "step": VIT_STEPS[-1], "layer": 1}
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.goto(_dashboard_url(demo.url, "head", state))
        frame = page.wait_for_selector("iframe", state="attached", timeout=TIMEOUT_MS).content_frame()
        frame.wait_for_selector(_drawn("head", state) + '[data-detail="image=1;query=0"]',
                                state="attached", timeout=TIMEOUT_MS)
        panels = json.loads(frame.get_attribute('canvas[data-name="head-image"]', "data-geometry"))["panels"]
        assert len(panels) == 4
        _save_png(page.screenshot(), os.path.join(out_dir, "demo-image.png"))
    finally:
        ctx.close()


def test_stopping_the_demo_stops_its_tensorboard(demo):
    demo.stop()
    assert demo.proc.returncode is not None
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        _http.open(demo.url + "/data/plugins_listing", timeout=2)


# ---------------------------------------------------------------------------
# The demo's head scores on planted attention (hand-computed expectations)

SEQ = ["<s>", "a", "b", "c", "d", "a", "b", "c", "d"]  # a segment and its copy
COPY = [5, 6, 7, 8]  # the copy's queries; the induction target of query i is i - 3


def _demo_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("tba_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(DEMO))  # its modules next to it (vit.py), as when run as a script
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(DEMO))
    return module


def _planted(trained):
    """[2 layers, 2 heads] uniform attention; when trained, layer 0 head 1
    attends to the previous token and layer 1 head 0 to the induction target."""
    from tb_attention import AttentionRecord, KindRecord
    T = len(SEQ)
    a = np.full((2, 2, T, T), 1.0 / T, np.float32)
    if trained:
        a[0, 1, 1:] = 0
        a[0, 1, np.arange(1, T), np.arange(T - 1)] = 1
        a[1, 0, COPY] = 0
        a[1, 0, COPY, [i - 3 for i in COPY]] = 1
    kind = KindRecord(name="self", attention=a, query_tokens=tuple(SEQ), key_tokens=tuple(SEQ), layer_ids=(0, 1))
    return AttentionRecord([kind], model_type="gpt2")


def test_the_demo_scores_an_induction_and_a_previous_token_head(tmp_path):
    demo = _demo_module()
    induction, previous = demo.head_scores(_planted(True), COPY)
    u = 1 / len(SEQ)
    np.testing.assert_allclose(induction, [[u, 0], [1, u]], atol=1e-6)
    # layer 1 head 0: queries 1-4 uniform (u each), the copy's 5-8 on i - 3 (0)
    np.testing.assert_allclose(previous, [[u, 1], [4 * u / 8, u]], atol=1e-6)
    # and read back from a logged run, as the demo's report does
    import tb_attention
    with tb_attention.AttentionWriter(str(tmp_path / demo.TRAIN_RUN)) as w:
        for step, trained in ((0, False), (10, True)):
            w.add_attention("probe", _planted(trained), global_step=step)
    losses = np.ones((11, 2))
    heads, steps = demo.specialised_heads(str(tmp_path), [("probe", None, COPY)], losses, window=2)
    assert steps == [0, 10]
    got = {(h["layer"], h["head"], h["kind"]): (h["first"], h["last"], h["formed_at"]) for h in heads}
    assert set(got) == {(1, 0, "induction"), (0, 1, "previous-token")}, got
    for first, last, formed_at in got.values():
        assert abs(first - u) < 0.01 and abs(last - 1) < 0.01 and formed_at == 10
