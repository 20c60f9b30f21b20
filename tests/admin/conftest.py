"""A headless Chromium driven by selenium, shared by the browser tests of the admin pages.

The browser is Debian's ``chromium`` with its ``chromedriver``; when either is missing
the tests fail (never skip).  Selenium's calls block, so the tests make them in a
worker thread (:func:`in_browser`) while the linker keeps serving on the trio loop.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import trio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from ..conftest import ROOT, require_tool

T = TypeVar("T")

ARTIFACTS = ROOT / "tests" / "artifacts"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the whole session (it takes seconds to start)."""
    chromium = require_tool("chromium")
    chromedriver = require_tool("chromedriver")
    profile = tempfile.mkdtemp(prefix="linkpy-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def in_browser(fn: Callable[[], T]) -> T:
    """Run blocking selenium calls in a thread, leaving the trio loop to the linker."""
    return await trio.to_thread.run_sync(fn)


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save a screenshot for review under tests/artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
