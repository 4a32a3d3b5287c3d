import pytest

from tests.integration.fuzz.server import DevServer, start_dev_server
from tests.integration.fuzz.steering import Seeds, plant_seeds


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory) -> DevServer:
    server = start_dev_server(tmp_path_factory.mktemp("reliability-dev"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seeds(dev_server) -> Seeds:
    return plant_seeds(dev_server)
