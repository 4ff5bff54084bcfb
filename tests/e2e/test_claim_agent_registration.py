"""A community agent's 代办 claimed into the pipeline (issue #15 item 4): the agent registers a
petition for a resident of their own community in the browser (the resident's consent is
required: refused at its field without it, the typed values kept); the case has no first
receiver yet; the street coordinator finds it on the home page among the cases waiting for
them, opens it and claims it (认领) as first receiver, the timeline says so, and the agent still
sees their registration. Screenshots at 1280 and 390 px with axe-core."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.axe import shoot
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SHOT = "claim-agent"


async def test_an_agent_registration_is_claimed_by_the_street_coordinator(
    server: Server,
    as_user: Any,
) -> None:
    agent = await as_user("agent001")
    await agent.click("a[href='/cases/new']")
    await agent.wait_for_selector("#intake-form")
    assert await agent.is_checked("input[name=channel][value=agent]")
    await agent.fill("#i-name", "孙八")
    await agent.fill("#i-phone", "13812345671")
    await agent.select_option("#i-matter", label="噪声扰民")
    await agent.fill("input[name='attr-noise-location']", "本社区3幢楼下")
    await agent.fill("#i-summary", "楼下饭店油烟和夜间噪声影响居民休息")
    await shoot(agent, f"{SHOT}-01-form", height=1400)
    await agent.click("#intake-form button[type=submit]")
    await agent.wait_for_selector("#err-on_behalf_consent")
    assert await agent.input_value("#i-name") == "孙八"  # what was typed stays
    await shoot(agent, f"{SHOT}-02-consent-missing", height=1400)
    await agent.check("#i-consent")
    await agent.click("#intake-form button[type=submit]")
    await agent.wait_for_selector("#first-receiver")
    case_no = (await agent.inner_text("h1")).split()[0]
    assert "待认领" in (await agent.inner_text("#first-receiver"))
    assert await agent.locator("#action-claim").count() == 0  # an officer claims it
    await shoot(agent, f"{SHOT}-03-registered", height=1200)

    coordinator = await as_user("coord01")
    link = coordinator.locator(f"a:has-text('{case_no}')").first
    await link.wait_for()
    await shoot(coordinator, f"{SHOT}-04-home-waiting")
    await link.click()
    await coordinator.wait_for_selector("#action-claim")
    await coordinator.click("#action-claim > summary")
    await coordinator.click("#action-claim button[type=submit]")
    await coordinator.wait_for_selector("#flash")
    officer = (await coordinator.inner_text("#first-receiver")).strip()
    assert officer and "待认领" not in officer
    assert await coordinator.locator("#action-claim").count() == 0
    assert "认领" in (await coordinator.inner_text("#timeline"))
    await shoot(coordinator, f"{SHOT}-05-claimed", height=1200)

    # the agent still sees the case they registered, now with its first receiver
    await agent.reload()
    await agent.wait_for_selector("#first-receiver")
    assert "待认领" not in (await agent.inner_text("#first-receiver"))
