"""Recording playback: list, state a reason (audited), fetch with Range, and the refusals
(role, no grant, tampered file, path outside the recordings directory)."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.http import keys
from server.org.models import Staff
from server.sessions.models import (
    CallSession,
    ParticipantRole,
    Recording,
    SessionKind,
    SessionMode,
    SessionParticipant,
    SessionState,
)
from tests.conftest import signed_in

Client = TestClient[Any, Any]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _webm(path: Path, frames: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), (i * 20) % 255, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


async def _session_with(
    client: Client, uris: list[str], files: list[Path]
) -> tuple[int, list[int]]:
    async with client.app[keys.db].begin() as session:
        call = CallSession(
            room_id=f"r-{uuid.uuid4().hex[:12]}",
            kind=SessionKind.mediation,
            mode=SessionMode.video,
            state=SessionState.ended,
            title="邻里噪声调解",
            created_at=T0,
        )
        session.add(call)
        await session.flush()
        session.add(
            SessionParticipant(
                session_id=call.id,
                identity="guest:abc",
                role=ParticipantRole.party,
                display_name="张三",
            )
        )
        rows = []
        for i, (uri, f) in enumerate(zip(uris, files, strict=True)):
            data = f.read_bytes() if f.exists() else b""
            row = Recording(
                session_id=call.id,
                identity="guest:abc" if i == 0 else "staff:1",
                kind="video",
                storage_uri=uri,
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                started_at=T0 + timedelta(seconds=2 * i),
                duration_s=1.0,
            )
            session.add(row)
            rows.append(row)
        await session.flush()
        return call.id, [r.id for r in rows]


def _recdir(client: Client) -> Path:
    path: Path = client.app[keys.settings].effective_recordings_dir
    return path


async def _audit(client: Client, action: str) -> list[AuditEntry]:
    async with client.app[keys.db].begin() as session:
        return list(
            (await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all()
        )


async def _grant(client: Client, token: str, session_id: int, reason: str = "复核调解协议") -> str:
    resp = await client.post(
        f"/sessions/{session_id}/recordings", data={"_csrf": token, "reason": reason}
    )
    html = await resp.text()
    assert resp.status == 200, html
    match = re.search(r"/recordings/\d+/media\?grant=([^\"&]+)", html)
    assert match, html
    return match.group(1)


async def test_supervisor_lists_states_reason_and_fetches_with_range(app_client: Client) -> None:
    files = [_recdir(app_client) / "s1" / "a.webm", _recdir(app_client) / "s1" / "b.webm"]
    for f in files:
        _webm(f)
    sid, ids = await _session_with(app_client, [str(f) for f in files], files)
    token = await signed_in(app_client, "centre_supervisor")

    page = await app_client.get(f"/sessions/{sid}/recordings")
    html = await page.text()
    assert page.status == 200 and "张三" in html and 'name="reason"' in html
    assert "/media" not in html  # no player before a reason

    empty = await app_client.post(f"/sessions/{sid}/recordings", data={"_csrf": token})
    assert empty.status == 422 and not await _audit(app_client, "recording.play")

    grant = await _grant(app_client, token, sid)
    html = await (
        await app_client.post(
            f"/sessions/{sid}/recordings", data={"_csrf": token, "reason": "复核调解协议"}
        )
    ).text()
    assert html.count("<video") == 2 and 'data-offset="2.0"' in html and "playback.js" in html

    plays = await _audit(app_client, "recording.play")
    assert plays and plays[0].detail["reason"] == "复核调解协议"
    assert plays[0].detail["recording_ids"] == ids

    resp = await app_client.get(
        f"/recordings/{ids[0]}/media?grant={grant}", headers={"Range": "bytes=0-99"}
    )
    assert resp.status == 206, await resp.text()
    assert resp.content_type == "video/webm"
    assert await resp.read() == files[0].read_bytes()[:100]
    full = await app_client.get(f"/recordings/{ids[1]}/media?grant={grant}")
    assert full.status == 200 and await full.read() == files[1].read_bytes()
    fetches = await _audit(app_client, "recording.fetch")
    assert [f.object_id for f in fetches] == [str(ids[0]), str(ids[1])]
    assert fetches[0].actor.startswith("staff:") and fetches[0].detail["range"] == "bytes=0-99"


async def test_mediator_may_play(app_client: Client) -> None:
    f = _recdir(app_client) / "m.webm"
    _webm(f)
    sid, ids = await _session_with(app_client, [str(f)], [f])
    token = await signed_in(app_client, "mediator")
    grant = await _grant(app_client, token, sid)
    resp = await app_client.get(
        f"/recordings/{ids[0]}/media?grant={grant}", headers={"Range": "bytes=10-"}
    )
    assert resp.status == 206


async def test_role_without_recording_play_is_refused(app_client: Client) -> None:
    f = _recdir(app_client) / "w.webm"
    _webm(f)
    sid, ids = await _session_with(app_client, [str(f)], [f])
    token = await signed_in(app_client, "window_officer")
    assert (await app_client.get(f"/sessions/{sid}/recordings")).status == 403
    post = await app_client.post(
        f"/sessions/{sid}/recordings", data={"_csrf": token, "reason": "想看看"}
    )
    assert post.status == 403
    assert (await app_client.get(f"/recordings/{ids[0]}/media")).status == 403
    assert not await _audit(app_client, "recording.play")


async def test_fetch_without_or_with_a_forged_grant_is_refused(app_client: Client) -> None:
    f = _recdir(app_client) / "n.webm"
    _webm(f)
    _, ids = await _session_with(app_client, [str(f)], [f])
    await signed_in(app_client, "centre_supervisor")
    headers = {"Accept": "application/json"}
    resp = await app_client.get(f"/recordings/{ids[0]}/media", headers=headers)
    assert resp.status == 403 and (await resp.json())["error"] == "recording_reason_required"
    forged = await app_client.get(f"/recordings/{ids[0]}/media?grant=e30.abc", headers=headers)
    assert forged.status == 403
    assert not await _audit(app_client, "recording.fetch")
    assert len(await _audit(app_client, "recording.fetch_denied")) == 2


async def test_grant_is_bound_to_its_session(app_client: Client) -> None:
    f1, f2 = _recdir(app_client) / "x1.webm", _recdir(app_client) / "x2.webm"
    _webm(f1)
    _webm(f2)
    sid1, _ = await _session_with(app_client, [str(f1)], [f1])
    _, ids2 = await _session_with(app_client, [str(f2)], [f2])
    token = await signed_in(app_client, "centre_supervisor")
    grant = await _grant(app_client, token, sid1)
    assert (await app_client.get(f"/recordings/{ids2[0]}/media?grant={grant}")).status == 403


async def test_tampered_file_is_refused_and_audited(app_client: Client) -> None:
    f = _recdir(app_client) / "t.webm"
    _webm(f)
    sid, ids = await _session_with(app_client, [str(f)], [f])
    token = await signed_in(app_client, "centre_supervisor")
    grant = await _grant(app_client, token, sid)
    ok = await app_client.get(f"/recordings/{ids[0]}/media?grant={grant}")
    assert ok.status == 200  # verified (and cached) before the change
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF  # same size, different bytes
    f.write_bytes(bytes(data))
    resp = await app_client.get(
        f"/recordings/{ids[0]}/media?grant={grant}",
        headers={"Accept": "application/json", "Range": "bytes=0-9"},
    )
    assert resp.status == 409
    body = await resp.json()
    assert body["error"] == "recording_tampered" and "篡改" in body["message_zh"]
    tampered = await _audit(app_client, "recording.tampered")
    assert [t.object_id for t in tampered] == [str(ids[0])]


async def test_storage_uri_outside_the_recordings_dir_is_not_served(
    app_client: Client, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.webm"
    _webm(outside)
    _recdir(app_client).mkdir(parents=True, exist_ok=True)
    inside_link = _recdir(app_client) / "link.webm"
    inside_link.symlink_to(outside)
    uris = ["../../etc/passwd", str(outside), "/etc/passwd", str(inside_link)]
    sid, ids = await _session_with(app_client, uris, [outside, outside, outside, outside])
    token = await signed_in(app_client, "centre_supervisor")
    grant = await _grant(app_client, token, sid)
    for rid in ids:
        resp = await app_client.get(
            f"/recordings/{rid}/media?grant={grant}", headers={"Accept": "application/json"}
        )
        body = await resp.read()
        assert resp.status == 404, (rid, resp.status)
        assert b"root:" not in body and outside.read_bytes()[:32] not in body
    assert not await _audit(app_client, "recording.fetch")


async def test_unknown_recording_is_404(app_client: Client) -> None:
    await signed_in(app_client, "centre_supervisor")
    assert (await app_client.get("/recordings/999999/media")).status == 404
    assert (await app_client.get("/sessions/999999/recordings")).status == 404


async def test_sessions_page_links_to_recordings_for_players_only(app_client: Client) -> None:
    await signed_in(app_client, "centre_supervisor")
    async with app_client.app[keys.db].begin() as session:
        staff_id = await session.scalar(select(Staff.id).where(Staff.username == "supervisor01"))
        call = CallSession(
            room_id=f"r-{uuid.uuid4().hex[:12]}",
            kind=SessionKind.mediation,
            mode=SessionMode.video,
            state=SessionState.ended,
            title="今日调解",
            created_by_id=staff_id,
            created_at=datetime.now(UTC),
        )
        session.add(call)
        await session.flush()
        sid = call.id
    html = await (await app_client.get("/sessions")).text()
    assert f'href="/sessions/{sid}/recordings"' in html
