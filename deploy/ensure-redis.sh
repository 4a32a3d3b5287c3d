#!/usr/bin/env bash
# Make sure a Redis server listens on 127.0.0.1:6379 (the rate-limit tests use it): start it, or install
# Debian's and start it. No password: tests that need one start their own redis-server with --requirepass
# (tests/fixtures/redis_server.py).
set -euo pipefail

listening() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

if listening; then exit 0; fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing Debian's package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
echo "starting redis-server" >&2
redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null
for _ in $(seq 1 30); do
  if listening; then
    echo "redis is up" >&2
    exit 0
  fi
  sleep 1
done
echo "redis did not start within 30 s" >&2
exit 1
