# Redis for the fleet, from Debian's redis-server (7.0, built with TLS) on a base that
# docker/make-base-images makes from Debian's packages: no Docker registry needed.
#   docker/make-base-images oodida-redis-base
#   docker build --network none -t oodida-redis:local - < docker/redis.Dockerfile
# It copies nothing, so any build context does (compose gives it the clone's).
# Nothing is configured here: TLS certificates, the ACL file, append-only and the memory
# policy are given at run time (command-line options and mounted files), never baked in.
# Its data is in /data, owned by uid 10001, so that a named volume mounted there (which
# takes the ownership of the image's directory when first created) is writable.
ARG BASE=oodida-redis-base:bookworm
FROM ${BASE}
RUN groupadd --system -K SYS_GID_MAX=10001 --gid 10001 redis-oodida \
    && useradd --system -K SYS_UID_MAX=10001 --uid 10001 --gid redis-oodida --no-create-home \
        --home-dir /data --shell /usr/sbin/nologin redis-oodida \
    && install -d -o 10001 -g 10001 -m 0750 /data
USER 10001
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["redis-server"]
