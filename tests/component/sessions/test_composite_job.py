"""The composite job on the whole app (SQLite, demo district): an ended session with real WebM
tracks is queued by the scan, composed by the handler (done, file beside the originals, listed
in the evidence manifest), shown on the session page with its playback link, played and
downloaded with a reason (audited), refused to roles that may not play recordings; a corrupt
track fails the job with its reason and leaves the originals as they were."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.http import keys
from server.kernel.jobs import FAILED, PENDING, SENT, run_due
from server.sessions import composite_jobs
from server.sessions.evidence.manifest import parse
from server.sessions.evidence.service import EvidenceContext, ensure_manifest
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
from tests.conftest import signed_in

Client = TestClient[Any, Any]
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def _handler(client: Client) -> composite_jobs.CompositeJobs:
    settings = client.app[keys.settings]
    return composite_jobs.CompositeJobs(
        recordings_dir=settings.effective_recordings_dir, tz=settings.timezone
    )


async def _ended_session(client: Client, *, corrupt: bool = False) -> tuple[int, list[Path]]:
    root: Path = client.app[keys.settings].effective_recordings_dir
    room = f"r-{uuid.uuid4().hex[:12]}"
    d = root / room
    d.mkdir(parents=True)
    files = [
        (
            vp8_webm(d / f"{room}-guest_abc-video.webm", seconds=1.2, colour=(220, 0, 0)),
            "guest:abc",
        ),
        (opus_webm(d / f"{room}-guest_abc-audio.webm", seconds=1.2), "guest:abc"),
        (vp8_webm(d / f"{room}-staff_9-video.webm", seconds=1.0, colour=(0, 0, 220)), "staff:9"),
    ]
    if corrupt:
        files[2][0].write_bytes(b"\x1a\x45\xdf\xa3" + b"not a webm" * 50)
    async with client.app[keys.db].begin() as session:
        call = CallSession(
            room_id=room,
            kind=SessionKind.mediation,
            mode=SessionMode.video,
            state=SessionState.ended,
            title="邻里噪声调解",
            recording_allowed=True,
            actual_start=T0,
            actual_end=T0 + timedelta(minutes=5),
            created_at=T0,
        )
        session.add(call)
        await session.flush()
        for identity, name, role in (
            ("guest:abc", "张三", ParticipantRole.party),
            ("staff:9", "调解员李", ParticipantRole.mediator),
        ):
            session.add(
                SessionParticipant(
                    session_id=call.id, identity=identity, role=role, display_name=name
                )
            )
        for i, (path, identity) in enumerate(files):
            data = path.read_bytes()
            session.add(
                Recording(
                    session_id=call.id,
                    identity=identity,
                    kind="audio" if "audio" in path.name else "video",
                    storage_uri=str(path),
                    sha256=hashlib.sha256(data).hexdigest(),
                    size_bytes=len(data),
                    started_at=T0 + timedelta(seconds=0.5 * (i == 2)),
                    duration_s=1.2 if i < 2 else 1.0,
                )
            )
        return call.id, [p for p, _ in files]


async def _row(client: Client, sid: int) -> SessionComposite:
    async with client.app[keys.db]() as session:
        row = await composite_jobs.get(session, session_id=sid)
    assert row is not None
    return row


async def _audit(client: Client, action: str) -> list[AuditEntry]:
    async with client.app[keys.db].begin() as session:
        return list(
            (await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all()
        )


async def test_scan_queues_the_job_which_makes_the_composite_shown_played_and_listed(
    app_client: Client,
) -> None:
    sid, files = await _ended_session(app_client)
    originals = {p: p.read_bytes() for p in files}
    db = app_client.app[keys.db]
    assert await composite_jobs.scan(db, now=NOW) == 1
    assert await composite_jobs.scan(db, now=NOW) == 0  # queued once
    assert (await _row(app_client, sid)).status == PENDING

    await signed_in(app_client, "centre_supervisor")
    page = await (await app_client.get(f"/sessions/{sid}/record")).text()
    assert 'data-state="pending"' in page and "等待合成" in page

    report = await run_due(db, _handler(app_client), now=NOW)
    assert report.sent == 1, report
    row = await _row(app_client, sid)
    assert row.status == SENT and row.progress == 100 and row.last_error == ""
    out = files[0].parent / f"composite-{sid}.mp4"
    assert out.is_file() and hashlib.sha256(out.read_bytes()).hexdigest() == row.sha256
    assert abs(row.duration_s - 1.5) < 0.01
    assert {p: p.read_bytes() for p in files} == originals
    # who spoke when, measured while mixing: the guest's 1.2 s tone, nothing from the mediator
    assert row.speakers is not None and set(row.speakers["tracks"]) == {"guest:abc"}
    [(start, end)] = row.speakers["tracks"]["guest:abc"]
    assert start <= 0.5 and 1.0 <= end <= 2.0, (start, end)

    page = await (await app_client.get(f"/sessions/{sid}/record")).text()
    assert 'data-state="done"' in page
    # the speaker timeline beside the 笔录, on the session clock
    minutes_page = await (await app_client.get(f"/sessions/{sid}/minutes")).text()
    assert 'id="speakers"' in minutes_page and "张三" in minutes_page
    assert re.search(r"00:00–00:0[12]", minutes_page), minutes_page
    assert f'href="/sessions/{sid}/recordings#composite"' in page

    # no grant: refused and audited; with a stated reason: played and downloaded, audited
    refused = await app_client.get(
        f"/sessions/{sid}/composite", headers={"Accept": "application/json"}
    )
    assert refused.status == 403
    assert (await refused.json())["error"] == "recording_reason_required"
    token = await signed_in(app_client, "centre_supervisor")
    resp = await app_client.post(
        f"/sessions/{sid}/recordings", data={"_csrf": token, "reason": "复核调解过程"}
    )
    html = await resp.text()
    match = re.search(rf"/sessions/{sid}/composite\?grant=([^\"&]+)", html)
    assert resp.status == 200 and match, html
    play = await app_client.get(
        f"/sessions/{sid}/composite?grant={match.group(1)}", headers={"Range": "bytes=0-99"}
    )
    assert play.status == 206 and play.headers["Content-Type"] == "video/mp4"
    dl = await app_client.get(f"/sessions/{sid}/composite?grant={match.group(1)}&download=1")
    assert dl.status == 200 and "attachment" in dl.headers["Content-Disposition"]
    assert await dl.read() == out.read_bytes()
    fetches = [a for a in await _audit(app_client, "recording.fetch") if a.object_id == str(sid)]
    assert [a.detail["download"] for a in fetches] == [False, True]
    assert await _audit(app_client, "recording.fetch_denied")

    stored = await ensure_manifest(
        db,
        session_id=sid,
        ctx=EvidenceContext.from_settings(app_client.app[keys.settings]),
        now=NOW,
    )
    kinds = {f["name"]: f["kind"] for f in parse(stored.manifest)["files"]}
    assert kinds[f"composite/session-{sid}.mp4"] == "composite"


async def test_a_corrupt_track_fails_the_job_with_its_reason_and_keeps_the_originals(
    app_client: Client,
) -> None:
    sid, files = await _ended_session(app_client, corrupt=True)
    originals = {p: p.read_bytes() for p in files}
    db = app_client.app[keys.db]
    await composite_jobs.scan(db, now=NOW)
    report = await run_due(db, _handler(app_client), now=NOW)
    assert report.failed == 1, report
    row = await _row(app_client, sid)
    assert row.status == FAILED and "staff_9-video.webm" in row.last_error
    assert {p: p.read_bytes() for p in files} == originals
    assert not list(files[0].parent.glob("composite-*"))
    await signed_in(app_client, "centre_supervisor")
    page = await (await app_client.get(f"/sessions/{sid}/record")).text()
    assert 'data-state="failed"' in page and "合成失败" in page


async def test_others_may_not_play_or_download_the_composite(app_client: Client) -> None:
    sid, _ = await _ended_session(app_client)
    db = app_client.app[keys.db]
    await composite_jobs.scan(db, now=NOW)
    assert (await run_due(db, _handler(app_client), now=NOW)).sent == 1
    await signed_in(app_client, "window_officer")
    assert (await app_client.get(f"/sessions/{sid}/composite")).status == 403
    assert (await app_client.get(f"/sessions/{sid}/composite?download=1")).status == 403


def test_states_pending_running_done_failed() -> None:
    row = SessionComposite(
        session_id=1, created_at=NOW, due_at=NOW, status=PENDING, progress=0, last_error=""
    )
    assert composite_jobs.view(row, now=NOW).state == "pending"
    row.locked_until, row.progress = NOW + timedelta(minutes=1), 42
    running = composite_jobs.view(row, now=NOW)
    assert (running.state, running.percent) == ("running", 42)
    assert composite_jobs.view(row, now=NOW + timedelta(minutes=2)).state == "pending"
    row.status, row.last_error = FAILED, "原始录像无法解码：x.webm"
    failed = composite_jobs.view(row, now=NOW)
    assert (failed.state, failed.reason) == ("failed", "原始录像无法解码：x.webm")
    row.status = SENT
    assert composite_jobs.view(row, now=NOW).state == "done"
