#!/usr/bin/env bash
# Install everything needed (first run only), then run the main job on ./library.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LIFELONG_LIBRARY=${LIFELONG_LIBRARY:-library}
[ -d "$LIFELONG_LIBRARY/repo" ] || .venv/bin/lifelong init
.venv/bin/lifelong info
.venv/bin/lifelong check
