#!/usr/bin/env bash
# Sets everything up, then runs every check CI runs: Rust lints and tests, Python lints and
# types, the pytest suite (benchmarks disabled), the docs (code blocks, docstring examples,
# the site), and the wheels tested on the oldest and newest supported CPython.
# docs/development.md ("What CI runs") describes each step.
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
echo "== pytest"; $PY -m pytest "$@"
echo "== docs: README.md and docs/*.md code blocks"
$PY -m pytest -q -p no:randomly --markdown-docs README.md docs
echo "== docs: docstring examples"; $PY -m pytest -q -p no:randomly --doctest-modules python/joblite
echo "== docs: site (mkdocs --strict)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir site
echo "== wheels: built, installed and tested on the oldest and newest CPython"
bash scripts/test_wheels.sh
echo "CI steps took $((SECONDS / 60)) min $((SECONDS % 60)) s"
