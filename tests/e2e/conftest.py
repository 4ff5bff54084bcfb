"""Browser tests: Debian's Chromium driven by Playwright, against a real `onedoor serve`, inside
a loopback-only network namespace (tests/e2e/run-in-netns.sh, `make e2e`).

Every test that uses `page` leaves a screenshot in artifacts/e2e/ for a person to look at.
"""

from __future__ import annotations

import asyncio
import os
import re
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


async def sent_link(server: Server, path: str, *, nth: int = -1, timeout_s: float = 20.0) -> str:
    """The token of the `nth` `{path}/<token>` link the server's development SMS backend has
    sent (LogNotifier logs each text it sends), waiting for the outbox to send it. Not from the
    database: once a text is sent the outbox replaces its link there with "[已发送]"."""
    pattern = re.compile(re.escape(path) + r"/([A-Za-z0-9_.~-]+)")
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        tokens = pattern.findall(server.log_path.read_text(errors="replace"))
        if len(tokens) > (nth if nth >= 0 else -nth - 1):
            return str(tokens[nth])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {path} link sent within {timeout_s} s")
        await asyncio.sleep(0.2)


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
async def as_user(browser: Any, server: Server) -> AsyncIterator[Any]:
    """A function opening a signed-in page (1280 px) for a demo account, each in a browser
    context of its own (closed after the test)."""
    from tests.e2e.webclient import sign_in

    contexts: list[Any] = []

    async def open_as(username: str) -> Any:
        context = await browser.new_context(
            viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
        )
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        await sign_in(page, server.base_url, username)
        return page

    yield open_as
    for context in contexts:
        await context.close()


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
