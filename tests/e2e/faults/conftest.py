"""Fixtures of the fault tests: a private RabbitMQ node (never the shared one), per-service S3
fault proxies in front of moto, every service and a worker as its own process on them, and the
figures for the README's Reliability table, printed at the end of the run.

The e2e conftest above supplies `keys` (two orgs), `trained_adapter` and `s3_server` (moto).
"""
from __future__ import annotations

import pytest

from tests.e2e.faults.broker import PrivateBroker
from tests.e2e.faults.harness import Api, FaultTopology, start_fault_topology
from tests.e2e.faults.s3_faults import FaultProxy


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    node = PrivateBroker(tmp_path_factory.mktemp("rabbitmq"))
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def proxies(s3_server):
    made = {name: FaultProxy(s3_server, name).start() for name in ("validator", "gpu-worker")}
    yield made
    for proxy in made.values():
        proxy.stop()


@pytest.fixture(scope="session")
def fault_topology(tmp_path_factory, broker, s3_server, keys, proxies) -> FaultTopology:
    topo = start_fault_topology(tmp_path_factory.mktemp("fault-topology"), broker.url, s3_server, keys[0], proxies)
    yield topo
    topo.stop_all()


@pytest.fixture
def faults(proxies):
    """The proxies, with every rule dropped (and any held request released) after each test."""
    yield proxies
    for proxy in proxies.values():
        proxy.clear()


@pytest.fixture
def api(fault_topology, keys) -> Api:
    return Api(fault_topology, keys[1]["org-a"])


class FigurePrinter:
    """A plugin registered for the session: prints what the tests measured after the run."""

    def __init__(self) -> None:
        self.figures: dict[str, str] = {}

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.figures:
            terminalreporter.section("Reliability figures")
            width = max(len(name) for name in self.figures)
            for name, value in self.figures.items():
                terminalreporter.write_line(f"{name:<{width}}  {value}")


@pytest.fixture(scope="session")
def figures(pytestconfig) -> dict[str, str]:
    printer = FigurePrinter()
    pytestconfig.pluginmanager.register(printer, "loraserve-reliability-figures")
    yield printer.figures

