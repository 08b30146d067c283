#!/usr/bin/env bash
# The README's first command: installs everything into .venv, trains a small
# GPT-2 on repeated segments while logging its attention, logs the packaged
# pretrained MiniLM and two checkpoints, and serves TensorBoard (port 6006).
# Flags go to demo/demo.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash bootstrap.sh
exec .venv/bin/python demo/demo.py "$@"
