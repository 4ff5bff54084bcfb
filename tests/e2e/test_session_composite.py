"""The composite on the session record page (issue #20 item 1): its states (pending, running
with percent, failed with the reason, done with its link) and the playback page playing it
after a reason is stated; screenshots at 1280 and 390 px, axe clean. Also the synchronised
player holding its clock while one track is still loading."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from server.kernel.jobs import FAILED, run_due
from server.sessions import composite_jobs
from server.sessions.models import (
    CallSession,
    ParticipantRole,
    Recording,
    SessionComposite,
    SessionKind,
    SessionMode,
    SessionParticipant,
    SessionState,
)
from tests.composite_media import opus_webm, vp8_webm
from tests.conftest import DEMO_USERS
from tests.e2e.axe import shoot
from tests.e2e.conftest import Server
from tests.e2e.webclient import db_rows, sign_in, watch

pytestmark = pytest.mark.e2e
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def _db_file(data_dir: Path) -> Path:
    return next(p for p in data_dir.rglob("*") if p.suffix in (".db", ".sqlite", ".sqlite3"))


async def _sessions(
    server: Server, states: tuple[str, ...] = ("pending", "running", "failed", "done")
) -> dict[str, int]:
    """Ended sessions with recordings, one per composite state (pending, running, failed, done)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{_db_file(server.data_dir)}")
    db = async_sessionmaker(engine, expire_on_commit=False)
    root = server.data_dir / "recordings"
    ids: dict[str, int] = {}
    try:
        for state in states:
            room = f"r-{uuid.uuid4().hex[:12]}"
            d = root / room
            d.mkdir(parents=True)
            files = [
                (vp8_webm(d / "a-video.webm", seconds=1.2, colour=(200, 30, 30)), "guest:a"),
                (opus_webm(d / "a-audio.webm", seconds=1.2), "guest:a"),
                (vp8_webm(d / "b-video.webm", seconds=1.0, colour=(30, 30, 200)), "staff:9"),
            ]
            async with db.begin() as session:
                call = CallSession(
                    room_id=room,
                    kind=SessionKind.mediation,
                    mode=SessionMode.video,
                    state=SessionState.ended,
                    title=f"邻里噪声调解（{state}）",
                    recording_allowed=True,
                    actual_start=T0,
                    actual_end=T0 + timedelta(minutes=30),
                    created_at=T0,
                )
                session.add(call)
                await session.flush()
                for identity, name, role in (
                    ("guest:a", "张三", ParticipantRole.party),
                    ("staff:9", "调解员李", ParticipantRole.mediator),
                ):
                    session.add(
                        SessionParticipant(
                            session_id=call.id, identity=identity, role=role, display_name=name
                        )
                    )
                for path, identity in files:
                    data = path.read_bytes()
                    session.add(
                        Recording(
                            session_id=call.id,
                            identity=identity,
                            kind="audio" if "audio" in path.name else "video",
                            storage_uri=str(path),
                            sha256=hashlib.sha256(data).hexdigest(),
                            size_bytes=len(data),
                            started_at=T0,
                            duration_s=1.2,
                        )
                    )
                now = datetime.now(UTC)
                job = SessionComposite(session_id=call.id, created_at=now, due_at=now)
                if state == "pending":  # not due yet: the run below leaves it waiting
                    job.due_at = now + timedelta(days=1)
                if state == "running":
                    job.locked_until, job.progress = now + timedelta(hours=1), 42
                if state == "failed":
                    job.status = FAILED
                    job.last_error = "原始录像无法解码：b-video.webm: Invalid data found"
                session.add(job)
                ids[state] = call.id
            if state == "done":
                handler = composite_jobs.CompositeJobs(recordings_dir=root, tz="Asia/Shanghai")
                report = await run_due(db, handler, now=datetime.now(UTC))
                assert report.sent == 1, report
    finally:
        await engine.dispose()
    return ids


