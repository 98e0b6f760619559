#!/usr/bin/env bash
# Optional tools for the test suite, installed only where that needs no questions asked:
# Debian's bubblewrap (the jail's namespaces layer) and chromium for the browser test
# (tests/system/test_flower.py), when this runs as root on a machine with apt-get and they are
# missing. Anywhere else it does nothing, and it never fails the build: without bubblewrap the
# jail runs at level "kernel" and the namespace tests are skipped with their reason; without
# chromium the browser test is skipped. OODIDA_NO_APT=1 skips both installs. Its log is kept
# in the clone (.oodida/optional-tools.log), never outside it.
set -u
if [ "${OODIDA_NO_APT:-0}" = "1" ]; then
    echo "optional-tools: OODIDA_NO_APT=1, installing nothing"
    exit 0
fi
cd "$(dirname "$0")/.." && mkdir -p .oodida
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log="$PWD/.oodida/optional-tools.log"
    echo "optional-tools: installing Debian's bubblewrap for the jail (log: $log)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get install -y -q bubblewrap >>"$log" 2>&1 \
        || { timeout 300 apt-get update -q >>"$log" 2>&1 && timeout 300 apt-get install -y -q bubblewrap >>"$log" 2>&1; }
    command -v bwrap >/dev/null 2>&1 || echo "optional-tools: bubblewrap could not be installed (jail level kernel)"
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "optional-tools: no chromium (the browser test will be skipped)"
    exit 0
fi
log="$PWD/.oodida/optional-tools.log"
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
