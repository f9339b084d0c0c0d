#!/usr/bin/env bash
# Sets everything up, then runs every check CI runs: Rust lints and tests, Python lints,
# the pytest suite (benchmarks disabled), and a short fuzz run of the container parser.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python

echo "== cargo fmt --check"; cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features python -- -D warnings
echo "== ruff"; .venv/bin/ruff check python tests benches examples scripts; .venv/bin/ruff format --check python tests benches examples scripts
bash scripts/typecheck.sh
echo "== import layers"; .venv/bin/lint-imports
echo "== cargo test"; cargo test --release
echo "== packaging: release wheel installs into a fresh venv and imports"
rm -rf dist .venv-wheel
.venv/bin/maturin build --release --quiet -o dist
"${PYTHON:-python3}" -m venv .venv-wheel
.venv-wheel/bin/python -m pip install --quiet --no-deps dist/*.whl
(cd / && "$OLDPWD/.venv-wheel/bin/python" -c "import joblite, joblite._core; print('wheel ok', joblite.__version__)")
rm -rf .venv-wheel
echo "== pytest"; $PY -m pytest "$@"