async def _supervisor(server: Server, browser: Any) -> Any:
    """A signed-in centre supervisor's page (CSP bypassed for the test's own scripts)."""
    ctx = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", bypass_csp=True
    )
    page = await ctx.new_page()
    page.set_default_timeout(15_000)
    await watch(page, "supervisor")
    await sign_in(page, server.base_url, DEMO_USERS["centre_supervisor"])
    return page


async def test_composite_states_on_the_record_page_and_playback(
    server: Server, browser: Any
) -> None:
    ids = await _sessions(server)
    page = await _supervisor(server, browser)
    expected = {
        "pending": "等待合成",
        "running": "正在合成，已完成 42%",
        "failed": "合成失败：原始录像无法解码",
        "done": "播放或下载合成录像",
    }
    for state, sid in ids.items():
        await page.goto(f"{server.base_url}/sessions/{sid}/record")
        text = await page.inner_text(f"p.composite[data-state={state}]")
        assert expected[state] in text, text
        await shoot(page, f"session-composite-{state}")

    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.click("a.play-composite")
    await page.fill("input[name=reason]", "复核调解过程")
    await page.click("form[action$='/recordings'] button[type=submit]")
    await page.wait_for_selector("#composite video")
    duration = await page.evaluate(
        """() => new Promise((resolve) => {
          const v = document.querySelector('#composite video');
          if (v.readyState >= 1) resolve(v.duration);
          v.addEventListener('loadedmetadata', () => resolve(v.duration));
        })"""
    )
    assert 1.0 <= duration <= 2.0, duration
    await shoot(page, "session-composite-playback")


async def test_player_clock_waits_for_a_track_still_loading(server: Server, browser: Any) -> None:
    """One track's file is held back (a slow disk or link): after 播放 the clock stays at 0:00
    and the loaded tracks wait with it; once the file arrives all three play in step. Without
    the hold the clock ran to the end while that video had not started (an e2e flake on a busy
    machine: one track never played)."""
    (sid,) = (await _sessions(server, ("pending",))).values()
    ((held_id,),) = db_rows(
        server.data_dir,
        "SELECT id FROM recording WHERE session_id = ? AND identity = 'staff:9'",
        sid,
    )
    release = asyncio.Event()

    async def hold(route: Any) -> None:
        await release.wait()
        await route.continue_()

    page = await _supervisor(server, browser)
    await page.route(f"**/recordings/{held_id}/media*", hold)
    await page.goto(f"{server.base_url}/sessions/{sid}/recordings")
    await page.fill("input[name=reason]", "复核调解过程")
    await page.click("form[action$='/recordings'] button[type=submit]")
    await page.wait_for_selector("#player video.track")
    held = f"#player .track[src*='/recordings/{held_id}/media']"
    others = f"#player .track:not([src*='/recordings/{held_id}/media'])"
    await page.click("#play-toggle")
    await page.wait_for_selector("#player[data-state=buffering]")
    # Every other track has loaded (so it could play), yet nothing moves while one cannot.
    await page.wait_for_function(
        f'[...document.querySelectorAll("{others}")].every((e) => e.readyState >= 3)'
    )
    assert await page.eval_on_selector(held, "e => e.readyState") == 0
    assert await page.get_attribute("#player", "data-state") == "buffering"
    assert (await page.inner_text("#clock")).startswith("0:00 / 0:01 · 缓冲中")
    times = await page.eval_on_selector_all(others, "els => els.map((e) => e.currentTime)")
    assert times and all(t == 0 for t in times), times
    await shoot(page, "recordings-player-buffering")

    release.set()
    await page.wait_for_selector("#player[data-state=playing]")
    await page.wait_for_function(
        "[...document.querySelectorAll('#player .track')].every((e) => e.currentTime > 0.3)"
    )
    times = await page.eval_on_selector_all(
        "#player .track", "els => els.map((e) => e.currentTime)"
    )
    assert max(times) - min(times) < 0.5, times  # in step (b's file is 0.2 s shorter)
    await page.context.close()
