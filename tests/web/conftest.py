"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = f"Chromium not found at {CHROMIUM}; browser tests skipped (install: sudo apt-get install chromium)"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """The system Chromium; on CI its absence fails the run instead of skipping the browser tests."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if _in_ci():
        pytest.fail(f"{INSTALL_HINT.split(';')[0]} and CI=true: browser tests must run on CI")
    pytest.skip(INSTALL_HINT)


@pytest.fixture(scope="module")
def browser(chromium_path: Path) -> Iterator[Browser]:
    """One Chromium per test module.

    Module scope on purpose: the sync Playwright API keeps its own event loop running in this thread while
    it is open, and pytest-asyncio cannot start async fixtures then; closing it with the module keeps the
    other test folders' async fixtures working whatever the order.
    """
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()
