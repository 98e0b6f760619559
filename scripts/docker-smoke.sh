#!/usr/bin/env bash
# Builds the images on this machine with a private Docker engine and tries them, then stops
# the engine and deletes everything it made (unless --keep):
#
#   scripts/docker-smoke.sh [--keep]       # as root; about 2-3 minutes on 2 cores
#
# 1. docker/dockerd start DIR (DIR: OODIDA_DOCKER_DIR, default a new /tmp/oodida-docker.*)
# 2. docker/make-base-images, docker/build-wheels, then oodida:local on oodida-base:bookworm and
#    oodida-redis:local: no Docker registry is used, only Debian's mirror and PyPI.
# 3. In containers (host network, 127.0.0.1 only): the console scripts answer --help, the
#    packages and the default extras' libraries (can, mdf) import, the jail finds Landlock and seccomp as uid 10001 (level kernel at least),
#    Redis answers PING over TLS (certificates made here with openssl) and refuses plain TCP.
# Each step's time is printed; `docker images` at the end. Needs root, docker.io, debootstrap,
# openssl and the clone's venv.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
[ "${1:-}" = "--keep" ] && keep=1
made_dir=0
if [ -n "${OODIDA_DOCKER_DIR:-}" ]; then
    DIR=$OODIDA_DOCKER_DIR
else
    DIR=$(mktemp -d /tmp/oodida-docker.XXXXXX)
    made_dir=1
fi
tls=$(mktemp -d /tmp/oodida-docker-tls.XXXXXX)
redis_name="oodida-smoke-redis-$$"

cleanup() {
    local rc=$?
    docker rm -f -v "$redis_name" >/dev/null 2>&1 || true
    rm -rf "$tls"
    if [ "$keep" = 1 ]; then
        echo "docker-smoke: kept; the engine runs: export DOCKER_HOST=unix://$DIR/docker.sock; stop it with docker/dockerd stop $DIR"
    else
        docker/dockerd stop "$DIR" >/dev/null || rc=1
        [ "$made_dir" = 1 ] && rm -rf --one-file-system "$DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() {
    local what=$1 started=$SECONDS
    shift
    echo "== $what"
    "$@"
    echo "   ($what: $((SECONDS - started))s)"
}

fail() {
    echo "docker-smoke: FAILED: $*" >&2
    exit 1
}

export DOCKER_HOST
DOCKER_HOST=$(docker/dockerd start "$DIR" | sed -n 's/^DOCKER_HOST=//p')
[ -n "$DOCKER_HOST" ] || fail "no engine"
export DOCKER_BUILDKIT=0 # the engine's own builder: Debian's docker.io has no buildx

step "base images" docker/make-base-images
step "wheels" docker/build-wheels
step "oodida:local" docker build -q --network none -f docker/Dockerfile -t oodida:local --build-arg BASE=oodida-base:bookworm .
step "oodida-redis:local" sh -c 'docker build -q --network none -t oodida-redis:local - <docker/redis.Dockerfile'

run() { docker run --rm --network host "$@"; }

echo "== the project's image"
for script in oodida oodida-cloud oodida-edge oodida-flower; do
    run oodida:local "$script" --help >/dev/null || fail "$script --help"
done
run oodida:local python3 -c "import oodida_core, oodida_cloud, oodida_edge, oodida_ops, oodida_user, celery, flower" \
    || fail "imports"
# the default extras (docker/Dockerfile's EXTRAS, can,mdf): the CAN and MDF4 sources' libraries
run oodida:local python3 -c "import can, cantools, asammdf" || fail "the can and mdf extras"
jail=$(run --user 10001 oodida:local python3 -c \
    "from oodida_core.customcode.jail.layers import probe; print(probe().describe())")
echo "   uid 10001: $jail"
case $jail in
    "jail level kernel"* | "jail level full"*) ;;
    *) fail "the jail is below level kernel in a default container" ;;
esac

echo "== Redis over TLS"
(
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=oodida smoke CA" -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout redis.key -out redis.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf
    openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out redis.crt
    mkdir certs && cp ca.crt redis.crt redis.key certs/ && chown -R 10001:10001 certs && chmod 0600 certs/redis.key
) >/dev/null 2>&1 || fail "openssl"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
docker run -d --name "$redis_name" --network host -v "$tls/certs:/tls:ro" oodida-redis:local \
    --port 0 --tls-port "$port" --bind 127.0.0.1 --appendonly yes --tls-auth-clients no \
    --tls-cert-file /tls/redis.crt --tls-key-file /tls/redis.key --tls-ca-cert-file /tls/ca.crt >/dev/null
cli() { docker run --rm --network host -v "$tls/certs:/tls:ro" --entrypoint redis-cli oodida-redis:local -h 127.0.0.1 -p "$port" "$@"; }
answer=""
for _ in $(seq 20); do
    answer=$(cli --tls --cacert /tls/ca.crt ping 2>/dev/null || true)
    [ "$answer" = PONG ] && break
    sleep 0.5
done
[ "$answer" = PONG ] || { docker logs "$redis_name" | tail -n 20; fail "no PONG over TLS on 127.0.0.1:$port"; }
echo "   TLS on 127.0.0.1:$port: $answer"
plain=$(timeout 20 docker run --rm --network host --entrypoint redis-cli oodida-redis:local -h 127.0.0.1 -p "$port" ping 2>&1 || true)
[ "$plain" != PONG ] || fail "Redis answered plain TCP on its TLS port"
echo "   plain TCP refused: ${plain:-no answer}"
docker stop -t 10 "$redis_name" >/dev/null

echo "== images"
docker images --format '   {{.Repository}}:{{.Tag}}  {{.Size}}'
echo "docker-smoke: all passed"
