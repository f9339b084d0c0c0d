#!/usr/bin/env bash
# Sets everything up, then runs the main job: joblite on real-sized data, next to joblib.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/main_job.py "$@"
