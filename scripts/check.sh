#!/usr/bin/env bash
# The one check CI runs: lint, format, types, then every test (slow ones included).
#
# Tests write nothing outside the clone and one scratch directory, removed at the end: the
# scratch directory is TMPDIR (pytest's temporary directories, embedded Redis, logs) and HOME
# (what Chromium, Jupyter, matplotlib or any other tool would keep in a home directory).
# KEEP_TEST_FILES=1 keeps it for a look after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${VENV:-.venv}/bin" && pwd)"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/oodida-test.XXXXXX")"
if [ "${KEEP_TEST_FILES:-0}" = "1" ]; then
    trap 'echo "test files kept in $scratch"' EXIT
else
    trap 'rm -rf "$scratch"' EXIT
fi
mkdir -p "$scratch/home" "$scratch/tmp"
export TMPDIR="$scratch/tmp" HOME="$scratch/home" XDG_CACHE_HOME="$scratch/home/.cache" \
    XDG_CONFIG_HOME="$scratch/home/.config" MPLCONFIGDIR="$scratch/home/.matplotlib" \
    OODIDA_TEST_SCRATCH="$scratch"
echo "== ruff"
"$BIN/ruff" check .
echo "== ruff format"
"$BIN/ruff" format --check .
echo "== mypy"
"$BIN/mypy"
echo "== pytest (scratch: $scratch)"
"$BIN/python" -m pytest -q -p no:cacheprovider --basetemp="$scratch/pytest" "$@"
