#!/usr/bin/env bash
# Creates .venv with the pinned packages (requirements-ci.txt) and this
# package installed the way a user installs it (`pip install .`).
# Used by demo/run.sh and tests/run.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-ci.txt
# --no-deps: the pins above already hold every dependency, at fixed versions.
.venv/bin/python -m pip install -q --no-deps --force-reinstall .
