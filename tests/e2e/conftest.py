"""Browser tests: Debian's Chromium driven by Playwright, against a real `onedoor serve`, inside
a loopback-only network namespace (tests/e2e/run-in-netns.sh, `make e2e`).

Every test that uses `page` leaves a screenshot in artifacts/e2e/ for a person to look at.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.server_process import ServerProcess, start_server
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
SERVER_START_TIMEOUT_S = 30


def loopback_only() -> bool:
    return sorted(os.listdir("/sys/class/net")) == ["lo"]


@pytest.fixture(autouse=True)
def _in_loopback_namespace() -> None:
    if loopback_only():
        return
    message = "browser tests run only inside a loopback-only namespace: use `make e2e`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


Server = ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path)
    yield srv
    srv.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 720}, locale="zh-CN")
    await context.tracing.start(screenshots=True, snapshots=True)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("/", "_")
    try:
        await asyncio.wait_for(
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True), 10
        )
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            await context.tracing.stop(path=str(ARTIFACTS / f"{name}-trace.zip"))
        else:
            await context.tracing.stop()
        await context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
