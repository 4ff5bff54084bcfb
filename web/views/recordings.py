"""Recording playback for staff: list a session's recordings, state why (audited), then play
every track in step; the media route checks the grant, the path and the file's digest."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record
from server.auth.permissions import Action
from server.http import keys
from server.http.auth import client_ip, protected, signed_in_staff
from server.http.common import path_int
from server.kernel.db import utcnow
from server.sessions import composite_jobs
from server.sessions import recordings as svc
from web.render import page


def _secrets(request: web.Request) -> tuple[bytes, ...]:
    settings = request.app[keys.settings]
    return (settings.secret_bytes(), *settings.previous_secret_bytes())


async def _render(
    request: web.Request, *, reason: str = "", error: str = "", grant: str = "", status: int = 200
) -> web.Response:
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    async with request.app[keys.db].begin() as session:
        call, items = await svc.list_recordings(session, staff=staff, session_id=session_id)
        composite = await composite_jobs.current(session, session_id=session_id, now=utcnow())
        if grant:
            await record(
                session,
                actor=staff.actor,
                action="recording.play",
                object_type="call_session",
                object_id=str(session_id),
                ip=client_ip(request),
                detail={"reason": reason, "recording_ids": [r.id for r in items]},
            )
    total = max((r.offset_s + r.duration_s for r in items), default=0.0)
    return page(
        request,
        "recordings.html",
        {
            "call": call,
            "items": items,
            "reason": reason,
            "error": error,
            "grant": grant,
            "total_s": total,
            "reason_max": svc.REASON_MAX,
            "composite": composite,
        },
        status=status,
    )


@protected(Action.session_join)
async def recordings_page(request: web.Request) -> web.Response:
    return await _render(request)


@protected(Action.session_join)
async def recordings_play(request: web.Request) -> web.Response:
    """The reason form: audit `recording.play` with the reason, then show the player."""
    staff = signed_in_staff(request)
    form = await request.post()
    raw = form.get("reason")
    reason = svc.clean_reason(raw if isinstance(raw, str) else "")
    if len(reason) < 2:
        return await _render(request, reason=reason, error="reason", status=422)
    grant = svc.issue_grant(
        _secrets(request)[0],
        staff_id=staff.staff_id,
        session_id=path_int(request, "session_id"),
        now=utcnow(),
    )
    return await _render(request, reason=reason, grant=grant)


@protected(Action.session_join)
async def recording_media(request: web.Request) -> web.FileResponse:
    """The WebM file (Range requests answered by FileResponse), for a grant holder only."""
    staff = signed_in_staff(request)
    recording_id = path_int(request, "recording_id")
    settings = request.app[keys.settings]
    async with request.app[keys.db].begin() as session:
        row = await svc.load_recording(session, staff=staff, recording_id=recording_id)
        detail = {
            "session_id": row.session_id,
            "range": request.headers.get("Range", "")[:100],
        }

        async def audit(session: AsyncSession, action: str, why: str | None = None) -> None:
            await record(
                session,
                actor=staff.actor,
                action=action,
                object_type="recording",
                object_id=str(recording_id),
                ip=client_ip(request),
                detail=detail if why is None else {**detail, "why": why},
            )

        try:
            svc.read_grant(
                _secrets(request),
                request.query.get("grant"),
                staff_id=staff.staff_id,
                session_id=row.session_id,
                now=utcnow(),
            )
        except svc.ReasonRequired as exc:
            await audit(session, "recording.fetch_denied", str(exc))
            denied: svc.ReasonRequired | None = exc
        else:
            denied = None
    if denied is not None:
        raise denied
    path = svc.resolve_path(settings.effective_recordings_dir, row.storage_uri)
    try:
        await asyncio.to_thread(svc.verify_file, path, sha256=row.sha256, size_bytes=row.size_bytes)
    except svc.RecordingTampered as exc:
        async with request.app[keys.db].begin() as session:
            await audit(session, "recording.tampered", str(exc))
        raise
    async with request.app[keys.db].begin() as session:
        await audit(session, "recording.fetch")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": svc.content_type(row.kind),
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@protected(Action.session_join)
async def composite_media(request: web.Request) -> web.FileResponse:
    """The session's composite MP4, for a grant holder only (as the original tracks):
    `?download=1` sends it as an attachment. Every request is audited."""
    staff = signed_in_staff(request)
    session_id = path_int(request, "session_id")
    settings = request.app[keys.settings]
    download = request.query.get("download") == "1"
    detail = {"range": request.headers.get("Range", "")[:100], "download": download}

    async def audit(session: AsyncSession, action: str, why: str | None = None) -> None:
        await record(
            session,
            actor=staff.actor,
            action=action,
            object_type="call_session",
            object_id=str(session_id),
            ip=client_ip(request),
            detail={**detail, "composite": True} | ({} if why is None else {"why": why}),
        )

    async with request.app[keys.db].begin() as session:
        found = await composite_jobs.playable_file(
            session,
            staff=staff,
            session_id=session_id,
            recordings_dir=settings.effective_recordings_dir,
        )
        try:
            svc.read_grant(
                _secrets(request),
                request.query.get("grant"),
                staff_id=staff.staff_id,
                session_id=session_id,
                now=utcnow(),
            )
        except svc.ReasonRequired as exc:
            await audit(session, "recording.fetch_denied", str(exc))
            denied: svc.ReasonRequired | None = exc
        else:
            denied = None
    if denied is not None:
        raise denied
    try:
        await asyncio.to_thread(
            svc.verify_file, found.path, sha256=found.sha256, size_bytes=found.size_bytes
        )
    except svc.RecordingTampered as exc:
        async with request.app[keys.db].begin() as session:
            await audit(session, "recording.tampered", str(exc))
        raise
    async with request.app[keys.db].begin() as session:
        await audit(session, "recording.fetch")
    headers = {
        "Content-Type": "video/mp4",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if download:
        headers["Content-Disposition"] = f'attachment; filename="session-{session_id}.mp4"'
    return web.FileResponse(found.path, headers=headers)


def setup(app: web.Application) -> None:
    app.router.add_get(
        r"/sessions/{session_id:\d+}/recordings", recordings_page, name="session_recordings"
    )
    app.router.add_post(
        r"/sessions/{session_id:\d+}/recordings", recordings_play, name="session_recordings_play"
    )
    app.router.add_get(
        r"/recordings/{recording_id:\d+}/media", recording_media, name="recording_media"
    )
    app.router.add_get(
        r"/sessions/{session_id:\d+}/composite", composite_media, name="session_composite"
    )
