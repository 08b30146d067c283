"""Attention in real notebooks: a notebook that calls tb_attention.show, a
record's _repr_html_, BertViz's head_view / model_view / neuron_view and
save_html is executed by nbclient on a kernel of this venv; its saved
outputs are then

- opened in headless Chromium from file:// with every other request refused
  (a page of the outputs, as a notebook viewer shows them): each draws, the
  planted edge is where the geometry says, outputs do not disturb each other;
- rendered by JupyterLab itself (pip jupyterlab, one server on 127.0.0.1 for
  this module) in Chromium: untrusted, every output shows its static
  fallback; trusted (`jupyter trust`), every output draws, JupyterLab's own
  styles are untouched, the outputs follow JupyterLab's theme, and a re-run
  cell replaces its output.

This is where BertViz goes blank (its outputs load require.js from a CDN).
Synchronisation: data-state="drawn" on each output's root; never a fixed wait.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO, free_port, wait_until
from tests.support.pages import TOKENS, WHITE, Output, matrix_centre, open_page, read_page
from tests.support.browser import edge_point

# The README's picture is rewritten only when asked (as test_demo's are): a
# plain run must leave the tracked files as they were.
SCREENSHOT = os.path.join(REPO, "docs" if os.environ.get("TBA_README_SCREENSHOTS") == "1" else "build",
                          "screenshots", "notebook-jupyterlab.png")

CELLS = [
    # 0: a planted record, BertViz's tuple of it, a tiny BERT and its tokenizer
    """import sys; sys.path.insert(0, %r)
import numpy as np, tb_attention
from tb_attention.notebook import head_view, model_view, neuron_view
from tests.support.pages import planted_record, planted_attention, TOKENS
from tests.models import tiny_model
rec = planted_record()
attentions = tuple(a[None] for a in planted_attention())""" % REPO,
    "tb_attention.show(rec, layer=0)",  # 1: head view
    "rec",  # 2: _repr_html_
    "head_view(attentions, list(TOKENS), layer=0, heads=[0])",  # 3
    "model_view(attentions, list(TOKENS))",  # 4
    """model, tok = tiny_model("bert")
neuron_view(model, "bert", tok, "the cat sat on the mat", "the dog ran home", layer=1, head=2)""",  # 5
    """tb_attention.show([rec, planted_record(k=6)], view="compare", cmode="matrix", step=0, layer=0, head=0)""",  # 6
    """print(tb_attention.save_html(rec, "saved.html", view="matrix", layer=0, head=0))""",  # 7
    # 8: the README's picture: the pretrained MiniLM's head view
    """from tests.models import minilm
mini, mtok = minilm()
text = "The animal didn't cross the street because it was too tired"
tb_attention.show(tb_attention.capture(mini, mtok(text, return_tensors="pt"), tokenizer=mtok), layer=3, heads=[1], height=520)""",
]
OUTPUTS = 7  # cells 1-6 and 8 each show one output


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The executed notebook (nbclient, a python3 kernel of this venv) in its folder."""
    root = tmp_path_factory.mktemp("notebooks")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    started = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    print("\nnbclient executed the notebook in %.1f s" % (time.perf_counter() - started))
    nbformat.write(nb, str(root / "executed.ipynb"))
    return root, nb


def html_outputs(nb):
    return [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]


def test_the_notebook_has_one_offline_output_per_call(notebook):
    root, nb = notebook
    outputs = html_outputs(nb)
    assert len(outputs) == OUTPUTS
    views = [m["state"]["view"] for text in outputs for m, _ in read_page(text)]
    assert views == ["head", "head", "head", "model", "neuron", "compare", "head"]
    for text in outputs:
        assert "https://" not in text and "require.js" not in text  # nothing from a CDN
    (neuron, _), = read_page(outputs[4])
    kind = neuron["steps"][0]["header"]["kinds"][0]
    assert kind["has_neurons"] and kind["query_segment_b"] > 0 and neuron["state"]["layer"] == "1"
    assert nb.cells[7]["outputs"][0]["text"].strip() == "saved.html" and (root / "saved.html").exists()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    yield ctx
    ctx.close()


