#!/usr/bin/env bash
# Instant OpenHIE (v1) entry point for Docker: the tooling runs
# `docker/compose.sh <init|up|down|destroy>` for this package.
#   init, up   start the service (detached)
#   down       stop it, keeping its data
#   destroy    remove it and its data volume
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    compose=(docker-compose)
fi

run() {
    "${compose[@]}" --project-name openfn-microservice --file "$here/docker-compose.yml" "$@"
}

case "${1:-}" in
    init | up) run up --detach ;;
    down) run stop ;;
    destroy) run down --volumes ;;
    *)
        echo "usage: $0 init|up|down|destroy" >&2
        exit 64
        ;;
esac
