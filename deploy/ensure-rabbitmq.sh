#!/usr/bin/env bash
# Make sure a RabbitMQ broker listens on 127.0.0.1:5672 (start it, or install Debian's and start it) and runs
# the plugin the topology needs: each model's affinity exchange is an x-consistent-hash one
# (shared/contracts/topology.py), a type only rabbitmq_consistent_hash_exchange provides.
set -euo pipefail

PLUGIN=rabbitmq_consistent_hash_exchange

listening() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

start_broker() {
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
      return 0
    fi
    sleep 1
  done
  echo "rabbitmq did not start within 60 s" >&2
  return 1
}

# Runs on every `make test`: when the plugin already runs this is one short query of the node (is_enabled
# asks the running node, so a plugin listed in enabled_plugins but not started is enabled too).
ensure_plugin() {
  if ! command -v rabbitmq-plugins >/dev/null 2>&1; then
    echo "a broker listens on 127.0.0.1:5672 but rabbitmq-plugins is not on this machine to manage it:" \
      "make sure that broker runs the plugin $PLUGIN (rabbitmq-plugins enable $PLUGIN);" \
      "without it the affinity exchanges (type x-consistent-hash) cannot be declared" >&2
    return 0
  fi
  if rabbitmq-plugins -q is_enabled "$PLUGIN" >/dev/null 2>&1; then
    return 0
  fi
  echo "enabling the RabbitMQ plugin $PLUGIN" >&2
  if ! rabbitmq-plugins -q enable "$PLUGIN" >/dev/null; then
    echo "could not enable $PLUGIN on the broker at 127.0.0.1:5672: enable it there" \
      "(rabbitmq-plugins enable $PLUGIN); the affinity exchanges (type x-consistent-hash) need it" >&2
    return 1
  fi
}

if ! listening; then
  start_broker
fi
ensure_plugin
