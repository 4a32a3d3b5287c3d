"""A person's path through the console in a real browser: enter a key, upload the demo adapter (the
progress bar reaching 100 %), watch its validation turn `succeeded` without reloading, compare answers
side by side with and without it, patch it, delete it; and an upload that resumes after a network error."""
from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.e2e.conftest import PHRASE, PROMPT
from tests.e2e.console.browser import (
    choose_adapter,
    console_errors,
    go,
    screenshot,
    sign_in,
    wait_for_text,
    wait_until,
)
from tests.e2e.console.dropper import DroppingProxy
from tests.e2e.console.platform import MODEL, call, create_lora
from tests.integration.fuzz.server import KEYS

KIMI = "moonshotai/Kimi-K2.6"
RECORD_PERCENTS = """
window.__percents = [];
window.__sameDocument = true;
new MutationObserver(() => {
  const bar = document.getElementById('upload-progress');
  if (bar) window.__percents.push([bar.dataset.percent, document.getElementById('upload-progress-text').textContent]);
}).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['data-percent']});
"""


def kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} B"


def record_status(driver, model):
    found = driver.find_elements(By.CSS_SELECTOR, f"[data-model='{model}'] .record")
    return found[0].get_attribute("data-status") if found else None


def test_a_person_uploads_watches_validation_compares_patches_and_deletes(browser, dev, trained_adapter):
    sign_in(browser, dev.url, KEYS["fuzz"])
    choose_adapter(browser, trained_adapter, "console-journey")
    screenshot(browser, "journey-upload-chosen")
    browser.execute_script(RECORD_PERCENTS)
    browser.find_element(By.ID, "upload-submit").click()

    wait_until(browser, lambda d: d.current_url.endswith("#/loras/console-journey"), "never landed on the LoRA")
    percents = browser.execute_script("return window.__percents")
    assert percents[-1][0] == "100" and "(100%)" in percents[-1][1], percents
    total = (trained_adapter / "adapter_config.json").stat().st_size + \
        (trained_adapter / "adapter_model.safetensors").stat().st_size
    assert percents[-1][1].startswith(f"{kib(total)} of {kib(total)} (100%)"), percents
    wait_until(browser, lambda d: record_status(d, MODEL) == "succeeded", "validation never showed succeeded")
    assert browser.execute_script("return window.__sameDocument") is True, "the page was reloaded"
    wait_for_text(browser, "#lora-status", "ready")
    screenshot(browser, "journey-detail-succeeded")

    create_lora(dev, trained_adapter, "console-second")  # the same adapter again, for a third column
    browser.find_element(By.LINK_TEXT, "Try it in the playground").click()
    compare_side_by_side(browser)

    go(browser, "/loras/console-journey")
    edit_and_add_a_model(browser)
    delete_from_the_detail_page(browser, dev)
    assert console_errors(browser) == []


def compare_side_by_side(driver):
    wait_until(driver, lambda d: Select(d.find_element(By.ID, "pg-lora")).first_selected_option.get_attribute("value")
               == "console-journey", "the LoRA was not preselected")
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#pg-lora-2 option[value=console-second]"),
               "the second LoRA is not offered")
    Select(driver.find_element(By.ID, "pg-lora-2")).select_by_value("console-second")
    driver.find_element(By.ID, "pg-compare").click()
    driver.find_element(By.ID, "pg-prompt").send_keys(PROMPT)
    driver.find_element(By.ID, "pg-run").click()
    wait_until(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#pg-outputs [data-done=true]")) == 3,
               "the three answers never finished")
    base, with_lora, with_second = (driver.find_element(By.CSS_SELECTOR, f"[data-output={key}]").text
                                    for key in ("base", "lora", "lora-2"))
    assert PHRASE in with_lora and PHRASE in with_second and PHRASE not in base, (base, with_lora, with_second)
    curl = driver.find_element(By.ID, "pg-curl").text
    python = driver.find_element(By.ID, "pg-python").text
    assert '"lora": "console-journey"' in curl and '"temperature": 0' in curl and "$OPENAI_API_KEY" in curl
    assert 'extra_body={"metadata": {"lora": "console-journey"}}' in python
    assert KEYS["fuzz"] not in curl + python
    screenshot(driver, "journey-playground")


