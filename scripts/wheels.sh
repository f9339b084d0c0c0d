#!/usr/bin/env bash
# Builds the distribution into dist/: one manylinux2014 (glibc >= 2.17) wheel per supported
# CPython (3.9 to 3.13), cross-linked by zig (PyPI's `ziglang`, in .venv) against old glibc
# symbols, and the sdist. maturin audits each wheel against its manylinux tag and fails the
# build if the extension needs a newer glibc symbol.
#
#   bash scripts/wheels.sh                 # every supported CPython found (pyenv or PATH)
#   PYTHONS="3.9 3.13" bash scripts/wheels.sh
#
# Per-version wheels, not one abi3 wheel: the extension reads arrays through the buffer
# protocol, which the stable ABI has only from 3.11 on, and the hash walk uses CPython's
# fast (non-limited) list/dict access.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/maturin ] || bash scripts/setup.sh >/dev/null

SUPPORTED="3.9 3.10 3.11 3.12 3.13"
WANT=${PYTHONS:-$SUPPORTED}

# The newest patch release of CPython 3.X: pyenv's versions first, then python3.X on PATH.
find_python() {
    local minor=$1 root candidate
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    candidate=$(ls -d "$root"/versions/"$minor".[0-9]* 2>/dev/null | grep -E "/$minor\.[0-9]+$" \
        | sort -V | tail -1)
    if [ -n "$candidate" ] && [ -x "$candidate/bin/python" ]; then
        echo "$candidate/bin/python"
    elif command -v "python$minor" >/dev/null 2>&1; then
        command -v "python$minor"
    fi
}

interpreters=()
for minor in $WANT; do
    py=$(find_python "$minor")
    if [ -z "$py" ]; then
        echo "wheels: no CPython $minor found (pyenv install $minor, or put python$minor on PATH)" >&2
        exit 1
    fi
    interpreters+=("$py")
done

rm -rf dist
# maturin looks for zig as `python3 -m ziglang`: the venv's python has it.
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/maturin build --release --zig --compatibility manylinux2014 --quiet \
    -o dist -i "${interpreters[@]}"
.venv/bin/maturin sdist -o dist
ls -1 dist
