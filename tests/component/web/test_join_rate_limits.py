"""Per-address rate limits on joins (issue #9 §4): the resident join page and the signaling join
with a token share one budget per client address; kiosk registrations have their own. On the
in-process limiter (single node); tests/multinode/test_join_rate_limit_multinode.py runs the
same budget through Redis across two nodes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from server.cases.models import Channel, PetitionCase
from server.http import keys
from server.kernel.ratelimit import InProcessRateLimiter
from tests.component.signaling.harness import Participant, build_app, new_session, new_token
from tests.conftest import make_settings


@pytest.fixture
async def limited(tmp_path: Path, demo_sqlite_url: str) -> AsyncIterator[TestServer]:
    settings = make_settings(tmp_path, demo_sqlite_url, join_rate_per_min=3, kiosk_rate_per_min=2)
    app = build_app(settings)
    app[keys.ratelimiter] = InProcessRateLimiter(clock=lambda: 1000.0)  # one window throughout
    server = TestServer(app)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def people() -> AsyncIterator[list[Participant]]:
    made: list[Participant] = []
    yield made
    for p in made:
        await p.close()


async def _person(made: list[Participant], server: TestServer, name: str) -> Participant:
    p = await Participant.create(server, name)
    made.append(p)
    return p


async def _get(p: Participant, path: str) -> tuple[int, str]:
    async with p.session.get(p.base + path) as resp:
        return resp.status, await resp.text()


async def test_join_page_and_signaling_join_share_one_budget_per_address(
    limited: TestServer, people: list[Participant]
) -> None:
    host = await _person(people, limited, "host")
    await host.sign_in("mediator01")
    sess = await new_session(host)
    invite = await new_token(host, sess["id"], name="李四")
    path = f"/join/{invite['token']}"
    await host.connect()
    await host.join(sess["room_id"])  # staff join without a token: not counted

    guest = await _person(people, limited, "guest")
    for _ in range(2):  # two page loads (a reload, say)
        status, html = await _get(guest, path)
        assert status == 200 and "李四" in html
    await guest.connect()
    assert (await guest.join(sess["room_id"], token=invite["token"]))["status"] == "lobby"

    # The budget (3) is spent: the page and the socket both refuse, with a clear zh-CN message.
    status, html = await _get(guest, path)
    assert status == 429 and "进入次数过多，请稍等一分钟后再试" in html
    assert "李四" not in html
    other = await _person(people, limited, "second guest")
    await other.connect()
    err = await other.request("join", room_id=sess["room_id"], token=invite["token"])
    assert err["type"] == "error" and err["code"] == "join_rate_limited"
    assert err["message_zh"] == "进入次数过多，请稍等一分钟后再试"
    assert (await other.request("ping"))["type"] == "pong"  # the socket stays up

    # Staff joins and resumes are not join-link redemptions: they still go through.
    await guest.drop()
    back = await _person(people, limited, "guest again")
    await back.connect()
    assert (await back.request("resume", resume_token=guest.resume_token))["type"] == "ack"
    assert (await back.expect("welcome"))["peer_id"] == guest.peer_id
    official = await _person(people, limited, "official")
    await official.sign_in("expert01")
    await official.connect()
    assert (await official.join(sess["room_id"]))["status"] == "joined"


async def _kiosk_post(p: Participant, form: dict[str, str]) -> tuple[int, str]:
    async with p.session.post(p.base + "/kiosk" + form.pop("_query", ""), data=form) as resp:
        return resp.status, await resp.text()


async def _kiosk_cases(server: TestServer) -> int:
    async with server.app[keys.db].begin() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(PetitionCase)
            .where(PetitionCase.channel == Channel.kiosk)
        )
    return int(count or 0)


async def test_kiosk_registrations_are_limited_and_keep_what_was_typed(
    limited: TestServer, people: list[Participant]
) -> None:
    kiosk = await _person(people, limited, "kiosk")
    status, html = await _get(kiosk, "/kiosk")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', html)
    site = re.search(r'name="site" value="(\d+)"', html)
    assert status == 200 and csrf and site

    def form(description: str, **extra: str) -> dict[str, Any]:
        return {
            "_csrf": csrf.group(1),
            "site": site.group(1),
            "matter_code": "noise",
            "description": description,
            "name": "张三",
            "phone": "13812345678",
            **extra,
        }

    for i in range(2):
        status, html = await _kiosk_post(kiosk, form(f"夜间施工噪声{i}"))
        assert status == 200 and "data:image/svg+xml" in html
    status, html = await _kiosk_post(kiosk, form("第三次登记的诉求"))
    assert status == 429
    assert "登记过于频繁，请稍等一分钟后再试" in html
    assert "第三次登记的诉求</textarea>" in html and 'value="13812345678"' in html
    status, html = await _kiosk_post(kiosk, form("英文界面", _query="?lang=en"))
    assert status == 429
    assert "Too many registrations from this kiosk; please wait a minute and try again" in html
    assert await _kiosk_cases(limited) == 2
