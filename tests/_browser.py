"""Debian's Chromium, headless, through Playwright: how every browser test launches it.

``tests/conftest.py``'s ``browser`` fixture (one browser per test module) calls :func:`chromium`;
the explorer's page (test_web_browser.py) and its melody page (test_music_browser.py) use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Offline and quiet (no background fetches, no QUIC), and audio may start without a click: the
# melody page plays what it decodes.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required"]


@contextlib.contextmanager
def chromium() -> Iterator:
    """A launched Playwright Browser, closed after; skips the test where Chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
