# syntax=docker/dockerfile:1
#
# The microservice as a container image.
#
#   docker build -t openfn-microservice .
#   docker run --init -p 4001:4001 -v "$PWD/project:/project" -v microservice-data:/data openfn-microservice
#
# Layout inside the image (README, "Deploy"):
#   /project                       PROJECT_DIR, a volume: project.toml, job files, the project's own plugins/
#   /data                          DATA_DIR, a volume: job states and runs, the message journal, the
#                                  compiled-plugin cache, and (PACKAGES_DIR) @openfn/core and the adaptors,
#                                  installed at the first start when missing
#   /opt/microservice/plugins      the first-party plugins, built from source here; a project uses them
#                                  with PLUGINS_DIR=/opt/microservice/plugins (docker-compose.yml does)
#   /opt/microservice/packages     empty and writable: where a derived image bakes the adaptors in with
#                                  `microservice install` (README, "A derived image with the adaptors baked in")

# ---------------------------------------------------------------------------
# Build: the host (release) and the first-party plugins (wasm32-wasip2).
# Debian trixie, like the runtime stage, so the binary finds the same glibc.
FROM rust:1.95-trixie AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
# Only what the build reads (see .dockerignore): the workspace, the host,
# the plugins (host/build.rs embeds plugins/journal) and the WIT they share.
# The journal is left out of the plugins folder: it is compiled into the
# binary as the default message store.
COPY Cargo.toml Cargo.lock ./
COPY wit wit
COPY plugins plugins
COPY host host
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    --mount=type=cache,target=/src/plugins/target \
    cargo build --release --locked --bin microservice \
    && cargo build --release --locked --target wasm32-wasip2 \
        --manifest-path plugins/Cargo.toml --target-dir plugins/target \
    && mkdir -p /out/plugins \
    && cp target/release/microservice /out/microservice \
    && cp plugins/target/wasm32-wasip2/release/*.wasm /out/plugins/ \
    && rm /out/plugins/journal.wasm

# ---------------------------------------------------------------------------
# Runtime: Debian slim with Node.js (jobs run on @openfn/core) and npm
# (which installs core and the adaptors). trixie's nodejs is 20, the version
# the tests run on; bookworm's 18 is past its end of life.
FROM debian:trixie-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates nodejs npm \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root user. Its group is 0 and the writable folders are
# group-writable, so the image also runs under another UID with GID 0
# (docker-compose.yml's MICROSERVICE_UID, OpenShift's arbitrary UIDs).
RUN useradd --uid 10001 --gid 0 --home-dir /home/microservice --create-home \
        --shell /usr/sbin/nologin microservice \
    && mkdir -p /project /data /opt/microservice/packages \
    && chown 10001:0 /project /data /opt/microservice/packages /home/microservice \
    && chmod 0775 /project /data /opt/microservice/packages /home/microservice

COPY --from=build /out/microservice /usr/local/bin/microservice
COPY --from=build /out/plugins/ /opt/microservice/plugins/

ENV PROJECT_DIR=/project \
    DATA_DIR=/data \
    PORT=4001 \
    HOST_URL=0.0.0.0 \
    HOME=/home/microservice \
    NPM_CONFIG_CACHE=/tmp/npm-cache \
    NPM_CONFIG_UPDATE_NOTIFIER=false

USER 10001:0
WORKDIR /home/microservice
VOLUME ["/project", "/data"]
EXPOSE 4001

# /healthz answers once the port is open; the first start installs
# @openfn/core and the adaptors before it opens, hence the long start
# period. curl is not in the slim image; node (already here) has fetch.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 4001) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["microservice"]
CMD ["serve"]
