#!/usr/bin/env bash
# Type checks CI runs: mypy on the package (config in pyproject.toml), stubtest of the
# extension's stub python/joblite/_core.pyi against the built module, and the typing tests
# (tests/typing: mypy --strict on a typed user script, misuse reported) run with pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== mypy (package)"; .venv/bin/mypy
echo "== stubtest joblite._core"; .venv/bin/python -m mypy.stubtest joblite._core
