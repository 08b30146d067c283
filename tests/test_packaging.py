"""The package as users install it: `python -m build` makes an sdist and a
wheel (the wheel from the sdist), pip builds its own wheel the way
`pip install .` does, and neither leaves anything in the source tree. The
wheel goes into a new venv with nothing else (no torch: the writer, reader
and plugin need none), where `tensorboard --logdir` lists the Attention tab
and serves a run that venv's own Python logged.

Works on a copy of this checkout (tracked and untracked-but-not-ignored
files, as `git ls-files` lists them), so the checkout is never built in.
"""
import email
import glob
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from conftest import REPO, TensorBoard

TIMEOUT = 600


def _run(cmd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, **kw)
    assert done.returncode == 0, "%s failed:\n%s\n%s" % (cmd, done.stdout[-3000:], done.stderr[-3000:])
    return done


def _tree(root):
    """Every path under root, relative."""
    out = set()
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(d, name), root))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if os.path.isfile(os.path.join(REPO, rel)):  # a deleted but still tracked file is gone
            os.makedirs(os.path.dirname(str(src / rel)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), str(src / rel))
    before = _tree(src)
    dist = root / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)])
    # pip install . runs the other hooks (get_requires, prepare_metadata) on the tree itself.
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "pip"), str(src)])
    return {"root": root, "src": src, "before": before, "after": _tree(src),
            "wheel": glob.glob(str(dist / "*.whl")), "sdist": glob.glob(str(dist / "*.tar.gz")),
            "pip_wheel": glob.glob(str(root / "pip" / "*.whl"))}


def test_building_leaves_the_source_tree_as_it_was(built):
    assert len(built["wheel"]) == 1 and len(built["sdist"]) == 1 and len(built["pip_wheel"]) == 1
    assert built["after"] == built["before"], sorted(built["after"] ^ built["before"])
    assert not any(p == "build" or p.endswith(".egg-info") for p in built["after"])


def test_wheel_contents_and_metadata(built):
    with zipfile.ZipFile(built["wheel"][0]) as z:
        names = set(z.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(meta_name))
        entry_points = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    src = str(built["src"])
    shipped = {os.path.relpath(p, src) for p in glob.glob(os.path.join(src, "frontend", "**", "*"), recursive=True)
               if p.endswith((".js", ".css")) and os.sep + "tests" + os.sep not in p}
    assert len(shipped) > 10
    for rel in shipped:  # the whole dashboard, under the package
        assert "tb_attention/" + rel.replace(os.sep, "/") in names, rel
    assert not any("/tests/" in n for n in names)
    assert "tb_attention/proto/attention.proto" in names and "tb_attention/__main__.py" in names
    assert "tb_attention/integrations/transformers.py" in names
    assert meta["Requires-Python"] == ">=3.10"  # transformers 5, lightning 2.6, transformer-lens 4
    assert set(meta.get_all("Provides-Extra")) == {"transformers", "lightning", "transformer-lens", "s3"}
    requires = meta.get_all("Requires-Dist")
    s3 = sorted(r.split(";")[0].split(">=")[0] for r in requires if 'extra == "s3"' in r)
    assert s3 == ["boto3", "fsspec", "s3fs"], s3  # object-storage logdirs: tb_attention/files.py
    assert any(r.startswith("tqdm") for r in requires), requires  # the CLI's progress bar
    base = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith(("torch", "transformers")) for r in base), base
    assert "attention = tb_attention.plugin:AttentionPlugin" in entry_points
    assert "tb-attention = tb_attention.cli:main" in entry_points
    # pip's own build gives the same files
    with zipfile.ZipFile(built["pip_wheel"][0]) as z:
        assert set(z.namelist()) == names


LOG = textwrap.dedent("""
    import sys, numpy as np, tb_attention
    a = np.full((2, 2, 3, 3), 1 / 3, dtype=np.float32)
    with tb_attention.AttentionWriter(sys.argv[1]) as w:
        for step in (0, 10):
            w.add_attention("probe/abc", a, tokens=["a", "b", "c"], global_step=step)
    print(tb_attention.load(sys.argv[1]).steps(".", "probe/abc"))
""")


def test_wheel_in_a_clean_venv_shows_the_attention_tab(built):
    root = built["root"]
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py, bindir = str(venv / "bin" / "python"), str(venv / "bin")
    _run([py, "-m", "pip", "install", "-q", built["wheel"][0]], cwd=str(root))
    # Nothing but the wheel and its dependencies: no torch, no transformers.
    missing = _run([py, "-c", "import importlib.util as u; "
                    "print([m for m in ('torch', 'transformers') if u.find_spec(m) is None])"], cwd=str(root))
    assert missing.stdout.strip() == "['torch', 'transformers']"
    assert _run([os.path.join(bindir, "tb-attention"), "--version"]).stdout.strip() == "tb-attention 0.1.0"
    assert _run([py, "-m", "tb_attention", "--version"], cwd=str(root)).stdout.strip() == "tb-attention 0.1.0"
    no_torch = subprocess.run([os.path.join(bindir, "tb-attention"), "log", str(root), "--text", "x",
                               "--logdir", str(root / "never")], capture_output=True, text=True, timeout=TIMEOUT)
    assert no_torch.returncode == 2 and "pip install 'tb-attention[transformers]'" in no_torch.stderr
    assert not (root / "never").exists()

    script = root / "log.py"
    script.write_text(LOG)
    logdir = root / "logs"
    assert _run([py, str(script), str(logdir / "run")], cwd=str(root)).stdout.strip() == "[0, 10]"
    tb = TensorBoard(logdir, python=py)
    try:
        listing = tb.get_json("/data/plugins_listing")["attention"]
        assert listing["enabled"] is True and listing["tab_name"] == "Attention"
        status, headers, body = tb.get("/data/plugin/attention/static/index.js")
        assert status == 200 and b"export" in body and "javascript" in headers["Content-Type"]
        tb.wait_kept({"run": ("probe/abc", 2)}, timeout=120)
    finally:
        tb.stop()
