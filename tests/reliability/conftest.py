import pytest

from tests.integration.fuzz.server import DevServer, start_dev_server
from tests.integration.fuzz.steering import Seeds, plant_seeds
from tests.reliability.fault_fixtures import (  # noqa: F401 -- the fault tests' fixtures
    api,
    broker,
    faults,
    figures,
    keys,
    print_figures,
    proxies,
    s3_server,
    topology,
    trained_adapter,
)


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory) -> DevServer:
    server = start_dev_server(tmp_path_factory.mktemp("reliability-dev"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seeds(dev_server) -> Seeds:
    return plant_seeds(dev_server)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    print_figures(terminalreporter, config)
