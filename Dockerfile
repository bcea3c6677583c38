# syntax=docker/dockerfile:1
# tokend as a sidecar: runs beside an app container in its network namespace (a pod) and serves
# tokens over mutual TLS on 127.0.0.1. The runtime image holds only node, the libraries it
# links, one bundled file and a passwd entry: no shell, no package manager, non-root.
#
#   podman build --format docker -t tokend .           (docker format keeps the HEALTHCHECK)
#   behind a TLS-intercepting proxy, hand npm its CA (optional, never stored in a layer):
#   podman build --format docker --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t tokend .
#   podman run --read-only --cap-drop=all --network=container:APP -v /srv/tokend:/etc/tokend:ro tokend
# Paths (docs/sidecar.md): /etc/tokend holds tokend.json, policy.json, tokens/ and the
# certificates, read-only; /var/lib/tokend is the only writable place (internal PKI state).

# Pinned to the release in .node-version: Node.js 24.21.0 leaks memory on every handshake with a
# client certificate (docs/reliability.md). Move on to a later 24.x once it is fixed there.
ARG NODE_IMAGE=docker.io/library/node:24.20.0-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=ca,required=false \
    --mount=type=cache,target=/root/.npm \
    if [ -s /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi; \
    npm ci --no-audit --no-fund --no-update-notifier --loglevel=error
COPY tsconfig.json ./
COPY scripts/bundle.mjs scripts/
COPY src src
COPY units units
RUN npm run typecheck && npm run bundle
# The runtime root: node and exactly the shared libraries ldd lists for it, the bundle, the unit
# files `tokend ignition` ships, and the tokend user (uid 10001) owning only its state directory.
RUN set -eu; \
    mkdir -p /rootfs/usr/local/bin /rootfs/app /rootfs/etc/tokend /rootfs/var/lib/tokend /rootfs/tmp; \
    cp /usr/local/bin/node /rootfs/usr/local/bin/node; \
    for lib in $(ldd /usr/local/bin/node | grep -o '/[^ ]*'); do cp -L --parents "$lib" /rootfs/; done; \
    cp dist/bundle/tokend.mjs /rootfs/app/tokend.mjs; \
    cp -r units /rootfs/app/units; \
    printf 'root:x:0:0:root:/root:/nonexistent\ntokend:x:10001:10001:tokend:/var/lib/tokend:/nonexistent\n' >/rootfs/etc/passwd; \
    printf 'root:x:0:\ntokend:x:10001:\n' >/rootfs/etc/group; \
    chown 10001:10001 /rootfs/var/lib/tokend; \
    chmod 0700 /rootfs/var/lib/tokend; \
    chmod 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/bin NODE_ENV=production
USER 10001:10001
WORKDIR /var/lib/tokend
# Config, policy, sealed tokens and certificates: mount read-only. State (internal PKI): writable.
VOLUME ["/etc/tokend", "/var/lib/tokend"]
# No EXPOSE: tokend listens on 127.0.0.1 of the pod it shares with its app; a published port
# could not reach it, and must not.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["node", "/app/tokend.mjs", "health"]
ENTRYPOINT ["node", "/app/tokend.mjs"]
CMD ["serve", "--config", "/etc/tokend/tokend.json"]
LABEL org.opencontainers.image.title="tokend" \
      org.opencontainers.image.description="Sealed tokens, served to containers over mutual TLS on localhost" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
