"""A private RabbitMQ node for fault tests: its own name, ports, data, cookie and epmd.

The shared broker on 5672 is never touched: this node runs under RABBITMQ_NODENAME
`loraserve-rel-<id>@localhost`, listens on free ports, keeps mnesia, logs and its Erlang
cookie (HOME) in a temporary directory, reads an empty config and a plugins file naming only the
consistent-hash exchange that adapter-affinity routing needs (so the
machine's /etc/rabbitmq settings, which name port 5672, do not apply) and registers with
an epmd of its own on a free port, which `stop` kills again.

It runs in the foreground as our child (`rabbitmq-server -detached` starts the node twice
on RabbitMQ 3.10 and the second copy fails with eaddrinuse).
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.fixtures.net import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
START_SECONDS = 90.0




def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class PrivateBroker:
    root: Path
    node: str = field(default_factory=lambda: f"loraserve-rel-{uuid.uuid4().hex[:8]}@localhost")
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        (self.root / "rabbitmq.conf").touch()
        (self.root / "rabbitmq-env.conf").touch()
        (self.root / "enabled_plugins").write_text("[rabbitmq_consistent_hash_exchange].\n")  # adapter affinity
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        return {
            **keep,
            "HOME": str(self.root),  # the node's and the CLI's private Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "node.pid"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([CTL, "-q", "-n", self.node, *args], env=self.env(), capture_output=True,
                              timeout=timeout, check=False)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "server.out", "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen([SERVER], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.wait_accepting()

    def wait_accepting(self, seconds: float = START_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while not accepts(self.port):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"private RabbitMQ exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"private RabbitMQ did not listen in {seconds} s: {self.log_tail()}")
            time.sleep(0.2)

    def stop_app(self) -> None:
        """The broker goes away for every client (connections closed, port shut); durable state stays."""
        result = self.ctl("stop_app")
        if result.returncode != 0:
            raise RuntimeError(f"stop_app failed: {result.stderr.decode(errors='replace')}")

    def start_app(self) -> None:
        result = self.ctl("start_app")
        if result.returncode != 0:
            raise RuntimeError(f"start_app failed: {result.stderr.decode(errors='replace')}")
        self.wait_accepting()

    def queue_lengths(self) -> dict[str, int]:
        result = self.ctl("list_queues", "name", "messages", "--no-table-headers")
        lengths = {}
        for line in result.stdout.decode().splitlines():
            name, _, count = line.rpartition("\t")
            if name and count.isdigit():
                lengths[name] = int(count)
        return lengths

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.ctl("shutdown", timeout=60)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        # the node started an epmd daemon on our private port: end that one (and only that one)
        subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"], env=self.env(), capture_output=True,
                       timeout=30, check=False)

    def log_tail(self, chars: int = 3000) -> str:
        logs = sorted((self.root / "log").glob("*.log")) if (self.root / "log").exists() else []
        text = "".join(path.read_text(errors="replace") for path in logs)
        out = self.root / "server.out"
        return (text or (out.read_text(errors="replace") if out.exists() else ""))[-chars:]
