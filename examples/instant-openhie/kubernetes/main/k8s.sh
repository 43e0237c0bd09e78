#!/usr/bin/env bash
# Instant OpenHIE (v1) entry point for Kubernetes: the tooling runs
# `kubernetes/main/k8s.sh <init|up|down|destroy>` for this package.
# kubernetes.yaml next to this script is a copy of the repository's
# kubernetes.yaml (a test keeps them identical).
#   init, up   apply the manifest and wait for the rollout
#   down       scale the Deployment to zero, keeping its volume
#   destroy    delete everything, the volume and the namespace included
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
manifest="$here/kubernetes.yaml"
namespace=openfn-microservice

case "${1:-}" in
    init | up)
        kubectl apply -f "$manifest"
        # The first start installs the adaptors before the port opens.
        kubectl --namespace "$namespace" rollout status deployment/microservice --timeout=15m
        ;;
    down) kubectl --namespace "$namespace" scale deployment/microservice --replicas=0 ;;
    destroy) kubectl delete -f "$manifest" --ignore-not-found ;;
    *)
        echo "usage: $0 init|up|down|destroy" >&2
        exit 64
        ;;
esac
