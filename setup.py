"""Kept so the project layout stays as documented and tools that look for a
setup.py find one. Every setting lives in pyproject.toml (PEP 621); pip builds
through build_backend/out_of_tree.py, which calls setuptools with this file."""
from setuptools import setup

setup()
