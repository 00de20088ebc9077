"""Headless Chromium for the report's tests, driven over the DevTools protocol by Playwright.

Uses the system Chromium (Debian's `chromium`, or $SHADOW_CHROMIUM); Playwright's own browser download is
never needed. Every page is opened offline, with each request that is not the report file itself recorded
and aborted, and with console messages, page errors and dialogs (alert/confirm/prompt) recorded, so a test
can assert that nothing left the file and nothing ran.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-extensions",
]


def chromium_path() -> str | None:
    path = os.environ.get("SHADOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return path if path and Path(path).exists() else None


def browser_unavailable_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; no browser download needed)"
    if chromium_path() is None:
        return "no Chromium found (apt-get install chromium, or set SHADOW_CHROMIUM)"
    return None


@dataclass
class PageLog:
    console: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    """Requests other than the report file itself (all aborted)."""
    dialogs: list[str] = field(default_factory=list)


class Browser:
    """One Chromium for a test module; `open_page` gives a fresh, offline context per page."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._manager = sync_playwright()
        self._playwright = self._manager.start()
        self._browser = self._playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)

    def close(self) -> None:
        self._browser.close()
        self._playwright.stop()

    @contextmanager
    def open_page(self, path: Path, *, width: int = 1400, height: int = 900) -> Iterator[tuple[Any, PageLog]]:
        log = PageLog()
        own_url = path.resolve().as_uri()
        context = self._browser.new_context(viewport={"width": width, "height": height}, offline=True)
        page = context.new_page()

        def on_request(route: Any) -> None:
            url = route.request.url
            if url.split("#", 1)[0] == own_url:
                route.continue_()
            else:
                log.requests.append(url)
                route.abort()

        def on_console(message: Any) -> None:
            log.console.append(f"{message.type}: {message.text}")
            if message.type in ("error", "assert"):
                log.console_errors.append(message.text)

        def on_dialog(dialog: Any) -> None:
            log.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        context.route("**/*", on_request)
        # data: and blob: URLs never reach route handlers; count them from the request event instead.
        page.on("request", lambda r: None if r.url.startswith("file:") else _note(log, r.url))
        page.on("console", on_console)
        page.on("pageerror", lambda error: log.page_errors.append(str(error)))
        page.on("dialog", on_dialog)
        try:
            page.goto(own_url, wait_until="load")
            page.wait_for_function("document.documentElement.dataset.ready === '1'", timeout=10_000)
            yield page, log
        finally:
            context.close()


def _note(log: PageLog, url: str) -> None:
    if url not in log.requests:
        log.requests.append(url)


def load_time_ms(page: Any) -> dict[str, float]:
    """Navigation timings of the open page, in ms from navigation start."""
    return page.evaluate(
        """() => {
          const nav = performance.getEntriesByType("navigation")[0];
          const ready = performance.getEntriesByName("report-ready")[0];
          return {dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
                  ready: ready ? ready.startTime : nav.loadEventEnd};
        }"""
    )


__all__ = ["Browser", "PageLog", "browser_unavailable_reason", "chromium_path", "load_time_ms"]
