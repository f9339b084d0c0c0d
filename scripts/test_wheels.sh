#!/usr/bin/env bash
# Checks the distribution as users get it: builds every wheel and the sdist (scripts/wheels.sh),
# installs the wheel into a fresh virtual environment of the oldest and of the newest
# supported CPython with the test dependencies as pip resolves them for that Python (numpy,
# scikit-learn, dask... in the versions each gets), and runs the test suite there against the
# installed wheel (not the source tree). The other wheels are installed and imported; the
# sdist is built into a wheel with pip.
#
#   bash scripts/test_wheels.sh                  # what CI runs
#   TEST_PYTHONS="3.12" bash scripts/test_wheels.sh -k hash   # pytest arguments pass through
#
# The suite runs whole except tests/typing (mypy checks the source tree, in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TEST_PYTHONS=${TEST_PYTHONS:-"3.9 3.13"}

start=$(date +%s)
bash scripts/wheels.sh
echo "wheels built in $(($(date +%s) - start))s"

# Test dependencies: requirements-dev.txt less the build, lint, type and docs tools; joblib's
# pin becomes "the newest up to it" (joblib 1.6 needs Python 3.10: CPython 3.9 gets 1.5.x).
reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
grep -vE '^\s*(#|$)' requirements-dev.txt \
    | grep -viE '^(maturin|ruff|mypy|import-linter|mkdocs|mkdocstrings|pytest-markdown-docs|ziglang)\b' \
    | sed -E 's/^joblib==([0-9.]+)/joblib<=\1/' > "$reqs"

python_for() {  # the interpreter scripts/wheels.sh used for CPython $1
    local root
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    ls -d "$root"/versions/"$1".[0-9]* 2>/dev/null | grep -E "/$1\.[0-9]+$" | sort -V | tail -1 \
        | sed 's|$|/bin/python|'
}

wheel_for() {  # dist/joblite-*-cp39-cp39-*.whl for "3.9"
    ls dist/joblite-*-cp"${1/./}"-*.whl
}

for minor in 3.9 3.10 3.11 3.12 3.13; do
    case " $TEST_PYTHONS " in *" $minor "*) continue ;; esac
    py=$(python_for "$minor")
    [ -n "$py" ] || continue
    env_dir=$(mktemp -d)
    "$py" -m venv "$env_dir"
    "$env_dir/bin/python" -m pip install --quiet --no-deps "$(wheel_for "$minor")"
    (cd / && "$env_dir/bin/python" -c "import joblite, joblite._core as c; \
assert c.hash([1, 2]) == c.hash([1, 2]); print('wheel $minor imports', joblite.__version__)")
    rm -rf "$env_dir"
done

echo "== sdist: pip builds it into a wheel"
sdist_env=$(mktemp -d)
"$(python_for 3.11)" -m venv "$sdist_env"
# dependencies compiled for target/ are reused; joblite itself builds from the sdist's sources
CARGO_TARGET_DIR="$ROOT/target" "$sdist_env/bin/python" -m pip wheel --quiet --no-deps \
    -w "$sdist_env/out" dist/joblite-*.tar.gz
ls "$sdist_env"/out/*.whl
rm -rf "$sdist_env"

for minor in $TEST_PYTHONS; do
    echo "== wheel on CPython $minor: the test suite against the installed wheel"
    t0=$(date +%s)
    env_dir="$ROOT/.venv-py$minor"
    rm -rf "$env_dir"
    "$(python_for "$minor")" -m venv "$env_dir"
    "$env_dir/bin/python" -m pip install --quiet --upgrade pip
    "$env_dir/bin/python" -m pip install --quiet "$(wheel_for "$minor")" -r "$reqs"
    "$env_dir/bin/python" - <<'PY'
import joblite, numpy, sys
where = joblite.__file__
assert "site-packages" in where, f"joblite imported from the source tree: {where}"
print(f"CPython {sys.version.split()[0]}, numpy {numpy.__version__}, joblite from {where}")
PY
    "$env_dir/bin/python" -m pytest -q -p no:cacheprovider --ignore=tests/typing "$@"
    rm -rf "$env_dir"
    echo "CPython $minor: installed and tested in $(($(date +%s) - t0))s"
done
echo "wheels checked in $(($(date +%s) - start))s"
