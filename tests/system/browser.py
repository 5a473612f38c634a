"""Debian's Chromium driven by Playwright (the driver only: no browser download), headless.

`launch` skips the test with the reason when ``/usr/bin/chromium`` (apt ``chromium``) or the
``playwright`` package is missing, unless ``TELEPHONYD_REQUIRE_SERVICES=1`` (then it fails). Pages
record console errors and uncaught exceptions in ``page.errors``; `artifact_dir` is where
screenshots go (``$TELEPHONYD_ARTIFACTS``, else ``artifacts/`` in the repository).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]


def _missing(reason: str) -> None:
    if os.environ.get("TELEPHONYD_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " (TELEPHONYD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def artifact_dir() -> Path:
    path = Path(os.environ.get("TELEPHONYD_ARTIFACTS") or REPO / "artifacts") / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def launch(stack: Any) -> Any:
    """A started headless Chromium (closed by ``stack``, an AsyncExitStack)."""
    if not CHROMIUM.exists():
        _missing("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install playwright)")
    driver = await stack.enter_async_context(async_playwright())
    browser = await driver.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    stack.push_async_callback(browser.close)
    return browser


async def new_page(browser: Any, width: int = 1920, height: int = 1080) -> Any:
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page
