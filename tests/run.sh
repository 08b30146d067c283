#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs Chromium (Debian), the
# pinned Python packages and this package, then runs the JS unit tests and
# every Python test (backend, writer, capture, dashboard in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
bash bootstrap.sh
if [ -d frontend/tests ]; then
  node --test frontend/tests/
fi
.venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
