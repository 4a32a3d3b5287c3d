"""Fixtures of the fault tests: a private RabbitMQ node, moto, per-service S3 fault proxies, every
service and a worker as its own process, and the figures the README's Reliability table reports
(printed at the end of the run by the conftest's terminal summary).
"""
from __future__ import annotations

import pytest

from tests.e2e.conftest import keys, trained_adapter  # noqa: F401 -- the same adapter and orgs as e2e
from tests.fixtures.s3 import s3_server  # noqa: F401 -- moto, shared by the session
from tests.reliability.broker import PrivateBroker
from tests.reliability.harness import Api, start_fault_topology
from tests.reliability.s3_faults import FaultProxy

FIGURES = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    node = PrivateBroker(tmp_path_factory.mktemp("rabbitmq"))
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def proxies(s3_server):  # noqa: F811
    made = {name: FaultProxy(s3_server, name).start() for name in ("validator", "gpu-worker")}
    yield made
    for proxy in made.values():
        proxy.stop()


@pytest.fixture(scope="session")
def topology(tmp_path_factory, broker, s3_server, keys, proxies):  # noqa: F811
    topo = start_fault_topology(tmp_path_factory.mktemp("topology"), broker.url, s3_server, keys[0], proxies)
    yield topo
    topo.stop_all()


@pytest.fixture
def faults(proxies):
    """The proxies, with every rule dropped (and held request released) after each test."""
    yield proxies
    for proxy in proxies.values():
        proxy.clear()


@pytest.fixture
def api(topology, keys):  # noqa: F811
    return Api(topology, keys[1]["org-a"])


@pytest.fixture
def figures(request) -> dict:
    return request.config.stash.setdefault(FIGURES, {})


def print_figures(terminalreporter, config) -> None:
    figures = config.stash.get(FIGURES, {})
    if not figures:
        return
    terminalreporter.section("Reliability figures")
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        terminalreporter.write_line(f"{name:<{width}}  {value}")
