"""The page bundle cannot drift from frontend/: tools/bundle.py rebuilds it
byte for byte, and the installed package ships that file."""
import filecmp
import os
import subprocess
import sys

from tests.conftest import REPO


def test_the_committed_bundle_is_what_frontend_builds():
    out = subprocess.run([sys.executable, os.path.join(REPO, "tools", "bundle.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + " (run: python tools/bundle.py, and commit tb_attention/page_bundle.js)"


def test_the_installed_package_ships_the_bundle():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    where = subprocess.run([sys.executable, "-c", "import tb_attention.pagestate as p; print(p.BUNDLE_PATH)"],
                           capture_output=True, text=True, env=env, cwd="/", check=True).stdout.strip()
    assert "site-packages" in where
    assert filecmp.cmp(where, os.path.join(REPO, "tb_attention", "page_bundle.js"), shallow=False)
