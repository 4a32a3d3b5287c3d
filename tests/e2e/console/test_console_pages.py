"""Every page at a laptop and a phone width: a screenshot (build/console-screenshots/, not committed),
no serious or critical axe-core violation (WCAG 2.1 A/AA: labels, contrast, names, ARIA), no script
error, nothing wider than the window; and the keyboard path through the chrome."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.e2e.console.browser import (
    WIDTHS,
    axe_violations,
    console_errors,
    go,
    screenshot,
    set_width,
    sign_in,
    wait_for_text,
    wait_until,
)
from tests.e2e.console.platform import broken_copy, call, create_lora
from tests.integration.fuzz.server import KEYS

NAV = ["LoRAs", "Upload", "Playground", "Files", "Events", "Usage", "Webhooks"]


@pytest.fixture(scope="module")
def shown(dev, trained_adapter, tmp_path_factory):
    """Something on every page: a ready LoRA, a failed one, a webhook endpoint."""
    ready = create_lora(dev, trained_adapter, "pages-ready", display_name="Centrifuge fan",
                        description="Answers questions about centrifuges with a cheer.")
    create_lora(dev, broken_copy(trained_adapter, tmp_path_factory.mktemp("broken")), "pages-failed")
    # a documentation address (TEST-NET-1, never routed) and an event no test causes: nothing is delivered
    status, endpoint = call(dev, "POST", "/v1/webhook_endpoints", body={
        "name": "receiver", "url": "https://192.0.2.10/loraserve", "event_types": ["response.incomplete"]})
    assert status == 200, endpoint
    return ready


def pages(ready) -> list[tuple[str, str, str]]:
    """(name, route, text that shows the page has loaded)"""
    return [
        ("loras", "/loras", "pages-ready"),
        ("lora-detail", "/loras/pages-ready", "succeeded"),
        ("lora-failed", "/loras/pages-failed", "rank"),
        ("upload", "/upload", "Choose the adapter"),
        ("playground", "/playground?lora=pages-ready", "Side by side"),
        ("files", "/files", "adapter_config.json"),
        ("events", "/events", "Connected"),
        ("usage", "/usage", "Input tokens"),
        ("webhooks", "/webhooks", "receiver"),
        ("response", f"/responses/{ready['validations'][0]['response_id']}", "Output"),
    ]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_is_accessible_and_fits_the_width(browser, dev, shown, width):
    sign_in(browser, dev.url, KEYS["fuzz"])
    set_width(browser, width)
    problems = {}
    for name, route, loaded in pages(shown):
        go(browser, route)
        wait_for_text(browser, "main", loaded)
        screenshot(browser, f"{name}-{width}")
        violations = axe_violations(browser)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        if violations or overflow > 0:
            problems[name] = {"axe": violations, "overflow_px": overflow}
    assert problems == {}
    assert console_errors(browser) == []


def test_the_keyboard_reaches_the_skip_link_then_every_section(browser, dev, shown):
    sign_in(browser, dev.url, KEYS["fuzz"])
    browser.refresh()  # a fresh load: the focus starts at the top of the document
    wait_for_text(browser, "main", "pages-ready")
    focused = []
    for _ in range(len(NAV) + 2):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        focused.append(browser.switch_to.active_element.text)
    assert focused == ["Skip to content", *NAV, "Log out"]
    # Enter on a section opens it and puts the focus on its heading
    browser.find_element(By.LINK_TEXT, "Upload").send_keys(Keys.ENTER)
    wait_until(browser, lambda d: d.switch_to.active_element.text == "Upload a LoRA", "the heading did not take the focus")
    assert browser.find_element(By.LINK_TEXT, "Upload").get_attribute("aria-current") == "page"


def test_a_webhook_endpoint_is_added_and_its_secret_shown_once(browser, dev):
    sign_in(browser, dev.url, KEYS["fuzz"])
    go(browser, "/webhooks")
    wait_until(browser, lambda d: d.find_element(By.ID, "wh-name"), "no form").send_keys("from the console")
    browser.find_element(By.ID, "wh-url").send_keys("https://192.0.2.11/hook")
    browser.find_element(By.ID, "wh-type-response-incomplete").click()
    browser.find_element(By.XPATH, "//button[text()='Add endpoint']").click()
    secret = wait_until(browser, lambda d: d.find_element(By.ID, "wh-secret-value"), "no secret shown").text
    assert secret.startswith("whsec_")
    wait_for_text(browser, "#webhook-list", "from the console")
    listed = call(dev, "GET", "/v1/webhook_endpoints?limit=100")[1]["data"]
    assert [e["signing_secret_hint"][-4:] for e in listed if e["name"] == "from the console"] == [secret[-4:]]
    browser.refresh()
    wait_for_text(browser, "#webhook-list", "from the console")
    assert secret not in browser.find_element(By.TAG_NAME, "body").text


def test_usage_groups_the_orgs_tokens_by_lora_name(browser, dev, shown):
    sign_in(browser, dev.url, KEYS["fuzz"])
    go(browser, "/loras/pages-ready")
    wait_for_text(browser, "main", "succeeded")  # its validation request is billed to the org
    go(browser, "/usage")
    wait_for_text(browser, "#usage-totals", "Requests")
    Select(browser.find_element(By.ID, "usage-group")).select_by_value("lora_id")
    browser.find_element(By.XPATH, "//button[text()='Show']").click()
    wait_for_text(browser, "#usage-results table", "pages-ready")
