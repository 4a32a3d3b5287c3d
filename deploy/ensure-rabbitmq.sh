#!/usr/bin/env bash
# Make sure a RabbitMQ broker listens on 127.0.0.1:5672: start it, or install Debian's and start it.
set -euo pipefail

listening() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if listening; then exit 0; fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "rabbitmq-server not found: installing Debian's package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq rabbitmq-server >/dev/null
fi
echo "starting rabbitmq-server" >&2
rabbitmq-server -detached || true
# await_startup fails (rc 69) when called right after -detached: retry until the node is up
for _ in $(seq 1 60); do
  if rabbitmqctl -q await_startup >/dev/null 2>&1 && listening; then
    echo "rabbitmq is up" >&2
    exit 0
  fi
  sleep 1
done
echo "rabbitmq did not start within 60 s" >&2
exit 1
