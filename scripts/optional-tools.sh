#!/usr/bin/env bash
# Optional tools for the test suite, installed only where that needs no questions asked:
# Debian's chromium for the browser test (tests/system/test_flower.py), when this runs as
# root on a machine with apt-get and chromium is missing. Anywhere else it does nothing, and
# it never fails the build: without chromium the browser test is skipped with its reason.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "optional-tools: no chromium (the browser test will be skipped)"
    exit 0
fi
log="${TMPDIR:-/tmp}/oodida-optional-tools.log"
echo "optional-tools: installing Debian's chromium for the browser test (log: $log)"
export DEBIAN_FRONTEND=noninteractive
install() { timeout 600 apt-get install -y -q chromium >>"$log" 2>&1; }
if ! install; then
    timeout 300 apt-get update -q >>"$log" 2>&1 && install
fi
if command -v chromium >/dev/null 2>&1; then
    echo "optional-tools: $(chromium --version 2>/dev/null | head -n 1)"
else
    echo "optional-tools: chromium could not be installed (the browser test will be skipped)"
fi
exit 0
