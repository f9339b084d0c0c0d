#!/usr/bin/env bash
# Sets up a development environment from nothing: a virtual environment in .venv with the
# test/bench dependencies, and joblite built from source (release profile) into it.
# Re-running is quick: dependencies are reinstalled only when requirements-dev.txt changes,
# and cargo rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.requirements-dev.sha
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
    echo "$want" > "$stamp"
fi

# Build the extension in release mode and install joblite (editable) into the venv.
VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" \
    .venv/bin/maturin develop --release --quiet
.venv/bin/python -c "import joblite, joblite._core; print('joblite', joblite.__version__, 'ready')"
