"""The page at GET / in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
through Selenium): it loads, lists the server's voices, and speaking a short text gives the
audio element a duration past zero."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from serving import Server

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not CHROMEDRIVER.exists(),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    running = Server(tiny_checkpoint).wait()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="bark-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_the_page_lists_voices_and_plays_what_it_is_given(server, browser):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(server.url + "/")
    assert browser.title == "bark serve"
    wait = WebDriverWait(browser, 120, poll_frequency=0.2)
    wait.until(lambda b: len(Select(b.find_element("id", "voice")).options) > 11)
    voices = [o.get_attribute("value") for o in Select(browser.find_element("id", "voice")).options]
    assert voices[0] == "alloy" and "v2/en_speaker_6" in voices
    text = browser.find_element("id", "text")
    text.clear()
    text.send_keys("Hello there.")
    browser.find_element("id", "speak").click()
    duration = wait.until(lambda b: b.execute_script(
        "const d = document.getElementById('player').duration; return d > 0 && isFinite(d) ? d : null"))
    assert duration > 0
    assert "error" not in browser.find_element("id", "status").text
