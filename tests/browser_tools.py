"""What the browser tests need, found or refused in one place: Playwright and a Chromium
(Debian's, or BROWSER_PATH; Playwright's own download is not used). Missing either is a
skip with the reason, and a failure under CI (where scripts/setup-dev.sh installs both)."""

from __future__ import annotations

import os

import pytest


def _missing(msg: str):
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def need_browser() -> str:
    """The Chromium executable (as the report's static export finds it)."""
    from cape.report.export import find_browser

    path = find_browser()
    if path is None:
        _missing("no Chromium browser on PATH (scripts/setup-dev.sh installs Debian's chromium)")
    return path


def need_playwright():
    """``playwright.sync_api.sync_playwright``."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (it is in the test extra)")
    return sync_playwright
