#!/usr/bin/env bash
# The one check CI runs: lint, types, then every test (slow ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
echo "== ruff"
"$BIN/ruff" check .
echo "== mypy"
"$BIN/mypy"
echo "== pytest"
"$BIN/python" -m pytest -q -p no:cacheprovider "$@"
