"""One `loraserve dev` and one headless chromium for the console tests; each test signs in afresh."""
from __future__ import annotations

import pytest

from tests.e2e.console.browser import open_console, set_width, start_browser
from tests.integration.fuzz.server import start_dev_server


@pytest.fixture(scope="session")
def dev(tmp_path_factory):
    server = start_dev_server(tmp_path_factory.mktemp("console-dev"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium, dev):
    set_width(chromium, "laptop")
    open_console(chromium, dev.url)
    chromium.execute_script("sessionStorage.clear()")
    chromium.get("about:blank")  # the next page load is a fresh document
    chromium.get_log("browser")  # start each test with an empty log
    yield chromium
    chromium.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
