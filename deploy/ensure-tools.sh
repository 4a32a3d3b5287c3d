#!/usr/bin/env bash
# Tools the deployment tests use: Debian's docker-compose (to check deploy/compose.yaml) and kubectl (kustomize).
set -euo pipefail
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "docker-compose not found: installing Debian's package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null
fi
if ! command -v kubectl >/dev/null 2>&1; then
  # Debian's kubernetes-client is 1.20, whose kustomize predates components: don't fall back to it
  echo "kubectl (>= 1.27, for kustomize v5) is required by tests/deploy and was not found" >&2
  exit 1
fi
