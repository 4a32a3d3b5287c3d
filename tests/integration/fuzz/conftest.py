import pytest

from tests.integration.fuzz.server import DevServer, start_dev_server


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory) -> DevServer:
    server = start_dev_server(tmp_path_factory.mktemp("fuzz-dev"))
    yield server
    server.stop()
