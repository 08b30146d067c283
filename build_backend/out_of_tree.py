"""PEP 517 build backend: setuptools, run on a copy of the source tree.

setuptools writes `build/` and `<name>.egg-info/` next to pyproject.toml
while it builds, and leaves them there. This backend copies what a build
reads (SOURCES below) into a temporary directory, runs setuptools'
own build_meta hooks there, and deletes the copy: `pip install .` and
`python -m build` leave the source tree as it was.

Editable installs point into the source tree by nature: those hooks are
setuptools' own, unchanged.
"""
import contextlib
import os
import shutil
import tempfile

from setuptools import build_meta as _setuptools

# Everything a wheel or an sdist is made of (the rest of the checkout, such as
# tests, logdirs or a venv, is never read by a build).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in", "build_backend",
           "tb_attention", "frontend")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "node_modules")


@contextlib.contextmanager
def _in_copy():
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tb-attention-build-") as tmp:
        for name in SOURCES:
            src = os.path.join(here, name)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(tmp, name), ignore=_SKIP)
            elif os.path.isfile(src):
                shutil.copy2(src, os.path.join(tmp, name))
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(here)


def _abs(path):
    return None if path is None else os.path.abspath(path)


def get_requires_for_build_wheel(config_settings=None):
    with _in_copy():
        return _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_sdist(config_settings=None):
    with _in_copy():
        return _setuptools.get_requires_for_build_sdist(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    metadata_directory = _abs(metadata_directory)
    with _in_copy():
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    wheel_directory, metadata_directory = _abs(wheel_directory), _abs(metadata_directory)
    with _in_copy():
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    sdist_directory = _abs(sdist_directory)
    with _in_copy():
        return _setuptools.build_sdist(sdist_directory, config_settings)


get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
build_editable = _setuptools.build_editable
