#!/usr/bin/env bash
# The README's first command: install the pinned environment (.venv, via
# bootstrap.sh), then train the demo GPT-2, log it, a pretrained MiniLM and two
# checkpoints, and serve TensorBoard on http://localhost:6006 (Ctrl-C stops it).
# Arguments go to demo/demo.py: bash demo/run.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
bash bootstrap.sh
exec .venv/bin/python demo/demo.py "$@"
