"""What the console must never do: run HTML from the API, show one org's objects to another, put the key
anywhere but sessionStorage and the Authorization header, hide an API error; and its headers."""
from __future__ import annotations

import urllib.request

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.console.browser import (
    choose_adapter,
    console_errors,
    go,
    no_alert_opened,
    screenshot,
    sign_in,
    wait_for_text,
    wait_until,
)
from tests.e2e.console.platform import MODEL, broken_copy, call, create_lora
from tests.integration.fuzz.server import KEYS

INJECTED = "<img src=x onerror=alert(1)>"


def test_a_failed_adapter_shows_its_code_and_every_line_of_its_message(browser, dev, trained_adapter, tmp_path):
    create_lora(dev, broken_copy(trained_adapter, tmp_path / "broken"), "console-broken")
    sign_in(browser, dev.url, KEYS["fuzz"])
    go(browser, "/loras/console-broken")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-model='{MODEL}'] .record[data-status=failed]"),
               "the validation never showed failed")
    record = call(dev, "GET", "/v1/loras/console-broken")[1]["validations"][-1]
    shown_code = browser.find_element(By.CSS_SELECTOR, ".record .result-code").text
    shown_lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, ".record .result-message li")]
    expected = [line for line in record["result_message"].split("\n") if line.strip()]
    assert shown_code == record["result_code"]
    assert len(expected) >= 2 and shown_lines == [line.strip() for line in expected]
    assert any("rank_exceeds_max" in line or "999" in line for line in shown_lines)
    wait_for_text(browser, "#lora-status", "failed")
    screenshot(browser, "lora-failed")


def test_html_in_a_description_is_shown_as_text_and_runs_nothing(browser, dev, trained_adapter):
    create_lora(dev, trained_adapter, "console-xss", display_name=f"<b>{INJECTED}</b>", description=INJECTED)
    sign_in(browser, dev.url, KEYS["fuzz"])
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-lora=console-xss]"), "not listed")
    assert f"<b>{INJECTED}</b>" in browser.find_element(By.CSS_SELECTOR, "[data-lora=console-xss]").text
    go(browser, "/loras/console-xss")
    wait_for_text(browser, "#lora-description", INJECTED)
    assert browser.find_element(By.CSS_SELECTOR, "main h1").text == f"<b>{INJECTED}</b>"
    # typed into the edit form and saved, it stays text too
    description = browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby=edit-h] textarea")
    description.clear()
    description.send_keys(f"again {INJECTED}")
    browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby=edit-h] button[type=submit]").click()
    wait_for_text(browser, "#lora-description", f"again {INJECTED}")
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main b") == []
    assert no_alert_opened(browser)
    assert console_errors(browser) == []  # not even a blocked inline handler: nothing was parsed as HTML


def test_another_orgs_key_sees_none_of_it(browser, dev, trained_adapter):
    create_lora(dev, trained_adapter, "console-private", description="org fuzz only")
    sign_in(browser, dev.url, KEYS["tidy"])
    wait_for_text(browser, "main", "No LoRAs yet")
    go(browser, "/loras/console-private")
    wait_for_text(browser, "main [role=alert]", "Error 404")
    assert "org fuzz only" not in browser.find_element(By.TAG_NAME, "main").text
    go(browser, "/files")
    wait_for_text(browser, "main", "No files yet")
    go(browser, "/playground")
    wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#pg-lora option")) == 1
               and d.find_elements(By.CSS_SELECTOR, "#pg-model option"), "the playground did not load")
    go(browser, "/events")
    create_lora(dev, trained_adapter, "console-private-2")  # an event of org fuzz while tidy watches
    wait_for_text(browser, "main", "Connected")
    assert "console-private" not in browser.find_element(By.ID, "events-list").text


def test_the_key_stays_in_session_storage_and_logout_forgets_it(browser, dev):
    browser.get(f"{dev.url}/console/")
    key_field = wait_until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[name=api-key]"), "no key field")
    key_field.send_keys("sk-wrong-key")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for_text(browser, "[role=alert]", "Incorrect API key provided.")

    sign_in(browser, dev.url, KEYS["fuzz"])
    key = KEYS["fuzz"]
    assert browser.execute_script("return sessionStorage.getItem('loraserve.apiKey')") == key
    assert browser.execute_script("return JSON.stringify(localStorage)") == "{}"
    assert browser.get_cookies() == []
    for route in ("/loras", "/files", "/events", "/usage", "/playground"):
        go(browser, route)
        assert key not in browser.current_url
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and not [url for url in urls if key in url or not url.startswith(dev.url)]
    browser.find_element(By.ID, "logout").click()
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "input[name=api-key]"), "no sign-in after logout")
    assert browser.execute_script("return sessionStorage.length") == 0


@pytest.mark.parametrize("path", ["/console", "/console/", "/console/js/main.js", "/console/css/console.css",
                                  "/console/no-such-file.js"])
def test_every_console_answer_carries_the_security_headers(dev, path):
    request = urllib.request.Request(dev.url + path, method="GET")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        response = opener.open(request, timeout=10)
    except urllib.error.HTTPError as error:
        response = error
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "frame-ancestors 'none'", "require-trusted-types-for 'script'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert response.status in (200, 308, 404)


def test_the_console_files_need_no_key_and_the_api_still_does(dev):
    with urllib.request.urlopen(dev.url + "/console/", timeout=10) as response:
        page = response.read()
    assert b'<script type="module" src="js/main.js">' in page
    assert b"<script>" not in page and b"style=" not in page  # nothing inline for the CSP to refuse
    try:
        urllib.request.urlopen(dev.url + "/v1/loras", timeout=10)
        raise AssertionError("the API answered without a key")
    except urllib.error.HTTPError as error:
        assert error.code == 401


def test_api_errors_are_shown_as_the_apis_message(browser, dev, trained_adapter):
    create_lora(dev, trained_adapter, "console-taken")
    sign_in(browser, dev.url, KEYS["fuzz"])
    choose_adapter(browser, trained_adapter, "console-taken")
    browser.find_element(By.ID, "upload-submit").click()
    wait_for_text(browser, "[role=alert]", "Error 409")
    assert "lora_name_taken" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    screenshot(browser, "upload-name-taken")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
