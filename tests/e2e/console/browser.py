"""Driving Debian's chromium with Selenium: the browser and driver binaries given explicitly (nothing is
downloaded), headless, plus what the console tests do with it: sign in, wait for text, screenshots at
two widths, the axe-core accessibility check (vendored in vendor/axe.min.js)."""
from __future__ import annotations

import os
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    JavascriptException,
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "build" / "console-screenshots"  # gitignored (build/)
AXE = Path(__file__).with_name("vendor") / "axe.min.js"
WIDTHS = {"laptop": (1366, 900), "phone": (390, 844)}
# generous: a wait ends as soon as its condition holds; this only bounds a broken run
PATIENCE = 90


def start_browser() -> webdriver.Chrome:
    # deploy/ensure-browser.sh installs both; Selenium Manager must not go looking for a download
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--disable-extensions", "--no-first-run", "--window-size=1366,900", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait_until(driver, condition, message: str, seconds: float = PATIENCE):
    # a redraw between finding an element and reading it is a reason to look again, not a failure
    waiting = WebDriverWait(driver, seconds, poll_frequency=0.2,
                            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    return waiting.until(lambda d: condition(d), message)


def text_of(driver, css: str) -> str:
    """The rendered text of what matches, read in one script (a redraw cannot leave a stale element)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText).join(' ')", css)


def wait_for_text(driver, css: str, text: str, seconds: float = PATIENCE) -> str:
    wait_until(driver, lambda d: text in text_of(d, css), f"{text!r} never appeared in {css}: {text_of(driver, css)!r}",
               seconds)
    return text_of(driver, css)


def open_console(driver, base_url: str, route: str = "/loras") -> None:
    driver.get(f"{base_url}/console/#{route}")


def sign_in(driver, base_url: str, key: str) -> None:
    open_console(driver, base_url)
    if not driver.find_elements(By.CSS_SELECTOR, "input[name=api-key]"):
        driver.find_element(By.ID, "logout").click()
    field = wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, "input[name=api-key]"), "no key field")
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_until(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "the console did not open")


def go(driver, route: str) -> None:
    driver.execute_script("location.hash = arguments[0]", f"#{route}")


def choose_adapter(driver, adapter_dir: Path, name: str, model: str = "loraserve/kimi-k2-tiny") -> None:
    """On the upload page: pick the two files, wait for the local check and the model the config names."""
    go(driver, "/upload")
    files = wait_until(driver, lambda d: d.find_element(By.ID, "pick-files"), "no file picker")
    files.send_keys(f"{adapter_dir / 'adapter_config.json'}\n{adapter_dir / 'adapter_model.safetensors'}")
    wait_for_text(driver, "#local-check", "Both files are here and the config parses")
    driver.find_element(By.ID, "lora-name").send_keys(name)
    wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"input[name=model][value='{model}']").is_selected(),
               "the model named by base_model_name_or_path is not ticked")


def set_width(driver, name: str) -> None:
    driver.set_window_size(*WIDTHS[name])


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def no_alert_opened(driver) -> bool:
    try:
        driver.switch_to.alert.dismiss()
    except NoAlertPresentException:
        return True
    return False


def axe_violations(driver, impacts=("serious", "critical")) -> list[dict]:
    """axe-core's WCAG 2 A/AA rules on the page as it is; the violations of the given impacts."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE.read_text())
    try:
        result = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    except JavascriptException as error:
        return [{"id": "axe-error", "impact": "critical", "help": str(error), "nodes": []}]
    return [violation for violation in result if violation["impact"] in impacts]


def console_errors(driver) -> list[str]:
    """Errors the page logged (a CSP violation, an exception), minus the API's own 4xx answers."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "the server responded with a status of 4" not in entry["message"]]