def edit_and_add_a_model(driver):
    display = wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, "form[aria-labelledby=edit-h] input"),
                         "no edit form")
    display.clear()
    display.send_keys("Centrifuge fan")
    Select(driver.find_element(By.CSS_SELECTOR, "form[aria-labelledby=edit-h] select")).select_by_value(KIMI)
    driver.find_element(By.CSS_SELECTOR, "form[aria-labelledby=edit-h] button[type=submit]").click()
    wait_for_text(driver, "main h1", "Centrifuge fan")
    wait_for_text(driver, "main .notice", "Saved.")
    # the added model gets its own record, live; this adapter was trained for the tiny model
    wait_until(driver, lambda d: record_status(d, KIMI) == "failed", "the added model's record never finished")
    assert "base_model_mismatch" in driver.find_element(By.CSS_SELECTOR, f"[data-model='{KIMI}'] .result-code").text
    assert record_status(driver, MODEL) == "succeeded"


def delete_from_the_detail_page(driver, dev):
    driver.find_element(By.XPATH, "//button[text()='Delete…']").click()
    confirm = wait_until(driver, lambda d: d.find_element(By.ID, "confirm-delete"), "no confirmation")
    assert confirm.is_displayed()
    screenshot(driver, "journey-delete-confirmation")
    confirm.click()
    wait_until(driver, lambda d: d.current_url.endswith("#/loras"), "did not go back to the list")
    wait_until(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-lora=console-journey]"),
               "the deleted LoRA is still listed")
    assert call(dev, "GET", "/v1/loras/console-journey")[0] == 404


def test_an_upload_resumes_after_a_network_error(browser, dev, trained_adapter):
    sign_in(browser, dev.url, KEYS["fuzz"])
    choose_adapter(browser, trained_adapter, "console-resumed")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/parts"]})  # every part fails on the network
    browser.find_element(By.ID, "upload-submit").click()
    wait_for_text(browser, "[role=alert]", "The connection failed while sending a part")
    resume = browser.find_element(By.ID, "upload-resume")
    wait_until(browser, lambda d: resume.is_displayed(), "no resume button")
    screenshot(browser, "upload-network-error")

    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    resume.click()
    wait_until(browser, lambda d: d.current_url.endswith("#/loras/console-resumed"), "the resumed upload never finished")
    wait_until(browser, lambda d: record_status(d, MODEL) == "succeeded", "validation never showed succeeded")
    files = call(dev, "GET", "/v1/files?limit=100")[1]
    lora = call(dev, "GET", "/v1/loras/console-resumed")[1]
    names = {f["id"]: f["filename"] for f in files["data"]}
    assert names[lora["config_file_id"]] == "adapter_config.json"
    assert names[lora["weights_file_id"]] == "adapter_model.safetensors"


def test_the_event_feed_resumes_after_a_drop_and_loses_nothing(browser, dev, trained_adapter):
    proxy = DroppingProxy(dev.port)
    try:
        sign_in(browser, proxy.url, KEYS["fuzz"])
        go(browser, "/events")
        wait_for_text(browser, "main", "Connected")
        proxy.go_down()
        wait_for_text(browser, "#live", "Reconnecting")
        create_lora(dev, trained_adapter, "console-while-offline")  # its events happen while the tab is cut off
        proxy.come_back()
        # the Events page shows only what the stream delivers: these came from the replay after Last-Event-ID
        wait_for_text(browser, "#events-list", "console-while-offline")
        types = [item.get_attribute("data-type") for item in browser.find_elements(By.CSS_SELECTOR, "#events-list .event")]
        assert "lora.created" in types and "file.created" in types
        wait_for_text(browser, "#live", "Live")
    finally:
        proxy.close()