def _drawn_with_the_planted_edge(page):
    """Every output of the page drawn; the first (a head view) shows the
    planted edge 2 -> 5 and nothing on 2 -> 6."""
    outs = [Output(page, i) for i in range(OUTPUTS)]
    for out in outs:
        out.wait()
    geo = outs[0].geometry("head-canvas")
    (r, g, b, _), off = outs[0].pixels("head-canvas", [edge_point(geo, 2, 5), edge_point(geo, 2, 6)])
    assert b > r + 60 and off[:3] == WHITE, ((r, g, b), off)
    return outs


def test_the_saved_outputs_draw_from_file_and_do_not_disturb_each_other(notebook, context):
    root, nb = notebook
    path = root / "outputs.html"
    path.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>%s</body></html>"
                    % "\n".join(html_outputs(nb)), encoding="utf-8")
    url = "file://%s" % path
    page = open_page(context, url)
    outs = _drawn_with_the_planted_edge(page)
    d = outs[5].detail()
    assert (d["mode"], d["maxabs"]) == ("matrix", "1.000")
    # hovering one output draws that one only
    draws = [o.attrs()["data-draws"] for o in outs]
    geo = outs[1].geometry("head-canvas")
    page.locator(".tba-output >> nth=1").locator('canvas[data-name="head-canvas"]').hover(
        position={"x": geo["leftTextX"] - 4, "y": geo["top"] + 2.5 * geo["rowH"]})
    page.wait_for_function("() => document.querySelectorAll('.tba-output')[1].shadowRoot.querySelector('.tba').getAttribute('data-hover') === 'q2'")
    after = [o.attrs()["data-draws"] for o in outs]
    assert [a == b for a, b in zip(draws, after)] == [True, False, True, True, True, True, True]
    # the saved file too
    saved = "file://%s" % (root / "saved.html")
    page2 = open_page(context, saved)
    out = Output(page2)
    out.wait(view="matrix")
    geo = out.geometry("matrix-canvas")
    hot, cold = out.pixels("matrix-canvas", [matrix_centre(geo, 2, 5), matrix_centre(geo, 2, 2)])
    assert sum(hot[:3]) < 200 and cold[:3] == WHITE
    for p, u in ((page, url), (page2, saved)):
        assert not p.errors, p.errors
        assert p.requests == [u], p.requests


# -- JupyterLab ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(notebook, tmp_path_factory):
    """JupyterLab 4 on 127.0.0.1 serving the executed notebook twice: untrusted and trusted."""
    root, _ = notebook
    home = tmp_path_factory.mktemp("jupyter-home")
    env = dict(os.environ, JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_CONFIG_DIR=str(home / "config"), IPYTHONDIR=str(home / "ipython"))
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    shutil.copy(root / "executed.ipynb", root / "trusted.ipynb")
    # trust is a signature of the content: the untrusted copy must differ from the trusted one
    other = nbformat.read(str(root / "executed.ipynb"), as_version=4)
    other.metadata["tba_test"] = "untrusted copy"
    nbformat.write(other, str(root / "untrusted.ipynb"))
    # the README's picture: the MiniLM cell alone, its output at the top
    readme = nbformat.read(str(root / "executed.ipynb"), as_version=4)
    readme.cells = readme.cells[8:9]
    readme.cells[0].outputs = [o for o in readme.cells[0].outputs if o.get("output_type") != "stream"]  # download bars
    nbformat.write(readme, str(root / "readme.ipynb"))
    bindir = os.path.dirname(sys.executable)
    subprocess.run([os.path.join(bindir, "jupyter"), "trust", str(root / "trusted.ipynb"), str(root / "readme.ipynb")],
                   env=env, check=True, capture_output=True)
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [os.path.join(bindir, "jupyter"), "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.port=%d" % port, "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.root_dir=%s" % root, "--LabApp.user_settings_dir=%s" % (home / "settings"),
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(home / "lab.log", "w"))
    try:
        base = "http://127.0.0.1:%d" % port
        wait_until(lambda: urllib.request.urlopen(base + "/api", timeout=2).status == 200, timeout=120,
                   what="JupyterLab to answer")
        print("\nJupyterLab answered after %.1f s" % (time.perf_counter() - started))
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def open_lab(context, lab, name):
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append("pageerror: %s" % e))
    page.on("console", lambda m: page.errors.append("console: %s" % m.text) if m.type == "error" and "tba" in m.text.lower() else None)
    # a workspace of its own: JupyterLab would otherwise reopen the notebooks of the pages before
    page.goto("%s/lab/workspaces/w%s/tree/%s?reset" % (lab, uuid.uuid4().hex[:8], name))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    return page


