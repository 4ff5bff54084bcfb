"""The job runner: invites, updates, cancellations, reminders and room opening, persisted in
`scheduled_job` so they fire after restarts and exactly once across nodes.

Claiming: one short transaction marks due jobs as taken for a lease
(`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) AND status='pending' AND
lease free RETURNING id`). On PostgreSQL SKIP LOCKED lets runners on several nodes take
disjoint batches; the repeated WHERE makes a runner that waited on a row skip it. On SQLite
BEGIN IMMEDIATE serialises the claim. The message is sent outside any transaction, then a
second transaction records `sent`, or `pending` with a backoff, or `failed` after the last
attempt. A runner that dies after claiming leaves the lease to run out; the job is then
retried. (A crash between the gateway accepting a message and the `sent` commit can repeat
that one message: no SMS/e-mail gateway offers more than at-least-once.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduling.ics import Attendee, Invite, Method, build_ics, filename
from scheduling.models import GuestContact, JobKind, JobStatus, ScheduledJob
from scheduling.service import HOST_ROLES, Cipher
from server.notify import Attachment, NotificationFailed, Notifier, NotifyChannel
from server.org import service as org
from server.org.models import Staff
from server.sessions import service as sessions
from server.sessions.errors import SessionNotFound
from server.sessions.models import SessionParticipant, SessionState
from server.sessions.schemas import ParticipantView, SessionView

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 6  # [cfg]
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
BACKLOG_AFTER = timedelta(minutes=5)  # a pending job this late counts as backlog
BATCH = 50
POLL_INTERVAL_S = 15.0
TOKEN_VALID_AFTER_END = timedelta(hours=2)


class JoinLinkIssuer(Protocol):
    """Makes a participant's join link (server.sessions.service.JoinLinks issues and records
    the token)."""

    async def __call__(
        self,
        session: AsyncSession,
        *,
        call: SessionView,
        participant: ParticipantView,
        not_before: datetime,
        expires_at: datetime,
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class StaffRoomLinks:
    """Staff join from their own signed-in page; guests need a token issuer to get a link."""

    base_url: str

    async def __call__(
        self,
        session: AsyncSession,
        *,
        call: SessionView,
        participant: ParticipantView,
        not_before: datetime,
        expires_at: datetime,
    ) -> str:
        return f"{self.base_url}/rooms/{call.room_id}"


@dataclass(frozen=True, slots=True)
class _Message:
    to: str
    channel: NotifyChannel
    subject: str
    body: str
    attachments: list[Attachment]


class _Skip(Exception):
    def __init__(self, reason: str, status: JobStatus = JobStatus.cancelled) -> None:
        super().__init__(reason)
        self.status = status


def backoff(attempts: int) -> timedelta:
    return min(BACKOFF_BASE * (1 << min(max(attempts - 1, 0), 20)), BACKOFF_MAX)


async def claim_due(
    session: AsyncSession, *, now: datetime, lease: timedelta = LEASE, limit: int = BATCH
) -> list[int]:
    """Take up to `limit` due jobs for this runner (see the module docstring)."""
    free = (ScheduledJob.locked_until.is_(None)) | (ScheduledJob.locked_until <= now)
    due = (
        select(ScheduledJob.id)
        .where(ScheduledJob.status == JobStatus.pending, ScheduledJob.due_at <= now, free)
        .order_by(ScheduledJob.due_at, ScheduledJob.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(ScheduledJob)
        .where(
            ScheduledJob.id.in_(due.scalar_subquery()),
            ScheduledJob.status == JobStatus.pending,
            free,
        )
        .values(locked_until=now + lease, attempts=ScheduledJob.attempts + 1)
        .returning(ScheduledJob.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(rows.scalars().all())


SUBJECTS = {
    JobKind.invite: "【信访超市】预约通知",
    JobKind.update: "【信访超市】预约变更",
    JobKind.cancel: "【信访超市】预约取消",
    JobKind.reminder: "【信访超市】会议提醒",
    JobKind.room_open: "【信访超市】会议室已开放",
}


def _local(t: datetime | None, tz: str) -> str:
    return t.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if t else ""


async def _prepare(
    session: AsyncSession,
    job: ScheduledJob,
    *,
    now: datetime,
    issuer: JoinLinkIssuer,
    cipher: Cipher,
    tz: str,
) -> list[_Message]:
    try:
        call = await sessions.get_session_by_id(session, session_id=job.session_id)
    except SessionNotFound:
        raise _Skip("session gone") from None
    if job.kind == JobKind.room_open and job.participant_id is None:
        # Open the room (scheduled → lobby) and fan out one job per host.
        if call.state == SessionState.scheduled:
            call = await sessions.open_lobby(session, session_id=call.id)
            hosts = await session.scalars(
                select(SessionParticipant).where(
                    SessionParticipant.session_id == call.id,
                    SessionParticipant.staff_id.is_not(None),
                )
            )
            host_list = [h for h in hosts if h.role in HOST_ROLES] or []
            if not host_list:  # no named host: tell every staff participant
                host_list = list(
                    await session.scalars(
                        select(SessionParticipant).where(
                            SessionParticipant.session_id == call.id,
                            SessionParticipant.staff_id.is_not(None),
                        )
                    )
                )
            for h in host_list:
                session.add(
                    ScheduledJob(
                        session_id=call.id,
                        participant_id=h.id,
                        kind=JobKind.room_open,
                        lead_s=0,
                        due_at=now,
                        status=JobStatus.pending,
                        attempts=0,
                        last_error="",
                        created_at=now,
                    )
                )
            logger.info("session %s opened (lobby)", call.id)
        return []
    if job.participant_id is None:
        raise _Skip("no participant")
    part = await session.get(SessionParticipant, job.participant_id)
    if part is None:
        raise _Skip("participant gone")
    if (
        job.kind == JobKind.reminder
        and call.planned_start is not None
        and now >= call.planned_start
    ):
        raise _Skip("the session has already started")
    if job.kind in (JobKind.reminder, JobKind.room_open) and call.state not in (
        SessionState.scheduled,
        SessionState.lobby,
        SessionState.live,
    ):
        raise _Skip(f"the session is {call.state}")
    phone = email = ""
    if part.staff_id is not None:
        staff = await session.get(Staff, part.staff_id)
        phone = staff.phone if staff else ""
    else:
        contact = await session.get(GuestContact, part.id)
        if contact is not None:
            phone = cipher.decrypt(contact.phone_enc) if contact.phone_enc else ""
            email = cipher.decrypt(contact.email_enc) if contact.email_enc else ""
    if not phone and not email:
        raise _Skip("no phone or e-mail on file", JobStatus.failed)
    assert call.planned_start is not None and call.planned_end is not None
    link = ""
    if job.kind != JobKind.cancel:
        link = await issuer(
            session,
            call=call,
            participant=ParticipantView.from_row(part),
            not_before=call.planned_start - timedelta(minutes=30),
            expires_at=call.planned_end + TOKEN_VALID_AFTER_END,
        )
    site_name = await org.site_name(session, site_id=call.host_site_id)
    when = f"{_local(call.planned_start, tz)}–{_local(call.planned_end, tz)[-5:]}"
    lines = {
        JobKind.invite: f"您好，{part.display_name}：已为您预约「{call.title}」，时间 {when}。",
        JobKind.update: f"您好，{part.display_name}：「{call.title}」时间已变更为 {when}。",
        JobKind.cancel: f"您好，{part.display_name}：原定 {when} 的「{call.title}」已取消。",
        JobKind.reminder: f"提醒：「{call.title}」将于 {_local(call.planned_start, tz)} 开始。",
        JobKind.room_open: f"「{call.title}」会议室已开放，请进入主持。",
    }
    body = lines[job.kind] + (f" 入会链接：{link}" if link else "")
    attachments: list[Attachment] = []
    if job.kind in (JobKind.invite, JobKind.update, JobKind.cancel):
        method: Method = "CANCEL" if job.kind == JobKind.cancel else "REQUEST"
        ics = build_ics(
            invite_for(
                call,
                site_name=site_name,
                url=link,
                now=now,
                tz=tz,
                attendees=[Attendee(part.display_name, email=email, key=part.identity)],
            ),
            method=method,
        )
        attachments.append((filename(call.ical_uid or "", method), ics, "text/calendar"))
    channel: NotifyChannel = "email" if email else "sms"
    return [_Message(email or phone, channel, SUBJECTS[job.kind], body, attachments)]


def invite_for(
    call: SessionView,
    *,
    site_name: str,
    url: str,
    now: datetime,
    tz: str,
    attendees: list[Attendee],
    alarms_before: tuple[timedelta, ...] = (timedelta(minutes=15),),
) -> Invite:
    assert call.planned_start is not None and call.planned_end is not None
    return Invite(
        uid=call.ical_uid or f"session-{call.id}@onedoor",
        sequence=call.ical_sequence,
        start=call.planned_start,
        end=call.planned_end,
        summary=call.title,
        description="远程视频接访/在线调解。请提前五分钟进入。",
        location=site_name or "线上视频",
        url=url,
        attendees=attendees,
        alarms_before=alarms_before,
        tz=tz,
        stamp=now,
    )


async def run_due_reminders(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    notifier: Notifier,
    issuer: JoinLinkIssuer | None = None,
    cipher: Cipher | None = None,
    tz: str = "Asia/Shanghai",
    limit: int = BATCH,
) -> int:
    """Send every due job once; returns how many messages went out (room openings count as
    one each). Failures are retried with exponential backoff, then marked failed."""
    issuer = issuer or StaffRoomLinks("")
    cipher = cipher or _NoCipher()
    async with sessionmaker.begin() as session:
        job_ids = await claim_due(session, now=now, limit=limit)
    done = 0
    for job_id in job_ids:
        error = ""
        skipped: _Skip | None = None
        messages: list[_Message] = []
        try:
            async with sessionmaker.begin() as session:
                job = await session.get(ScheduledJob, job_id)
                if job is None or job.status != JobStatus.pending:
                    continue
                messages = await _prepare(
                    session, job, now=now, issuer=issuer, cipher=cipher, tz=tz
                )
        except _Skip as e:
            skipped = e
        for m in messages:
            try:
                await notifier.send(
                    to=m.to,
                    channel=m.channel,
                    subject=m.subject,
                    body=m.body,
                    attachments=m.attachments,
                )
            except NotificationFailed as e:
                error = str(e) or type(e).__name__
                break
        async with sessionmaker.begin() as session:
            job = await session.get(ScheduledJob, job_id)
            if job is None:
                continue
            part = (
                await session.get(SessionParticipant, job.participant_id)
                if job.participant_id
                else None
            )
            job.locked_until = None
            if skipped is not None:
                job.status = skipped.status
                job.last_error = str(skipped)
            elif error:
                job.last_error = error
                if job.attempts >= MAX_ATTEMPTS:
                    job.status = JobStatus.failed
                    logger.warning("job %s (%s) failed for good: %s", job.id, job.kind, error)
                else:
                    job.due_at = now + backoff(job.attempts)
                    logger.info("job %s (%s) will be retried: %s", job.id, job.kind, error)
            else:
                job.status = JobStatus.sent
                job.sent_at = now
                job.last_error = ""
                done += 1
            if part is not None and job.kind in (JobKind.invite, JobKind.update, JobKind.cancel):
                part.invite_status = {
                    JobStatus.sent: "sent" if job.kind != JobKind.cancel else "cancelled",
                    JobStatus.failed: "failed",
                    JobStatus.pending: "retrying",
                    JobStatus.cancelled: "none",
                }[job.status]
    return done


class _NoCipher:
    def encrypt(self, plaintext: str) -> str:
        raise RuntimeError("no cipher configured")

    def decrypt(self, token: str) -> str:
        raise RuntimeError("no cipher configured")


async def backlog(session: AsyncSession, *, now: datetime, late: timedelta = BACKLOG_AFTER) -> int:
    """Pending jobs that should have gone out more than `late` ago."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(ScheduledJob)
            .where(ScheduledJob.status == JobStatus.pending, ScheduledJob.due_at < now - late)
        )
        or 0
    )


async def run_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    clock: Callable[[], datetime],
    notifier: Notifier,
    issuer: JoinLinkIssuer,
    cipher: Cipher,
    tz: str,
    on_backlog: Callable[[int], None],
    interval_s: float = POLL_INTERVAL_S,
) -> None:
    """Poll for due jobs until cancelled; report the backlog after each round."""
    while True:
        try:
            while (
                await run_due_reminders(
                    sessionmaker,
                    now=clock(),
                    notifier=notifier,
                    issuer=issuer,
                    cipher=cipher,
                    tz=tz,
                )
                >= BATCH
            ):
                pass
            async with sessionmaker() as session:
                on_backlog(await backlog(session, now=clock()))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("reminder runner round failed; next round in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