STYLE_PROBE = """() => { const s = (sel, props) => { const e = document.querySelector(sel);
    const c = getComputedStyle(e); return props.map((p) => c.getPropertyValue(p)); };
    return [s('.jp-Notebook', ['font-family', 'font-size', 'background-color', 'color']),
            s('.jp-Toolbar', ['font-size', 'background-color', 'height']),
            s('.jp-InputArea-editor', ['font-family', 'background-color', 'border-color'])]; }"""


def test_untrusted_the_outputs_show_their_fallback(lab, context):
    page = open_lab(context, lab, "untrusted.ipynb")
    fallbacks = page.locator(".jp-OutputArea-output .tba-fallback")
    fallbacks.first.wait_for()  # visible
    fallbacks.nth(OUTPUTS - 1).wait_for(state="attached")
    assert fallbacks.count() == OUTPUTS
    assert "trust the notebook" in fallbacks.first.text_content()
    assert page.locator(".jp-OutputArea-output .tba-fallback img").count() == OUTPUTS  # the still picture
    assert page.evaluate("() => [...document.querySelectorAll('.tba-output')].every((n) => !n.shadowRoot)")
    assert not page.errors, page.errors


def test_trusted_every_output_draws_in_jupyterlab(lab, context):
    page = open_lab(context, lab, "trusted.ipynb")
    outs = _drawn_with_the_planted_edge(page)
    assert outs[4].attrs()["data-view"] == "neuron" and outs[4].detail().get("top")
    # JupyterLab's own styles are what they are without our outputs (ours live in shadow roots)
    untrusted = open_lab(context, lab, "untrusted.ipynb")
    untrusted.locator(".jp-OutputArea-output .tba-fallback").nth(OUTPUTS - 1).wait_for(state="attached")
    assert page.evaluate(STYLE_PROBE) == untrusted.evaluate(STYLE_PROBE)
    assert not page.errors, page.errors
    shot = open_lab(context, lab, "readme.ipynb")
    Output(shot).wait()
    shot.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    shot.wait_for_function("() => !document.querySelector('#jp-left-stack:not(.lm-mod-hidden)')")
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    shot.screenshot(path=SCREENSHOT)
    assert not shot.errors, shot.errors


def test_outputs_follow_jupyterlabs_theme_and_a_rerun_replaces_its_output(lab, context):
    page = open_lab(context, lab, "trusted.ipynb")
    for i in range(OUTPUTS):
        Output(page, i).wait()
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands.hasCommand('notebook:run-cell')")
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'], .jp-Notebook-ExecutionIndicator").first.wait_for()
    page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                           " return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
                           " && w.sessionContext.session.kernel.connectionStatus === 'connected'; }", timeout=120000)
    # cell 0 defines rec; then run cell 1 (show(rec, layer=0)) twice
    for index in (0, 1, 1):
        page.evaluate("(i) => { const w = window.jupyterapp.shell.currentWidget; w.content.activeCellIndex = i;"
                      " return window.jupyterapp.commands.execute('notebook:run-cell'); }", index)
        page.wait_for_function("(i) => { const c = window.jupyterapp.shell.currentWidget.content.widgets[i];"
                               " return c.model.executionCount !== null && !c.node.querySelector('.jp-mod-pending')"
                               " && c.promptNode.textContent.indexOf('*') < 0; }", arg=index, timeout=120000)
    cell = page.locator(".jp-Cell >> nth=1")
    cell.locator('.tba[data-state="drawn"]').wait_for(state="attached")
    assert cell.locator(".tba-output").count() == 1  # replaced, not added
    assert page.locator(".tba-output").count() == OUTPUTS
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function("""(n) => { const outs = [...document.querySelectorAll('.tba-output')];
        return outs.length === n && outs.every((o) => o.shadowRoot.querySelector('.tba').getAttribute('data-theme') === 'dark'); }""",
                           arg=OUTPUTS)
    # the outputs that were replaced are forgotten, not kept alive
    assert page.evaluate("() => globalThis.tbAttentionPages.size") == OUTPUTS
    geo = Output(page, 0).geometry("head-canvas")
    (bg,) = Output(page, 0).pixels("head-canvas", [(geo["lineX0"] + 5, geo["top"] + 0.1)])
    assert sum(bg[:3]) < 150, bg  # drawn again on the dark background
    assert not page.errors, page.errors
